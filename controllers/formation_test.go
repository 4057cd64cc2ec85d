package controllers

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/config"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
)

func TestBringUp(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	passes := e.converge(r, testKey, 40)
	t.Logf("Ready after %d passes", passes)

	f := e.formation(testKey)
	if !controllerutil.ContainsFinalizer(f, finalizerName) {
		t.Error("no finalizer")
	}
	if f.Status.ObservedGeneration != f.Generation {
		t.Errorf("observedGeneration %d, generation %d", f.Status.ObservedGeneration, f.Generation)
	}
	insts := e.instances(f)
	if got := sortedKeys(insts); len(got) != 3 || got[0] != "cache-1" || got[2] != "cache-3" {
		t.Fatalf("instances %v", got)
	}
	for i, m := range f.Status.Members {
		if inst := insts[m.Name]; inst.Name != testInstance(i+1) || m.Instance != inst.Name {
			t.Errorf("member %s: instance %q, status records %q, want %q", m.Name, inst.Name, m.Instance, testInstance(i+1))
		}
	}
	for name, inst := range insts {
		if inst.Status != "Running" || inst.Config[keyFormationUID] != string(f.UID) || inst.Config[keyFormation] != testNamespace+"/"+testName ||
			inst.Config[keyMember] != name[len(name)-1:] || inst.Config[keyTemplate] == "" {
			t.Errorf("instance %s: %+v", name, inst)
		}
		if inst.Devices["eth0"]["ipv4.address"] != inst.IPv4 {
			t.Errorf("instance %s address %s not pinned: %v", name, inst.IPv4, inst.Devices["eth0"])
		}
	}
	st := f.Status
	if st.Master == nil || st.Failovers != 0 || st.LastFailover != nil || st.ReadyMembers != 3 || !st.Sentinels.QuorumOK || st.Sentinels.Reachable != 3 {
		t.Fatalf("status: master %+v failovers %d ready %d sentinels %+v", st.Master, st.Failovers, st.ReadyMembers, st.Sentinels)
	}
	master, epoch := e.masterOfWorld(f)
	if st.Master.Address != master.Host || st.Master.Member != memberAtAddr(f, master.Host) || st.Master.ConfigEpoch != epoch {
		t.Errorf("status.master %+v, sentinels name %s@%d", st.Master, master, epoch)
	}

	for _, name := range []string{testName + "-connection", testName + "-password-state", testName + "-internal-credentials"} {
		s := e.secret(name)
		if s == nil {
			t.Fatalf("Secret %s missing", name)
		}
		if !metav1.IsControlledBy(s, f) {
			t.Errorf("Secret %s not owned by the formation: %v", name, s.OwnerReferences)
		}
	}
	conn := e.secret(testName + "-connection").Data
	if string(conn[config.EnvMasterName]) != "mymaster" || string(conn[config.EnvSentinelPassword]) != testSentinelPassword ||
		string(conn[config.EnvSentinelUsername]) != "backend" || string(conn[config.EnvURL]) != "redis://backend:"+testPassword+"@mymaster:6379/0" {
		t.Errorf("connection Secret: %q", conn)
	}
	state := e.secret(testName + "-password-state").Data
	internal := e.secret(testName + "-internal-credentials").Data
	for _, c := range acl.All {
		if len(state[string(c)]) == 0 || state[string(c)+".previous"] != nil {
			t.Errorf("password state of %s: %d bytes, previous %v", c, len(state[string(c)]), state[string(c)+".previous"] != nil)
		}
	}
	for _, c := range acl.Internal {
		if !bytes.Equal(internal[string(c)], state[string(c)]) {
			t.Errorf("the members were not given the generated %s password", c)
		}
	}
	// Least privilege, as configured in every member: the default user is
	// off, each role has its own user and password, and the backend's
	// connection-Secret password is no administrator's.
	for _, m := range f.Status.Members {
		redis, sentinel := redisEndpoint(m.Address), sentinelEndpoint(m.Address)
		if e.world.Accepts(redis, "", testPassword) || e.world.Accepts(redis, "default", testPassword) {
			t.Errorf("%s: the default user accepts the backend password", m.Name)
		}
		if !e.world.Accepts(redis, "backend", testPassword) || e.world.Accepts(redis, acl.AdminUser, testPassword) {
			t.Errorf("%s: the backend password is not exactly the backend user's", m.Name)
		}
		if !e.world.Accepts(sentinel, "backend", testSentinelPassword) || e.world.Accepts(sentinel, acl.AdminUser, testSentinelPassword) {
			t.Errorf("%s: the sentinel password is not exactly the backend's discovery user's", m.Name)
		}
		if !e.world.Accepts(redis, acl.AdminUser, string(state["admin"])) || !e.world.Accepts(sentinel, acl.AdminUser, string(state["admin"])) {
			t.Errorf("%s: the admin user does not accept the admin password", m.Name)
		}
		if u, pw := e.world.MasterAuth(redis); m.Name != f.Status.Master.Member && (u != acl.ReplicationUser || pw != string(state["replication"])) {
			t.Errorf("%s replicates as %q", m.Name, u)
		}
		sc := e.world.SentinelConfig(sentinel)
		if sc["sentinel-user"] != acl.PeerUser || sc["sentinel-pass"] != string(state["peer"]) ||
			sc["auth-user mymaster"] != acl.MonitoringUser || sc["auth-pass mymaster"] != string(state["monitoring"]) {
			t.Errorf("%s: sentinel links: users %q %q", m.Name, sc["sentinel-user"], sc["auth-user mymaster"])
		}
	}
	if p := e.world.Problems(); len(p) > 0 {
		t.Errorf("members met configuration problems: %v", p)
	}
	if f.Status.Phase != redisv1alpha1.PhaseReady {
		t.Errorf("phase %s", f.Status.Phase)
	}
	// The watcher subscribes to every sentinel; the canary probes the
	// Ready formation (through the stub: nothing is dialled).
	e.watcher.mu.Lock()
	targets := e.watcher.watched[testKey]
	e.watcher.mu.Unlock()
	if len(targets) != 3 {
		t.Errorf("watched sentinels %v", targets)
	}
	for _, tg := range targets {
		if tg.Addr != insts[tg.Member].IPv4+":26379" {
			t.Errorf("watched sentinel %+v", tg)
		}
	}
	waitCanary(t, e)
}

