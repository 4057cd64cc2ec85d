package controllers

import (
	"cmp"
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
)

// labHost is the lab's host as `make lab` creates it (the fake client
// applies no schema defaults, so they are spelled out).
func labHost(name string, isDefault bool) *redisv1alpha1.IncusHost {
	return &redisv1alpha1.IncusHost{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: redisv1alpha1.IncusHostSpec{
			Default:           isDefault,
			NamespaceSelector: &metav1.LabelSelector{},
			Allowed: redisv1alpha1.IncusHostAllowlist{
				Projects: []string{"default"}, Profiles: []string{"rsf-redis"}, Networks: []string{"rsfbr0"},
				StoragePools: []string{"rsf"}, Images: []string{"rsf-redis7-bookworm-v1", "rsf-valkey8-bookworm-v1"},
			},
		},
	}
}

// labHostObjects are what every controller test world has: the default
// host and the formation's namespace.
func labHostObjects() []client.Object {
	return []client.Object{labHost("local", true), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}}
}

func TestCheckAllowed(t *testing.T) {
	host := labHost("local", true)
	host.Spec.Allowed.Targets = []string{"node1", "node2", "node3"}
	base := newFormation(testName).Spec.Incus
	cases := []struct {
		name   string
		mutate func(*redisv1alpha1.IncusSpec)
		field  string // "" when allowed
	}{
		{"the lab's defaults", func(*redisv1alpha1.IncusSpec) {}, ""},
		{"allowed targets", func(s *redisv1alpha1.IncusSpec) { s.Targets = []string{"node3", "node1", "node2"} }, ""},
		{"project", func(s *redisv1alpha1.IncusSpec) { s.Project = "other-team" }, "spec.incus.project"},
		{"network", func(s *redisv1alpha1.IncusSpec) { s.Network = "incusbr0" }, "spec.incus.network"},
		{"storage pool", func(s *redisv1alpha1.IncusSpec) { s.StoragePool = "default" }, "spec.incus.storagePool"},
		{"image", func(s *redisv1alpha1.IncusSpec) { s.Image = "images:debian/12" }, "spec.incus.image"},
		{"a privileged profile beside an allowed one", func(s *redisv1alpha1.IncusSpec) { s.Profiles = []string{"rsf-redis", "privileged"} }, "spec.incus.profiles"},
		{"a target", func(s *redisv1alpha1.IncusSpec) { s.Targets = []string{"node1", "node2", "node9"} }, "spec.incus.targets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := *base.DeepCopy()
			c.mutate(&spec)
			rf := checkAllowed(host, spec, cmp.Or(spec.Image, "rsf-redis7-bookworm-v1"))
			switch {
			case c.field == "" && rf != nil:
				t.Fatalf("refused: %v", rf)
			case c.field != "" && (rf == nil || rf.reason != ReasonNotAllowedByHost || !strings.HasPrefix(rf.message, c.field+":")):
				t.Fatalf("want a refusal naming %s, got %v", c.field, rf)
			}
		})
	}
	host.Spec.Allowed.Targets = nil
	spec := *base.DeepCopy()
	spec.Targets = []string{"node1"}
	if rf := checkAllowed(host, spec, spec.Image); rf == nil || !strings.Contains(rf.message, "allows none") {
		t.Fatalf("targets on a host that allows none: %v", rf)
	}
}

