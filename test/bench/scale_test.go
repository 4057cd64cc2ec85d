package bench

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/controllers"
	"github.com/incusops/redis-sentinel-operator/internal/incus"
	"github.com/incusops/redis-sentinel-operator/internal/incus/incusfake"
	"github.com/incusops/redis-sentinel-operator/internal/metrics"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin"
	"github.com/incusops/redis-sentinel-operator/internal/redisadmin/redisfake"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
)

// BenchmarkScaleFake creates BENCH_SCALE_N (500) formations with their
// Secrets through the envtest API server and reconciles them to Ready with
// the in-process manager on the fake Incus backend and the simulated Redis
// world (internal/redisadmin/redisfake); the Sentinel watcher is a no-op.
// It reports the time from the first create to all Ready, the test
// process's peak resident memory (VmHWM) and heap, reconciles per
// formation, and then the fake Incus calls per reconcile over one resync
// period of the unchanged formations.
//
// The operator's canary (controllers/canary.go) dials the sentinels named in
// the connection data with a real go-redis client, bypassing the injected
// Redis dialer; on the fake backend those are made-up addresses. So this
// benchmark refuses to run unless the process is in a network namespace
// with nothing but loopback (make bench runs it under `unshare --net`):
// there every such dial fails at once and no packet leaves the host.
func BenchmarkScaleFake(b *testing.B) {
	needAPI(b)
	if err := loopbackOnly(); err != nil {
		testenv.Unavailable(b, "a loopback-only network namespace (run under `unshare --net`, as make bench does)", err)
	}
	n := envInt("BENCH_SCALE_N", 500)
	ns := benchNamespace(b, "bench-scale")

	fake := incusfake.New()
	world := redisfake.New()
	world.Attach(fake)
	src := incus.Counting(fake)
	dialer := redisadmin.Counting(world)
	opts := defaultOptions()
	reg := prometheus.NewRegistry()
	startManager(b, []string{ns}, opts, controllers.Dependencies{Incus: src, Redis: dialer, Watcher: nopWatcher{},
		Metrics: metrics.NewOperator(reg), Canary: nopCanary{}})
	tr := newTracker(b, false)

	fs := make([]*v1alpha1.RedisSentinelFormation, n)
	for i := range fs {
		fs[i] = newFormation(ns, fmt.Sprintf("f%d", i+1))
	}
	runtime.GC()
	pid := strconv.Itoa(os.Getpid())
	before, _ := processMemory(pid)
	rss := sampleRSS(pid, 250*time.Millisecond)
	r0 := testenv.FormationReconciles()
	start := time.Now()
	// Create from a few goroutines, as a client applying many would.
	var wg sync.WaitGroup
	next := make(chan *v1alpha1.RedisSentinelFormation)
	errs := make(chan error, len(fs))
	for range 8 {
		wg.Go(func() {
			for f := range next {
				errs <- tr.tryCreate(f)
			}
		})
	}
	for _, f := range fs {
		next <- f
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	created := time.Since(start)
	if _, err := waitReady(ns, fs, time.Second, envDuration("BENCH_SCALE_TIMEOUT", 30*time.Minute)); err != nil {
		b.Fatal(err)
	}
	converge := time.Since(start)
	reconciles := testenv.FormationReconciles() - r0
	maxRSS := rss.Stop()
	after, _ := processMemory(pid)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if p := world.Problems(); len(p) > 0 {
		b.Fatalf("the simulated members met configuration problems, e.g. %v", p[:min(3, len(p))])
	}
	b.Logf("%d formations created in %s, all Ready after %s; %0.f reconciles; RSS %d MiB before, max %d MiB, VmHWM %d MiB",
		n, created.Round(time.Millisecond), converge.Round(time.Millisecond), reconciles, before.RSS/mib, maxRSS/mib, after.HWM/mib)

	// Steady state at scale: one resync period plus margin, nothing changes.
	src.Reset()
	dialer.Reset()
	r1 := testenv.FormationReconciles()
	window := opts.ResyncPeriod + 5*time.Second
	time.Sleep(window)
	steady := testenv.FormationReconciles() - r1
	cmds := dialer.Counts()

	b.ReportMetric(float64(n), "scale-formations")
	b.ReportMetric(converge.Seconds(), "scale-converge-s")
	b.ReportMetric(float64(after.HWM)/mib, "scale-hwm-MiB")
	b.ReportMetric(float64(maxRSS)/mib, "scale-rss-max-MiB")
	b.ReportMetric(float64(ms.HeapInuse)/mib, "scale-heap-inuse-MiB")
	b.ReportMetric(reconciles/float64(n), "scale-reconciles-per-formation")
	if steady > 0 {
		b.ReportMetric(float64(src.Writes())/steady, "scale-steady-incus-writes-per-reconcile")
		b.ReportMetric(float64(src.Reads())/steady, "scale-steady-incus-reads-per-reconcile")
		b.ReportMetric(float64(cmds.Commands)/steady, "scale-steady-redis-cmds-per-reconcile")
		b.ReportMetric(steady/window.Seconds(), "scale-steady-reconciles-per-s")
	}
	if src.Writes() > 0 {
		b.Logf("Incus write calls in steady state: %v", src.Calls())
	}

	start = time.Now()
	if err := deleteAndWait(fs, false, 30*time.Minute); err != nil {
		b.Fatal(err)
	}
	tr.forget(fs...)
	if left := fake.Names(); len(left) > 0 {
		b.Errorf("%d fake instances left after deleting every formation, e.g. %v", len(left), left[:min(3, len(left))])
	}
	b.ReportMetric(time.Since(start).Seconds(), "scale-delete-s")
}

// loopbackOnly fails when the process has a network interface other than
// loopback that is up.
func loopbackOnly() error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, i := range ifaces {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			return fmt.Errorf("interface %s is up: the operator's canary would dial the fake backend's made-up addresses through it", i.Name)
		}
	}
	return nil
}
