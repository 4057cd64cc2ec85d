package controllers

// The harness of the controller's fast tests: the reconciler runs against
// controller-runtime's fake client (as both its cached client and its API
// reader), the in-memory Incus (incusfake) and the simulated redis-servers
// and sentinels that react to what the operator writes and runs in the
// containers (redisfake). The Sentinel watcher and the canary prober are
// stubs the tests drive; the clock is a field the tests advance. Nothing
// here opens a network connection.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/acl"
	"github.com/incusops/redis-sentinel-operator/internal/endpoint"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin/redisfake"
	"github.com/incusops/redis-sentinel-operator/internal/safe"
	"github.com/incusops/redis-sentinel-operator/internal/sentinel"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

const (
	testNamespace        = "apps"
	testName             = "cache"
	testPassword         = "data-plane-pw-1"
	testSentinelPassword = "sentinel-pw-1"
	redisSecretName      = "redis-pw"
	sentinelSecretName   = "sentinel-pw"
)

// redisEngine is the engine of the test formations (spec.engine redis).
var redisEngine = engine.MustOf(engine.Redis)

// testStart is the fake clock's start: whole seconds, because metav1.Time
// is serialised with second precision.
var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var testKey = types.NamespacedName{Namespace: testNamespace, Name: testName}

func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := redisv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// newFormation is a formation with every default the CRD would apply (the
// fake client applies none).
func newFormation(name string) *redisv1alpha1.RedisSentinelFormation {
	f := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{
		Namespace: testNamespace, Name: name, UID: types.UID("uid-" + name), Generation: 1,
		CreationTimestamp: metav1.NewTime(testStart),
	}}
	s := &f.Spec
	s.MasterName, s.Members, s.Quorum = "mymaster", 3, 2
	s.Sentinel = redisv1alpha1.SentinelSpec{DownAfterMilliseconds: 5000, FailoverTimeoutMilliseconds: 30000, ParallelSyncs: 1}
	s.Redis = redisv1alpha1.RedisSpec{
		Port: 6379, SentinelPort: 26379, Maxmemory: "1gb", MaxmemoryPolicy: "allkeys-lru",
		Persistence: redisv1alpha1.PersistenceSpec{
			AOF: redisv1alpha1.AOFSpec{Enabled: ptr.To(true), Fsync: "everysec"},
			RDB: redisv1alpha1.RDBSpec{Enabled: ptr.To(true), SavePoints: []redisv1alpha1.RDBSavePoint{{Seconds: 86400, Changes: 1}}},
		},
		MinReplicasToWrite: ptr.To[int32](1), MinReplicasMaxLagSeconds: 2,
	}
	s.Auth = redisv1alpha1.AuthSpec{
		PasswordSecretRef:         redisv1alpha1.SecretKeyReference{Name: redisSecretName, Key: "password"},
		SentinelPasswordSecretRef: redisv1alpha1.SecretKeyReference{Name: sentinelSecretName, Key: "password"},
	}
	s.Environment = redisv1alpha1.EnvironmentLab
	s.Incus = redisv1alpha1.IncusSpec{Image: "rsf-redis7-bookworm-v1", Profiles: []string{"rsf-redis"}, Network: "rsfbr0", StoragePool: "rsf", Project: "default"}
	return f
}

// testCredentials are every credential of a settled formation, none in
// rotation.
func testCredentials() acl.Set {
	set := acl.Set{}
	for _, c := range acl.All {
		set[c] = acl.Passwords{Current: string(c) + "-pw-1"}
	}
	set[acl.BackendPassword] = acl.Passwords{Current: testPassword}
	set[acl.BackendSentinelPassword] = acl.Passwords{Current: testSentinelPassword}
	return set
}

// desiredOf are the current passwords of set, as the Secrets would ask.
func desiredOf(set acl.Set) map[acl.Credential]string {
	desired := map[acl.Credential]string{}
	for c, p := range set {
		desired[c] = p.Current
	}
	return desired
}

func passwordSecret(name, password string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: name},
		Data:       map[string][]byte{"password": []byte(password)},
	}
}

