// Package bench measures the operator against its targets (make bench):
// apply -> Ready, failover drills, steady-state calls per reconcile, the
// operator process's CPU and memory on real containers, write errors and
// gaps during password rotations, TLS next to plaintext, Valkey next to
// Redis with the live migration from one to the other, and controller
// scale on the fake Incus backend.
//
// Everything here is a Go benchmark, run with -benchtime 1x: each
// Benchmark function runs once and reports its figures with b.ReportMetric
// (hack/benchtable turns them into docs/benchmarks.md). Nothing asserts a
// timing, so a slow machine never fails a run. Without -test.bench the
// package sets up nothing, so `make test` only runs its small unit tests.
//
// The real-stack benchmarks need what test/e2e needs (envtest assets, incusd
// with the lab image, profile, bridge and pool; BenchmarkEngines also the
// Valkey lab image). Each benchmark starts its own manager, restricted to
// its own namespaces (ApplyToReady and
// OperatorProcess: the operator binary as its own process, watching every
// namespace), and deletes its formations (and so their containers) before
// it stops it; names start with "bench-" ("benchlp-" for the password
// rotations) and a random suffix. ApplyToReady also launches containers
// without the operator ("bench-floor-" names, marked user.rsf-bench.floor)
// and creates the dir storage pool rsf-bench-dir for its run. Network
// traffic goes only to loopback and to the containers these benchmarks
// create on rsfbr0; the fake backend dials nothing.
//
// Tunables (environment): BENCH_APPLY_RUNS (5), BENCH_APPLY_PARALLEL (5),
// BENCH_REBUILD_RUNS (3), BENCH_DRILLS (5), BENCH_STEADY (60s),
// BENCH_PROC_FORMATIONS (10), BENCH_PROC_WINDOW (60s), BENCH_ROTATION_GRACE
// (30s, the operator's --password-grace in BenchmarkPasswordRotation),
// BENCH_ROTATION_RELOAD (5s, how often its reloading client re-reads the
// connection Secret), BENCH_TLS_RTT (20000 round trips per variant),
// BENCH_TLS_FRESH (10 fresh clients per variant), BENCH_TLS_DRILLS (5 per
// variant and path), BENCH_ENGINE_APPLY (3 creations per engine),
// BENCH_ENGINE_DRILLS (5 per engine), BENCH_ENGINE_MIGRATIONS (3),
// BENCH_SCALE_N (500), BENCH_SCALE_TIMEOUT (30m), RSF_BENCH_MANAGER (the
// operator binary; built into a temp dir when unset), BENCH_DEBUG (log the
// in-process manager's latest lines).
package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// Lab names created by the lab-host playbook.
const (
	labImage   = "rsf-redis7-bookworm-v1"
	labProfile = "rsf-redis"
	labNetwork = "rsfbr0"
	labPool    = "rsf"
)

var (
	scheme = runtime.NewScheme()
	cfg    *rest.Config
	// k8s reads and writes the API server directly (no cache).
	k8s client.WithWatch
	// envErr: the API server could not be started.
	envErr error
	// incusSrv is the real incusd; incusErr says why it is unusable.
	incusSrv incus.Server
	incusErr error
	// logs keeps the latest lines the in-process managers logged.
	logs = newRing(300)
)

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run()) // unit tests only: no API server, no Incus
	}
	_ = clientgoscheme.AddToScheme(scheme)
	_ = redisv1alpha1.AddToScheme(scheme)
	logger := zapr.NewLogger(zap.New(logs.core()))
	ctrl.SetLogger(logger)
	redisadmin.RouteGoRedisLogs(logger.WithName("go-redis"))

	ctx := context.Background()
	env, c, err := testenv.Start()
	if err == nil {
		cfg = c
		k8s, err = client.NewWithWatch(c, client.Options{Scheme: scheme})
	}
	envErr = err
	if err == nil {
		incusSrv, incusErr = incus.Connect(ctx, incus.Options{})
		if incusErr != nil {
			incusErr = &testenv.UnavailableError{Err: fmt.Errorf("incusd (run `make lab-host`): %w", incusErr)}
		} else if _, ok, aerr := incusSrv.ImageProperties(ctx, labImage); aerr != nil || !ok {
			incusErr = &testenv.UnavailableError{Err: fmt.Errorf("image alias %s missing (run `make lab-host`): %v", labImage, aerr)}
		}
	}
	code := m.Run()
	if env != nil {
		_ = env.Stop()
	}
	os.Exit(code)
}

// needAPI skips or fails (CI=true) without the envtest API server.
func needAPI(b *testing.B) {
	b.Helper()
	if envErr != nil {
		testenv.Check(b, "the envtest API server", envErr)
	}
}

// needStack also needs the real incusd with the lab image.
func needStack(b *testing.B) {
	b.Helper()
	needAPI(b)
	if incusErr != nil {
		testenv.Check(b, "incusd with the lab image", incusErr)
	}
}
