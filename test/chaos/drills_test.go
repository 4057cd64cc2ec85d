package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/redisclient"
)

// TestChaos runs the drills in order on one formation (a second one for
// the bring-up drill), then scans everything for passwords, and prints
// the result table (also written to $RSF_CHAOS_REPORT).
// reportResults logs and prints the result table of every drill run so
// far and writes it to $RSF_CHAOS_REPORT: whichever test ends last writes
// the report with every row.
func reportResults(t *testing.T, test string, began time.Time) {
	table := resultTable()
	took := time.Since(began).Round(time.Second)
	t.Logf("%s: %s in total\n%s", test, took, table)
	fmt.Printf("\nCHAOS RESULTS (%s, %s %s)\n%s\n", time.Now().UTC().Format(time.RFC3339), test, took, table)
	if path := os.Getenv("RSF_CHAOS_REPORT"); path != "" {
		_ = os.WriteFile(path, []byte(table), 0o644)
	}
}

func TestChaos(t *testing.T) {
	stack(t)
	began := time.Now()
	t.Cleanup(func() { reportResults(t, "TestChaos", began) })
	op.start(t)
	t.Cleanup(func() { op.stop(t) })

	a := newFormation(t)
	t.Cleanup(func() {
		if err := k8s.Get(context.Background(), a.key, &redisv1alpha1.RedisSentinelFormation{}); err != nil {
			return // deleted at the end of the run
		}
		if !op.alive() {
			op.start(t)
		}
		deleteFormation(t, a)
	})
	created := time.Now()
	waitReady(t, a, bringUpBound)
	checkInvariants(t, a)
	t.Logf("formation %s Ready %s after it was applied", a.name(), time.Since(created).Round(100*time.Millisecond))

	drills := []struct {
		name string
		run  func(*testing.T, *formation) *writer
	}{
		{"1_master_hard_stop", drillMasterHardStop},
		{"2_master_partitioned", drillMasterPartition},
		{"3a_one_sentinel_killed", drillOneSentinel},
		{"3b_two_sentinels_killed", drillTwoSentinels},
		{"4a_operator_killed_in_bring_up", drillOperatorKilledInBringUp},
		{"4b_operator_killed_in_failover", drillOperatorKilledInFailover},
		{"5a_incusd_restarted", drillIncusdRestart},
		{"5b_apiserver_restarted", drillAPIServerRestart},
		{"6a_replica_deleted", drillReplicaDeleted},
		{"6b_crashing_replica_deleted", drillCrashingReplicaDeleted},
	}
	for _, d := range drills {
		t.Run(d.name, func(t *testing.T) { d.run(t, a) })
	}

	// Every write acknowledged in any drill is still there at the end.
	t.Run("all_acknowledged_writes_readable", func(t *testing.T) {
		var keys []string
		writersMu.Lock()
		for _, w := range writers {
			if w.f == a {
				keys = append(keys, w.Acknowledged()...)
			}
		}
		writersMu.Unlock()
		if lost := verifyKeys(t, a, keys); len(lost) > 0 {
			t.Errorf("%d of %d writes acknowledged during the drills are gone at the end, e.g. %v", len(lost), len(keys), lost[:min(5, len(lost))])
		}
		t.Logf("%d writes acknowledged over all drills, all readable", len(keys))
	})

	if !op.alive() {
		op.start(t)
	}
	deleteFormation(t, a)
	op.stop(t)
	t.Run("passwords_never_leak", testNoPasswordLeaks)
}

// settle gives the writer and probes a moment on the healthy formation.
func settle() { time.Sleep(2 * time.Second) }

// ------------------------------------------------------------------- drill 1

