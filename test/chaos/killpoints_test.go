package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
)

// Drill 7: the operator is SIGKILLed at random points of four operations
// on one formation, and restarted after each kill:
//
//  1. the bring-up of a new formation (namespace, Secrets and resource
//     created at once, as `kubectl apply` would);
//  2. a rollout: spec.incus.limits.memory changes, so every container is
//     rebuilt, replicas first, the master after a planned failover;
//  3. a scale-up from 3 to 5 members (quorum 2 -> 3, as the API requires);
//  4. a rotation of the data-plane password (the value in the password
//     Secret changes; the previous password stays valid for the operator's
//     --password-grace, 30 s here, and is refused afterwards).
//
// For each operation the change is applied, then, until the operation's end
// state is reached: wait a random 0.2-4 s (0.2-1.5 s before the first kill
// of the operation, so that it lands before a 2 s bring-up converged),
// SIGKILL the operator, wait a random 0-2 s, start it again. Every operation takes at least
// killsPerOperation kills; one that reaches its end state with fewer is
// killed on in its settled state until it has them (those kills are
// reported apart). The delays come from a seeded generator: the seed is
// logged, and RSF_CHAOS_SEED=<seed> replays the same delays.
//
// While an operation runs: the writer (SET + WAIT 1 through the connection
// Secret), write probes on every member (new members join as they appear),
// a watch of status.master/failovers, and the test's own subscription to
// +switch-master on every sentinel of the formation. After it: the end
// state, the invariants (checkInvariants), no acknowledged write lost, never
// two members accepting writes at once, and status.failovers grown by
// exactly the number of distinct master switches Sentinel announced (1 for
// the rollout, 0 for the others). After the rotation also: every
// redis-server accepts the new password and, after the grace, refuses the
// old one (and accepted it until then); replicas and sentinels,
// disconnected on purpose, authenticate again and see a healthy master.

const (
	killsPerOperation = 5
	minKillsInDrill   = 20
	killUpMin         = 200 * time.Millisecond
	killUpMax         = 4 * time.Second
	// firstKillUpMax bounds the first kill of an operation: a bring-up
	// converges in about 2 s on a btrfs pool, and the drill must land a
	// kill before an operation converged.
	firstKillUpMax = 1500 * time.Millisecond
	killDownMax    = 2 * time.Second
	// chaosPasswordGrace is the operator's --password-grace (operator_test.go).
	chaosPasswordGrace = 30 * time.Second
	// retireSlack is how long after the grace the old password may still be
	// accepted: the next reconcile retires it (resync 5 s, plus restarts).
	retireSlack = 30 * time.Second
	// graceMargin: the old password may be refused this much before the
	// grace has passed (as this test measures it) without an error.
	graceMargin = 2 * time.Second
	// switchFoldWindow: +switch-master announcements with the same payload
	// within this time are one switch told by several sentinels.
	switchFoldWindow = 10 * time.Second

	bringUpKillBound  = 150 * time.Second
	rolloutKillBound  = 4 * time.Minute
	scaleKillBound    = 150 * time.Second
	rotationKillBound = chaosPasswordGrace + 75*time.Second
	// recheckBound: after the last restart the end state must hold again.
	recheckBound = time.Minute

	rolloutMemory = "1GiB"
)

// TestOperatorKillPoints is drill 7 (see above). It starts and stops the
// shared operator process itself, so it runs before or after TestChaos.
func TestOperatorKillPoints(t *testing.T) {
	stack(t)
	began := time.Now()
	// Registered first, so it runs last: after the result row's pass/fail
	// is known. TestChaos prints the table at its end too; whichever of the
	// two ends last writes the report with every row.
	t.Cleanup(func() { reportResults(t, "TestOperatorKillPoints", began) })
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RSF_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RSF_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("kill-point seed %d (replay the delays with RSF_CHAOS_SEED=%d)", seed, seed)
	r := newResult(t, "7. operator SIGKILLed at random points of four operations",
		fmt.Sprintf("operator SIGKILLed after a random 0.2-4 s (the first of each operation after 0.2-1.5 s), restarted after a random 0-2 s, until each operation converged (>= %d kills each): bring-up, rollout (limits.memory), scale-up 3 -> 5, password rotation", killsPerOperation))
	r.note("seed %d", seed)
	d := &killDrill{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), r: r, began: began}

	op.start(t)
	t.Cleanup(func() { op.stop(t) })
	t.Cleanup(d.sumWrites)
	t.Cleanup(func() {
		if d.f == nil {
			return
		}
		if err := k8s.Get(context.Background(), d.f.key, &redisv1alpha1.RedisSentinelFormation{}); err != nil {
			return // deleted at the end of the run
		}
		if !op.alive() {
			op.start(t)
		}
		deleteFormation(t, d.f)
	})

	steps := []killStep{
		{"1_bring_up", d.bringUp},
		{"2_rollout_limits_memory", d.rollout},
		{"3_scale_up_3_to_5", d.scaleUp},
		{"4_password_rotation", d.rotation},
	}
	d.runSteps(t, steps)

	// The drill's own floor: it must not pass with too few kills, or with
	// kills that never met a running operation.
	var total, before int
	for _, o := range d.ops {
		total += len(o.kills)
		before += o.killsBefore()
	}
	r.note("%d kills in total, %d of them before the operation had converged", total, before)
	if len(d.ops) == len(steps) && total < minKillsInDrill {
		t.Errorf("only %d kills in the drill, want at least %d", total, minKillsInDrill)
	}
	for _, o := range d.ops {
		if len(o.kills) < killsPerOperation {
			t.Errorf("%s: %d kills, want at least %d", o.name, len(o.kills), killsPerOperation)
		}
		if o.killsBefore() == 0 {
			t.Errorf("%s: no kill landed before the operation converged: it was not exercised", o.name)
		}
	}

	if d.f != nil {
		if !op.alive() {
			op.start(t)
		}
		deleteFormation(t, d.f)
	}
	op.stop(t)
	r.toReady = d.bringUpReady
	t.Run("passwords_never_leak", testNoPasswordLeaks)
}

