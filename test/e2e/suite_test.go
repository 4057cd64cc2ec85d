// Package e2e runs the operator against the real stack: a kube-apiserver +
// etcd (envtest), the manager in-process, a real incusd with real containers
// running redis-server and redis-sentinel.
//
// Most tests run in parallel, each on formations, namespaces and hosts of
// its own. Those that time the operator (the failover drills, the
// switchover, the cluster's evacuation, Sentinel settings, the Prometheus
// alerts, the Incus stop event) do not call t.Parallel: Go runs them
// first, one at a time, with the machine to themselves. (In parallel, on a
// fresh machine's make test, the evacuation's longest write gap was 7.6 s,
// over the 5 s down-after it must stay under.)
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// labProfile is the profile the lab-host playbook creates.
const labProfile = "rsf-redis"

// The operator's namespace (IncusHosts' client certificate Secrets live
// there) and identity: its shipped service account.
const (
	operatorNamespace = controllers.DefaultOperatorNamespace
	operatorUser      = "system:serviceaccount:" + operatorNamespace + ":" + controllers.ServiceAccountName
)

// resyncPeriod is the suite operator's --resync-period.
const resyncPeriod = 5 * time.Second

var (
	k8s client.Client
	cfg *rest.Config
	// managerCfg is the operator's identity.
	managerCfg *rest.Config
	// metricsURL is the manager's secure metrics endpoint.
	metricsURL string
	incusSrv   incus.Server
	setupErr   error
	// logs collects the manager's log lines for the secret-leak scan.
	logs = &logBuffer{}
	// suiteEngine is what the suite's formations run (harness.EngineVar),
	// and labImage its lab image.
	suiteEngine engine.Engine
	labImage    string
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		env *envtest.Environment
		c   *rest.Config
		err error
	)
	suiteEngine, err = harness.Engine()
	labImage = suiteEngine.DefaultImage
	if err == nil {
		env, c, err = testenv.Start()
	}
	if err == nil {
		cfg = c
		err = startManager(ctx, env, c)
	}
	if err == nil {
		incusSrv, err = incus.Connect(ctx, incus.Options{})
		if err != nil {
			err = &testenv.UnavailableError{Err: fmt.Errorf("incusd (run `make lab-host`): %w", err)}
		}
	}
	if err == nil {
		if _, ok, aerr := incusSrv.ImageProperties(ctx, labImage); aerr != nil || !ok {
			err = &testenv.UnavailableError{Err: fmt.Errorf("image alias %s missing (run `make lab-host`): %v", labImage, aerr)}
		}
	}
	setupErr = err
	code := m.Run()
	cancel()
	if env != nil {
		_ = env.Stop()
	}
	os.Exit(code)
}

// startManager runs the manager in-process as the operator's service account
// holding the shipped RBAC (config/rbac) and nothing else, with the
// shipped manager settings (Options.ManagerOptions, secure metrics), so every
// e2e test also proves that RBAC is enough. Each test's namespace is opened
// to it the way a namespace admin does (grantSecrets).
func startManager(ctx context.Context, env *envtest.Environment, c *rest.Config) error {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = redisv1alpha1.AddToScheme(scheme)
	logger := zap.New(logs.core(), zap.AddCaller())
	ctrl.SetLogger(zapr.NewLogger(logger))
	// Tests read the API server directly, not the manager's cache.
	var err error
	if k8s, err = client.New(c, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if managerCfg, err = managerUser(ctx, env, c); err != nil {
		return err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	metricsURL = fmt.Sprintf("https://127.0.0.1:%d/metrics", port)
	opts := controllers.Options{MaxConcurrentReconciles: 4, ResyncPeriod: resyncPeriod, RedisTimeout: time.Second, PasswordGrace: passwordGrace, MaxRetryDelay: 5 * time.Second,
		OperatorNamespace: operatorNamespace}
	mgr, err := ctrl.NewManager(managerCfg, opts.ManagerOptions(ctrl.Options{
		Scheme:                 scheme,
		Metrics:                controllers.MetricsServer(fmt.Sprintf("127.0.0.1:%d", port), true),
		HealthProbeBindAddress: "0",
	}))
	if err != nil {
		return err
	}
	if err := controllers.SetupWithManager(mgr, opts, controllers.Dependencies{}); err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return fmt.Errorf("manager cache did not sync")
	}
	return nil
}

// managerUser applies the shipped RBAC (config/rbac, in the operator's
// namespace) and returns the config of a user authenticated as the
// operator's service account.
func managerUser(ctx context.Context, env *envtest.Environment, admin *rest.Config) (*rest.Config, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}
	if err := k8s.Create(ctx, ns); err != nil {
		return nil, err
	}
	objs, err := testenv.Manifests("rbac")
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if err := k8s.Create(ctx, obj); err != nil {
			return nil, fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	user, err := env.AddUser(envtest.User{Name: operatorUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace}}, admin)
	if err != nil {
		return nil, err
	}
	return user.Config(), nil
}

// grantSecrets opens namespace ns to the operator as a namespace admin
// does: a RoleBinding of the operator's service account to the shipped
// rsf-formation-secrets ClusterRole.
func grantSecrets(t *testing.T, ns string) {
	t.Helper()
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: controllers.FormationSecretsRole, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: controllers.FormationSecretsRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: controllers.ServiceAccountName, Namespace: operatorNamespace}},
	}
	if err := k8s.Create(context.Background(), binding); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
}

