package metrics

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSubsystems(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Subsystem
	}{
		{"rate_limiter", SubsystemRateLimiter},
		{"chat_pubsub", SubsystemChatPubSub},
		{"presence", SubsystemPresence},
		{"canary", SubsystemCanary},
		{"other", SubsystemOther},
		{"", SubsystemOther},
		{"Presence", SubsystemOther},
		{"user-42", SubsystemOther},
	} {
		if got := ParseSubsystem(tc.in); got != tc.want {
			t.Errorf("ParseSubsystem(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := strings.Join(Subsystems(), ","); got != "other,rate_limiter,chat_pubsub,presence,canary" {
		t.Errorf("Subsystems() = %s", got)
	}
	if Subsystem(200).String() != "other" {
		t.Error("out-of-range Subsystem is not other")
	}
}

func TestCacheCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := NewCache(reg)
	// All series exist at zero from the start.
	if n := testutil.CollectAndCount(c.HitCounter(SubsystemOther)); n != 1 {
		t.Fatalf("collect = %d", n)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 2*len(Subsystems()) {
		t.Fatalf("series = %d, %v", n, err)
	}

	c.Hit(SubsystemPresence)
	c.RecordCacheHit("presence")
	c.RecordCacheMiss("rate_limiter")
	c.RecordCacheHit("made-up")
	c.Miss(Subsystem(99))

	expected := `
# HELP rsf_cache_hits_total Redis commands that got an answer (redis.Nil included), by calling subsystem.
# TYPE rsf_cache_hits_total counter
rsf_cache_hits_total{subsystem="canary"} 0
rsf_cache_hits_total{subsystem="chat_pubsub"} 0
rsf_cache_hits_total{subsystem="other"} 1
rsf_cache_hits_total{subsystem="presence"} 2
rsf_cache_hits_total{subsystem="rate_limiter"} 0
# HELP rsf_cache_misses_total Redis commands that failed (the caller falls back), by calling subsystem.
# TYPE rsf_cache_misses_total counter
rsf_cache_misses_total{subsystem="canary"} 0
rsf_cache_misses_total{subsystem="chat_pubsub"} 0
rsf_cache_misses_total{subsystem="other"} 1
rsf_cache_misses_total{subsystem="presence"} 0
rsf_cache_misses_total{subsystem="rate_limiter"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected)); err != nil {
		t.Fatal(err)
	}

	// A second NewCache on the same registry shares the counters.
	c2 := NewCache(reg)
	c2.Hit(SubsystemPresence)
	if got := testutil.ToFloat64(c.HitCounter(SubsystemPresence)); got != 3 {
		t.Fatalf("shared counter = %v", got)
	}
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	c := NewCache(nil)
	if n := testing.AllocsPerRun(100, func() { c.Hit(SubsystemCanary); c.Miss(SubsystemOther) }); n != 0 {
		t.Fatalf("allocs = %v", n)
	}
}

func gatheredNames(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		out = append(out, mf.GetName())
	}
	sort.Strings(out)
	return out
}

func TestNamesMatchWhatIsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewCache(reg)
	o := NewOperator(reg)
	o.ObserveFormation("ns", "f", FormationObservation{Members: []MemberObservation{{Name: "f-0", MaxMemoryBytes: 10}}})
	o.FailoverObserved("ns", "f", PathFast, time.Second)
	o.SentinelEvent("ns", "f", "+sdown")
	o.ReconcileError("ns", "f", "status")
	o.CanaryResult("ns", "f", true, time.Millisecond)
	o.PanicRecovered("canary")

	names := append([]string(nil), Names()...)
	sort.Strings(names)
	if got := gatheredNames(t, reg); strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("registered %v\nNames()    %v", got, names)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "rsf_") || !metricRE.MatchString(n) || metricRE.FindString(n) != n {
			t.Errorf("metric name %q does not match rsf_[a-z_]+", n)
		}
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(n, s) {
				t.Errorf("metric name %q ends in %s", n, s)
			}
		}
	}
}

func TestOperatorFormationLifecycle(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := NewOperator(reg)

	o.ObserveFormation("prod", "cache", FormationObservation{
		Ready: true, MembersUp: 3, MembersDesired: 3, SentinelsReachable: 3, QuorumOK: true, MasterPresent: true,
		Members: []MemberObservation{
			{Name: "cache-0", ReplicationLagBytes: 0, UsedMemoryBytes: 50, MaxMemoryBytes: 100},
			{Name: "cache-1", ReplicationLagBytes: 128, UsedMemoryBytes: 80, MaxMemoryBytes: 100},
			{Name: "cache-2", ReplicationLagBytes: -1, UsedMemoryBytes: 80, MaxMemoryBytes: 0},
		},
	})
	o.ObserveFormation("prod", "other", FormationObservation{MembersDesired: 1, Members: []MemberObservation{{Name: "other-0"}}})

	expected := `
# HELP rsf_formation_ready 1 when the formation is Ready, else 0.
# TYPE rsf_formation_ready gauge
rsf_formation_ready{formation="cache",namespace="prod"} 1
rsf_formation_ready{formation="other",namespace="prod"} 0
# HELP rsf_member_memory_used_ratio used_memory / maxmemory of a member (absent when maxmemory is 0).
# TYPE rsf_member_memory_used_ratio gauge
rsf_member_memory_used_ratio{formation="cache",member="cache-0",namespace="prod"} 0.5
rsf_member_memory_used_ratio{formation="cache",member="cache-1",namespace="prod"} 0.8
# HELP rsf_member_replication_lag_bytes Bytes a member's replication offset is behind the master's.
# TYPE rsf_member_replication_lag_bytes gauge
rsf_member_replication_lag_bytes{formation="cache",member="cache-0",namespace="prod"} 0
rsf_member_replication_lag_bytes{formation="cache",member="cache-1",namespace="prod"} 128
rsf_member_replication_lag_bytes{formation="other",member="other-0",namespace="prod"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), FormationReady, MemberMemoryUsedRatio, MemberReplicationLagBytes); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(o.membersUp.WithLabelValues("prod", "cache")); got != 3 {
		t.Errorf("members up = %v", got)
	}
	for _, g := range []*prometheus.GaugeVec{o.quorum, o.master, o.sentinels, o.membersDesired} {
		if got := testutil.ToFloat64(g.WithLabelValues("prod", "cache")); got == 0 {
			t.Errorf("gauge not set")
		}
	}

	// cache-2 is scaled away: its series go; cache-1 loses its maxmemory.
	o.ObserveFormation("prod", "cache", FormationObservation{
		Ready: true, MembersUp: 2, MembersDesired: 2, SentinelsReachable: 2, QuorumOK: true, MasterPresent: true,
		Members: []MemberObservation{
			{Name: "cache-0", UsedMemoryBytes: 60, MaxMemoryBytes: 100},
			{Name: "cache-1", ReplicationLagBytes: 0, UsedMemoryBytes: 80},
		},
	})
	if got := strings.Join(o.trackedMembers("prod", "cache"), ","); got != "cache-0,cache-1" {
		t.Errorf("tracked = %s", got)
	}
	expected = `
# HELP rsf_member_memory_used_ratio used_memory / maxmemory of a member (absent when maxmemory is 0).
# TYPE rsf_member_memory_used_ratio gauge
rsf_member_memory_used_ratio{formation="cache",member="cache-0",namespace="prod"} 0.6
# HELP rsf_member_replication_lag_bytes Bytes a member's replication offset is behind the master's.
# TYPE rsf_member_replication_lag_bytes gauge
rsf_member_replication_lag_bytes{formation="cache",member="cache-0",namespace="prod"} 0
rsf_member_replication_lag_bytes{formation="cache",member="cache-1",namespace="prod"} 0
rsf_member_replication_lag_bytes{formation="other",member="other-0",namespace="prod"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), MemberMemoryUsedRatio, MemberReplicationLagBytes); err != nil {
		t.Fatal(err)
	}

	// Events, failovers, errors, canary.
	o.FailoverObserved("prod", "cache", PathFast, 2*time.Second)
	o.FailoverObserved("prod", "cache", PathSentinel, 7*time.Second)
	o.FailoverObserved("prod", "cache", "", 0) // duration unknown: counted, not observed; no path: sentinel
	o.SentinelEvent("prod", "cache", "+switch-master")
	o.SentinelEvent("prod", "cache", " +sdown ")
	o.SentinelEvent("prod", "cache", "+something-new")
	o.SentinelEvent("prod", "cache", "__sentinel__:hello")
	o.ReconcileError("prod", "cache", "topology")
	o.ReconcileError("prod", "cache", "weird")
	o.CanaryResult("prod", "cache", true, 3*time.Millisecond)
	o.CanaryResult("prod", "cache", false, time.Second)

	for path, want := range map[string]float64{PathFast: 1, PathSentinel: 2, PathPlanned: 0} {
		if got := testutil.ToFloat64(o.failovers.WithLabelValues("prod", "cache", path)); got != want {
			t.Errorf("failovers{path=%q} = %v, want %v", path, got, want)
		}
	}
	// Every path's series exists from the first observation (at 0).
	if got := testutil.CollectAndCount(o.failoverDuration); got != 6 {
		t.Errorf("failover duration series = %d, want 3 paths x 2 formations", got)
	}
	for _, c := range []struct {
		v     *prometheus.CounterVec
		label string
		want  float64
	}{
		{o.events, "+sdown", 1}, {o.events, "+switch-master", 1}, {o.events, Other, 2}, {o.events, "+odown", 0},
		{o.reconcileErrors, Other, 1}, {o.reconcileErrors, "topology", 1}, {o.reconcileErrors, "status", 0},
	} {
		if got := testutil.ToFloat64(c.v.WithLabelValues("prod", "cache", c.label)); got != c.want {
			t.Errorf("%s = %v, want %v", c.label, got, c.want)
		}
	}
	if got := testutil.ToFloat64(o.canarySuccess.WithLabelValues("prod", "cache")); got != 0 {
		t.Errorf("canary success = %v, want 0", got)
	}
	hist := func(name string) (count uint64, sum float64) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					count += m.GetHistogram().GetSampleCount()
					sum += m.GetHistogram().GetSampleSum()
				}
			}
		}
		return
	}
	if c, s := hist(FormationFailoverDuration); c != 2 || s != 9 {
		t.Errorf("failover duration histogram count/sum = %d/%v", c, s)
	}
	if c, s := hist(FormationCanaryLatency); c != 1 || s != 0.003 {
		t.Errorf("canary latency histogram count/sum = %d/%v", c, s)
	}

	// Deleting the formation removes all of its series, and only its.
	o.ForgetFormation("prod", "cache")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "formation" && l.GetValue() == "cache" {
					t.Errorf("%s still has a series for the forgotten formation", mf.GetName())
				}
			}
		}
	}
	if got := testutil.ToFloat64(o.ready.WithLabelValues("prod", "other")); got != 0 {
		t.Errorf("other formation's ready = %v", got)
	}
	if n := testutil.CollectAndCount(o.lag, MemberReplicationLagBytes); n != 1 {
		t.Errorf("lag series after forgetting = %d, want 1 (other-0)", n)
	}
	if len(o.trackedMembers("prod", "cache")) != 0 {
		t.Error("members still tracked")
	}
}

func TestNormalizers(t *testing.T) {
	if len(SentinelEventTypes) != 38 {
		t.Errorf("%d known event types", len(SentinelEventTypes))
	}
	for _, e := range SentinelEventTypes {
		if NormalizeSentinelEvent(e) != e {
			t.Errorf("%s not known", e)
		}
	}
	if NormalizeSentinelEvent("+switch-master-x") != Other {
		t.Error("unknown event kept")
	}
	for _, p := range ReconcilePhases {
		if NormalizePhase(p) != p {
			t.Errorf("%s not known", p)
		}
	}
	if NormalizePhase("Finalizer") != Other {
		t.Error("unknown phase kept")
	}
}

func TestRegisteringTwiceReuses(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewOperator(reg)
	b := NewOperator(reg)
	a.FailoverObserved("n", "f", PathSentinel, 0)
	b.FailoverObserved("n", "f", PathSentinel, 0)
	if got := testutil.ToFloat64(a.failovers.WithLabelValues("n", "f", PathSentinel)); got != 2 {
		t.Fatalf("failovers = %v", got)
	}

	// A clashing collector of the same name is a programming error.
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: CacheHitsTotal, Help: "x"}))
	defer func() {
		if recover() == nil {
			t.Fatal("no panic on a clashing registration")
		}
	}()
	NewCache(reg2)
}

// TestCountersStartAtZero: a formation's counters and histograms exist at
// 0 from its first observation, and the tracked components' panic counters
// from the start, so Prometheus sees the first increment as an increase.
func TestCountersStartAtZero(t *testing.T) {
	o := NewOperator(prometheus.NewRegistry())
	o.TrackComponents("canary", "sentinel-watcher")
	if n := testutil.CollectAndCount(o.panics, OperatorPanicsTotal); n != 2 {
		t.Errorf("panic series = %d, want 2", n)
	}
	if n := testutil.CollectAndCount(o.failovers, FormationFailoversTotal); n != 0 {
		t.Fatalf("failover series before any formation = %d", n)
	}

	o.ObserveFormation("prod", "cache", FormationObservation{})
	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want int
	}{
		{FormationFailoversTotal, o.failovers, 3},
		{FormationFailoverDuration, o.failoverDuration, 3},
		{FormationSentinelEvents, o.events, len(SentinelEventTypes) + 1},
		{FormationReconcileErrors, o.reconcileErrors, len(ReconcilePhases)},
		{FormationCanaryLatency, o.canaryLatency, 1},
	} {
		if n := testutil.CollectAndCount(c.c, c.name); n != c.want {
			t.Errorf("%s: %d series after the first observation, want %d", c.name, n, c.want)
		}
	}
	for _, path := range []string{PathFast, PathSentinel, PathPlanned} {
		if v := testutil.ToFloat64(o.failovers.WithLabelValues("prod", "cache", path)); v != 0 {
			t.Errorf("failovers{path=%s} = %v, want 0", path, v)
		}
	}

	// A later observation does not reset what was counted.
	o.FailoverObserved("prod", "cache", PathSentinel, time.Second)
	o.ObserveFormation("prod", "cache", FormationObservation{})
	if v := testutil.ToFloat64(o.failovers.WithLabelValues("prod", "cache", PathSentinel)); v != 1 {
		t.Errorf("failovers{path=sentinel} after a second observation = %v, want 1", v)
	}
}