func TestEffectiveLimits(t *testing.T) {
	limits := func(cpu, mem string) redisv1alpha1.ContainerLimits {
		return redisv1alpha1.ContainerLimits{CPU: cpu, Memory: mem}
	}
	cases := []struct {
		name                string
		defaults, max, asks redisv1alpha1.ContainerLimits
		want                redisv1alpha1.ContainerLimits
		refusedField        string
	}{
		{"no defaults, no cap", limits("", ""), limits("", ""), limits("", ""), limits("", ""), ""},
		{"defaults fill what is unset", limits("2", "1GiB"), limits("", ""), limits("", "512MiB"), limits("2", "512MiB"), ""},
		{"at the cap", limits("", ""), limits("4", "2GiB"), limits("4", "2048MiB"), limits("4", "2048MiB"), ""},
		{"units compared, not strings", limits("", ""), limits("", "2GB"), limits("", "1900MB"), limits("", "1900MB"), ""},
		{"memory above the cap", limits("", ""), limits("", "2GiB"), limits("", "3GiB"), limits("", "3GiB"), "spec.incus.limits.memory"},
		{"decimal above binary cap", limits("", ""), limits("", "1GiB"), limits("", "1100MB"), limits("", "1100MB"), "spec.incus.limits.memory"},
		{"cpu above the cap", limits("", ""), limits("2", ""), limits("3", ""), limits("3", ""), "spec.incus.limits.cpu"},
		{"no limit under a cap", limits("", ""), limits("", "2GiB"), limits("", ""), limits("", ""), "spec.incus.limits.memory"},
		{"a default under the cap", limits("", "1GiB"), limits("", "2GiB"), limits("", ""), limits("", "1GiB"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			host := labHost("local", true)
			host.Spec.DefaultLimits, host.Spec.MaxLimits = c.defaults, c.max
			got, rf := effectiveLimits(host, c.asks)
			if c.refusedField != "" {
				if rf == nil || !strings.HasPrefix(rf.message, c.refusedField) {
					t.Fatalf("want a refusal naming %s, got %v", c.refusedField, rf)
				}
				return
			}
			if rf != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, rf, c.want)
			}
		})
	}
}

func TestAdmits(t *testing.T) {
	ns := func(labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: labels}}
	}
	host := labHost("shared", false)
	host.Spec.NamespaceSelector = nil
	if admits(host, ns(nil)) == nil {
		t.Fatal("a host without a namespace selector admitted a namespace")
	}
	host.Spec.NamespaceSelector = &metav1.LabelSelector{}
	if rf := admits(host, ns(nil)); rf != nil {
		t.Fatalf("{} refused: %v", rf)
	}
	host.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"redis.incusops.io/host-shared": "yes"}}
	if rf := admits(host, ns(map[string]string{"team": "a"})); rf == nil || rf.reason != ReasonNamespaceNotAdmitted {
		t.Fatalf("unlabelled namespace: %v", rf)
	}
	if rf := admits(host, ns(map[string]string{"redis.incusops.io/host-shared": "yes"})); rf != nil {
		t.Fatalf("labelled namespace refused: %v", rf)
	}
}

// TestHostRefusalCreatesNothingUntilFixed: a formation asking for a profile
// its host does not allow is blocked with the field named and an Event, and
// nothing is created; fixing the spec brings it up.
func TestHostRefusalCreatesNothingUntilFixed(t *testing.T) {
	e := standardEnv(t, func(f *redisv1alpha1.RedisSentinelFormation) {
		f.Spec.Incus.Profiles = []string{"rsf-redis", "privileged"}
	})
	r := e.newReconciler()
	for range 3 {
		e.advanceFor(e.reconcile(r, testKey))
	}
	f := e.formation(testKey)
	cond := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded)
	if f.Status.Phase != redisv1alpha1.PhaseBlocked || cond == nil || cond.Reason != ReasonNotAllowedByHost || !strings.Contains(cond.Message, "spec.incus.profiles") {
		t.Fatalf("phase %s, Degraded %+v", f.Status.Phase, cond)
	}
	if names := e.incus.Names(); len(names) != 0 {
		t.Fatalf("instances created while refused: %v", names)
	}
	if !strings.Contains(strings.Join(e.recorder.events(), "\n"), ReasonNotAllowedByHost) {
		t.Errorf("no Event says %s: %v", ReasonNotAllowedByHost, e.recorder.events())
	}
	e.updateFormation(testKey, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Incus.Profiles = []string{"rsf-redis"} })
	e.converge(r, testKey, 40)
	if got := e.formation(testKey).Status.IncusHost; got != "local" {
		t.Errorf("status.incusHost %q, want local", got)
	}
}