// fakeClock is the reconciler's clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stubWatcher stands in for the Sentinel event watcher: the tests set the
// switches and events it reports, and it records what the reconciler asked.
type stubWatcher struct {
	mu       sync.Mutex
	switches map[types.NamespacedName][]sentinel.Switch
	events   map[types.NamespacedName][]sentinel.Event
	watched  map[types.NamespacedName][]sentinel.Target
	forgot   []types.NamespacedName
}

var _ SentinelWatcher = (*stubWatcher)(nil)

func newStubWatcher() *stubWatcher {
	return &stubWatcher{
		switches: map[types.NamespacedName][]sentinel.Switch{},
		events:   map[types.NamespacedName][]sentinel.Event{},
		watched:  map[types.NamespacedName][]sentinel.Target{},
	}
}

func (w *stubWatcher) Watch(key client.ObjectKey, _ redisadmin.Credentials, targets []sentinel.Target) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watched[key] = slices.Clone(targets)
}

func (w *stubWatcher) Forget(key client.ObjectKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.forgot = append(w.forgot, key)
	delete(w.watched, key)
}

func (w *stubWatcher) Events(key client.ObjectKey) []sentinel.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events[key])
}

func (w *stubWatcher) Switches(key client.ObjectKey) []sentinel.Switch {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.switches[key])
}

func (w *stubWatcher) setSwitches(key client.ObjectKey, s ...sentinel.Switch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.switches[key] = s
}

func (w *stubWatcher) setEvents(key client.ObjectKey, e ...sentinel.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events[key] = e
}

func (w *stubWatcher) forgotten(key client.ObjectKey) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.forgot, key)
}

// stubProber is the canary's prober: it never dials, it counts.
type stubProber struct{ probes, forgot testenv.Counter }

var _ CanaryProber = (*stubProber)(nil)

func newStubProber() *stubProber { return &stubProber{} }

func (p *stubProber) Probe(_ context.Context, key string, _ map[string][]byte) (time.Duration, error) {
	p.probes.Add(key)
	return time.Millisecond, nil
}

func (p *stubProber) Forget(key string)        { p.forgot.Add(key) }
func (p *stubProber) forgotten(key string) int { return p.forgot.Count(key) }
func (p *stubProber) probed(key string) int    { return p.probes.Count(key) }

// forgettingWorld is the simulated world as the admin Dialer, recording
// which formations the operator told it to forget.
type forgettingWorld struct {
	*redisfake.World
	forgot testenv.Counter
}

func (w *forgettingWorld) Forget(owner string)        { w.forgot.Add(owner) }
func (w *forgettingWorld) forgotten(owner string) int { return w.forgot.Count(owner) }

// eventLog is client-go's events.FakeRecorder with a buffer large enough
// for any test: Eventf sends synchronously, so every Event of a pass is in
// the buffer when Reconcile returns, and events drains it without waiting.
type eventLog struct {
	*events.FakeRecorder
	mu   sync.Mutex
	list []string
}

func newRecorder() *eventLog {
	return &eventLog{FakeRecorder: events.NewFakeRecorder(1 << 14)}
}

// events returns every Event recorded so far, oldest first.
func (r *eventLog) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		select {
		case e := <-r.Events:
			r.list = append(r.list, e)
		default:
			return slices.Clone(r.list)
		}
	}
}

// env is one simulated world: API, Incus, the members' processes, the
// watcher, the canary prober, the metrics and the clock. Reconcilers made
// by newReconciler share it, as operator processes share the world.
type env struct {
	t       testing.TB
	scheme  *runtime.Scheme
	client  client.WithWatch
	incus   *incusfake.Fake
	world   *redisfake.World
	dialer  *forgettingWorld
	watcher *stubWatcher
	// instanceWatcher stands in for the Incus event watcher.
	instanceWatcher *stubInstanceWatcher
	prober          *stubProber
	recorder        *eventLog
	registry        *prometheus.Registry
	metrics         *metrics.Operator
	clock           *fakeClock
	opts            Options
	// dieBeforeStatusWrite makes the next status write fail, as if the
	// operator died after the pass's actions and before its status patch.
	dieBeforeStatusWrite atomic.Bool
	// statusPatches counts the status writes that reached the API.
	statusPatches atomic.Int64
	// generated counts the passwords generated.
	generated atomic.Int64
}

