package metrics

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operator metric names.
const (
	FormationReady              = "rsf_formation_ready"
	FormationMembersUp          = "rsf_formation_members_up"
	FormationMembersDesired     = "rsf_formation_members_desired"
	FormationSentinelsReachable = "rsf_formation_sentinels_reachable"
	FormationQuorumOK           = "rsf_formation_quorum_ok"
	FormationMasterPresent      = "rsf_formation_master_present"
	FormationFailoversTotal     = "rsf_formation_failovers_total"
	FormationFailoverDuration   = "rsf_formation_failover_duration_seconds"
	FormationSentinelEvents     = "rsf_formation_sentinel_events_total"
	FormationReconcileErrors    = "rsf_formation_reconcile_errors_total"
	FormationCanarySuccess      = "rsf_formation_canary_success"
	FormationCanaryLatency      = "rsf_formation_canary_latency_seconds"
	MemberReplicationLagBytes   = "rsf_member_replication_lag_bytes"
	MemberMemoryUsedRatio       = "rsf_member_memory_used_ratio"
	OperatorPanicsTotal         = "rsf_operator_panics_recovered_total"
)

// Names lists every metric this package exports (cache and operator), as
// Prometheus sees them before the _bucket/_sum/_count suffixes of
// histograms.
func Names() []string {
	return []string{
		CacheHitsTotal,
		CacheMissesTotal,
		FormationReady,
		FormationMembersUp,
		FormationMembersDesired,
		FormationSentinelsReachable,
		FormationQuorumOK,
		FormationMasterPresent,
		FormationFailoversTotal,
		FormationFailoverDuration,
		FormationSentinelEvents,
		FormationReconcileErrors,
		FormationCanarySuccess,
		FormationCanaryLatency,
		MemberReplicationLagBytes,
		MemberMemoryUsedRatio,
		OperatorPanicsTotal,
	}
}

// FailoverDurationBuckets are the buckets (seconds) of the failover duration
// histogram: Sentinel failovers take from about a second (down-after of 1 s)
// to about a minute.
var FailoverDurationBuckets = []float64{0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90}

// CanaryLatencyBuckets are the buckets (seconds) of the canary latency
// histogram (a SET + GET round trip).
var CanaryLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// SentinelEventTypes are the Sentinel event types (pub/sub channel names)
// counted under their own label value; any other is counted as "other".
var SentinelEventTypes = []string{
	"+switch-master", "+sdown", "-sdown", "+odown", "-odown",
	"+try-failover", "+elected-leader", "+failover-state-select-slave",
	"+selected-slave", "+failover-state-send-slaveof-noone",
	"+failover-state-wait-promotion", "+promoted-slave",
	"+failover-state-reconf-slaves", "+slave-reconf-sent",
	"+slave-reconf-inprog", "+slave-reconf-done", "+failover-end",
	"+failover-end-for-timeout", "-failover-abort-not-elected",
	"-failover-abort-no-good-slave", "-failover-abort-slave-timeout",
	"+reboot", "+slave", "+sentinel", "+convert-to-slave", "+role-change",
	"-role-change", "+fix-slave-config", "+new-epoch", "+vote-for-leader",
	"+config-update-from", "+tilt", "-tilt", "+monitor", "-monitor",
	"+reset-master", "+set", "-dup-sentinel",
}

// ReconcilePhases are the phase label values of the reconcile error
// counter; any other is counted as "other".
var ReconcilePhases = []string{"finalizer", "secrets", "instances", "configuration", "topology", "status", "other"}

// Other is the label value that unknown subsystems, event types and phases
// fold into.
const Other = "other"

var (
	knownEvents = toSet(SentinelEventTypes)
	knownPhases = toSet(ReconcilePhases)
)

func toSet(l []string) map[string]struct{} {
	m := make(map[string]struct{}, len(l))
	for _, s := range l {
		m[s] = struct{}{}
	}
	return m
}

// NormalizeSentinelEvent returns eventType if it is a known Sentinel event
// type (surrounding spaces ignored), else "other".
func NormalizeSentinelEvent(eventType string) string {
	eventType = strings.TrimSpace(eventType)
	if _, ok := knownEvents[eventType]; ok {
		return eventType
	}
	return Other
}

// NormalizePhase returns phase if it is a known reconcile phase, else
// "other".
func NormalizePhase(phase string) string {
	if _, ok := knownPhases[phase]; ok {
		return phase
	}
	return Other
}

// MemberObservation is one member's state, as the controller saw it.
type MemberObservation struct {
	// Name is the member name, e.g. "cache-1".
	Name string
	// ReplicationLagBytes is how far the member is behind the master (0 for
	// the master itself). Negative means unknown: the series is removed.
	ReplicationLagBytes int64
	// UsedMemoryBytes is INFO memory's used_memory.
	UsedMemoryBytes int64
	// MaxMemoryBytes is the maxmemory setting; 0 (no limit, or unknown)
	// removes the ratio series.
	MaxMemoryBytes int64
}