// TestFormationStaysOnItsHost: the host a formation was first placed on is
// kept when another host is marked default, and a formation without a
// default host is blocked with a clear reason.
func TestFormationStaysOnItsHost(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	e.converge(r, testKey, 40)
	ctx := context.Background()
	local := &redisv1alpha1.IncusHost{}
	if err := e.client.Get(ctx, client.ObjectKey{Name: "local"}, local); err != nil {
		t.Fatal(err)
	}
	local.Spec.Default = false
	if err := e.client.Update(ctx, local); err != nil {
		t.Fatal(err)
	}
	restricted := labHost("elsewhere", true)
	restricted.Spec.Allowed.Profiles = []string{"other"}
	if err := e.client.Create(ctx, restricted); err != nil {
		t.Fatal(err)
	}
	e.advanceFor(e.reconcile(r, testKey))
	if f := e.formation(testKey); !isReady(f) || f.Status.IncusHost != "local" {
		t.Fatalf("after another host became default: %s, host %q", describe(f), f.Status.IncusHost)
	}

	// A new formation with no default host is refused.
	if err := e.client.Delete(ctx, restricted); err != nil {
		t.Fatal(err)
	}
	other := newFormation("other")
	if err := e.client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(other)
	e.advanceFor(e.reconcile(r, key))
	f := e.formation(key)
	if cond := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded); cond == nil || cond.Reason != ReasonNoDefaultIncusHost {
		t.Fatalf("no default host: %s", describe(f))
	}
}

// TestHostDefaultLimitsReachTheContainers: limits the formation leaves
// unset come from its host.
func TestHostDefaultLimitsReachTheContainers(t *testing.T) {
	e := standardEnv(t, func(f *redisv1alpha1.RedisSentinelFormation) { f.Spec.Incus.Limits.CPU = "1" })
	host := &redisv1alpha1.IncusHost{}
	ctx := context.Background()
	if err := e.client.Get(ctx, client.ObjectKey{Name: "local"}, host); err != nil {
		t.Fatal(err)
	}
	host.Spec.DefaultLimits = redisv1alpha1.ContainerLimits{CPU: "2", Memory: "768MiB"}
	if err := e.client.Update(ctx, host); err != nil {
		t.Fatal(err)
	}
	e.converge(e.newReconciler(), testKey, 40)
	for name, inst := range e.instances(e.formation(testKey)) {
		if inst.Config["limits.cpu"] != "1" || inst.Config["limits.memory"] != "768MiB" {
			t.Errorf("%s limits cpu %q memory %q, want the formation's 1 and the host's 768MiB", name, inst.Config["limits.cpu"], inst.Config["limits.memory"])
		}
	}
}

func TestIncusHostStatus(t *testing.T) {
	e := newEnv(t)
	fake := incusfake.New()
	fake.ServerInfo.Version = "6.0.4"
	fake.SetCluster(incus.ClusterMember{Name: "node1"}, incus.ClusterMember{Name: "node2"})
	r := &IncusHostReconciler{Client: e.client, APIReader: e.client, Incus: fake, Options: e.opts}
	ctx := ctrl.LoggerInto(context.Background(), ctrl.Log)
	key := client.ObjectKey{Name: "local"}
	host := func() *redisv1alpha1.IncusHost {
		h := &redisv1alpha1.IncusHost{}
		if err := e.client.Get(ctx, key, h); err != nil {
			t.Fatal(err)
		}
		return h
	}

	if res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil || res.RequeueAfter != hostPoll {
		t.Fatalf("reconcile: %v, %+v", err, res)
	}
	h := host()
	if !meta.IsStatusConditionTrue(h.Status.Conditions, redisv1alpha1.HostConditionReachable) || h.Status.ServerVersion != "6.0.4" || !h.Status.Clustered || len(h.Status.ClusterMembers) != 2 {
		t.Fatalf("status %+v", h.Status)
	}

	var cond *metav1.Condition
	for err, reason := range map[error]string{
		incus.ErrServerCertMismatch: ReasonIncusServerCertMismatch,
		incus.ErrInvalidRemote:      ReasonIncusHostRemoteInvalid,
		incus.ErrNotTrusted:         ReasonIncusClientNotTrusted,
	} {
		fake.SetFail(incusfake.Info, err)
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
			t.Fatal(err)
		}
		cond = meta.FindStatusCondition(host().Status.Conditions, redisv1alpha1.HostConditionReachable)
		if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != reason {
			t.Fatalf("%v: want Reachable=False %s, got %+v", err, reason, cond)
		}
	}
	if fake.Calls()["Forget"] == 0 {
		t.Error("a failed read did not drop the cached connection")
	}

	fake.SetFail(incusfake.Info, errors.New("connection refused"))
	remote := host()
	remote.Spec.Remote = &redisv1alpha1.IncusHostRemote{URL: "https://127.0.0.1:8443", ClientCertificateSecretName: "absent", ServerCertificate: "pem"}
	if err := e.client.Update(ctx, remote); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	cond = meta.FindStatusCondition(host().Status.Conditions, redisv1alpha1.HostConditionReachable)
	if cond == nil || cond.Reason != ReasonIncusHostSecretInvalid || !strings.Contains(cond.Message, "does not exist") {
		t.Fatalf("missing client certificate Secret: %+v", cond)
	}
}