func drillMasterHardStop(t *testing.T, a *formation) *writer {
	r := newResult(t, "1. master hard-stopped and started again", "`incus stop --force` on the master's container; started again after the failover (the fast path: the operator asks Sentinel as soon as Incus reports the stop)")
	cur := waitReady(t, a, readyBound)
	old, oldAddr, before := cur.Status.Master.Member, masterAddr(cur), cur.Status.Failovers
	w := startWriter(t, a, "d1", r)
	p := startProbes(t, a, cur.Status.Members)
	tr := startTracker(t, a)
	settle()

	injected := time.Now()
	hardStop(t, memberNamed(cur, old).Instance)
	now := waitFailover(t, a, replicas(cur), oldAddr)
	r.note("Sentinel promoted %s %.1f s after the stop", memberAt(cur, now), time.Since(injected).Seconds())
	// The operator may have started it already; either way it runs now.
	_ = incusSrv.StartInstance(context.Background(), memberNamed(cur, old).Instance)
	healed := time.Now()

	cur = waitReadyAfter(t, a, injected, readyBound)
	r.toReady, r.fromHeal = time.Since(injected), time.Since(healed)
	cur = checkInvariants(t, a)
	if m := memberNamed(cur, old); m.Role != redisv1alpha1.RoleReplica || !m.MasterLinkUp {
		t.Errorf("old master %s: role %s, link up %v", old, m.Role, m.MasterLinkUp)
	}
	// A stopped container cannot be a live master: the operator, told by
	// Incus, asked for the failover instead of waiting for down-after.
	if lf := cur.Status.LastFailover; cur.Status.Failovers != before+1 || lf == nil || lf.From != old || lf.To != memberAt(cur, now) || lf.Path != redisv1alpha1.FailoverPathFast {
		t.Errorf("failovers %d (before %d), lastFailover %+v; want one failover %s -> %s through the fast path", cur.Status.Failovers, before, lf, old, memberAt(cur, now))
	} else if lf.Duration != nil {
		r.note("status: path %s, outage %.1f s (master lost %s, detected %+.1f s)", lf.Path, lf.Duration.Seconds(), lf.MasterLostAt.UTC().Format("15:04:05.000"), lf.DetectedAt.Sub(lf.MasterLostAt.Time).Seconds())
	}
	tr.checkMasterMoves(t, old, memberAt(cur, now))
	p.checkOneWriter(t, injected)
	w.finish(t)
	return w
}

// ------------------------------------------------------------------- drill 2

func drillMasterPartition(t *testing.T, a *formation) *writer {
	r := newResult(t, "2. master partitioned from the other members", "blackhole routes to both peers inside the master's container (host still reaches it); healed after the failover")
	cur := waitReady(t, a, readyBound)
	old, oldAddr, before := cur.Status.Master.Member, masterAddr(cur), cur.Status.Failovers
	var peers []string
	for _, m := range replicas(cur) {
		peers = append(peers, m.Address)
	}
	w := startWriter(t, a, "d2", r)
	p := startProbes(t, a, cur.Status.Members)
	tr := startTracker(t, a)
	recordViews(t, a, cur.Status.Members)
	settle()

	injected := time.Now()
	oldInstance := memberNamed(cur, old).Instance
	t.Cleanup(func() { _ = healPartition(oldInstance, peers) })
	partition(t, oldInstance, peers)
	now := waitFailover(t, a, replicas(cur), oldAddr)
	promoted := time.Now()
	newMaster := memberAt(cur, now)
	var firstNew time.Time
	eventually(t, failoverBound, "the new master "+newMaster+" accepts a write", func() (bool, string) {
		var ok bool
		firstNew, ok = p.acceptedAfter(newMaster, injected)
		return ok, "no write accepted yet"
	})
	// The isolated old master must have refused writes (the
	// min-replicas-to-write fence) before the new one accepted any.
	lastOld, _ := p.lastAccepted(old)
	fenced, ok := p.firstError(old, "NOREPLICAS")
	switch {
	case !ok:
		t.Errorf("the isolated old master %s never refused a write with NOREPLICAS (min-replicas-to-write fence)", old)
	case !fenced.Before(firstNew):
		t.Errorf("the old master refused writes only %.1f s after the cut, after the new master accepted its first at %.1f s", fenced.Sub(injected).Seconds(), firstNew.Sub(injected).Seconds())
	}
	if !lastOld.Before(firstNew) {
		t.Errorf("the old master accepted a write until %.1f s after the cut, the new master from %.1f s: two masters", lastOld.Sub(injected).Seconds(), firstNew.Sub(injected).Seconds())
	}
	r.note("old master's last accepted write %+.1f s, fenced (NOREPLICAS) %+.1f s, %s promoted by %+.1f s, its first write %+.1f s",
		lastOld.Sub(injected).Seconds(), fenced.Sub(injected).Seconds(), newMaster, promoted.Sub(injected).Seconds(), firstNew.Sub(injected).Seconds())
	// A partitioned master's container runs: only Sentinel may decide it is
	// gone, and only after down-after without an answer.
	if downAfter := time.Duration(cur.Spec.Sentinel.DownAfterMilliseconds) * time.Millisecond; firstNew.Sub(injected) < downAfter {
		t.Errorf("the new master %s accepted a write %.1f s after the cut, before down-after (%s): promoted without Sentinel's verdict", newMaster, firstNew.Sub(injected).Seconds(), downAfter)
	}
	// Status while partitioned: the majority's master, not claimed Ready.
	eventually(t, failoverBound, "status.master names the majority's master during the partition", func() (bool, string) {
		c := get(t, a)
		return c.Status.Master != nil && c.Status.Master.Member == newMaster, fmt.Sprintf("status.master %+v", c.Status.Master)
	})
	time.Sleep(5 * time.Second) // both sides keep running a while
	// The old master cannot be a linked replica while cut off: status must
	// not claim the formation is Ready.
	if c := get(t, a); condition(c, redisv1alpha1.ConditionReady) == nil || condition(c, redisv1alpha1.ConditionReady).Status == metav1.ConditionTrue {
		t.Errorf("formation Ready while its old master is partitioned: %s", describeConditions(c))
	} else {
		r.note("while partitioned: %s", describeConditions(c))
	}

	healed := time.Now()
	if err := healPartition(oldInstance, peers); err != nil {
		t.Fatalf("healing the partition: %v", err)
	}
	cur = waitReadyAfter(t, a, injected, readyBound)
	r.toReady, r.fromHeal = time.Since(injected), time.Since(healed)
	r.note("partition held %.0f s", healed.Sub(injected).Seconds())
	cur = checkInvariants(t, a)
	if m := memberNamed(cur, old); m.Role != redisv1alpha1.RoleReplica || !m.MasterLinkUp {
		t.Errorf("old master %s after the heal: role %s, link up %v", old, m.Role, m.MasterLinkUp)
	}
	if lf := cur.Status.LastFailover; cur.Status.Failovers != before+1 || lf == nil || lf.Path != redisv1alpha1.FailoverPathSentinel {
		t.Errorf("failovers %d, want %d; lastFailover %+v, want the sentinel path", cur.Status.Failovers, before+1, lf)
	}
	tr.checkMasterMoves(t, old, newMaster)
	p.checkOneWriter(t, injected)
	w.finish(t)
	return w
}

