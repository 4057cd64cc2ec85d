package controllers

import (
	"context"
	"flag"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
)

// forbidSecrets answers like the API server to an identity the
// namespace has not granted its Secrets while forbid is set.
type forbidSecrets struct {
	client.Reader
	forbid atomic.Bool
}

func (r *forbidSecrets) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok && r.forbid.Load() {
		return apierrors.NewForbidden(corev1.Resource("secrets"), key.Name, nil)
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

// TestSecretAccessForbidden: a formation whose namespace has not granted
// the operator its Secrets is blocked with the grant to make, creates
// nothing, and comes up once the grant is made.
func TestSecretAccessForbidden(t *testing.T) {
	e := standardEnv(t)
	r := e.newReconciler()
	r.Options.OperatorNamespace = "ops"
	reader := &forbidSecrets{Reader: e.client}
	reader.forbid.Store(true)
	r.APIReader = reader
	e.blockedPasses(r, testKey, 3)
	f := e.formation(testKey)
	c := meta.FindStatusCondition(f.Status.Conditions, redisv1alpha1.ConditionSecretsValid)
	grant := "kubectl -n apps create rolebinding rsf-formation-secrets --clusterrole=rsf-formation-secrets --serviceaccount=ops:rsf-controller-manager"
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonSecretAccessForbidden || !strings.Contains(c.Message, grant) {
		t.Fatalf("SecretsValid %+v, want False %s naming %q", c, ReasonSecretAccessForbidden, grant)
	}
	if f.Status.Phase != redisv1alpha1.PhaseBlocked {
		t.Fatalf("phase %s", f.Status.Phase)
	}
	if names := e.incus.Names(); len(names) != 0 || e.incus.Calls()[incusfake.CreateInstance] != 0 {
		t.Fatalf("instances created: %v", names)
	}
	for _, name := range []string{connectionSecretName(f), internalSecretName(f), passwordStateSecretName(f)} {
		if e.secret(name) != nil {
			t.Errorf("Secret %s created", name)
		}
	}
	if n := countEvents(e, ReasonSecretAccessForbidden); n != 1 {
		t.Fatalf("%d %s Events, want 1 (when the condition changed)", n, ReasonSecretAccessForbidden)
	}

	// The namespace admin grants the Secrets.
	reader.forbid.Store(false)
	e.converge(r, testKey, 40)
	if f = e.formation(testKey); !meta.IsStatusConditionTrue(f.Status.Conditions, redisv1alpha1.ConditionSecretsValid) || len(e.instances(f)) != 3 {
		t.Fatalf("after the grant: %s", describe(f))
	}
}

// TestFormationsOfSecret: a Secret triggers the formation owning it and
// those whose spec names it, in its namespace only.
func TestFormationsOfSecret(t *testing.T) {
	scheme := testScheme(t)
	cache, other, elsewhere := newFormation("cache"), newFormation("other"), newFormation("cache")
	other.Spec.Auth.PasswordSecretRef.Name = "other-pw"
	elsewhere.Namespace = "elsewhere"
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cache, other, elsewhere).
		WithIndex(&redisv1alpha1.RedisSentinelFormation{}, secretRefIndex, referencedSecrets).Build()
	r := &FormationReconciler{Client: c}
	owned := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "other-connection"}}
	if err := ctrl.SetControllerReference(other, owned, scheme); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		secret *metav1.PartialObjectMetadata
		want   []string
	}{
		{"a password Secret both name", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: sentinelSecretName}}, []string{"apps/cache", "apps/other"}},
		{"a password Secret one names", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "other-pw"}}, []string{"apps/other"}},
		{"an owned Secret", owned, []string{"apps/other"}},
		{"an unrelated Secret", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "tls"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, req := range r.formationsOf(context.Background(), tc.secret) {
				got = append(got, req.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("formations %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSecretWatches: a namespace is watched from the first formation that
// needs it until the last one is released, Secret changes there are
// reported, and a watch the namespace forbids is dropped (the next pass
// that can read the Secrets watches again).
func TestSecretWatches(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	_ = metav1.AddMetaToScheme(scheme)
	secretMeta := func(ns, name string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"password":"c2VjcmV0"}}`}}}
	}
	mc := metadatafake.NewSimpleMetadataClient(scheme, secretMeta("apps", "redis-pw"), secretMeta("team", "unrelated"))
	var forbidden atomic.Bool
	mc.PrependReactor("list", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
		if forbidden.Load() {
			return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "", nil)
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[string]*metav1.PartialObjectMetadata{}
	w := newSecretWatches(ctx, mc, logr.Discard(), func(s *metav1.PartialObjectMetadata) {
		mu.Lock()
		defer mu.Unlock()
		seen[s.Namespace+"/"+s.Name] = s
	})
	sawSecret := func(key string) bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := seen[key]
		return ok
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s", what)
			}
		}
	}
	watching := func(ns string) bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, ok := w.byNS[ns]
		return ok
	}
	a, b := types.NamespacedName{Namespace: "apps", Name: "a"}, types.NamespacedName{Namespace: "apps", Name: "b"}
	w.ensure(a)
	w.ensure(b)
	waitFor("the namespace's existing Secret reported", func() bool { return sawSecret("apps/redis-pw") })
	mu.Lock()
	if s := seen["apps/redis-pw"]; len(s.Annotations) != 0 {
		t.Errorf("a Secret's annotations were kept in memory: %v", s.Annotations)
	}
	mu.Unlock()
	if err := mc.Tracker().Add(secretMeta("apps", "a-connection")); err != nil {
		t.Fatal(err)
	}
	waitFor("a new Secret reported", func() bool { return sawSecret("apps/a-connection") })
	if sawSecret("team/unrelated") {
		t.Error("a Secret of a namespace without formations was reported")
	}
	w.release(a)
	if !watching("apps") {
		t.Fatal("the namespace is no longer watched while formation b is there")
	}
	w.release(b)
	if watching("apps") {
		t.Fatal("the namespace is still watched after its last formation")
	}

	forbidden.Store(true)
	w.ensure(types.NamespacedName{Namespace: "team", Name: "c"})
	waitFor("a forbidden namespace's watch dropped", func() bool { return !watching("team") })
	if sawSecret("team/unrelated") {
		t.Error("a Secret of a forbidden namespace was reported")
	}
	forbidden.Store(false)
	w.ensure(types.NamespacedName{Namespace: "team", Name: "c"})
	waitFor("the namespace watched again once readable", func() bool { return sawSecret("team/unrelated") })
}

func TestOptionsFlagsAndManager(t *testing.T) {
	cases := []struct {
		name       string
		args       []string
		env        string
		namespaces []string
		operator   string
	}{
		{"defaults", nil, "", nil, DefaultOperatorNamespace},
		{"pod namespace", nil, "ops", nil, "ops"},
		{"flags", []string{"--watch-namespaces", " apps, team ,", "--operator-namespace", "infra"}, "ops", []string{"apps", "team"}, "infra"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.env)
			var o Options
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			o.BindFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.WatchNamespaces, tc.namespaces) || o.OperatorNamespace != tc.operator {
				t.Fatalf("namespaces %q operator %q, want %q %q", o.WatchNamespaces, o.OperatorNamespace, tc.namespaces, tc.operator)
			}
			mo := o.ManagerOptions(ctrl.Options{})
			if got := slices.Sorted(maps.Keys(mo.Cache.DefaultNamespaces)); !slices.Equal(got, tc.namespaces) {
				t.Errorf("cache namespaces %v, want %v", got, tc.namespaces)
			}
			if mo.Client.Cache == nil || !slices.ContainsFunc(mo.Client.Cache.DisableFor, func(o client.Object) bool { _, ok := o.(*corev1.Secret); return ok }) {
				t.Error("Secrets may be read through the cache: that starts a cluster-wide Secret informer")
			}
		})
	}
}