// waitCanary waits (real time: the canary runs beside the reconcile) for
// the formation's canary result.
func waitCanary(t *testing.T, e *env) {
	t.Helper()
	for range 200 {
		if e.series(testKey)[metrics.FormationCanarySuccess] > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no canary result; prober called %d times", e.prober.probed(testKey.String()))
}

// A pass whose Incus listing fails (incusd answers "Invalid PID" while a
// container is being stopped) does not know which sentinels run: it must
// leave the watcher's subscriptions alone, or the failover's events, the
// +switch-master among them, are lost while they are made again.
func TestFailedListingKeepsSentinelSubscriptions(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	watched := func() []sentinel.Target {
		e.watcher.mu.Lock()
		defer e.watcher.mu.Unlock()
		return e.watcher.watched[testKey]
	}
	before := watched()
	if len(before) != 3 {
		t.Fatalf("watched sentinels after bring-up: %v", before)
	}
	e.incus.SetFail(incusfake.ListInstances, errors.New(`state of instance "x": Invalid PID`))
	if _, err := e.reconcile(r, testKey); err == nil {
		t.Fatal("a pass whose listing failed succeeded")
	}
	if after := watched(); !slices.Equal(after, before) {
		t.Fatalf("watched sentinels changed by a pass that could not list the instances: %v -> %v", before, after)
	}
}

func TestDeletion(t *testing.T) {
	t.Run("with the finalizer", func(t *testing.T) {
		e := standardEnv(t)
		r := e.newReconciler()
		e.converge(r, testKey, 40)
		waitCanary(t, e)
		f := e.formation(testKey)
		if len(e.instances(f)) != 3 {
			t.Fatal("no instances")
		}
		if err := e.client.Delete(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		if f := e.formation(testKey); f.DeletionTimestamp.IsZero() {
			t.Fatal("deleted at once despite the finalizer")
		}
		if _, err := e.reconcile(r, testKey); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Get(context.Background(), testKey, &redisv1alpha1.RedisSentinelFormation{}); !apierrors.IsNotFound(err) {
			t.Fatalf("formation still there: %v", err)
		}
		if names := e.incus.Names(); len(names) != 0 {
			t.Fatalf("instances left: %v", names)
		}
		for _, name := range []string{testName + "-connection", testName + "-password-state", testName + "-internal-credentials"} {
			if e.secret(name) != nil {
				t.Errorf("owned Secret %s left", name)
			}
		}
		for _, name := range []string{redisSecretName, sentinelSecretName} {
			if e.secret(name) == nil {
				t.Errorf("the user's Secret %s was deleted", name)
			}
		}
		assertForgotten(t, e)
		// A late event for the formation finds nothing and does nothing.
		if res, err := e.reconcile(e.newReconciler(), testKey); err != nil || res.RequeueAfter != 0 || res.Requeue {
			t.Fatalf("reconcile of a deleted formation: %+v %v", res, err)
		}
	})
	t.Run("finalizer removed by hand", func(t *testing.T) {
		e := standardEnv(t)
		r := e.newReconciler()
		e.converge(r, testKey, 40)
		waitCanary(t, e)
		f := e.formation(testKey)
		patch := client.MergeFrom(f.DeepCopy())
		controllerutil.RemoveFinalizer(f, finalizerName)
		if err := e.client.Patch(context.Background(), f, patch); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Delete(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		if n, err := testutil.GatherAndCount(e.registry, metrics.FormationReady, metrics.FormationCanarySuccess); err != nil || n != 2 {
			t.Fatalf("%d ready and canary series before the formation's deletion was seen (%v), want 2", n, err)
		}
		if _, err := e.reconcile(r, testKey); err != nil {
			t.Fatal(err)
		}
		assertForgotten(t, e)
		// Its instances are left to the user: nothing reached Incus.
		if names := e.incus.Names(); len(names) != 3 {
			t.Fatalf("instances: %v", names)
		}
	})
}

// assertForgotten: nothing of the formation stays in the operator's memory.
func assertForgotten(t *testing.T, e *env) {
	t.Helper()
	if !e.watcher.forgotten(testKey) {
		t.Error("the Sentinel watcher was not told to forget the formation")
	}
	if !e.instanceWatcher.forgotten(testKey) {
		t.Error("the Incus event watcher was not told to forget the formation")
	}
	if e.prober.forgotten(testKey.String()) == 0 {
		t.Error("the canary prober was not told to forget the formation")
	}
	if e.dialer.forgotten(testKey.String()) == 0 {
		t.Error("the admin dialer was not told to close the formation's clients")
	}
	// A canary probe still running must not bring a series back.
	time.Sleep(20 * time.Millisecond)
	if series := e.series(testKey); len(series) != 0 {
		t.Errorf("metric series left: %v", series)
	}
	// The registry holds this formation only: nothing at all is left.
	if n, err := testutil.GatherAndCount(e.registry); err != nil || n != 0 {
		t.Errorf("%d series left in the registry (%v)", n, err)
	}
}

func TestBlockedSecret(t *testing.T) {
	f := newFormation(testName)
	e := newEnv(t, f, passwordSecret(sentinelSecretName, testSentinelPassword))
	r := e.newReconciler()
	// The poll backs off with the time the formation has been blocked.
	for _, want := range []time.Duration{convergePoll, convergePoll, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, blockedPoll, blockedPoll} {
		res, err := e.reconcile(r, testKey)
		if err != nil {
			t.Fatal(err)
		}
		if res.RequeueAfter != want {
			t.Fatalf("result %+v, want a poll after %s", res, want)
		}
		e.clock.Advance(res.RequeueAfter)
	}
	f = e.formation(testKey)
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionSecretsValid)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonSecretNotFound || !strings.Contains(c.Message, redisSecretName) {
		t.Fatalf("SecretsValid %+v", c)
	}
	if f.Status.Phase != redisv1alpha1.PhaseBlocked {
		t.Fatalf("phase %s", f.Status.Phase)
	}
	if controllerutil.ContainsFinalizer(f, finalizerName) {
		t.Fatal("finalizer added to a blocked formation")
	}
	if names := e.incus.Names(); len(names) != 0 || e.incus.Calls()[incusfake.CreateInstance] != 0 {
		t.Fatalf("instances created: %v", names)
	}
	if n := countEvents(e, ReasonSecretNotFound); n != 1 {
		t.Fatalf("%d SecretNotFound Events, want 1 (when the condition changed)", n)
	}

	// The Secret appears: the formation comes up.
	if err := e.client.Create(context.Background(), passwordSecret(redisSecretName, testPassword)); err != nil {
		t.Fatal(err)
	}
	e.converge(r, testKey, 40)
	f = e.formation(testKey)
	if !meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionSecretsValid) || !controllerutil.ContainsFinalizer(f, finalizerName) || len(e.instances(f)) != 3 {
		t.Fatalf("after the Secret appeared: %s", describe(f))
	}
}

// TestStoppedMember: a stopped container is started and its redis-server
// brought back as a replica; one that stops again right after is not
// started again until the crash window has passed.
func TestStoppedMember(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	ctx := context.Background()
	starts := func() int { return e.incus.Calls()[incusfake.StartInstance] }

	if err := e.incus.StopInstance(ctx, testInstance(3), false); err != nil {
		t.Fatal(err)
	}
	startedAt := e.clock.Now()
	e.converge(r, testKey, 20)
	if starts() != 1 {
		t.Fatalf("%d starts, want 1", starts())
	}
	f := e.formation(testKey)
	if st := findMember(f.Status.Members, "cache-3"); st == nil || st.StartedAt == nil || !st.StartedAt.Time.Equal(startedAt.Truncate(time.Second)) || st.Role != redisv1alpha1.RoleReplica {
		t.Fatalf("cache-3 after its start: %+v", st)
	}

	// It stops again 2 s later: reported, not started.
	e.clock.Advance(2 * time.Second)
	if err := e.incus.StopInstance(ctx, testInstance(3), false); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res, err := e.reconcile(r, testKey)
		if err != nil {
			t.Fatal(err)
		}
		f := e.formation(testKey)
		if c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "stopped again") {
			t.Fatalf("Degraded %+v", c)
		}
		if starts() != 1 {
			t.Fatal("started again within the crash window")
		}
		if res.RequeueAfter <= 0 || res.RequeueAfter > CrashWindow {
			t.Fatalf("requeue %+v", res)
		}
		e.clock.Advance(time.Second)
	}
	e.clock.Advance(CrashWindow)
	e.converge(r, testKey, 20)
	if starts() != 2 {
		t.Fatalf("%d starts, want 2", starts())
	}
}

// A Ready formation whose state does not change costs no status write per
// pass, also with Sentinel events in status (kept by the API server to the
// microsecond, received to the nanosecond).
func TestIdlePassWritesNoStatus(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	e.watcher.setEvents(testKey, sentinel.Event{Time: e.clock.Now().Add(123456789 * time.Nanosecond), Sentinel: testName + "-2", Type: "+sdown", Payload: "slave 10.0.0.3:6379 10.0.0.3 6379 @ mymaster 10.0.0.2 6379"})
	if _, err := e.reconcile(r, testKey); err != nil {
		t.Fatal(err)
	}
	written := e.statusPatches.Load()
	for range 3 {
		e.clock.Advance(e.opts.ResyncPeriod)
		if _, err := e.reconcile(r, testKey); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.statusPatches.Load() - written; n != 0 {
		t.Fatalf("%d status writes in 3 idle passes, want 0", n)
	}
}