// ---------------------------------------------------------------- the drill

// killStep is one operation of a kill-point drill.
type killStep struct {
	name string
	run  func(*testing.T)
}

// runSteps runs the steps in turn; one is skipped, and the drill fails,
// when the formation did not recover from the one before.
func (d *killDrill) runSteps(t *testing.T, steps []killStep) {
	for i, s := range steps {
		if i > 0 && !d.usable(t) {
			d.r.note("%s not run: the formation did not recover from the previous step", s.name)
			t.Errorf("%s not run: the formation is not Ready after the previous step", s.name)
			continue
		}
		t.Run(s.name, s.run)
	}
}

// sumWrites adds the per-writer results into the drill's row.
func (d *killDrill) sumWrites() {
	var total writeResult
	for _, w := range d.writeRows {
		total.attempted += w.writes.attempted
		total.acked += w.writes.acked
		total.lost += w.writes.lost
	}
	d.r.writes = total
}

type killDrill struct {
	rng   *rand.Rand
	r     *result
	began time.Time
	f     *formation
	ops   []*killOp
	// writeRows are the per-writer results, summed into the drill's row.
	writeRows []*result
	// password is the data-plane password clients (the probes) use now.
	password     atomic.Pointer[string]
	bringUpReady time.Duration
}

// killOp is one operation: its kill points and whether it converged.
type killOp struct {
	name      string
	kills     []killPoint
	converged bool
	// took is from the change until the end state was first seen.
	took time.Duration
}

type killPoint struct {
	at, up, down time.Duration
	// before: the end state had not been reached (as of the last check,
	// at most a few hundred ms before the kill).
	before bool
	state  string
}

func (o *killOp) killsBefore() int {
	n := 0
	for _, k := range o.kills {
		if k.before {
			n++
		}
	}
	return n
}

func (o *killOp) describe() string {
	var parts []string
	for i, k := range o.kills {
		when := "settled"
		if k.before {
			when = k.state
			if len(when) > 300 {
				when = when[:300] + "..."
			}
		}
		parts = append(parts, fmt.Sprintf("#%d %+.1fs (up %.1fs, down %.1fs): %s", i+1, k.at.Seconds(), k.up.Seconds(), k.down.Seconds(), when))
	}
	return strings.Join(parts, "\n  ")
}

func (d *killDrill) uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(d.rng.Int64N(int64(hi-lo)+1))
}

func (d *killDrill) currentPassword() string {
	if p := d.password.Load(); p != nil {
		return *p
	}
	return ""
}

func (d *killDrill) setPassword(pw string) { d.password.Store(&pw) }

// backendCreds are f's backend user with the password clients use now.
func (d *killDrill) backendCreds(f *formation) func() (string, string) {
	return func() (string, string) { return f.backendUser, d.currentPassword() }
}

// usable reports whether the formation is Ready (the next operation can
// start), waiting a bounded time.
func (d *killDrill) usable(t *testing.T) bool {
	if d.f == nil {
		return false
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if !op.alive() {
			op.start(t)
		}
		if cur, err := getFormation(d.f); err == nil {
			if c := condition(cur, redisv1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue && cur.Status.ObservedGeneration == cur.Generation {
				return true
			}
		}
		time.Sleep(time.Second)
	}
	return false
}

// killThrough SIGKILLs and restarts the operator at random points until end
// holds and the operation has killsPerOperation kills, or until deadline
// (without the end state). tick runs at every check, in the test's
// goroutine (it may start writers).
func (d *killDrill) killThrough(t *testing.T, o *killOp, start time.Time, deadline func() time.Time, end func() (bool, string), tick func()) {
	t.Helper()
	state := "not checked yet"
	check := func() {
		if tick != nil {
			tick()
		}
		if o.converged {
			return
		}
		if ok, why := end(); ok {
			o.converged, o.took = true, time.Since(start)
			t.Logf("%s: end state reached %.1f s after the change, after %d kill(s)", o.name, o.took.Seconds(), len(o.kills))
		} else {
			state = why
		}
	}
	for {
		up := d.uniform(killUpMin, killUpMax)
		if len(o.kills) == 0 {
			up = d.uniform(killUpMin, firstKillUpMax)
		}
		wake := time.Now().Add(up)
		for {
			check()
			if o.converged && len(o.kills) >= killsPerOperation {
				return
			}
			if !o.converged && time.Now().After(deadline()) {
				return
			}
			left := time.Until(wake)
			if left <= 0 {
				break
			}
			time.Sleep(min(left, 250*time.Millisecond))
		}
		down := d.uniform(0, killDownMax)
		k := killPoint{at: time.Since(start), up: up, down: down, before: !o.converged, state: state}
		op.kill(t)
		time.Sleep(down)
		op.start(t)
		o.kills = append(o.kills, k)
		when := "settled (end state reached before)"
		if k.before {
			when = "mid-operation: " + k.state
		}
		t.Logf("%s: kill %d at %+.1f s, %s", o.name, len(o.kills), k.at.Seconds(), when)
	}
}

// ---------------------------------------------------------------- per operation

// opRun is what watches one operation: writers, probes, the status
// tracker and the +switch-master subscriptions.
type opRun struct {
	*killOp
	d               *killDrill
	f               *formation
	sw              *switchWatch
	p               *probes
	tr              *tracker
	writers         []*writer
	failoversBefore int64
	epochBefore     int64
	stopFollow      chan struct{}
	followDone      chan struct{}
	origin          time.Time
}

// begin starts watching an operation on d.f: probes and subscriptions
// follow the formation's instances as they appear.
func (d *killDrill) begin(t *testing.T, name string) *opRun {
	t.Helper()
	o := &opRun{killOp: &killOp{name: name}, d: d, f: d.f, origin: time.Now(),
		stopFollow: make(chan struct{}), followDone: make(chan struct{})}
	d.ops = append(d.ops, o.killOp)
	o.sw = startSwitchWatch(t, d.f)
	o.p = newProbes(t)
	o.tr = startTracker(t, d.f)
	o.follow()
	t.Cleanup(o.halt)
	if cur, err := getFormation(d.f); err == nil {
		o.failoversBefore = cur.Status.Failovers
	}
	o.epochBefore = o.configEpoch()
	return o
}

func (o *opRun) halt() {
	select {
	case <-o.stopFollow:
	default:
		close(o.stopFollow)
	}
	<-o.followDone
	o.sw.halt()
}

// follow adds every instance of the formation to the probes and the
// subscriptions as soon as it has an address.
func (o *opRun) follow() {
	poll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		insts, err := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", o.f.uid)
		if err != nil {
			return
		}
		for _, i := range insts {
			if i.IPv4 == "" {
				continue
			}
			o.sw.follow(o.f.memberOf(i), i.IPv4)
			o.p.watch(o.f.memberOf(i), i.IPv4, o.d.backendCreds(o.f))
		}
	}
	poll()
	go func() {
		defer close(o.followDone)
		for {
			select {
			case <-o.stopFollow:
				return
			case <-time.After(500 * time.Millisecond):
				poll()
			}
		}
	}()
}

