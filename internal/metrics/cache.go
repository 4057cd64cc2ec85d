// Package metrics holds every Prometheus metric of the project: the cache
// hit/miss counters that backends (and the operator's canary) record through
// the go-redis hook of internal/redisclient, and the operator's per-formation
// health metrics. Every name starts with "rsf_"; every label takes its values
// from a fixed list or from the set of formations (and their members), so the
// number of series stays bounded. docs/metrics.md describes them all.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Cache metric names.
const (
	CacheHitsTotal   = "rsf_cache_hits_total"
	CacheMissesTotal = "rsf_cache_misses_total"
)

// Subsystem is a caller of Redis, the only label of the cache counters.
// The zero value is SubsystemOther.
type Subsystem uint8

// The known subsystems. Anything else is counted as SubsystemOther.
const (
	SubsystemOther Subsystem = iota
	SubsystemRateLimiter
	SubsystemChatPubSub
	SubsystemPresence
	SubsystemCanary

	numSubsystems
)

var subsystemNames = [numSubsystems]string{
	SubsystemOther:       "other",
	SubsystemRateLimiter: "rate_limiter",
	SubsystemChatPubSub:  "chat_pubsub",
	SubsystemPresence:    "presence",
	SubsystemCanary:      "canary",
}

// String returns the label value, e.g. "rate_limiter".
func (s Subsystem) String() string {
	if s >= numSubsystems {
		return subsystemNames[SubsystemOther]
	}
	return subsystemNames[s]
}

// ParseSubsystem maps a label value to its Subsystem; unknown names (and "")
// fold into SubsystemOther.
func ParseSubsystem(name string) Subsystem {
	for i, n := range subsystemNames {
		if n == name {
			return Subsystem(i)
		}
	}
	return SubsystemOther
}

// Subsystems lists the label values of the subsystem label.
func Subsystems() []string {
	out := make([]string, len(subsystemNames))
	copy(out, subsystemNames[:])
	return out
}

// Cache counts Redis answers per subsystem: a hit is an answer (including
// redis.Nil, a legitimate empty result), a miss is an error after which the
// caller falls back. Its methods are safe for concurrent use and allocate
// nothing.
type Cache struct {
	hits   [numSubsystems]prometheus.Counter
	misses [numSubsystems]prometheus.Counter
}

// NewCache registers the cache counters on reg (nil: not registered, handy
// in tests) and creates the series of every known subsystem at zero, so
// rates and ratios exist before the first call. Registering twice on the
// same registry reuses the collectors already there.
func NewCache(reg prometheus.Registerer) *Cache {
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: CacheHitsTotal,
		Help: "Redis commands that got an answer (redis.Nil included), by calling subsystem.",
	}, []string{"subsystem"})
	misses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: CacheMissesTotal,
		Help: "Redis commands that failed (the caller falls back), by calling subsystem.",
	}, []string{"subsystem"})
	hits = register(reg, hits)
	misses = register(reg, misses)

	c := &Cache{}
	for i, name := range subsystemNames {
		c.hits[i] = hits.WithLabelValues(name)
		c.misses[i] = misses.WithLabelValues(name)
	}
	return c
}

// Hit counts one answered command for s.
func (c *Cache) Hit(s Subsystem) {
	if s >= numSubsystems {
		s = SubsystemOther
	}
	c.hits[s].Inc()
}

// Miss counts one failed command for s.
func (c *Cache) Miss(s Subsystem) {
	if s >= numSubsystems {
		s = SubsystemOther
	}
	c.misses[s].Inc()
}

// RecordCacheHit counts a hit for a subsystem given by name (unknown names
// count as "other").
func (c *Cache) RecordCacheHit(subsystem string) { c.Hit(ParseSubsystem(subsystem)) }

// RecordCacheMiss counts a miss for a subsystem given by name (unknown names
// count as "other").
func (c *Cache) RecordCacheMiss(subsystem string) { c.Miss(ParseSubsystem(subsystem)) }

// HitCounter returns the pre-resolved hit counter of s (for tests and
// callers that want to read it).
func (c *Cache) HitCounter(s Subsystem) prometheus.Counter {
	if s >= numSubsystems {
		s = SubsystemOther
	}
	return c.hits[s]
}

// MissCounter returns the pre-resolved miss counter of s.
func (c *Cache) MissCounter(s Subsystem) prometheus.Counter {
	if s >= numSubsystems {
		s = SubsystemOther
	}
	return c.misses[s]
}

// register registers c on reg, or returns the equal collector already
// registered there. Any other registration error is a programming error
// (e.g. a clashing metric of the same name) and panics, like MustRegister.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
