// Package chaos runs fault-injection drills against the operator on the
// real stack (make test-chaos): a kube-apiserver + etcd (envtest), the
// operator binary as its own process (so it can be SIGKILLed and
// restarted), and the real incusd with real containers running
// redis-server and redis-sentinel.
//
// Every drill runs with a writer client throughout (SET + WAIT 1 through a
// FailoverClient built from the connection Secret) and with direct write
// probes on every member (to catch two masters accepting writes at the
// same time), and ends with the invariant check: exactly one master, every
// acknowledged write readable, the formation Ready within a bound, status
// matching Sentinel. Administrative reads (INFO, SENTINEL MASTER, CLIENT
// LIST...) use the operator's admin ACL user (harness.AdminCredentials);
// writes and probes use the backend user of the connection Secret. The
// suite ends with a scan of the operator's logs (it runs at debug level),
// all events, every formation's status and every error the helpers saw: no
// password may appear in any of them, plain, JSON-escaped, URL-encoded or
// base64-encoded; the passwords are the suite's and every value the
// formations' own credential Secrets ever held.
//
// TestOperatorKillPoints (drill 7) SIGKILLs the operator at random points
// of four operations; TestRotationKillPoints (drill 8) SIGKILLs it at each
// step of two password rotations, at points read from its log and the API.
//
// The drills take 5 to 10 minutes; `make test` runs them once, through
// `make test-chaos` (its `test-go` leaves this package out). Under CI=true a
// missing component (envtest assets, incusd, the lab image) fails the suite
// instead of skipping it.
//
// Network traffic goes only to loopback and to the containers this suite
// creates on the rsfbr0 bridge; instances are named "chaos-<random>-<n>"
// ("chaoslp-<random>-<n>" in drill 8) and only those are ever stopped,
// deleted or exec'd into. Drill 5a
// restarts incusd itself (its containers keep running).
//
// RSF_CHAOS_REPORT names a file the result table (markdown) is written to;
// RSF_CHAOS_MANAGER an operator binary to use instead of building one from
// the working tree.
package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/engine"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

var (
	// suiteEngine is what the drills' formations run (harness.EngineVar).
	suiteEngine engine.Engine
	scheme      = runtime.NewScheme()
	env         *envtest.Environment
	cfg         *rest.Config
	// k8s reads the API server directly (no cache).
	k8s client.WithWatch
	// incusSrv is the real incusd (reconnected after drill 5a).
	incusSrv incus.Server
	// kubeconfigPath is the operator process's kubeconfig.
	kubeconfigPath string
	// managerBin is the operator binary built for the run.
	managerBin string
	// workDir holds the binary, kubeconfig, the API server's certificates
	// and the operator's log.
	workDir string
	// setupErr says why the stack is unusable (nil when it is).
	setupErr error
)

func TestMain(m *testing.M) {
	_ = clientgoscheme.AddToScheme(scheme)
	_ = redisv1alpha1.AddToScheme(scheme)
	_ = eventsv1.AddToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	var err error
	workDir, err = os.MkdirTemp("", "rsf-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	setupErr = setup()
	code := m.Run()
	if env != nil {
		_ = env.Stop()
	}
	if code == 0 {
		_ = os.RemoveAll(workDir)
	} else {
		fmt.Fprintf(os.Stderr, "chaos: the operator's log and the run's files are kept in %s\n", workDir)
	}
	os.Exit(code)
}

func setup() error {
	ctx := context.Background()
	var err error
	if suiteEngine, err = harness.Engine(); err != nil {
		return err
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		return &testenv.UnavailableError{Err: err}
	}
	// The API server's certificates live in a folder of ours, not one
	// envtest creates and removes: drill 5b stops and starts the API
	// server, and the operator's kubeconfig must stay valid across that.
	certDir := filepath.Join(workDir, "apiserver")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return err
	}
	env = &envtest.Environment{BinaryAssetsDirectory: assets}
	api := env.ControlPlane.GetAPIServer()
	api.CertDir = certDir
	api.StartTimeout, api.StopTimeout = 2*time.Minute, time.Minute
	if cfg, err = env.Start(); err != nil {
		env = nil
		return &testenv.UnavailableError{Err: fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)}
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(testenv.RepoRoot(), "config", "crd", "bases")},
		ErrorIfPathMissing: true,
	}); err != nil {
		return fmt.Errorf("installing the CRDs: %w", err)
	}
	if err := testenv.CreateLabHost(cfg); err != nil {
		return err
	}
	if k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	if incusSrv, err = incus.Connect(ctx, incus.Options{}); err != nil {
		return &testenv.UnavailableError{Err: fmt.Errorf("incusd (run `make lab-host`): %w", err)}
	}
	if _, ok, aerr := incusSrv.ImageProperties(ctx, suiteEngine.DefaultImage); aerr != nil || !ok {
		return &testenv.UnavailableError{Err: fmt.Errorf("image alias %s missing (run `make lab-host`): %v", suiteEngine.DefaultImage, aerr)}
	}
	kubeconfigPath = filepath.Join(workDir, "kubeconfig")
	if err := harness.WriteKubeconfig(cfg, kubeconfigPath); err != nil {
		return err
	}
	if managerBin = os.Getenv("RSF_CHAOS_MANAGER"); managerBin != "" {
		return nil
	}
	managerBin = filepath.Join(workDir, "manager")
	build := exec.Command("go", "build", "-o", managerBin, ".")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the operator: %v\n%s", err, out)
	}
	return nil
}

// stack skips (or fails under CI=true) when the stack is missing.
func stack(t *testing.T) {
	t.Helper()
	if setupErr != nil {
		testenv.Check(t, "the real stack (envtest API server + incusd + lab image)", setupErr)
	}
}