// startWriter starts a writer from the connection Secret as it is now.
func (o *opRun) startWriter(t *testing.T, tag string) *writer {
	t.Helper()
	row := &result{}
	o.d.writeRows = append(o.d.writeRows, row)
	w := startWriter(t, o.f, "kp-"+tag, row)
	o.writers = append(o.writers, w)
	return w
}

// members are the formation's instances (any state), by member name.
func (o *opRun) members() (map[string]incus.Instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	insts, err := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", o.f.uid)
	if err != nil {
		return nil, err
	}
	out := map[string]incus.Instance{}
	for _, i := range insts {
		out[o.f.memberOf(i)] = i
	}
	return out, nil
}

// memberOf names the member an instance of the formation serves (its
// user.rsf.member key; the instance's own name is controllers.InstanceName).
func (f *formation) memberOf(i incus.Instance) string {
	return f.name() + "-" + i.Config["user.rsf.member"]
}

// configEpoch is the highest config-epoch any sentinel reports for the
// master (-1 when none answers): it moves with every successful switch.
func (o *opRun) configEpoch() int64 {
	ms, err := o.members()
	if err != nil {
		return -1
	}
	epoch := int64(-1)
	for _, m := range ms {
		if m.IPv4 == "" {
			continue
		}
		if v, err := sentinelView(o.f, m.IPv4); err == nil {
			if e, err := strconv.ParseInt(v.master["config-epoch"], 10, 64); err == nil {
				epoch = max(epoch, e)
			}
		}
	}
	return epoch
}

// explain is what a failure of this operation shows.
func (o *opRun) explain() string {
	return fmt.Sprintf("kill points:\n  %s\nstatus.master history: %s\nmembers accepting direct writes: %s\nSentinel events (test's subscriptions):\n%s\n%s",
		o.describe(), o.tr.history(), o.p.timeline(o.origin), o.sw.describe(), diagnose(o.f))
}

// run kills through the operation and reports on its end state; false
// when it was not reached (the operation's own checks are then skipped).
func (o *opRun) run(t *testing.T, start time.Time, deadline func() time.Time, end func() (bool, string), tick func()) bool {
	t.Helper()
	o.d.killThrough(t, o.killOp, start, deadline, end, tick)
	o.d.r.note("%s: %d kills (%d before convergence)", o.name, len(o.kills), o.killsBefore())
	if !o.converged {
		_, why := end()
		t.Errorf("%s: end state not reached within %s of the change (%d kills); last: %s\n%s\noperator log tail:\n%s",
			o.name, time.Since(start).Round(time.Second), len(o.kills), why, o.explain(), op.tail(40))
		o.d.r.note("%s: end state NOT reached (%s)", o.name, why)
		return false
	}
	o.d.r.note("%s: end state %.1f s after the change", o.name, o.took.Seconds())
	// The last kills may have come after the end state: it must hold again
	// with the last operator process.
	eventuallyOr(t, recheckBound, o.name+": end state again after the last restart", end, o.explain)
	return true
}

// finish runs the checks every operation ends with: invariants, writers,
// probes and the failover count; wantSwitches is how many master switches
// the operation itself makes.
func (o *opRun) finish(t *testing.T, converged bool, wantSwitches int) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	if converged {
		cur = checkInvariants(t, o.f)
		settle() // writes acknowledged on the settled formation too
	} else {
		cur = get(t, o.f)
	}
	time.Sleep(time.Second) // late announcements and watch events
	o.checkFailovers(t, cur, wantSwitches)
	o.p.checkOneWriter(t, o.origin)
	if ov := o.p.overlaps(o.origin); len(ov) > 0 {
		t.Errorf("%s: two members accepted writes at the same moment: %s", o.name, strings.Join(ov, "; "))
	}
	if tl := o.p.timeline(o.origin); strings.Count(tl, ";") > 0 || strings.Count(tl, ",") > 0 {
		t.Logf("%s: periods in which members accepted direct writes: %s", o.name, tl)
		o.d.r.note("%s: direct writes accepted by %s", o.name, tl)
	}
	var acked int
	for _, w := range o.writers {
		acked += w.finish(t).acked
	}
	if converged && acked == 0 {
		t.Errorf("%s: no write was acknowledged during the operation: the loss check would prove nothing", o.name)
	}
	o.halt()
	return cur
}