// ------------------------------------------------------------------- drill 3

func drillOneSentinel(t *testing.T, a *formation) *writer {
	r := newResult(t, "3a. one sentinel killed", "a replica's redis-sentinel SIGKILLed and masked (no restart) for 20 s, then unmasked")
	cur := waitReady(t, a, readyBound)
	victim := replicas(cur)[0].Name
	return sentinelDrill(t, a, r, cur, []string{victim})
}

func drillTwoSentinels(t *testing.T, a *formation) *writer {
	r := newResult(t, "3b. two sentinels killed (quorum lost)", "the master's and a replica's redis-sentinel SIGKILLed and masked for 20 s, then unmasked")
	cur := waitReady(t, a, readyBound)
	victims := []string{cur.Status.Master.Member, replicas(cur)[0].Name}
	return sentinelDrill(t, a, r, cur, victims)
}

func sentinelDrill(t *testing.T, a *formation, r *result, cur *redisv1alpha1.RedisSentinelFormation, victims []string) *writer {
	master, before := cur.Status.Master.Member, cur.Status.Failovers
	w := startWriter(t, a, "d3-"+fmt.Sprint(len(victims)), r)
	p := startProbes(t, a, cur.Status.Members)
	tr := startTracker(t, a)
	settle()

	injected := time.Now()
	t.Cleanup(func() {
		for _, v := range victims {
			_ = unmaskSentinel(memberNamed(cur, v).Instance)
		}
	})
	for _, v := range victims {
		maskSentinel(t, memberNamed(cur, v).Instance)
	}
	reasons := []string{controllers.ReasonSentinelDown}
	if len(victims) > 1 {
		reasons = append(reasons, controllers.ReasonQuorumLost)
	}
	c := waitCondition(t, a, time.Minute, redisv1alpha1.ConditionDegraded, metav1.ConditionTrue, reasons...)
	r.note("Degraded=%s (%s) after %.1f s", condition(c, redisv1alpha1.ConditionDegraded).Reason, condition(c, redisv1alpha1.ConditionDegraded).Message, time.Since(injected).Seconds())
	if rc := condition(c, redisv1alpha1.ConditionReady); rc == nil || rc.Status != metav1.ConditionFalse {
		t.Errorf("Ready is not False while sentinels %v are down: %s", victims, describeConditions(c))
	}
	if len(victims) > 1 {
		// The survivor notices the others are gone (down-after) and
		// reports no quorum: no failover could be authorised.
		for _, m := range cur.Status.Members {
			if slices.Contains(victims, m.Name) {
				continue
			}
			eventually(t, time.Minute, "the surviving sentinel "+m.Name+" reports NOQUORUM", func() (bool, string) {
				s := adminAt(a, m.Address, sentinelPort)
				res, err := s.Do(context.Background(), "SENTINEL", "CKQUORUM", masterName).Text()
				_ = s.Close()
				return err != nil && strings.Contains(err.Error(), "NOQUORUM"), fmt.Sprintf("CKQUORUM = %q, %v", res, err)
			})
			r.note("surviving sentinel reports NOQUORUM after %.1f s", time.Since(injected).Seconds())
		}
	}
	acked := len(w.Acknowledged())
	time.Sleep(max(0, 20*time.Second-time.Since(injected)))
	if len(w.Acknowledged()) == acked {
		t.Errorf("no write was acknowledged while sentinels %v were down; the master is fine", victims)
	}
	c = get(t, a)
	if c.Status.Failovers != before || c.Status.Master == nil || c.Status.Master.Member != master {
		t.Errorf("a failover happened while sentinels were down: failovers %d -> %d, master %s -> %+v", before, c.Status.Failovers, master, c.Status.Master)
	}

	healed := time.Now()
	for _, v := range victims {
		if err := unmaskSentinel(memberNamed(cur, v).Instance); err != nil {
			t.Fatalf("unmasking the sentinel in %s: %v", v, err)
		}
	}
	waitReadyAfter(t, a, injected, readyBound)
	r.toReady, r.fromHeal = time.Since(injected), time.Since(healed)
	cur = checkInvariants(t, a)
	if cur.Status.Failovers != before || cur.Status.Master.Member != master {
		t.Errorf("failovers %d -> %d, master %s -> %s: no failover may happen", before, cur.Status.Failovers, master, cur.Status.Master.Member)
	}
	tr.checkMasterMoves(t, master)
	p.checkOneWriter(t, injected)
	w.finish(t)
	return w
}