// newEnv builds the world with objs in the API (typically a formation and
// its password Secrets).
func newEnv(t testing.TB, objs ...client.Object) *env {
	t.Helper()
	e := &env{
		t:               t,
		scheme:          testScheme(t),
		incus:           incusfake.New(),
		world:           redisfake.New(),
		watcher:         newStubWatcher(),
		instanceWatcher: newStubInstanceWatcher(),
		prober:          newStubProber(),
		recorder:        newRecorder(),
		registry:        prometheus.NewRegistry(),
		clock:           &fakeClock{t: testStart},
		opts: Options{
			MaxConcurrentReconciles: 1, ResyncPeriod: 15 * time.Second, RedisTimeout: time.Second,
			PasswordGrace: 10 * time.Minute, MaxRetryDelay: 5 * time.Second,
		},
	}
	e.incus.Now = e.clock.Now
	e.world.Attach(e.incus)
	e.dialer = &forgettingWorld{World: e.world}
	e.metrics = metrics.NewOperator(e.registry)
	e.client = fake.NewClientBuilder().
		WithScheme(e.scheme).
		WithStatusSubresource(&redisv1alpha1.RedisSentinelFormation{}, &redisv1alpha1.IncusHost{}).
		WithObjects(append(labHostObjects(), objs...)...).
		WithIndex(&redisv1alpha1.RedisSentinelFormation{}, hostIndex, formationHostName).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if e.dieBeforeStatusWrite.CompareAndSwap(true, false) {
				return errors.New("the operator died before writing the status")
			}
			e.statusPatches.Add(1)
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		}}).
		Build()
	return e
}

// standardEnv is a world with the formation cache and its two Secrets.
func standardEnv(t testing.TB, mutate ...func(*redisv1alpha1.RedisSentinelFormation)) *env {
	f := newFormation(testName)
	for _, m := range mutate {
		m(f)
	}
	return newEnv(t, f, passwordSecret(redisSecretName, testPassword), passwordSecret(sentinelSecretName, testSentinelPassword))
}

// generatePassword is the world's password generator: deterministic, so
// that two worlds driven alike stay alike.
func (e *env) generatePassword() (string, error) {
	return fmt.Sprintf("gen-%02d-Kx7qZ9mW4vR2", e.generated.Add(1)), nil
}

// newReconciler is one operator process: fresh memory (canary sampling
// times), the shared world.
func (e *env) newReconciler() *FormationReconciler {
	guard := safe.Guard{Log: logr.Discard(), Count: e.metrics.PanicRecovered}
	return &FormationReconciler{
		Client:          e.client,
		APIReader:       e.client,
		Recorder:        e.recorder,
		Incus:           e.incus,
		Redis:           e.dialer,
		Metrics:         e.metrics,
		Canary:          newCanary(e.prober, e.metrics, guard),
		Watcher:         e.watcher,
		InstanceWatcher: e.instanceWatcher,
		Guard:           guard,
		Options:         e.opts,
		Now:             e.clock.Now,
		NewPassword:     e.generatePassword,
	}
}

func (e *env) ctx() context.Context {
	return ctrl.LoggerInto(context.Background(), logr.Discard())
}

// reconcile runs one pass.
func (e *env) reconcile(r *FormationReconciler, key types.NamespacedName) (ctrl.Result, error) {
	return r.Reconcile(e.ctx(), ctrl.Request{NamespacedName: key})
}

// blockedPasses runs n passes that must each end blocked (phase Blocked, a
// poll, no error), advancing the clock to the next one.
func (e *env) blockedPasses(r *FormationReconciler, key types.NamespacedName, n int) {
	e.t.Helper()
	for range n {
		res, err := e.reconcile(r, key)
		if err != nil || res.RequeueAfter <= 0 {
			e.t.Fatalf("result %+v, %v; want a poll", res, err)
		}
		if f := e.formation(key); f.Status.Phase != redisv1alpha1.PhaseBlocked {
			e.t.Fatalf("phase %s, want Blocked: %s", f.Status.Phase, describe(f))
		}
		e.clock.Advance(res.RequeueAfter)
	}
}