// checkFailovers compares status.failovers with the distinct switches the
// sentinels announced during the operation.
func (o *opRun) checkFailovers(t *testing.T, cur *redisv1alpha1.RedisSentinelFormation, want int) {
	t.Helper()
	switches := o.sw.switches()
	epoch := o.configEpoch()
	delta := cur.Status.Failovers - o.failoversBefore
	var seen []string
	for _, s := range switches {
		seen = append(seen, s.String(o.origin))
	}
	o.d.r.note("%s: %d master switch(es) announced (%d failover(s) started), status.failovers %d -> %d", o.name, len(switches), o.sw.count("+try-failover"), o.failoversBefore, cur.Status.Failovers)
	if epoch >= 0 && o.epochBefore >= 0 && epoch != o.epochBefore && len(switches) == 0 {
		t.Errorf("%s: Sentinel's config epoch moved %d -> %d but the test's subscriptions saw no +switch-master: the failover count cannot be checked\n%s", o.name, o.epochBefore, epoch, o.explain())
	}
	if delta != int64(len(switches)) {
		t.Errorf("%s: status.failovers grew by %d (%d -> %d), but the sentinels announced %d distinct master switch(es): %v\n%s",
			o.name, delta, o.failoversBefore, cur.Status.Failovers, len(switches), seen, o.explain())
	}
	if len(switches) != want {
		t.Errorf("%s: %d distinct master switch(es) announced, want %d: %v\n%s", o.name, len(switches), want, seen, o.explain())
	}
}

// ---------------------------------------------------------------- 1. bring-up

func (d *killDrill) bringUp(t *testing.T) {
	start := time.Now()
	d.f = newFormation(t)
	f := d.f
	d.setPassword(f.password)
	o := d.begin(t, "bring-up")
	o.failoversBefore, o.epochBefore = 0, 0 // a new formation
	end := func() (bool, string) {
		cur, err := getFormation(f)
		if err != nil {
			return false, err.Error()
		}
		if ok, why := readyObserved(cur, cur.Generation); !ok {
			return false, why
		}
		ms, err := o.members()
		if err != nil {
			return false, err.Error()
		}
		if len(ms) != 3 {
			return false, fmt.Sprintf("%d instances", len(ms))
		}
		for _, m := range ms {
			if m.Status != "Running" || m.IPv4 == "" {
				return false, fmt.Sprintf("%s %s %q", m.Name, m.Status, m.IPv4)
			}
		}
		if cur.Status.Master == nil || len(cur.Status.Members) != 3 || cur.Status.ReadyMembers != 3 || cur.Status.Connection == nil {
			return false, fmt.Sprintf("status: master %+v, %d members, %d ready, connection %+v", cur.Status.Master, len(cur.Status.Members), cur.Status.ReadyMembers, cur.Status.Connection)
		}
		return true, ""
	}
	tick := func() {
		if len(o.writers) > 0 {
			return
		}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: f.name() + "-connection"}, &corev1.Secret{}); err == nil {
			o.startWriter(t, "bring-up")
			t.Logf("bring-up: writer started %.1f s after the create (connection Secret written)", time.Since(start).Seconds())
		}
	}
	converged := o.run(t, start, func() time.Time { return start.Add(bringUpKillBound) }, end, tick)
	if converged {
		d.bringUpReady = o.took
	}
	if len(o.writers) == 0 {
		t.Errorf("bring-up: the connection Secret never appeared; no writer ran")
	}
	cur := o.finish(t, converged, 0)
	if !converged {
		t.FailNow()
	}
	byName, err := incusSrv.ListInstances(context.Background(), "user.rsf.formation", f.key.Namespace+"/"+f.name())
	if err != nil || len(byName) != 3 {
		t.Errorf("instances claiming formation %s: %d (%v), want 3", f.name(), len(byName), err)
	}
	if cur.Status.Master == nil || cur.Status.Master.Member != f.name()+"-1" || cur.Status.Failovers != 0 {
		t.Errorf("status after the bring-up: master %+v, failovers %d; want %s-1 and 0\n%s", cur.Status.Master, cur.Status.Failovers, f.name(), o.explain())
	}
}

// ---------------------------------------------------------------- 2. rollout

func (d *killDrill) rollout(t *testing.T) {
	f := d.f
	cur := waitReady(t, f, readyBound)
	oldMaster, n := cur.Status.Master.Member, int(cur.Spec.Members)
	o := d.begin(t, "rollout")
	o.startWriter(t, "rollout")
	settle()

	start := time.Now()
	gen := patchSpec(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Incus.Limits.Memory = rolloutMemory })
	end := func() (bool, string) {
		cur, err := getFormation(f)
		if err != nil {
			return false, err.Error()
		}
		ms, err := o.members()
		if err != nil {
			return false, err.Error()
		}
		var rebuilt, pending []string
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("%s-%d", f.name(), i)
			m, ok := ms[name]
			if ok && m.Config["limits.memory"] == rolloutMemory && m.CreatedAt.After(start.Add(-time.Second)) && m.Status == "Running" {
				rebuilt = append(rebuilt, name)
			} else {
				pending = append(pending, name)
			}
		}
		progress := fmt.Sprintf("%d of %d members rebuilt (pending %v)", len(rebuilt), n, pending)
		if len(pending) > 0 || len(ms) != n {
			return false, progress + "; " + stateOf(cur)
		}
		if ok, why := readyObserved(cur, gen); !ok {
			return false, progress + "; " + why
		}
		if int(cur.Status.ReadyMembers) != n || cur.Status.Master == nil {
			return false, fmt.Sprintf("%s; %d ready members, master %+v", progress, cur.Status.ReadyMembers, cur.Status.Master)
		}
		return true, ""
	}
	converged := o.run(t, start, func() time.Time { return start.Add(rolloutKillBound) }, end, nil)
	cur = o.finish(t, converged, 1)
	if !converged {
		t.FailNow()
	}
	newMaster := cur.Status.Master.Member
	o.tr.checkMasterMoves(t, oldMaster, newMaster)
	// Replicas first, then the planned failover, then the old master.
	ms, err := o.members()
	if err != nil {
		t.Fatal(err)
	}
	if sw := o.sw.switches(); len(sw) == 1 {
		for name, m := range ms {
			if name == oldMaster && !m.CreatedAt.After(sw[0].first) {
				t.Errorf("rollout: the master %s was rebuilt at %+.1f s, before the master moved away (%+.1f s)", name, m.CreatedAt.Sub(o.origin).Seconds(), sw[0].first.Sub(o.origin).Seconds())
			}
			if name != oldMaster && m.CreatedAt.After(sw[0].first) {
				t.Errorf("rollout: replica %s was rebuilt at %+.1f s, after the planned failover (%+.1f s): replicas go first", name, m.CreatedAt.Sub(o.origin).Seconds(), sw[0].first.Sub(o.origin).Seconds())
			}
		}
	}
	d.r.note("rollout: master %s -> %s", oldMaster, newMaster)
}