// ------------------------------------------------------------------- drill 4

func drillOperatorKilledInBringUp(t *testing.T, a *formation) *writer {
	r := newResult(t, "4a. operator killed during a bring-up", "operator SIGKILLed while a new formation's first container was being created, restarted; killed again once all containers existed, restarted")
	curA := waitReady(t, a, readyBound)
	w := startWriter(t, a, "d4a", r) // the existing formation keeps serving meanwhile
	p := startProbes(t, a, curA.Status.Members)
	tr := startTracker(t, a)
	settle()

	b := newFormation(t)
	t.Cleanup(func() {
		if !op.alive() {
			op.start(t)
		}
		deleteFormation(t, b)
	})
	created := time.Now()
	first := b.name() + "-1"
	eventually(t, 2*time.Minute, "the new formation's first instance appears", func() (bool, string) {
		_, err := incusSrv.GetInstance(context.Background(), controllers.InstanceName(b.key.Namespace, b.name(), 1))
		return err == nil, fmt.Sprint(err)
	})
	op.kill(t)
	r.note("1st kill %.1f s after apply (%s being created)", time.Since(created).Seconds(), first)
	time.Sleep(3 * time.Second)
	op.start(t)

	var ready bool
	eventually(t, 3*time.Minute, "all of the new formation's instances exist", func() (bool, string) {
		owned, err := incusSrv.ListInstances(context.Background(), "user.rsf.formation-uid", b.uid)
		if c, gerr := getFormation(b); gerr == nil {
			if rc := condition(c, redisv1alpha1.ConditionReady); rc != nil && rc.Status == metav1.ConditionTrue {
				ready = true
				return true, ""
			}
		}
		return err == nil && len(owned) == 3, fmt.Sprintf("%d instances (%v)", len(owned), err)
	})
	if ready {
		r.note("2nd kill skipped: Ready first")
	} else {
		op.kill(t)
		r.note("2nd kill %.1f s after apply (all containers exist, not Ready)", time.Since(created).Seconds())
		time.Sleep(3 * time.Second)
		op.start(t)
	}

	curB := waitReady(t, b, bringUpBound)
	r.toReady = time.Since(created)
	r.note("applied -> Ready %.1f s", r.toReady.Seconds())
	curB = checkInvariants(t, b) // exactly its three instances
	byName, err := incusSrv.ListInstances(context.Background(), "user.rsf.formation", b.key.Namespace+"/"+b.name())
	if err != nil || len(byName) != 3 {
		t.Errorf("instances claiming formation %s: %d (%v), want 3", b.name(), len(byName), err)
	}
	if curB.Status.Master == nil || curB.Status.Master.Member != first || curB.Status.Failovers != 0 || curB.Status.Connection == nil || curB.Status.ReadyMembers != 3 {
		t.Errorf("status after the restarts: master %+v, failovers %d, connection %+v, ready members %d", curB.Status.Master, curB.Status.Failovers, curB.Status.Connection, curB.Status.ReadyMembers)
	}
	// The new formation serves through its connection Secret.
	c := connectionClient(t, b, redisclient.Options{})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "chaos:4a", "ok", 0).Err(); err != nil {
		t.Errorf("SET through the new formation's connection Secret: %v", err)
	} else if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n < 1 {
		t.Errorf("WAIT 1 on the new formation: %d, %v", n, err)
	}

	waitReady(t, a, readyBound)
	checkInvariants(t, a)
	tr.checkMasterMoves(t, curA.Status.Master.Member)
	p.checkOneWriter(t, created)
	w.finish(t)
	r.note("writes: the existing formation, served throughout")
	deleteFormation(t, b)
	return w
}