// formation reads the formation from the API.
func (e *env) formation(key types.NamespacedName) *redisv1alpha1.RedisSentinelFormation {
	e.t.Helper()
	f := &redisv1alpha1.RedisSentinelFormation{}
	if err := e.client.Get(context.Background(), key, f); err != nil {
		e.t.Fatalf("reading formation %s: %v", key, err)
	}
	return f
}

// secret reads a Secret; nil when absent.
func (e *env) secret(name string) *corev1.Secret {
	e.t.Helper()
	s := &corev1.Secret{}
	if err := e.client.Get(context.Background(), types.NamespacedName{Namespace: testNamespace, Name: name}, s); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil
		}
		e.t.Fatalf("reading Secret %s: %v", name, err)
	}
	return s
}

// updateFormation changes the spec like a user: the API server bumps the
// generation (the fake client does not, so it is done here).
func (e *env) updateFormation(key types.NamespacedName, change func(*redisv1alpha1.RedisSentinelFormation)) {
	e.t.Helper()
	f := e.formation(key)
	change(f)
	f.Generation++
	if err := e.client.Update(context.Background(), f); err != nil {
		e.t.Fatalf("updating formation: %v", err)
	}
}

func (e *env) setPassword(name, password string) {
	e.t.Helper()
	s := e.secret(name)
	s.Data = map[string][]byte{"password": []byte(password)}
	if err := e.client.Update(context.Background(), s); err != nil {
		e.t.Fatalf("updating Secret %s: %v", name, err)
	}
}

// advanceFor moves the clock as the workqueue would before the next pass.
func (e *env) advanceFor(res ctrl.Result, err error) {
	switch {
	case err != nil:
		e.clock.Advance(100 * time.Millisecond)
	case res.RequeueAfter > 0:
		e.clock.Advance(min(res.RequeueAfter, 5*time.Second))
	default:
		e.clock.Advance(10 * time.Millisecond)
	}
}

// converge reconciles until the formation is Ready and its generation
// observed, advancing the clock as the requeues ask; it fails with the
// last status after maxPasses. It returns the passes it took.
func (e *env) converge(r *FormationReconciler, key types.NamespacedName, maxPasses int) int {
	e.t.Helper()
	return e.convergeWith(func() *FormationReconciler { return r }, key, maxPasses, nil)
}

// convergeWith is converge with a reconciler chosen per pass and a check
// run after each pass.
func (e *env) convergeWith(next func() *FormationReconciler, key types.NamespacedName, maxPasses int, check func(pass int)) int {
	e.t.Helper()
	return e.passesUntil(next, key, maxPasses, func() bool { return isReady(e.formation(key)) }, check)
}

// passesUntil reconciles, with the reconciler next returns for each pass,
// until done holds after a pass, advancing the clock as the requeues ask;
// check runs after every pass. It fails after maxPasses.
func (e *env) passesUntil(next func() *FormationReconciler, key types.NamespacedName, maxPasses int, done func() bool, check func(pass int)) int {
	e.t.Helper()
	var lastErr error
	for pass := 1; pass <= maxPasses; pass++ {
		res, err := e.reconcile(next(), key)
		lastErr = err
		if check != nil {
			check(pass)
		}
		if err == nil && done() {
			return pass
		}
		e.advanceFor(res, err)
	}
	f := e.formation(key)
	e.t.Fatalf("condition not reached after %d passes (last error %v): phase %s\n%s", maxPasses, lastErr, f.Status.Phase, describe(f))
	return 0
}

func isReady(f *redisv1alpha1.RedisSentinelFormation) bool {
	return f.Status.Phase == redisv1alpha1.PhaseReady && meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionReady) &&
		f.Status.ObservedGeneration == f.Generation
}

// describe is a status for failure messages.
func describe(f *redisv1alpha1.RedisSentinelFormation) string {
	var b strings.Builder
	for _, c := range f.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	for _, m := range f.Status.Members {
		fmt.Fprintf(&b, "  member %s %s %s %s/%s\n", m.Name, m.Address, m.InstanceState, m.Role, m.Health)
	}
	if f.Status.Master != nil {
		fmt.Fprintf(&b, "  master %s epoch %d\n", f.Status.Master.Member, f.Status.Master.ConfigEpoch)
	}
	if pf := f.Status.PlannedFailover; pf != nil {
		fmt.Fprintf(&b, "  planned failover from %s: %s\n", pf.From, pf.Phase)
	}
	return b.String()
}