// ---------------------------------------------------------------- 3. scale-up

func (d *killDrill) scaleUp(t *testing.T) {
	f := d.f
	cur := waitReady(t, f, readyBound)
	master := cur.Status.Master.Member
	o := d.begin(t, "scale-up")
	o.startWriter(t, "scale-up")
	settle()

	start := time.Now()
	gen := patchSpec(t, f, func(s *redisv1alpha1.RedisSentinelFormationSpec) { s.Members, s.Quorum = 5, 3 })
	end := func() (bool, string) {
		cur, err := getFormation(f)
		if err != nil {
			return false, err.Error()
		}
		ms, err := o.members()
		if err != nil {
			return false, err.Error()
		}
		running := 0
		for _, m := range ms {
			if m.Status == "Running" && m.IPv4 != "" {
				running++
			}
		}
		progress := fmt.Sprintf("%d of 5 instances running", running)
		if len(ms) != 5 || running != 5 {
			return false, progress + "; " + stateOf(cur)
		}
		if ok, why := readyObserved(cur, gen); !ok {
			return false, progress + "; " + why
		}
		if len(cur.Status.Members) != 5 || cur.Status.ReadyMembers != 5 || cur.Status.Master == nil {
			return false, fmt.Sprintf("status: %d members, %d ready, master %+v", len(cur.Status.Members), cur.Status.ReadyMembers, cur.Status.Master)
		}
		for _, m := range ms {
			v, err := sentinelView(f, m.IPv4)
			if err != nil {
				return false, fmt.Sprintf("sentinel on %s: %v", m.Name, err)
			}
			if v.master["num-other-sentinels"] != "4" || v.master["num-slaves"] != "4" || v.master["quorum"] != "3" || v.master["ip"] != cur.Status.Master.Address {
				return false, fmt.Sprintf("sentinel on %s: master %s, %s other sentinels, %s replicas, quorum %s", m.Name, v.master["ip"], v.master["num-other-sentinels"], v.master["num-slaves"], v.master["quorum"])
			}
		}
		if n := connectionSentinels(f); n != 5 {
			return false, fmt.Sprintf("the connection Secret names %d sentinels", n)
		}
		return true, ""
	}
	converged := o.run(t, start, func() time.Time { return start.Add(scaleKillBound) }, end, nil)
	cur = o.finish(t, converged, 0)
	if !converged {
		t.FailNow()
	}
	o.tr.checkMasterMoves(t, master)
}

// connectionSentinels is how many sentinel addresses the connection Secret
// gives backends (-1 when it cannot be read).
func connectionSentinels(f *formation) int {
	cfg, err := connectionConfig(f)
	if err != nil {
		return -1
	}
	return len(cfg.SentinelAddrs)
}

func connectionConfig(f *formation) (config.Redis, error) {
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: f.name() + "-connection"}, s); err != nil {
		return config.Redis{}, err
	}
	m := map[string]string{}
	for k, v := range s.Data {
		m[k] = string(v)
	}
	return config.FromMap(m)
}

// ---------------------------------------------------------------- 4. rotation

func (d *killDrill) rotation(t *testing.T) {
	f := d.f
	cur := waitReady(t, f, readyBound)
	master, n := cur.Status.Master.Member, int(cur.Spec.Members)
	o := d.begin(t, "password rotation")
	o.startWriter(t, "rotation-old")
	settle()

	oldPW, newPW := f.password, newPassword("pw")
	leaks.addSecret(newPW)
	start := time.Now()
	eventually(t, time.Minute, "updating the password Secret", func() (bool, string) {
		s := &corev1.Secret{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.key.Namespace, Name: "redis-pw"}, s); err != nil {
			return false, err.Error()
		}
		s.Data["password"] = []byte(newPW)
		err := k8s.Update(context.Background(), s)
		return err == nil, fmt.Sprint(err)
	})

	var (
		connNew      time.Time // the connection Secret carries the new password
		rotated      time.Time // every member accepts the new password
		graceErrs    []string  // the old password refused within the grace
		oldAtRotated string
	)
	deadline := func() time.Time {
		dl := start.Add(rotationKillBound)
		if !rotated.IsZero() && rotated.Add(chaosPasswordGrace+retireSlack).Before(dl) {
			dl = rotated.Add(chaosPasswordGrace + retireSlack)
		}
		return dl
	}
	auth := func(pw string) (accepted, refused, unknown []string) {
		ms, err := o.members()
		if err != nil {
			return nil, nil, []string{err.Error()}
		}
		for _, name := range sortedKeys(ms) {
			switch st := authState(ms[name].IPv4, redisPort, f.backendUser, pw); st {
			case "accepted":
				accepted = append(accepted, name)
			case "refused":
				refused = append(refused, name)
			default:
				unknown = append(unknown, name+": "+st)
			}
		}
		return
	}
	tick := func() {
		if connNew.IsZero() {
			if cfg, err := connectionConfig(f); err == nil && cfg.Password == newPW {
				connNew = time.Now()
				t.Logf("rotation: the connection Secret carries the new password %.1f s after the change", connNew.Sub(start).Seconds())
				d.setPassword(newPW) // probes' new connections
				o.startWriter(t, "rotation-new")
			}
		}
		if time.Since(start) < chaosPasswordGrace-graceMargin && len(graceErrs) < 3 {
			if _, oldRefused, _ := auth(oldPW); len(oldRefused) > 0 && time.Since(start) < chaosPasswordGrace-graceMargin {
				graceErrs = append(graceErrs, fmt.Sprintf("%v refused the old password %.1f s after the Secret changed", oldRefused, time.Since(start).Seconds()))
			}
		}
		if rotated.IsZero() {
			if newOK, _, _ := auth(newPW); len(newOK) == n {
				rotated = time.Now()
				oldOK, oldNo, oldUnknown := auth(oldPW)
				oldAtRotated = fmt.Sprintf("accepted by %v, refused by %v, unknown %v", oldOK, oldNo, oldUnknown)
				t.Logf("rotation: every member accepts the new password %.1f s after the change; the old one is %s", rotated.Sub(start).Seconds(), oldAtRotated)
				if len(oldOK) != n {
					graceErrs = append(graceErrs, "when every member first accepted the new password, the old one was "+oldAtRotated)
				}
			}
		}
	}
	end := func() (bool, string) {
		var problems []string
		if connNew.IsZero() {
			problems = append(problems, "the connection Secret still carries the old password")
		}
		if newOK, newRefused, newUnknown := auth(newPW); len(newOK) != n {
			problems = append(problems, fmt.Sprintf("new password accepted by %v, refused by %v, unknown %v", newOK, newRefused, newUnknown))
		}
		if oldOK, oldRefused, oldUnknown := auth(oldPW); len(oldRefused) != n {
			since := "not every member accepted the new one yet"
			if !rotated.IsZero() {
				since = fmt.Sprintf("%.0f s after every member accepted the new one (grace %s)", time.Since(rotated).Seconds(), chaosPasswordGrace)
			}
			problems = append(problems, fmt.Sprintf("old password still accepted by %v (unknown %v), %s", oldOK, oldUnknown, since))
		}
		if cur, err := getFormation(f); err != nil {
			problems = append(problems, err.Error())
		} else {
			problems = append(problems, credentialProblems(f, cur)...)
		}
		return len(problems) == 0, strings.Join(problems, "; ")
	}
	converged := o.run(t, start, deadline, end, tick)
	for _, e := range graceErrs {
		t.Errorf("rotation: the old password must stay valid for the %s grace: %s", chaosPasswordGrace, e)
	}
	if !rotated.IsZero() {
		d.r.note("rotation: every member accepted the new password %.1f s after the change (old one then %s)", rotated.Sub(start).Seconds(), oldAtRotated)
	}
	if converged {
		f.password = newPW
		relinkAndCheck(t, o)
	}
	o.finish(t, converged, 0)
	if !converged {
		t.FailNow()
	}
	o.tr.checkMasterMoves(t, master)
}