func drillOperatorKilledInFailover(t *testing.T, a *formation) *writer {
	r := newResult(t, "4b. operator killed during a failover", "operator SIGKILLed, master hard-stopped, Sentinel failed over, operator restarted")
	cur := waitReady(t, a, readyBound)
	old, oldAddr, before := cur.Status.Master.Member, masterAddr(cur), cur.Status.Failovers
	w := startWriter(t, a, "d4b", r)
	p := startProbes(t, a, cur.Status.Members)
	tr := startTracker(t, a)
	settle()

	injected := time.Now()
	t.Cleanup(func() {
		if !op.alive() {
			op.start(t)
		}
	})
	op.kill(t)
	hardStop(t, memberNamed(cur, old).Instance)
	now := waitFailover(t, a, replicas(cur), oldAddr)
	newMaster := memberAt(cur, now)
	r.note("Sentinel promoted %s %.1f s after the stop, with no operator running", newMaster, time.Since(injected).Seconds())
	healed := time.Now()
	op.start(t)

	cur = waitReadyAfter(t, a, injected, readyBound)
	r.toReady, r.fromHeal = time.Since(injected), time.Since(healed)
	cur = checkInvariants(t, a)
	lf := cur.Status.LastFailover
	if cur.Status.Master.Member != newMaster || cur.Status.Failovers != before+1 || lf == nil || lf.From != old || lf.To != newMaster || lf.Time.Time.Before(injected.Truncate(time.Second)) {
		t.Errorf("status after the restart: master %s, failovers %d (before %d), lastFailover %+v; want %s, %d, %s -> %s",
			cur.Status.Master.Member, cur.Status.Failovers, before, lf, newMaster, before+1, old, newMaster)
	}
	if m := memberNamed(cur, old); m.Role != redisv1alpha1.RoleReplica || !m.MasterLinkUp {
		t.Errorf("old master %s: role %s, link up %v", old, m.Role, m.MasterLinkUp)
	}
	tr.checkMasterMoves(t, old, newMaster)
	p.checkOneWriter(t, injected)
	w.finish(t)
	return w
}

// ------------------------------------------------------------------- drill 5