// FormationObservation is one formation's state at the end of a reconcile.
type FormationObservation struct {
	Ready              bool
	MembersUp          int
	MembersDesired     int
	SentinelsReachable int
	QuorumOK           bool
	MasterPresent      bool
	// Members are the members that exist; series of members not listed are
	// deleted.
	Members []MemberObservation
}

// Operator holds the operator's per-formation metrics. Its methods are safe
// for concurrent use.
type Operator struct {
	ready, membersUp, membersDesired, sentinels, quorum, master *prometheus.GaugeVec
	failovers                                                   *prometheus.CounterVec
	failoverDuration                                            *prometheus.HistogramVec
	events                                                      *prometheus.CounterVec
	reconcileErrors                                             *prometheus.CounterVec
	canarySuccess                                               *prometheus.GaugeVec
	canaryLatency                                               *prometheus.HistogramVec
	lag, memRatio                                               *prometheus.GaugeVec
	panics                                                      *prometheus.CounterVec

	mu      sync.Mutex
	members map[formationKey]map[string]struct{}
}

type formationKey struct{ ns, name string }

var (
	formationLabels = []string{"namespace", "formation"}
	memberLabels    = []string{"namespace", "formation", "member"}
)

// NewOperator creates the operator metrics and registers them on reg (the
// operator passes controller-runtime's metrics.Registry; nil registers
// nothing). Registering twice on the same registry reuses the collectors
// already there.
func NewOperator(reg prometheus.Registerer) *Operator {
	gauge := func(name, help string, labels []string) *prometheus.GaugeVec {
		return register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
	}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
	}
	histogram := func(name, help string, buckets []float64, labels []string) *prometheus.HistogramVec {
		return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
	}
	failoverLabels := []string{"namespace", "formation", "path"}
	return &Operator{
		ready:            gauge(FormationReady, "1 when the formation is Ready, else 0.", formationLabels),
		membersUp:        gauge(FormationMembersUp, "Members whose redis-server answers.", formationLabels),
		membersDesired:   gauge(FormationMembersDesired, "Members the spec asks for.", formationLabels),
		sentinels:        gauge(FormationSentinelsReachable, "Sentinels that answered.", formationLabels),
		quorum:           gauge(FormationQuorumOK, "1 when every reachable sentinel reports CKQUORUM OK, else 0.", formationLabels),
		master:           gauge(FormationMasterPresent, "1 when the sentinels agree on a reachable master, else 0.", formationLabels),
		failovers:        counter(FormationFailoversTotal, "Master switches observed, by the path that promoted the new master (fast, sentinel, planned).", failoverLabels),
		failoverDuration: histogram(FormationFailoverDuration, "Outage of a master switch: from when the old master stopped answering (planned: from the write hold) to the new master's announcement, by path.", FailoverDurationBuckets, failoverLabels),
		events:           counter(FormationSentinelEvents, "Sentinel events received, by event type (unknown types as \"other\").", []string{"namespace", "formation", "event"}),
		reconcileErrors:  counter(FormationReconcileErrors, "Reconcile errors, by phase.", []string{"namespace", "formation", "phase"}),
		canarySuccess:    gauge(FormationCanarySuccess, "1 when the last canary SET+GET through the Sentinel client succeeded, else 0.", formationLabels),
		canaryLatency:    histogram(FormationCanaryLatency, "Canary SET+GET round trip time.", CanaryLatencyBuckets, formationLabels),
		lag:              gauge(MemberReplicationLagBytes, "Bytes a member's replication offset is behind the master's.", memberLabels),
		memRatio:         gauge(MemberMemoryUsedRatio, "used_memory / maxmemory of a member (absent when maxmemory is 0).", memberLabels),
		panics:           counter(OperatorPanicsTotal, "Panics recovered in the operator's goroutines, by component; the operator kept running.", []string{"component"}),
		members:          map[formationKey]map[string]struct{}{},
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ObserveFormation sets the formation's gauges, including the per-member
// ones, and deletes the series of members that are no longer listed.
func (o *Operator) ObserveFormation(ns, name string, obs FormationObservation) {
	o.mu.Lock()
	defer o.mu.Unlock()

	o.ready.WithLabelValues(ns, name).Set(b2f(obs.Ready))
	o.membersUp.WithLabelValues(ns, name).Set(float64(obs.MembersUp))
	o.membersDesired.WithLabelValues(ns, name).Set(float64(obs.MembersDesired))
	o.sentinels.WithLabelValues(ns, name).Set(float64(obs.SentinelsReachable))
	o.quorum.WithLabelValues(ns, name).Set(b2f(obs.QuorumOK))
	o.master.WithLabelValues(ns, name).Set(b2f(obs.MasterPresent))

	current := make(map[string]struct{}, len(obs.Members))
	for _, m := range obs.Members {
		if m.Name == "" {
			continue
		}
		current[m.Name] = struct{}{}
		if m.ReplicationLagBytes >= 0 {
			o.lag.WithLabelValues(ns, name, m.Name).Set(float64(m.ReplicationLagBytes))
		} else {
			o.lag.DeleteLabelValues(ns, name, m.Name)
		}
		if m.MaxMemoryBytes > 0 && m.UsedMemoryBytes >= 0 {
			o.memRatio.WithLabelValues(ns, name, m.Name).Set(float64(m.UsedMemoryBytes) / float64(m.MaxMemoryBytes))
		} else {
			o.memRatio.DeleteLabelValues(ns, name, m.Name)
		}
	}

	key := formationKey{ns, name}
	if _, seen := o.members[key]; !seen {
		o.zeroCounters(ns, name)
	}
	for old := range o.members[key] {
		if _, ok := current[old]; !ok {
			o.lag.DeleteLabelValues(ns, name, old)
			o.memRatio.DeleteLabelValues(ns, name, old)
		}
	}
	o.members[key] = current
}

// zeroCounters creates the formation's counter and histogram series at 0,
// so that their first increment is an increase to Prometheus (increase()
// and rate() need a sample before it: a series born at 1 shows no
// increase, and the first failover would never fire an alert) and the
// dashboards' panels show 0 rather than no data.
func (o *Operator) zeroCounters(ns, name string) {
	for _, path := range []string{PathFast, PathSentinel, PathPlanned} {
		o.failovers.WithLabelValues(ns, name, path)
		o.failoverDuration.WithLabelValues(ns, name, path)
	}
	for _, event := range append(SentinelEventTypes, Other) {
		o.events.WithLabelValues(ns, name, event)
	}
	for _, phase := range ReconcilePhases {
		o.reconcileErrors.WithLabelValues(ns, name, phase)
	}
	o.canaryLatency.WithLabelValues(ns, name)
}

// TrackComponents creates the recovered-panic series of the given
// goroutine components at 0 (see zeroCounters for why).
func (o *Operator) TrackComponents(components ...string) {
	for _, c := range components {
		o.panics.WithLabelValues(c)
	}
}

// ForgetFormation deletes every series of the formation (call it when the
// formation is deleted).
func (o *Operator) ForgetFormation(ns, name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	match := prometheus.Labels{"namespace": ns, "formation": name}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{
		o.ready, o.membersUp, o.membersDesired, o.sentinels, o.quorum, o.master,
		o.failovers, o.failoverDuration, o.events, o.reconcileErrors,
		o.canarySuccess, o.canaryLatency, o.lag, o.memRatio,
	} {
		v.DeletePartialMatch(match)
	}
	delete(o.members, formationKey{ns, name})
}

// Failover paths, the path label's values.
const (
	PathFast     = "fast"
	PathSentinel = "sentinel"
	PathPlanned  = "planned"
)

// FailoverObserved counts a master switch promoted through path (PathFast,
// PathSentinel, PathPlanned; anything else counts as sentinel) and, when
// d > 0, observes its outage.
func (o *Operator) FailoverObserved(ns, name, path string, d time.Duration) {
	if path != PathFast && path != PathPlanned {
		path = PathSentinel
	}
	o.failovers.WithLabelValues(ns, name, path).Inc()
	if d > 0 {
		o.failoverDuration.WithLabelValues(ns, name, path).Observe(d.Seconds())
	}
}

// SentinelEvent counts one Sentinel event; unknown types count as "other".
func (o *Operator) SentinelEvent(ns, name, eventType string) {
	o.events.WithLabelValues(ns, name, NormalizeSentinelEvent(eventType)).Inc()
}

// ReconcileError counts one reconcile error in phase (unknown: "other").
func (o *Operator) ReconcileError(ns, name, phase string) {
	o.reconcileErrors.WithLabelValues(ns, name, NormalizePhase(phase)).Inc()
}

// CanaryResult records a canary probe: success 1/0 and, when it succeeded,
// its latency.
func (o *Operator) CanaryResult(ns, name string, ok bool, latency time.Duration) {
	o.canarySuccess.WithLabelValues(ns, name).Set(b2f(ok))
	if ok {
		o.canaryLatency.WithLabelValues(ns, name).Observe(latency.Seconds())
	}
}

// PanicRecovered counts a panic recovered in one of the operator's
// goroutines (see internal/safe).
func (o *Operator) PanicRecovered(component string) {
	o.panics.WithLabelValues(component).Inc()
}

// trackedMembers returns the members known for a formation (tests).
func (o *Operator) trackedMembers(ns, name string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.members[formationKey{ns, name}]))
	for m := range o.members[formationKey{ns, name}] {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
