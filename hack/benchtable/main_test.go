package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `goos: linux
cpu: Test CPU
BenchmarkApplyToReady
    real_test.go:62: run 1: apply -> Ready 18.23s
BenchmarkApplyToReady-2   	       1	64201347300 ns/op	        19.16 apply-parallel-all-ready-s	         5.000 apply-parallel-formations	        18.74 apply-parallel-median-s	        25.5 apply-ready-max-s	        18.23 apply-ready-median-s	         5.000 apply-ready-runs
BenchmarkFailover-2      	       1	47025952246 ns/op	         5.000 drills	         0 drill-acked-lost	         3.4 fast-kill-status-max-s	         3.1 fast-kill-status-median-s	         3.2 fast-kill-switch-max-s	         2.9 fast-kill-switch-median-s	         4.5 fast-write-gap-max-s	         3.8 fast-write-gap-median-s	         8.141 sentinel-kill-status-max-s	         6.071 sentinel-kill-status-median-s	         6.103 sentinel-kill-switch-max-s	         5.993 sentinel-kill-switch-median-s	         6.9 sentinel-write-gap-max-s	         6.5 sentinel-write-gap-median-s	         0.05151 switch-status-max-s	         0.02576 switch-status-median-s
BenchmarkSteadyState-2   	       1	72099705170 ns/op	         1.000 steady-incus-reads-per-reconcile	         2 steady-incus-writes-per-reconcile	         0.06666 steady-reconciles-per-s	         9.000 steady-redis-cmds-per-reconcile	2 steady-canary-cmds-per-reconcile	         0 steady-redis-write-cmds-per-reconcile	        15.00 steady-resync-period-s	         0 steady-status-writes-per-reconcile
BenchmarkOperatorProcess-2   	       1	1 ns/op	         0.15 proc-cpu-pct-1	         1.2 proc-cpu-pct-10	        45.38 proc-hwm-MiB-1	        90.3 proc-hwm-MiB-10	         0.05 proc-reconciles-per-s-1	         0.7 proc-reconciles-per-s-10	        45.38 proc-rss-MiB-1	        77.0 proc-rss-MiB-10
--- SKIP: BenchmarkScaleFake
    scale_test.go:42: a loopback-only network namespace unavailable, skipping
BenchmarkPasswordRotation-2   	       1	1 ns/op	         30.00 rotation-grace-s	         5.000 rotation-reload-s	         0 rotation-backend-write-errors	      1500 rotation-backend-writes	         0.1200 rotation-backend-write-gap-s	         0 rotation-backend-acked-lost	         0 rotation-backend-failovers	        33.50 rotation-backend-duration-s	        57.00 rotation-backend-stale-errors	         0.4000 rotation-backend-connection-s	         2.000 rotation-sentinel-write-errors	      1400 rotation-sentinel-writes	         1.100 rotation-sentinel-write-gap-s	         0 rotation-sentinel-acked-lost	         0 rotation-sentinel-failovers	        34.00 rotation-sentinel-duration-s	        40.00 rotation-sentinel-stale-errors	         0.5000 rotation-sentinel-connection-s
BenchmarkGetSetPaired-2   	   20000	     43031 ns/op	     19170 instrumented-median-ns	         0.3140 overhead-%	     19110 plain-median-ns
[rsf-lab] timing: run 1 80.5 s, run 2 7.1 s
PASS
`

