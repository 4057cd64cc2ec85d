package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	redisv1alpha1 "github.com/incusops/redis-sentinel-operator/api/v1alpha1"
	"github.com/incusops/redis-sentinel-operator/internal/testenv"
	"github.com/incusops/redis-sentinel-operator/test/harness"
)

// BenchmarkOperatorProcess runs the operator binary as its own process
// against the envtest API server (the lab's flags, otherwise its defaults:
// 10 workers, resync 15 s) and measures, with 1 and then BENCH_PROC_FORMATIONS (10)
// formations Ready on real containers, over a BENCH_PROC_WINDOW (60 s)
// steady window: CPU as (utime+stime delta)/wall from /proc/<pid>/stat,
// resident memory as the largest VmRSS sampled every second and VmHWM from
// /proc/<pid>/status, and reconciles per second from its metrics endpoint.
// No in-process manager runs meanwhile.
func BenchmarkOperatorProcess(b *testing.B) {
	needStack(b)
	total := envInt("BENCH_PROC_FORMATIONS", 10)
	window := envDuration("BENCH_PROC_WINDOW", time.Minute)
	requireNoFormations(b)
	ns := benchNamespace(b, "bench-proc")
	op := startOperator(b)
	tr := newTracker(b, true)

	var fs []*redisv1alpha1.RedisSentinelFormation
	measure := func(n int) {
		start := time.Now()
		var added []*redisv1alpha1.RedisSentinelFormation
		for i := len(fs); i < n; i++ {
			f := newFormation(ns, fmt.Sprintf("%s-%d", ns, i+1))
			tr.create(b, f)
			added = append(added, f)
		}
		fs = append(fs, added...)
		if _, err := waitReady(ns, fs, 500*time.Millisecond, 20*time.Minute); err != nil {
			b.Fatalf("%v\noperator log tail:\n%s", err, op.tail(20))
		}
		b.Logf("%d formations Ready (%d added in %s)", n, len(added), time.Since(start).Round(100*time.Millisecond))
		time.Sleep(20 * time.Second) // settle: the last bring-up actions and resyncs
		s := op.sample(b, window)
		b.Logf("%d formations: CPU %.2f%%, VmRSS max %.1f MiB, VmHWM %.1f MiB, %.2f reconciles/s", n, s.cpuPercent, float64(s.maxRSS)/mib, float64(s.hwm)/mib, s.reconcilesPerS)
		tag := strconv.Itoa(n)
		b.ReportMetric(s.cpuPercent, "proc-cpu-pct-"+tag)
		b.ReportMetric(float64(s.maxRSS)/mib, "proc-rss-MiB-"+tag)
		b.ReportMetric(float64(s.hwm)/mib, "proc-hwm-MiB-"+tag)
		b.ReportMetric(s.reconcilesPerS, "proc-reconciles-per-s-"+tag)
	}
	measure(1)
	if total > 1 {
		measure(total)
	}
}

// requireNoFormations fails unless the API server has no formation: the
// operator process watches every namespace and would reconcile them too.
func requireNoFormations(b *testing.B) {
	b.Helper()
	var existing redisv1alpha1.RedisSentinelFormationList
	if err := k8s.List(context.Background(), &existing); err != nil {
		b.Fatal(err)
	}
	if len(existing.Items) > 0 {
		b.Fatalf("%d formations left by an earlier benchmark (e.g. %s/%s); the operator process would reconcile them",
			len(existing.Items), existing.Items[0].Namespace, existing.Items[0].Name)
	}
}

// operator is the operator binary running against the envtest API server.
type operator struct {
	cmd     *exec.Cmd
	pid     string
	metrics string // http://127.0.0.1:port/metrics
	logPath string
}

// startOperator builds (unless RSF_BENCH_MANAGER names a binary) and starts
// the operator, watching every namespace; cleanup stops it after the
// formations are deleted.
func startOperator(b *testing.B) *operator {
	b.Helper()
	dir := b.TempDir()
	bin := os.Getenv("RSF_BENCH_MANAGER")
	if bin == "" {
		bin = filepath.Join(dir, "manager")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = testenv.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("building the operator: %v\n%s", err, out)
		}
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := harness.WriteKubeconfig(cfg, kubeconfig); err != nil {
		b.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	op := &operator{metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), logPath: cmp.Or(os.Getenv("RSF_BENCH_OPERATOR_LOG"), filepath.Join(dir, "manager.log"))}
	logFile, err := os.Create(op.logPath)
	if err != nil {
		b.Fatal(err)
	}
	// The flags hack/lab.sh gives the lab's operator (its other flags at
	// their defaults), with ports of its own.
	op.cmd = exec.Command(bin, "--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", port), "--health-probe-bind-address", "127.0.0.1:0", "--log-format", "json")
	op.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	op.cmd.Stdout, op.cmd.Stderr = logFile, logFile
	op.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := op.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	op.pid = strconv.Itoa(op.cmd.Process.Pid)
	exited := make(chan struct{})
	go func() { _ = op.cmd.Wait(); _ = logFile.Close(); close(exited) }()
	b.Cleanup(func() {
		_ = op.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = op.cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := op.reconciles(); err == nil {
			return op
		}
		select {
		case <-exited:
			b.Fatalf("the operator exited:\n%s", op.tail(30))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("the operator's metrics endpoint did not answer within a minute:\n%s", op.tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (op *operator) tail(n int) string {
	data, _ := os.ReadFile(op.logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// reconciles reads controller_runtime_reconcile_total of the formation
// controller from the process's metrics endpoint (summed over results).
func (op *operator) reconciles() (float64, error) {
	resp, err := http.Get(op.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "controller_runtime_reconcile_total{") || !strings.Contains(line, `controller="redissentinelformation"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, sc.Err()
}

type processSample struct {
	cpuPercent     float64
	maxRSS, hwm    int64
	reconcilesPerS float64
}

// sample measures the process over window.
func (op *operator) sample(b *testing.B, window time.Duration) processSample {
	b.Helper()
	pid := op.cmd.Process.Pid
	cpu0, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	r0, err := op.reconciles()
	if err != nil {
		b.Fatal(err)
	}
	rss := sampleRSS(op.pid, time.Second)
	start := time.Now()
	time.Sleep(window)
	cpu1, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	r1, err := op.reconciles()
	if err != nil {
		b.Fatal(err)
	}
	maxRSS := rss.Stop()
	mem, err := processMemory(op.pid)
	if err != nil {
		b.Fatal(err)
	}
	return processSample{
		cpuPercent:     100 * float64(cpu1-cpu0) / float64(elapsed),
		maxRSS:         maxRSS,
		hwm:            mem.HWM,
		reconcilesPerS: (r1 - r0) / elapsed.Seconds(),
	}
}