// stack returns the API client, or fails/skips when the stack is missing.
func stack(t *testing.T) client.Client {
	t.Helper()
	if setupErr != nil {
		testenv.Check(t, "the real stack (envtest API server + incusd)", setupErr)
	}
	return k8s
}

// uniqueName is a formation name no other run on this daemon uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%04x", prefix, rand.IntN(0xffff))
}

// formationOpts tweak a test formation before it is created.
type formationOpts struct {
	environment  redisv1alpha1.Environment
	password     string
	sentinelPass string
	skipSecrets  bool
	// withoutGrant: the namespace does not open its Secrets to the operator.
	withoutGrant bool
	// namespace is the formation's namespace ("": one named like it).
	namespace string
	mutate    func(*redisv1alpha1.RedisSentinelFormation)
}

// newFormation creates a namespace, the password Secrets and a formation,
// and deletes the formation (and so its instances) at cleanup.
func newFormation(t *testing.T, prefix string, o formationOpts) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	return newNamedFormation(t, uniqueName(prefix), o)
}

// newNamedFormation is newFormation with a given name, which is also the
// namespace's unless o.namespace names one (created unless it exists, and
// opened to the operator unless o.withoutGrant).
func newNamedFormation(t *testing.T, name string, o formationOpts) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	c := stack(t)
	ctx := context.Background()
	if o.namespace == "" {
		o.namespace = name
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.namespace}}
	if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	if !o.withoutGrant {
		grantSecrets(t, o.namespace)
	}
	if o.password == "" {
		o.password = "e2e-" + strings.Repeat("x7Kq", 6)
	}
	if o.sentinelPass == "" {
		o.sentinelPass = "e2e-s-" + strings.Repeat("p3Wz", 6)
	}
	if !o.skipSecrets {
		createSecret(t, o.namespace, "redis-pw", "password", o.password)
		createSecret(t, o.namespace, "sentinel-pw", "password", o.sentinelPass)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("RSF_E2E_KEEP_LOGS") != "" {
			path := filepath.Join(os.TempDir(), "rsf-e2e-"+name+".log")
			if err := os.WriteFile(path, []byte(logs.String()), 0o600); err == nil {
				t.Logf("operator log written to %s", path)
			}
		}
	})
	f := &redisv1alpha1.RedisSentinelFormation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.namespace}}
	f.Spec.Auth.PasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "redis-pw", Key: "password"}
	f.Spec.Auth.SentinelPasswordSecretRef = redisv1alpha1.SecretKeyReference{Name: "sentinel-pw", Key: "password"}
	f.Spec.Environment = o.environment
	f.Spec.Engine = redisv1alpha1.Engine(suiteEngine.Name)
	if o.mutate != nil {
		o.mutate(f)
	}
	if err := c.Create(ctx, f); err != nil {
		t.Fatalf("creating formation: %v", err)
	}
	t.Cleanup(func() { deleteFormation(t, f) })
	return f
}

func createSecret(t *testing.T, ns, name, key, value string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{key: value}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// deleteFormation deletes the resource and waits for the finalizer to have
// removed its instances.
func deleteFormation(t *testing.T, f *redisv1alpha1.RedisSentinelFormation) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Delete(ctx, f); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting formation: %v", err)
		return
	}
	eventually(t, 2*time.Minute, "formation and its instances deleted", func() (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(f), &redisv1alpha1.RedisSentinelFormation{})
		if err == nil {
			return false, "resource still present"
		}
		owned, lerr := incusSrv.ListInstances(ctx, "user.rsf.formation-uid", string(f.UID))
		if lerr != nil || len(owned) > 0 {
			return false, fmt.Sprintf("%d instances left (%v)", len(owned), lerr)
		}
		return true, ""
	})
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	harness.Eventually(t, timeout, what, cond, func() string { return "operator log tail:\n" + logs.tail(30) })
}

// get reads the formation's current state.
func get(t testing.TB, f *redisv1alpha1.RedisSentinelFormation) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	cur := &redisv1alpha1.RedisSentinelFormation{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(f), cur); err != nil {
		t.Fatal(err)
	}
	return cur
}

// waitCondition waits for a condition with the given status (and reason, if
// not empty) and returns the formation.
func waitCondition(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, timeout time.Duration, typ string, status metav1.ConditionStatus, reason string) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	var cur *redisv1alpha1.RedisSentinelFormation
	eventually(t, timeout, fmt.Sprintf("%s=%s %s", typ, status, reason), func() (bool, string) {
		cur = get(t, f)
		c := meta.FindStatusCondition(cur.Status.Conditions, typ)
		if c == nil {
			return false, "no condition; phase " + string(cur.Status.Phase)
		}
		return c.Status == status && (reason == "" || c.Reason == reason), fmt.Sprintf("%s=%s %s: %s (phase %s)", typ, c.Status, c.Reason, c.Message, cur.Status.Phase)
	})
	return cur
}

func waitReady(t *testing.T, f *redisv1alpha1.RedisSentinelFormation, timeout time.Duration) *redisv1alpha1.RedisSentinelFormation {
	t.Helper()
	return waitCondition(t, f, timeout, redisv1alpha1.ConditionReady, metav1.ConditionTrue, "")
}

// runIn runs a shell command in an instance and fails t when it fails.
func runIn(t *testing.T, instance, script string) {
	t.Helper()
	res, err := incusSrv.Exec(context.Background(), instance, []string{"sh", "-ec", script})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("%s: %q: exit %d, %v: %s", instance, script, res.ExitCode, err, res.Stderr)
	}
}