// credentialProblems lists what shows that a member refuses the operator's
// credentials: Ready or SecretsValid not True or mentioning a refused
// password, a replica not linked (INFO as the admin user), a sentinel not
// seeing the master, a replica up and linked, or all its peers.
func credentialProblems(f *formation, cur *redisv1alpha1.RedisSentinelFormation) []string {
	var problems []string
	if ok, why := readyObserved(cur, cur.Generation); !ok {
		problems = append(problems, why)
	}
	if c := condition(cur, redisv1alpha1.ConditionSecretsValid); c == nil || c.Status != metav1.ConditionTrue {
		problems = append(problems, "SecretsValid is not True: "+describeConditions(cur))
	}
	for _, c := range cur.Status.Conditions {
		if mentionsRefusal(c.Reason + " " + c.Message) {
			problems = append(problems, fmt.Sprintf("condition %s=%s says %s: %s", c.Type, c.Status, c.Reason, c.Message))
		}
	}
	if cur.Status.Master == nil {
		return append(problems, "no master in status")
	}
	for _, m := range cur.Status.Members {
		if repl, err := info(f, m.Address, "replication"); err != nil {
			problems = append(problems, fmt.Sprintf("INFO replication on %s: %v", m.Name, err))
		} else if m.Name != cur.Status.Master.Member && repl["master_link_status"] != "up" {
			problems = append(problems, fmt.Sprintf("replica %s: master_link_status %s", m.Name, repl["master_link_status"]))
		}
		v, err := sentinelView(f, m.Address)
		if err != nil {
			problems = append(problems, fmt.Sprintf("sentinel on %s: %v", m.Name, err))
			continue
		}
		if want := len(cur.Status.Members) - 1; len(v.sentinels) != want || v.master["num-other-sentinels"] != fmt.Sprint(want) {
			problems = append(problems, fmt.Sprintf("sentinel on %s knows %d other sentinels (num-other-sentinels %s), want %d", m.Name, len(v.sentinels), v.master["num-other-sentinels"], want))
		}
		for _, p := range v.sentinels {
			if p["flags"] != "sentinel" {
				problems = append(problems, fmt.Sprintf("sentinel on %s: peer %s flags %q, last ok ping %s ms ago", m.Name, p["ip"], p["flags"], p["last-ok-ping-reply"]))
			}
		}
		if v.master["flags"] != "master" || v.master["ip"] != cur.Status.Master.Address {
			problems = append(problems, fmt.Sprintf("sentinel on %s: master %s flags %q (last ok ping %s ms ago)", m.Name, v.master["ip"], v.master["flags"], v.master["last-ok-ping-reply"]))
		}
		if len(v.replicas) != len(cur.Status.Members)-1 {
			problems = append(problems, fmt.Sprintf("sentinel on %s knows %d replicas", m.Name, len(v.replicas)))
		}
		for _, r := range v.replicas {
			if r["flags"] != "slave" || r["master-link-status"] != "ok" {
				problems = append(problems, fmt.Sprintf("sentinel on %s: replica %s flags %q, link %s, last ok ping %s ms ago", m.Name, r["ip"], r["flags"], r["master-link-status"], r["last-ok-ping-reply"]))
			}
		}
	}
	return problems
}