func TestTable(t *testing.T) {
	in, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if in.cpu != "Test CPU" || len(in.failures) != 0 {
		t.Fatalf("cpu %q, failures %v", in.cpu, in.failures)
	}
	if !strings.Contains(in.skipped["BenchmarkScaleFake"], "loopback-only") {
		t.Fatalf("skip reason: %q", in.skipped)
	}
	table := markdownTable(evaluate(in))
	for _, want := range []string{
		"| apply → Ready, one formation | median 18.2 s, max 25.5 s (5 runs) | ≤ 20 s | yes |",
		"| failover, fast path: kill → new master | median 2.90 s, max 3.20 s (5 drills) | median ≤ 3 s | yes |",
		"| failover, fast path: kill → status updated | median 3.10 s, max 3.40 s | median ≤ 3.5 s | yes |",
		"| failover, fast path: longest gap in acknowledged writes | median 3.80 s, max 4.50 s; 0 acknowledged writes lost over all drills | median ≤ 4 s | yes |",
		"| failover, Sentinel alone: kill → status updated | median 6.07 s, max 8.14 s | ≤ 7.5 s at down-after 5000 ms | **no** |",
		"| failover, Sentinel alone: longest gap in acknowledged writes | median 6.50 s, max 6.90 s; 0 acknowledged writes lost over all drills | — | — |",
		"| failover: +switch-master → status updated | median 0.03 s, max 0.05 s (both paths) | ≤ 1 s | yes |",
		"| steady state: Incus write calls per reconcile | 2.00 | 0 | **no** |",
		"| operator resident memory, 10 formation(s) | 77.0 MiB (VmHWM 90.3 MiB) | ≤ 80 MB (76.3 MiB) | **no** |",
		"| operator resident memory, 1 formation(s) | 45.4 MiB (VmHWM 45.4 MiB) | — | — |",
		"1.0031 (+0.31 %",
		"| steady state: Redis commands per reconcile | 9.00 admin (0 writes) + 2.00 canary | bounded | yes |",
		"| controller scale: 500 formations to Ready (fake Incus) | not measured (skipped: scale_test.go:42: a loopback-only network namespace unavailable, skipping) |",
		"| lab host playbook, first run | 80.5 s (test/lab/idempotence.sh, this run) |",
		"| password rotation, backend user on the redis-servers: write errors, longest write gap | 0 errors in 1500 writes, longest gap 0.12 s; 0 lost, 0 failovers; rotation took 33.5 s (connection Secret new after 0.40 s); a client that never reloads: 57 errors after the grace | 0 errors for a client that reloads within the grace; 0 lost, 0 failovers | yes |",
		"| password rotation, backend user on the sentinels: write errors, longest write gap | 2 errors in 1400 writes, longest gap 1.10 s; 0 lost, 0 failovers; rotation took 34.0 s (connection Secret new after 0.50 s); a client that never reloads: 40 errors after the grace | 0 errors for a client that reloads within the grace; 0 lost, 0 failovers | **no** |",
		"| password rotation, the operator's own users: write errors, longest write gap | not measured |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

func TestFailuresAndLabDoc(t *testing.T) {
	in, err := parse(strings.NewReader("--- FAIL: BenchmarkFailover-2\n    real_test.go:1: drill 1: boom\nFAIL\tgithub.com/x/test/bench\t1.0s\nBENCH-FAILED: ScaleFake\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.failures) != 3 {
		t.Fatalf("failures %v", in.failures)
	}
	doc := filepath.Join(t.TempDir(), "lab.md")
	_ = os.WriteFile(doc, []byte("| Run | Wall time |\n| --- | --- |\n| Playbook, first run on a fresh host | 71 s |\n| Playbook, converged host (`changed=0`) | 6-9 s |\n| `make lab-host` | 9 s |\n| `make lab` on a converged host | 40 s |\n"), 0o644)
	lab := labTimings(doc+",/nonexistent", map[string]string{})
	if !strings.HasPrefix(lab["first"], "71 s") || !strings.HasPrefix(lab["second"], "6-9 s") || !strings.HasPrefix(lab["make-lab"], "40 s") {
		t.Fatalf("lab timings %v", lab)
	}
	out := document(in, evaluate(in), markdownTable(evaluate(in)), "idle", "")
	if !strings.Contains(out, "Failures in this run") || !strings.Contains(out, "Conditions: idle") {
		t.Fatalf("document:\n%s", out)
	}
}
