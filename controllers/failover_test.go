package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
)

func TestFailoverCountedOnce(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	ctx := context.Background()

	f := e.formation(testKey)
	oldMaster, epoch0 := e.masterOfWorld(f)
	from := memberAtAddr(f, oldMaster.Host)
	if f.Status.Failovers != 0 || f.Status.Master.Member != from {
		t.Fatalf("after bring-up: failovers %d master %+v, sentinels name %s", f.Status.Failovers, f.Status.Master, from)
	}

	// Sentinel fails over (the operator asked nothing) and the watcher
	// hears +switch-master with its epoch.
	if err := e.admin().SentinelFailover(ctx, sentinelEndpoint(oldMaster.Host), f.Spec.MasterName); err != nil {
		t.Fatal(err)
	}
	newMaster, epoch := e.masterOfWorld(f)
	to := memberAtAddr(f, newMaster.Host)
	if epoch != epoch0+1 || to == from || to == "" {
		t.Fatalf("redisfake failover: %s@%d -> %s@%d", oldMaster, epoch0, newMaster, epoch)
	}
	switchedAt := e.clock.Now()
	e.watcher.setSwitches(testKey, sentinel.Switch{Time: switchedAt, From: hostPort(oldMaster), To: hostPort(newMaster), Epoch: epoch, SdownAt: switchedAt.Add(-3 * time.Second)})

	// The switch is replayed on every pass, by this operator and by
	// restarted ones.
	check := func(when string) {
		t.Helper()
		f := e.formation(testKey)
		st := f.Status
		if st.Failovers != 1 {
			t.Fatalf("%s: failovers %d, want 1", when, st.Failovers)
		}
		lf := st.LastFailover
		if lf == nil || lf.From != from || lf.To != to || lf.ConfigEpoch != epoch || !lf.Time.Time.Equal(switchedAt) ||
			lf.Duration == nil || lf.Duration.Duration != 8*time.Second || lf.Path != redisv1alpha1.FailoverPathSentinel {
			t.Fatalf("%s: lastFailover %+v", when, lf)
		}
		if st.Master == nil || st.Master.Member != to || st.Master.Address != newMaster.Host || st.Master.ConfigEpoch != epoch {
			t.Fatalf("%s: master %+v", when, st.Master)
		}
	}
	for i := range 10 {
		res, err := e.reconcile(r, testKey)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Recorded at once, before the observation.
			if !res.Requeue && (res.RequeueAfter <= 0 || res.RequeueAfter > 10*time.Millisecond) {
				t.Fatalf("first pass after the switch: %+v", res)
			}
		}
		check("same operator")
		e.advanceFor(res, err)
	}
	for range 10 {
		res, err := e.reconcile(e.newReconciler(), testKey)
		if err != nil {
			t.Fatal(err)
		}
		check("restarted operator")
		e.advanceFor(res, err)
	}
	e.converge(e.newReconciler(), testKey, 20)
	check("Ready again")
	if got := e.metricValue(metrics.FormationFailoversTotal, testKey); got != 1 {
		t.Fatalf("%s = %v, want 1", metrics.FormationFailoversTotal, got)
	}
	if n := countEvents(e, "MasterSwitched"); n != 1 {
		t.Fatalf("%d MasterSwitched Events, want 1", n)
	}

	// A failover while no operator ran: the watcher has nothing (a new
	// process), the next pass sees a master with a newer epoch.
	e.watcher.setSwitches(testKey)
	f = e.formation(testKey)
	if err := e.admin().SentinelFailover(ctx, sentinelEndpoint(newMaster.Host), f.Spec.MasterName); err != nil {
		t.Fatal(err)
	}
	third, epoch2 := e.masterOfWorld(f)
	if epoch2 != epoch+1 {
		t.Fatalf("second failover epoch %d", epoch2)
	}
	seenAt := e.clock.Now()
	for range 5 {
		r := e.newReconciler()
		res, err := e.reconcile(r, testKey)
		if err != nil {
			t.Fatal(err)
		}
		e.advanceFor(res, err)
	}
	e.converge(e.newReconciler(), testKey, 20)
	st := e.formation(testKey).Status
	if st.Failovers != 2 || st.Master.Member != memberAtAddr(f, third.Host) || st.Master.ConfigEpoch != epoch2 {
		t.Fatalf("after the unseen failover: failovers %d master %+v", st.Failovers, st.Master)
	}
	if lf := st.LastFailover; lf == nil || lf.From != to || lf.To != st.Master.Member || lf.ConfigEpoch != epoch2 || lf.Duration != nil || !lf.Time.Time.Equal(seenAt) {
		t.Fatalf("lastFailover of the unseen failover %+v (seen at %s)", lf, seenAt)
	}
	if got := e.metricValue(metrics.FormationFailoversTotal, testKey); got != 2 {
		t.Fatalf("%s = %v, want 2", metrics.FormationFailoversTotal, got)
	}
}

