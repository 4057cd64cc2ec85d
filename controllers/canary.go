package controllers

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
)

// canaryInterval bounds how often one formation is probed.
const canaryInterval = 5 * time.Second

// canaryTimeout bounds one probe: a healthy master answers in milliseconds.
const canaryTimeout = 2 * time.Second

// CanaryProber runs the canary through the client backends use; the real
// one is redisclient.Prober, tests on fake backends use a stub that never
// dials.
type CanaryProber interface {
	Probe(ctx context.Context, key string, connection map[string][]byte) (time.Duration, error)
	Forget(key string)
}

// canary writes and reads a key through a FailoverClient built from a Ready
// formation's connection data, the path backends use: Sentinel discovery,
// authentication, a master that accepts writes. Its result is a metric; it
// never fails or delays a reconcile. When each formation was last probed
// is a sampling rate, not a decision: a restarted operator simply probes
// again.
type canary struct {
	prober  CanaryProber
	metrics *metrics.Operator
	guard   safe.Guard

	mu   sync.Mutex
	last map[types.NamespacedName]time.Time
}

func newCanary(prober CanaryProber, m *metrics.Operator, guard safe.Guard) *canary {
	return &canary{prober: prober, metrics: m, guard: guard, last: map[types.NamespacedName]time.Time{}}
}

// maybeProbe starts a probe beside the reconcile unless the formation was
// probed within canaryInterval (canaryTimeout < canaryInterval, so at most
// one runs per formation). During a failover a probe can wait on the dead
// master for the whole timeout; a reconcile waiting with it would hold back
// the next one, which writes the switch into status.
func (c *canary) maybeProbe(key types.NamespacedName, data map[string][]byte, log logr.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.last[key]) < canaryInterval {
		return
	}
	c.last[key] = now
	c.guard.Go(componentCanary, func() {
		ctx, cancel := context.WithTimeout(context.Background(), canaryTimeout)
		defer cancel()
		latency, err := c.prober.Probe(ctx, key.String(), data)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.last[key] != now {
			c.prober.Forget(key.String()) // deleted meanwhile: no client, no series left behind
			return
		}
		c.metrics.CanaryResult(key.Namespace, key.Name, err == nil, latency)
		if err != nil {
			log.Info("canary write+read through Sentinel discovery failed; backends using the connection Secret may fail too; probing again on the next pass",
				"error", err.Error())
		}
	})
}

// forget drops the formation's client and sampling time.
func (c *canary) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.last, key)
	c.prober.Forget(key.String())
}
