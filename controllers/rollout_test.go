package controllers

import (
	"slices"
	"testing"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
)

func TestRollout(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	f := e.formation(testKey)
	failovers0 := f.Status.Failovers
	oldDigest := templateDigest(f, 1)
	initialMaster := f.Status.Master.Member
	addresses := map[string]string{}
	for _, m := range f.Status.Members {
		addresses[m.Name] = m.Address
	}

	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Incus.Limits.Memory = "2GiB" })
	f = e.formation(testKey)
	newDigest := templateDigest(f, 1)
	if newDigest == oldDigest {
		t.Fatal("the template digest ignores limits.memory")
	}

	var (
		replaced []string // members in the order their container was rebuilt
		phases   []redisv1alpha1.PlannedFailoverPhase
		masterAt = map[string]bool{} // members that were master when rebuilt
	)
	prevMaster, _ := e.masterOfWorld(f)
	check := func(pass int) {
		f := e.formation(testKey)
		insts := e.instances(f)
		missing := 0
		for i := 1; i <= int(f.Spec.Members); i++ {
			name := memberName(f, i)
			inst, ok := insts[name]
			if !ok {
				missing++
				continue
			}
			if inst.Config[keyTemplate] == newDigest && !slices.Contains(replaced, name) {
				replaced = append(replaced, name)
				if memberAtAddr(f, prevMaster.Host) == name {
					masterAt[name] = true
				}
			}
		}
		if missing > 1 {
			t.Fatalf("pass %d: %d members missing at once\n%s", pass, missing, describe(f))
		}
		if pf := f.Status.PlannedFailover; pf != nil && (len(phases) == 0 || phases[len(phases)-1] != pf.Phase) {
			phases = append(phases, pf.Phase)
		}
		if m, _ := e.masterOfWorld(f); !m.IsZero() {
			prevMaster = m
		}
	}
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 120, check)

	f = e.formation(testKey)
	if len(replaced) != 3 || replaced[2] != initialMaster || slices.Contains(replaced[:2], initialMaster) {
		t.Fatalf("rebuilt in order %v; the master %s must be last", replaced, initialMaster)
	}
	if len(masterAt) > 0 {
		t.Fatalf("members rebuilt while master: %v", masterAt)
	}
	want := []redisv1alpha1.PlannedFailoverPhase{redisv1alpha1.PlannedFailoverHoldingWrites, redisv1alpha1.PlannedFailoverPromoting, redisv1alpha1.PlannedFailoverDone}
	if !slices.Equal(phases, want) {
		t.Fatalf("planned failover phases %v, want %v", phases, want)
	}
	for name, inst := range e.instances(f) {
		if inst.Config[keyTemplate] != newDigest || inst.Config["limits.memory"] != "2GiB" {
			t.Errorf("instance %s: template %s limits.memory %q", name, inst.Config[keyTemplate], inst.Config["limits.memory"])
		}
	}
	if f.Status.Failovers != failovers0+1 {
		t.Errorf("failovers %d, want %d", f.Status.Failovers, failovers0+1)
	}
	if f.Status.Master.Member == initialMaster {
		t.Errorf("master still %s", initialMaster)
	}
	// Rebuilt members keep their addresses.
	for _, m := range f.Status.Members {
		if m.Address != addresses[m.Name] {
			t.Errorf("member %s moved from %s to %s", m.Name, addresses[m.Name], m.Address)
		}
	}
	// The planned failover's record is dropped after its pause.
	for range 10 {
		res, err := e.reconcile(r, testKey)
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(min(max(res.RequeueAfter, time.Second), 10*time.Second))
	}
	if f := e.formation(testKey); f.Status.PlannedFailover != nil || !isReady(f) {
		t.Fatalf("after the pause: planned failover %+v, phase %s", f.Status.PlannedFailover, f.Status.Phase)
	}
	if p := e.world.Problems(); len(p) > 0 {
		t.Errorf("members met configuration problems: %v", p)
	}
}

func TestScale(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	f := e.formation(testKey)
	master := f.Status.Master.Member
	addresses := map[string]string{}
	for _, m := range f.Status.Members {
		addresses[m.Name] = m.Address
	}

	// Up to 5: two members added, nothing else touched.
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Members = 5; f.Spec.Quorum = 3 })
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 60, func(pass int) {
		if got := e.formation(testKey).Status.Master; got == nil || got.Member != master {
			t.Fatalf("pass %d: master moved to %+v while scaling up", pass, got)
		}
	})
	f = e.formation(testKey)
	if got := sortedKeys(e.instances(f)); !slices.Equal(got, []string{"cache-1", "cache-2", "cache-3", "cache-4", "cache-5"}) {
		t.Fatalf("instances after scaling up: %v", got)
	}
	if f.Status.ReadyMembers != 5 || f.Status.Sentinels.Reachable != 5 || len(f.Status.Connection.SentinelAddresses) != 5 {
		t.Fatalf("status after scaling up: ready %d sentinels %+v connection %+v", f.Status.ReadyMembers, f.Status.Sentinels, f.Status.Connection)
	}
	for _, m := range f.Status.Members[:3] {
		if m.Address != addresses[m.Name] {
			t.Fatalf("member %s moved", m.Name)
		}
	}

	// Down to 3, with the master on a leaving member: a planned failover
	// first, then both leaving members removed.
	epoch, err := e.world.Failover(f.Spec.MasterName, testInstance(5))
	if err != nil {
		t.Fatal(err)
	}
	e.converge(r, testKey, 40)
	f = e.formation(testKey)
	if f.Status.Master.Member != "cache-5" || f.Status.Master.ConfigEpoch != epoch {
		t.Fatalf("master %+v, want cache-5@%d", f.Status.Master, epoch)
	}
	failovers := f.Status.Failovers

	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Members = 3; f.Spec.Quorum = 2 })
	var phases []redisv1alpha1.PlannedFailoverPhase
	e.convergeWith(func() *FormationReconciler { return r }, testKey, 80, func(pass int) {
		f := e.formation(testKey)
		insts := e.instances(f)
		m, _ := e.masterOfWorld(f)
		if _, ok := insts["cache-5"]; !ok && m.Host == addresses["cache-5"] {
			t.Fatalf("pass %d: the master cache-5 was removed", pass)
		}
		if pf := f.Status.PlannedFailover; pf != nil && (len(phases) == 0 || phases[len(phases)-1] != pf.Phase) {
			phases = append(phases, pf.Phase)
		}
	})
	f = e.formation(testKey)
	if got := sortedKeys(e.instances(f)); !slices.Equal(got, []string{"cache-1", "cache-2", "cache-3"}) {
		t.Fatalf("instances after scaling down: %v", got)
	}
	if !slices.Contains([]string{"cache-1", "cache-2", "cache-3"}, f.Status.Master.Member) || f.Status.Failovers != failovers+1 {
		t.Fatalf("after scaling down: master %+v failovers %d (was %d)", f.Status.Master, f.Status.Failovers, failovers)
	}
	if len(phases) == 0 || phases[0] != redisv1alpha1.PlannedFailoverHoldingWrites {
		t.Fatalf("planned failover phases %v", phases)
	}
	if f.Status.Sentinels.Reachable != 3 || len(f.Status.Members) != 3 || len(f.Status.Connection.SentinelAddresses) != 3 {
		t.Fatalf("status after scaling down: %+v %v", f.Status.Sentinels, f.Status.Connection)
	}
}