// admin talks to the simulated servers as the operator's user, with the
// admin password the members accept now.
func (e *env) admin() redisadmin.Admin {
	return e.world.Admin("test", redisadmin.Credentials{Username: acl.AdminUser, Password: e.current(acl.Admin)})
}

// instances are the formation's Incus instances by member name (from
// their member key; the instances' own names are InstanceName's).
func (e *env) instances(f *redisv1alpha1.RedisSentinelFormation) map[string]incus.Instance {
	e.t.Helper()
	list, err := e.incus.ListInstances(context.Background(), keyFormationUID, string(f.UID))
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]incus.Instance{}
	for _, inst := range list {
		out[f.Name+"-"+inst.Config[keyMember]] = inst
	}
	return out
}

// testInstance is the Incus instance of the test formation's member index.
func testInstance(index int) string { return InstanceName(testNamespace, testName, index) }

func redisEndpoint(host string) endpoint.Endpoint { return endpoint.Endpoint{Host: host, Port: 6379} }
func sentinelEndpoint(host string) endpoint.Endpoint {
	return endpoint.Endpoint{Host: host, Port: 26379}
}

// masterOfWorld is the master the answering sentinels name with the
// newest config epoch, and that epoch (Sentinel's truth: newer epochs win).
func (e *env) masterOfWorld(f *redisv1alpha1.RedisSentinelFormation) (endpoint.Endpoint, int64) {
	e.t.Helper()
	a := e.admin()
	var master endpoint.Endpoint
	epoch := int64(-1)
	for _, inst := range e.instances(f) {
		if inst.IPv4 == "" {
			continue
		}
		st, err := a.SentinelMaster(context.Background(), sentinelEndpoint(inst.IPv4), f.Spec.MasterName)
		if err == nil && st.ConfigEpoch > epoch {
			master, epoch = st.Address, st.ConfigEpoch
		}
	}
	return master, epoch
}

// current is the password of credential c the operator uses now: the
// state Secret's, else the one the Secrets ask for.
func (e *env) current(c acl.Credential) string {
	if s := e.secret(testName + "-password-state"); s != nil {
		return string(s.Data[string(c)])
	}
	switch c {
	case acl.BackendPassword:
		return string(e.secret(redisSecretName).Data["password"])
	case acl.BackendSentinelPassword:
		return string(e.secret(sentinelSecretName).Data["password"])
	}
	if s := e.secret(testName + "-internal-credentials"); s != nil {
		return string(s.Data[string(c)])
	}
	return ""
}

// memberAtAddr names the member whose status address is host.
func memberAtAddr(f *redisv1alpha1.RedisSentinelFormation, host string) string {
	for _, m := range f.Status.Members {
		if m.Address == host {
			return m.Name
		}
	}
	return ""
}

func hostPort(e endpoint.Endpoint) string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// sortedKeys are a map's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// series counts the registry's series of the formation key, by metric.
func (e *env) series(key types.NamespacedName) map[string]int {
	e.t.Helper()
	out := map[string]int{}
	e.eachSeries(key, func(name string, _ float64) { out[name]++ })
	return out
}

// metricValue is the value of a counter or gauge series of the formation
// key (the sum over other labels); 0 when absent.
func (e *env) metricValue(metric string, key types.NamespacedName) float64 {
	e.t.Helper()
	var v float64
	e.eachSeries(key, func(name string, value float64) {
		if name == metric {
			v += value
		}
	})
	return v
}

// eachSeries calls fn with every series of the formation key: its metric
// name and, for counters and gauges, its value.
func (e *env) eachSeries(key types.NamespacedName, fn func(name string, value float64)) {
	e.t.Helper()
	families, err := e.registry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			var ns, formation bool
			for _, l := range m.GetLabel() {
				ns = ns || (l.GetName() == "namespace" && l.GetValue() == key.Namespace)
				formation = formation || (l.GetName() == "formation" && l.GetValue() == key.Name)
			}
			if ns && formation {
				fn(mf.GetName(), m.GetCounter().GetValue()+m.GetGauge().GetValue())
			}
		}
	}
}