// TestHostCertificateProblemsBlock: a certificate an administrator must fix
// blocks the formation (polled, and retriggered by a change of its host)
// instead of retrying the handshake in a tight loop; an unreachable server
// is retried with backoff.
func TestHostCertificateProblemsBlock(t *testing.T) {
	cases := []struct {
		err     error
		reason  string
		blocked bool
	}{
		{incus.ErrServerCertMismatch, ReasonIncusServerCertMismatch, true},
		{incus.ErrNotTrusted, ReasonIncusClientNotTrusted, true},
		{incus.ErrInvalidRemote, ReasonIncusHostRemoteInvalid, true},
		{errors.New("dial tcp 127.0.0.1:8443: connection refused"), ReasonIncusUnreachable, false},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			e := standardEnv(t)
			e.incus.SetFail(incusfake.Connect, c.err)
			res, err := e.reconcile(e.newReconciler(), testKey)
			f := e.formation(testKey)
			cond := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionDegraded)
			if cond == nil || cond.Reason != c.reason {
				t.Fatalf("Degraded %+v, want reason %s", cond, c.reason)
			}
			if blocked := err == nil && f.Status.Phase == redisv1alpha1.PhaseBlocked && res.RequeueAfter > 0; blocked != c.blocked {
				t.Fatalf("result %+v, %v; want blocked=%v", res, err, c.blocked)
			}
		})
	}
}

// TestHostInUseIsKept: a deleted host stays while a formation lives on it,
// says which, and goes once that formation is gone.
func TestHostInUseIsKept(t *testing.T) {
	e := standardEnv(t)
	e.converge(e.newReconciler(), testKey, 40)
	hosts := &IncusHostReconciler{Client: e.client, APIReader: e.client, Incus: e.incus, Options: e.opts}
	ctx := ctrl.LoggerInto(context.Background(), ctrl.Log)
	key := client.ObjectKey{Name: "local"}
	if _, err := hosts.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	host := &redisv1alpha1.IncusHost{}
	if err := e.client.Get(ctx, key, host); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Delete(ctx, host); err != nil {
		t.Fatal(err)
	}
	res, err := hosts.Reconcile(ctx, ctrl.Request{NamespacedName: key})
	if err != nil || res.RequeueAfter != hostInUsePoll {
		t.Fatalf("deleting a host in use: %+v, %v", res, err)
	}
	if err := e.client.Get(ctx, key, host); err != nil {
		t.Fatalf("the host in use is gone: %v", err)
	}
	inUse := meta.FindStatusCondition(host.Status.Conditions, redisv1alpha1.HostConditionInUse)
	if inUse == nil || inUse.Status != metav1.ConditionTrue || !strings.Contains(inUse.Message, testNamespace+"/"+testName) {
		t.Fatalf("InUse %+v", inUse)
	}

	f := e.formation(testKey)
	if err := e.client.Delete(ctx, f); err != nil {
		t.Fatal(err)
	}
	e.advanceFor(e.reconcile(e.newReconciler(), testKey))
	if _, err := hosts.Reconcile(ctx, ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Get(ctx, key, host); !apierrors.IsNotFound(err) {
		t.Fatalf("the host outlived its last formation: %v", err)
	}
}