func mentionsRefusal(s string) bool {
	s = strings.ToLower(s)
	for _, w := range []string{"wrongpass", "noauth", "refuse", "invalid password", "invalid username-password", "authentication"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// relinkAndCheck makes every replica and every sentinel authenticate again
// (a connection made before a rotation stays authenticated with the old
// password, so a stale masterauth, auth-pass or sentinel-pass would only
// show on a reconnect): it kills the sentinels' connections on every
// redis-server, every replica's link to its master and every sentinel's
// connections from its peers, waits longer than down-after, and requires
// the replicas linked and every sentinel to see the master, the replicas
// and its peers up.
func relinkAndCheck(t *testing.T, o *opRun) {
	t.Helper()
	relinkAndCheckFormation(t, o.f, o.d.r, o.explain)
}

func relinkAndCheckFormation(t *testing.T, f *formation, r *result, explain func() string) {
	t.Helper()
	cur := get(t, f)
	var killed, links, peers int
	// killNamed kills the connections whose client name starts with
	// "sentinel-" (Sentinel names its links so).
	killNamed := func(c *redis.Client, ctx context.Context, where string) int {
		list, err := c.ClientList(ctx).Result()
		if err != nil {
			t.Errorf("CLIENT LIST on %s as the admin user: %v", where, err)
			return 0
		}
		n := 0
		for _, line := range strings.Split(list, "\n") {
			fields := map[string]string{}
			for _, kv := range strings.Fields(line) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					fields[k] = v
				}
			}
			if strings.HasPrefix(fields["name"], "sentinel-") {
				if err := c.Do(ctx, "CLIENT", "KILL", "ID", fields["id"]).Err(); err == nil {
					n++
				}
			}
		}
		return n
	}
	for _, m := range cur.Status.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c := adminAt(f, m.Address, redisPort)
		killed += killNamed(c, ctx, m.Name)
		if cur.Status.Master != nil && m.Name != cur.Status.Master.Member {
			if n, err := c.Do(ctx, "CLIENT", "KILL", "TYPE", "master").Int(); err == nil {
				links += n
			}
		}
		_ = c.Close()
		s := adminAt(f, m.Address, sentinelPort)
		peers += killNamed(s, ctx, "sentinel "+m.Name)
		_ = s.Close()
		cancel()
	}
	if killed == 0 || links == 0 || peers == 0 {
		t.Errorf("the re-authentication check killed %d sentinel connections, %d replica links and %d sentinel peer connections: it proves nothing", killed, links, peers)
	}
	r.note("%d sentinel connections, %d replica links and %d sentinel peer connections cut; all authenticated again", killed, links, peers)
	time.Sleep(7 * time.Second) // > down-after (5 s): a refused sentinel would flag s_down
	eventuallyOr(t, 30*time.Second, "replicas and sentinels authenticated again with the current passwords", func() (bool, string) {
		cur, err := getFormation(f)
		if err != nil {
			return false, err.Error()
		}
		problems := credentialProblems(f, cur)
		return len(problems) == 0, strings.Join(problems, "; ")
	}, explain)
}

// ---------------------------------------------------------------- helpers

// patchSpec changes the formation's spec and returns the new generation.
func patchSpec(t *testing.T, f *formation, mutate func(*redisv1alpha1.RedisSentinelFormationSpec)) int64 {
	t.Helper()
	var gen int64
	eventually(t, time.Minute, "changing the spec of "+f.name(), func() (bool, string) {
		cur := &redisv1alpha1.RedisSentinelFormation{}
		if err := k8s.Get(context.Background(), f.key, cur); err != nil {
			return false, err.Error()
		}
		patch := client.MergeFrom(cur.DeepCopy())
		mutate(&cur.Spec)
		if err := k8s.Patch(context.Background(), cur, patch); err != nil {
			return false, err.Error()
		}
		gen = cur.Generation
		return true, ""
	})
	return gen
}

// readyObserved: Ready=True with at least generation gen observed.
func readyObserved(cur *redisv1alpha1.RedisSentinelFormation, gen int64) (bool, string) {
	c := condition(cur, redisv1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue {
		return false, stateOf(cur)
	}
	if cur.Status.ObservedGeneration < gen || cur.Status.ObservedGeneration != cur.Generation {
		return false, fmt.Sprintf("Ready, observedGeneration %d of %d", cur.Status.ObservedGeneration, cur.Generation)
	}
	return true, ""
}

// stateOf is the formation's phase and conditions, with what Ready says.
func stateOf(cur *redisv1alpha1.RedisSentinelFormation) string {
	msg := ""
	if c := condition(cur, redisv1alpha1.ConditionReady); c != nil && c.Status != metav1.ConditionTrue {
		msg = c.Message
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		msg = " (Ready: " + msg + ")"
	}
	return describeConditions(cur) + msg
}

// authState says whether a redis-server (port redisPort) or sentinel
// (sentinelPort) takes a user's password: "accepted", "refused" (WRONGPASS
// and the like) or what else happened.
func authState(address string, port int, user, password string) string {
	if address == "" {
		return "no address"
	}
	c := redisAt(address, port, user, password)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.Ping(ctx).Err()
	switch {
	case err == nil:
		return "accepted"
	case isAuthRefusal(err):
		return "refused"
	default:
		leaks.sawError("AUTH check", err)
		return errKind(err)
	}
}

func isAuthRefusal(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") || strings.Contains(msg, "invalid password")
}

type sentinelState struct {
	master    map[string]string
	replicas  []map[string]string
	sentinels []map[string]string
}

// sentinelView is one sentinel's SENTINEL MASTER, REPLICAS and SENTINELS,
// asked as the admin user.
func sentinelView(f *formation, address string) (sentinelState, error) {
	c := adminSentinel(f, address, time.Second)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m, err := c.Master(ctx, masterName).Result()
	if err != nil {
		leaks.sawError("SENTINEL MASTER", err)
		return sentinelState{}, err
	}
	rs, err := c.Replicas(ctx, masterName).Result()
	if err != nil {
		leaks.sawError("SENTINEL REPLICAS", err)
		return sentinelState{}, err
	}
	ss, err := c.Sentinels(ctx, masterName).Result()
	if err != nil {
		leaks.sawError("SENTINEL SENTINELS", err)
		return sentinelState{}, err
	}
	return sentinelState{master: m, replicas: rs, sentinels: ss}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---------------------------------------------------------------- +switch-master

// switchWatch subscribes to every event (+switch-master to count switches,
// the others to explain failures) on every sentinel of a formation,
// reconnecting when a sentinel restarts or its container is rebuilt.
type switchWatch struct {
	f      *formation
	origin time.Time
	mu     sync.Mutex
	subs   map[string]string // member -> address subscribed
	anns   []announcement
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

type announcement struct {
	at               time.Time
	member           string
	channel, payload string
}

// switchSeen is one master switch, as told by one or more sentinels.
type switchSeen struct {
	first   time.Time
	payload string
	by      []string
}

func (s switchSeen) String(origin time.Time) string {
	return fmt.Sprintf("%q at %+.1fs by %v", s.payload, s.first.Sub(origin).Seconds(), s.by)
}

func startSwitchWatch(t *testing.T, f *formation) *switchWatch {
	t.Helper()
	sw := &switchWatch{f: f, origin: time.Now(), subs: map[string]string{}, stop: make(chan struct{})}
	t.Cleanup(sw.halt)
	return sw
}

// follow subscribes to the sentinel at address (once per member and address).
func (sw *switchWatch) follow(member, address string) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.closed || sw.subs[member] == address {
		return
	}
	sw.subs[member] = address
	// As the admin user, whose password is read at every (re)connection.
	c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(address, fmt.Sprint(sentinelPort)), CredentialsProviderContext: adminProvider(sw.f),
		DialTimeout: time.Second, MaxRetries: -1, DisableIdentity: true, Protocol: 2})
	ps := c.PSubscribe(context.Background(), "*")
	ch := ps.Channel(redis.WithChannelSize(1000), redis.WithChannelHealthCheckInterval(2*time.Second))
	sw.wg.Add(1)
	go func() {
		defer sw.wg.Done()
		defer c.Close()
		defer ps.Close()
		for {
			select {
			case <-sw.stop:
				return
			case msg, ok := <-ch:
				if !ok {
					return
				}
				sw.mu.Lock()
				sw.anns = append(sw.anns, announcement{at: time.Now(), member: member, channel: msg.Channel, payload: msg.Payload})
				sw.mu.Unlock()
			}
		}
	}()
}