func drillIncusdRestart(t *testing.T, a *formation) *writer {
	r := newResult(t, "5a. incusd restarted", "incusd SIGKILLed (containers keep running) until status reports it, then started again as the lab-host role does")
	cur := waitReady(t, a, readyBound)
	ids, before := runIDs(t, a, cur), cur.Status.Failovers
	w := startWriter(t, a, "d5a", r)
	p := startProbes(t, a, cur.Status.Members)
	tr := startTracker(t, a)
	settle()

	injected := time.Now()
	argv := killIncusd(t)
	t.Cleanup(func() { startIncusd(t, argv) })
	acked := len(w.Acknowledged())
	c := waitCondition(t, a, 90*time.Second, redisv1alpha1.ConditionDegraded, metav1.ConditionTrue, controllers.ReasonIncusUnreachable)
	r.note("Degraded=IncusUnreachable %.1f s after the kill", time.Since(injected).Seconds())
	if rc := condition(c, redisv1alpha1.ConditionReady); rc == nil || rc.Status != metav1.ConditionFalse || c.Status.Phase == redisv1alpha1.PhaseReady {
		t.Errorf("status claims all is fine while incusd is down: %s", describeConditions(c))
	}
	if len(w.Acknowledged()) == acked {
		time.Sleep(2 * time.Second)
		if len(w.Acknowledged()) == acked {
			t.Errorf("no write acknowledged while incusd was down: the data plane does not need it")
		}
	}
	healed := time.Now()
	startIncusd(t, argv)
	r.note("incusd down %.1f s", healed.Sub(injected).Seconds())

	waitReadyAfter(t, a, injected, readyBound)
	r.toReady, r.fromHeal = time.Since(injected), time.Since(healed)
	cur = checkInvariants(t, a)
	if after := runIDs(t, a, cur); fmt.Sprint(after) != fmt.Sprint(ids) {
		t.Errorf("redis or sentinel processes restarted across the incusd restart: %v -> %v", ids, after)
	}
	if cur.Status.Failovers != before {
		t.Errorf("failovers %d -> %d across the incusd restart", before, cur.Status.Failovers)
	}
	for _, m := range cur.Status.Members {
		if m.InstanceState != "Running" {
			t.Errorf("%s is %s", m.Name, m.InstanceState)
		}
	}
	tr.checkMasterMoves(t, cur.Status.Master.Member)
	p.checkOneWriter(t, injected)
	w.finish(t)
	r.note("longest write gap %.1f s", w.Stats().LongestGap.Seconds())
	return w
}