func countEvents(e *env, reason string) int {
	n := 0
	for _, ev := range e.recorder.events() {
		if strings.Contains(ev, " "+reason+" ") {
			n++
		}
	}
	return n
}

// TestMasterLost: with the fast path off, the master's container stops
// and Sentinel promotes a replica meanwhile; the operator starts the
// container again, brings the old master back as a replica (never as a
// master: a replica holds the data), re-points its sentinel, which missed
// the failover, and counts the failover once.
func TestMasterLost(t *testing.T) {
	e := standardEnv(t, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Sentinel.FastFailover = ptr.To(false) })
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	ctx := context.Background()
	f := e.formation(testKey)
	if f.Status.Master.Member != "cache-1" {
		t.Fatalf("master %+v", f.Status.Master)
	}
	if err := e.incus.StopInstance(ctx, testInstance(1), false); err != nil {
		t.Fatal(err)
	}
	// A pass while the master is down and Sentinel has not acted yet: the
	// container is started, its redis-server is not (replicas hold data).
	res, err := e.reconcile(r, testKey)
	if err != nil {
		t.Fatal(err)
	}
	e.advanceFor(res, err)
	for range 3 {
		res, err := e.reconcile(r, testKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin().Replication(ctx, redisEndpoint(f.Status.Master.Address)); err == nil {
			t.Fatal("the old master's redis-server was started before Sentinel promoted a replica")
		}
		e.advanceFor(res, err)
	}
	epoch, err := e.world.Failover(f.Spec.MasterName, testInstance(2))
	if err != nil {
		t.Fatal(err)
	}
	// The sentinel of cache-1 missed the failover: it is re-pointed only
	// after topology.ConvergeGrace, so the clock must pass it.
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 80, func(int) { e.clock.Advance(time.Second) })
	f = e.formation(testKey)
	if f.Status.Master.Member != "cache-2" || f.Status.Master.ConfigEpoch != epoch || f.Status.Failovers != 1 {
		t.Fatalf("master %+v failovers %d", f.Status.Master, f.Status.Failovers)
	}
	if m := findMember(f.Status.Members, "cache-1"); m == nil || m.Role != redisv1alpha1.RoleReplica || !m.MasterLinkUp {
		t.Fatalf("cache-1: %+v", m)
	}
	if st, err := e.admin().SentinelMaster(ctx, sentinelEndpoint(f.Status.Members[0].Address), f.Spec.MasterName); err != nil ||
		st.Address.Host != f.Status.Master.Address {
		t.Fatalf("cache-1's sentinel: %+v %v", st, err)
	}
}

// TestMasterLostFastPath: the master's container stops; the first pass
// asks a sentinel to fail over before it starts the container again, the
// switch is recorded as the fast path's with its outage from Incus's stop,
// and the old master rejoins as a replica.
func TestMasterLostFastPath(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	ctx := context.Background()
	f := e.formation(testKey)
	if f.Status.Master.Member != "cache-1" {
		t.Fatalf("master %+v", f.Status.Master)
	}
	stoppedAt := e.clock.Now()
	if err := e.incus.StopInstance(ctx, testInstance(1), true); err != nil {
		t.Fatal(err)
	}
	res, err := e.reconcile(r, testKey)
	if err != nil {
		t.Fatal(err)
	}
	master, _ := e.masterOfWorld(f)
	if to := memberAtAddr(f, master.Host); to == "cache-1" || to == "" {
		t.Fatalf("after the first pass the sentinels' master is %s (%s)", to, master)
	}
	if out := e.formation(testKey).Status.MasterOutage; out == nil || out.FailoverRequestedAt == nil || out.DetectedBy != redisv1alpha1.DetectedByIncus || out.LostAt.Time.After(e.clock.Now()) {
		t.Fatalf("masterOutage %+v", out)
	}
	e.advanceFor(res, err)
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 80, func(int) { e.clock.Advance(time.Second) })
	f = e.formation(testKey)
	lf := f.Status.LastFailover
	if f.Status.Failovers != 1 || lf == nil || lf.Path != redisv1alpha1.FailoverPathFast || lf.From != "cache-1" || lf.MasterLostAt == nil || lf.MasterLostAt.Time.Before(stoppedAt) || f.Status.MasterOutage != nil {
		t.Fatalf("failovers %d lastFailover %+v outage %+v", f.Status.Failovers, lf, f.Status.MasterOutage)
	}
	if m := findMember(f.Status.Members, "cache-1"); m == nil || m.Role != redisv1alpha1.RoleReplica || !m.MasterLinkUp {
		t.Fatalf("cache-1: %+v", m)
	}
	if n := countEvents(e, "MasterSwitched"); n != 1 {
		t.Fatalf("%d MasterSwitched events", n)
	}
	if got := e.metricValue(metrics.FormationFailoversTotal, testKey); got != 1 {
		t.Fatalf("%s = %v", metrics.FormationFailoversTotal, got)
	}
}