func (sw *switchWatch) halt() {
	sw.mu.Lock()
	if sw.closed {
		sw.mu.Unlock()
		return
	}
	sw.closed = true
	close(sw.stop)
	sw.mu.Unlock()
	sw.wg.Wait()
}

// switches folds the +switch-master announcements: the same payload
// (master name, old address, new address) within switchFoldWindow of the
// first is one switch told by several sentinels.
func (sw *switchWatch) switches() []switchSeen {
	sw.mu.Lock()
	anns := slices.Clone(sw.anns)
	sw.mu.Unlock()
	sort.SliceStable(anns, func(i, j int) bool { return anns[i].at.Before(anns[j].at) })
	var out []switchSeen
	for _, a := range anns {
		if a.channel != "+switch-master" {
			continue
		}
		folded := false
		for i := range out {
			if out[i].payload == a.payload && a.at.Sub(out[i].first) <= switchFoldWindow {
				out[i].by = append(out[i].by, a.member)
				folded = true
				break
			}
		}
		if !folded {
			out = append(out, switchSeen{first: a.at, payload: a.payload, by: []string{a.member}})
		}
	}
	return out
}

// chatter are Sentinel events left out of a description: discovery.
var chatter = map[string]bool{"+sentinel": true, "+slave": true, "+sentinel-address-switch": true, "+fix-slave-config": true}

func (sw *switchWatch) describe() string {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	var lines []string
	for _, a := range sw.anns {
		if !chatter[a.channel] {
			lines = append(lines, fmt.Sprintf("  %+.2fs %s: %s %s", a.at.Sub(sw.origin).Seconds(), a.member, a.channel, a.payload))
		}
	}
	if len(lines) == 0 {
		return "  (none)"
	}
	if len(lines) > 150 {
		lines = append([]string{fmt.Sprintf("  (%d earlier events left out)", len(lines)-150)}, lines[len(lines)-150:]...)
	}
	return strings.Join(lines, "\n")
}

// count is how many distinct announcements of an event there were (the
// same payload within switchFoldWindow counted once).
func (sw *switchWatch) count(channel string) int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	first := map[string]time.Time{}
	n := 0
	for _, a := range sw.anns {
		if a.channel != channel {
			continue
		}
		if at, ok := first[a.payload]; ok && a.at.Sub(at) <= switchFoldWindow {
			continue
		}
		first[a.payload] = a.at
		n++
	}
	return n
}

// ---------------------------------------------------------------- probe periods

// probeGap: accepted writes of one member less than this apart belong to
// one period of accepting writes (the probes write every 50 ms).
const probeGap = 300 * time.Millisecond

// periods merges a member's accepted writes into periods.
func (p *probes) periods(member string) []span {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []span
	for _, s := range p.ok[member] {
		if n := len(out); n > 0 && s.start.Sub(out[n-1].end) < probeGap {
			out[n-1].end = maxTime(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

func (p *probes) members() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return sortedKeys(p.ok)
}

// timeline describes when each member accepted writes, period by period.
func (p *probes) timeline(origin time.Time) string {
	var parts []string
	for _, m := range p.members() {
		var ps []string
		for _, s := range p.periods(m) {
			ps = append(ps, fmt.Sprintf("%+.1fs..%+.1fs", s.start.Sub(origin).Seconds(), s.end.Sub(origin).Seconds()))
		}
		parts = append(parts, m+" "+strings.Join(ps, ", "))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// overlaps lists the moments two members both accepted writes (periods of
// two members that overlap), unlike checkOneWriter, which also fails a
// master role that moved back to a member that had it before.
func (p *probes) overlaps(origin time.Time) []string {
	ms := p.members()
	var out []string
	for i, a := range ms {
		for _, b := range ms[i+1:] {
			for _, x := range p.periods(a) {
				for _, y := range p.periods(b) {
					if x.start.Before(y.end) && y.start.Before(x.end) {
						out = append(out, fmt.Sprintf("%s %+.1fs..%+.1fs and %s %+.1fs..%+.1fs", a, x.start.Sub(origin).Seconds(), x.end.Sub(origin).Seconds(), b, y.start.Sub(origin).Seconds(), y.end.Sub(origin).Seconds()))
					}
				}
			}
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