func drillAPIServerRestart(t *testing.T, a *formation) *writer {
	r := newResult(t, "5b. API server restarted", "kube-apiserver stopped (SIGTERM, SIGKILL after 10 s) for 15 s and started again, etcd kept; then a spec change (down-after 5000 -> 6000 ms)")
	cur := waitReady(t, a, readyBound)
	w := startWriter(t, a, "d5b", r)
	p := startProbes(t, a, cur.Status.Members)
	tr := startTracker(t, a)
	settle()
	pid := op.pid()
	api := env.ControlPlane.GetAPIServer()

	injected := time.Now()
	acked := len(w.Acknowledged())
	t.Cleanup(func() {
		if err := k8s.Get(context.Background(), a.key, &redisv1alpha1.RedisSentinelFormation{}); err != nil {
			_ = api.Start()
		}
	})
	// SIGTERM; kube-apiserver often does not finish its graceful
	// shutdown within the stop timeout and is then SIGKILLed.
	api.StopTimeout = 10 * time.Second
	if err := api.Stop(); err != nil {
		if !strings.Contains(err.Error(), "timeout waiting") {
			t.Fatalf("stopping kube-apiserver: %v", err)
		}
		r.note("kube-apiserver SIGKILLed after a 10 s SIGTERM grace")
	}
	apiAddr := api.SecureServing.Address + ":" + api.SecureServing.Port
	eventually(t, 30*time.Second, "kube-apiserver's port released", func() (bool, string) {
		c, err := net.DialTimeout("tcp", apiAddr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err != nil, "still accepting connections"
	})
	time.Sleep(max(2*time.Second, 15*time.Second-time.Since(injected)))
	if len(w.Acknowledged()) == acked {
		t.Errorf("no write acknowledged while the API server was down")
	}
	healed := time.Now()
	if err := api.Start(); err != nil {
		t.Fatalf("starting kube-apiserver again: %v", err)
	}
	r.note("API server down %.1f s, back %.1f s later", healed.Sub(injected).Seconds(), time.Since(healed).Seconds())
	if !op.alive() || op.pid() != pid {
		t.Fatalf("the operator process did not survive the API server restart (pid %d, alive %v):\n%s", pid, op.alive(), op.tail(30))
	}

	// A change made after the restart is applied.
	var gen int64
	eventually(t, time.Minute, "changing spec.sentinel.downAfterMilliseconds", func() (bool, string) {
		cur := &redisv1alpha1.RedisSentinelFormation{}
		if err := k8s.Get(context.Background(), a.key, cur); err != nil {
			return false, err.Error()
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.Sentinel.DownAfterMilliseconds = 6000
		err := k8s.Patch(context.Background(), cur, patch)
		gen = cur.Generation
		return err == nil, fmt.Sprint(err)
	})
	changed := time.Now()
	eventually(t, readyBound, "every sentinel reports down-after-milliseconds 6000", func() (bool, string) {
		for _, m := range cur.Status.Members {
			s := adminSentinel(a, m.Address, 3*time.Second)
			v, err := s.Master(context.Background(), masterName).Result()
			_ = s.Close()
			if err != nil {
				return false, err.Error()
			}
			if v["down-after-milliseconds"] != "6000" {
				return false, fmt.Sprintf("%s: down-after-milliseconds %s", m.Name, v["down-after-milliseconds"])
			}
		}
		return true, ""
	})
	cur = waitReady(t, a, readyBound)
	if cur.Status.ObservedGeneration < gen {
		t.Errorf("observedGeneration %d, the change is generation %d", cur.Status.ObservedGeneration, gen)
	}
	r.toReady, r.fromHeal = time.Since(injected), time.Since(healed)
	r.note("change applied and Ready %.1f s after it was made, operator pid unchanged", time.Since(changed).Seconds())
	checkInvariants(t, a)
	tr.checkMasterMoves(t, cur.Status.Master.Member)
	p.checkOneWriter(t, injected)
	w.finish(t)
	return w
}

// ------------------------------------------------------------------- drill 6

func drillReplicaDeleted(t *testing.T, a *formation) *writer {
	r := newResult(t, "6a. replica's container deleted", "`incus delete --force` on a replica's container while writes continue")
	return replicaRebuildDrill(t, a, r, "d6a", 0, false)
}

func drillCrashingReplicaDeleted(t *testing.T, a *formation) *writer {
	r := newResult(t, "6b. crashing replica's container deleted", "`incus stop --force` on a replica, again once the operator restarted it; `incus delete --force` once status showed it stopped, while writes continue")
	return replicaRebuildDrill(t, a, r, "d6b", 1, true)
}

// replicaRebuildDrill deletes a replica's container (first stopping it and
// waiting until status shows it stopped, when stopFirst), and checks it is
// recreated at its address, resynced, with nothing lost.
func replicaRebuildDrill(t *testing.T, a *formation, r *result, drill string, replica int, stopFirst bool) *writer {
	cur := waitReady(t, a, readyBound)
	victim := replicas(cur)[replica]
	w := startWriter(t, a, drill, r)
	p := startProbes(t, a, cur.Status.Members)
	tr := startTracker(t, a)
	time.Sleep(3 * time.Second)
	early := w.Acknowledged()
	if len(early) == 0 {
		t.Fatal("no write acknowledged before the deletion")
	}

	injected := time.Now()
	if stopFirst {
		// A crashing container: stopped, and stopped again whenever the
		// operator starts it, until status shows it stopped.
		var stops int
		eventually(t, 2*time.Minute, "status shows "+victim.Name+" stopped", func() (bool, string) {
			if inst, err := incusSrv.GetInstance(context.Background(), victim.Instance); err == nil && inst.Status == "Running" {
				hardStop(t, victim.Instance)
				stops++
			}
			m := memberNamed(get(t, a), victim.Name)
			return m.InstanceState == "Stopped", fmt.Sprintf("instanceState %q after %d stops", m.InstanceState, stops)
		})
		r.note("stopped %d times; status showed it stopped after %.1f s", stops, time.Since(injected).Seconds())
	}
	eventually(t, time.Minute, "deleting "+victim.Name, func() (bool, string) {
		err := incusSrv.DeleteInstance(context.Background(), victim.Instance)
		return err == nil, fmt.Sprint(err) // pending: the operator may be starting it
	})
	var address string
	eventually(t, readyBound, victim.Name+" recreated", func() (bool, string) {
		inst, err := incusSrv.GetInstance(context.Background(), victim.Instance)
		if err != nil {
			return false, err.Error()
		}
		if !inst.CreatedAt.After(injected.Add(-time.Second)) {
			return false, "still the old instance, created " + inst.CreatedAt.String()
		}
		address = inst.IPv4
		return inst.Status == "Running" && inst.IPv4 != "", fmt.Sprintf("%s, address %q", inst.Status, inst.IPv4)
	})
	r.note("recreated %.1f s after the deletion", time.Since(injected).Seconds())
	if address != victim.Address {
		blank := "status never showed it without an address"
		if at, ok := tr.blanked(victim.Name); ok {
			blank = fmt.Sprintf("status.members[%s].address was blank from %+.1f s (while the container was stopped for its deletion)", victim.Name, at.Seconds())
		}
		t.Errorf("%s was recreated at %s, not at its address %s; %s", victim.Name, address, victim.Address, blank)
		r.note("recreated at a NEW address %s (was %s)", address, victim.Address)
	}

	waitReadyAfter(t, a, injected, readyBound)
	r.toReady = time.Since(injected)
	checkInvariants(t, a)
	// The rebuilt replica has the data written before it was deleted.
	rc := redisAt(address, redisPort, a.backendUser, a.password)
	defer rc.Close()
	vals, err := rc.MGet(context.Background(), early...).Result()
	if err != nil {
		t.Fatalf("MGET on the rebuilt replica: %v", err)
	}
	var missing int
	for i, k := range early {
		if s, ok := vals[i].(string); !ok || s != k {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("the rebuilt replica lacks %d of %d keys acknowledged before its deletion", missing, len(early))
	}
	r.note("rebuilt replica serves all %d keys acknowledged before the deletion", len(early))
	tr.checkMasterMoves(t, cur.Status.Master.Member)
	p.checkOneWriter(t, injected)
	w.finish(t)
	return w
}

// ------------------------------------------------------------------- secrets

// testNoPasswordLeaks scans, after the full run, the operator's whole log
// (every run of the process, at debug level), every event in every
// namespace (core/v1 and events.k8s.io/v1), every formation's status (also
// every status read during the run) and every error the helpers saw: no
// password of the run may appear in any of them, in any of the forms the
// leak watch knows (plain, JSON-escaped, URL-encoded, base64). The
// passwords are the backend users' (the suite's Secrets, before and after
// rotations) and every internal one the operator generated (every value
// its credential Secrets ever held).
func testNoPasswordLeaks(t *testing.T) {
	ctx := context.Background()
	log := op.log()
	if !strings.Contains(log, "starting the manager") {
		t.Fatalf("the operator's log looks empty (%d bytes): the scan would prove nothing", len(log))
	}
	debugLines := strings.Count(log, `"level":"debug"`)
	if debugLines == 0 {
		t.Errorf("the operator's log has no debug-level line: it ran without --log-level debug, and the scan does not cover what it logs at debug level")
	}
	leaks.check("operator log", log)

	var core corev1.EventList
	if err := k8s.List(ctx, &core); err != nil {
		t.Fatal(err)
	}
	for _, e := range core.Items {
		leaks.checkJSON("event "+e.Namespace+"/"+e.Name, e)
	}
	var modern eventsv1.EventList
	if err := k8s.List(ctx, &modern); err != nil {
		t.Fatal(err)
	}
	for _, e := range modern.Items {
		leaks.checkJSON("event "+e.Namespace+"/"+e.Name, e)
	}
	if len(core.Items)+len(modern.Items) == 0 {
		t.Errorf("no events at all: the operator records events, the scan would prove nothing")
	}
	var formations redisv1alpha1.RedisSentinelFormationList
	if err := k8s.List(ctx, &formations); err != nil {
		t.Fatal(err)
	}
	for _, f := range formations.Items {
		leaks.checkJSON("status of "+f.Name, f.Status)
	}
	findings, errs := leaks.report()
	passwords, forms := leaks.counts()
	t.Logf("scanned %d bytes of operator log (%d debug-level lines), %d core and %d events.k8s.io events, every status read during the run, %d distinct helper errors, for %d passwords in %d forms",
		len(log), debugLines, len(core.Items), len(modern.Items), errs, passwords, forms)
	for _, f := range findings {
		t.Errorf("password leaked: %s", f)
	}
}
