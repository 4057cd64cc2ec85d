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
    apply_test.go:88: pool lab: rsf, driver btrfs
    apply_test.go:88: pool dir: rsf-bench-dir, driver dir
    apply_test.go:126: run 1, lab pool: floor 3.10s (launched 1.90s); apply -> Ready 5.2s: created 0.16, started 1.49, address 3.01, configured 4.03, linked 4.50, sentinels 5.03, ready 5.10
BenchmarkApplyToReady-2   	       1	64201347300 ns/op	        19.16 apply-parallel-all-ready-s	         5.000 apply-parallel-formations	        8.74 apply-parallel-median-s	        2.192 apply-parallel-ratio	         6.5 apply-lab-ready-max-s	         5.5 apply-lab-ready-median-s	         5.000 apply-lab-runs	         2.4 apply-lab-overhead-s	         1.774 apply-lab-floor-ratio	         0.15 apply-lab-created-median-s	         1.5 apply-lab-started-median-s	         3.1 apply-lab-address-median-s	         4.0 apply-lab-configured-median-s	         4.5 apply-lab-linked-median-s	         5.0 apply-lab-sentinels-median-s	         3.1 floor-lab-median-s	         3.2 floor-lab-single-median-s	         3.4 floor-lab-max-s	         1.9 floor-lab-launched-median-s	        11.0 apply-dir-ready-max-s	        10.5 apply-dir-ready-median-s	         5.000 apply-dir-runs	         1.5 apply-dir-overhead-s	         1.167 apply-dir-floor-ratio	         9.0 floor-dir-median-s	         9.5 floor-dir-max-s	         7.9 floor-dir-launched-median-s	         4.9 rebuild-lab-redundant-median-s	         5.3 rebuild-lab-redundant-max-s	         3.0 rebuild-lab-replaced-median-s	         4.2 rebuild-lab-linked-median-s	         4.9 rebuild-lab-known-median-s	         5.1 rebuild-lab-ready-median-s	         3.000 rebuild-lab-runs	        12.0 rebuild-dir-redundant-median-s	        12.5 rebuild-dir-redundant-max-s	         9.2 rebuild-dir-replaced-median-s	        11.0 rebuild-dir-linked-median-s	        12.0 rebuild-dir-known-median-s	        12.2 rebuild-dir-ready-median-s	         3.000 rebuild-dir-runs
BenchmarkFailover-2      	       1	47025952246 ns/op	         5.000 drills	         0 drill-acked-lost	         3.4 fast-kill-status-max-s	         3.1 fast-kill-status-median-s	         3.2 fast-kill-switch-max-s	         2.9 fast-kill-switch-median-s	         4.5 fast-write-gap-max-s	         3.8 fast-write-gap-median-s	         8.141 sentinel-kill-status-max-s	         6.071 sentinel-kill-status-median-s	         6.103 sentinel-kill-switch-max-s	         5.993 sentinel-kill-switch-median-s	         6.9 sentinel-write-gap-max-s	         6.5 sentinel-write-gap-median-s	         0.05151 switch-status-max-s	         0.02576 switch-status-median-s
BenchmarkSteadyState-2   	       1	72099705170 ns/op	         1.000 steady-incus-reads-per-reconcile	         2 steady-incus-writes-per-reconcile	         0.06666 steady-reconciles-per-s	         9.000 steady-redis-cmds-per-reconcile	2 steady-canary-cmds-per-reconcile	         0 steady-redis-write-cmds-per-reconcile	        15.00 steady-resync-period-s	         0 steady-status-writes-per-reconcile
BenchmarkOperatorProcess-2   	       1	1 ns/op	         0.15 proc-cpu-pct-1	         1.2 proc-cpu-pct-10	        45.38 proc-hwm-MiB-1	        90.3 proc-hwm-MiB-10	         0.05 proc-reconciles-per-s-1	         0.7 proc-reconciles-per-s-10	        45.38 proc-rss-MiB-1	        77.0 proc-rss-MiB-10
--- SKIP: BenchmarkScaleFake
    scale_test.go:42: a loopback-only network namespace unavailable, skipping
BenchmarkPasswordRotation-2   	       1	1 ns/op	         30.00 rotation-grace-s	         5.000 rotation-reload-s	         0 rotation-backend-write-errors	      1500 rotation-backend-writes	         0.1200 rotation-backend-write-gap-s	         0 rotation-backend-acked-lost	         0 rotation-backend-failovers	        33.50 rotation-backend-duration-s	        57.00 rotation-backend-stale-errors	         0.4000 rotation-backend-connection-s	         2.000 rotation-sentinel-write-errors	      1400 rotation-sentinel-writes	         1.100 rotation-sentinel-write-gap-s	         0 rotation-sentinel-acked-lost	         0 rotation-sentinel-failovers	        34.00 rotation-sentinel-duration-s	        40.00 rotation-sentinel-stale-errors	         0.5000 rotation-sentinel-connection-s
BenchmarkTLS-2   	       1	1 ns/op	         3.000 tls-drills	         2.900 tls-fast-kill-status-plain-median-s	         3.100 tls-fast-kill-status-tls-median-s	         0.2000 tls-fast-kill-status-diff-s	         6.100 tls-sentinel-kill-status-plain-median-s	         6.900 tls-sentinel-kill-status-tls-median-s	         0.8000 tls-sentinel-kill-status-diff-s	    250000 tls-rtt-plain-median-ns	    400000 tls-rtt-plain-p99-ns	    300000 tls-rtt-tls-median-ns	    500000 tls-rtt-tls-p99-ns	         1.200 tls-rtt-ratio	      5000 tls-rtt-n	         4.000 tls-first-ping-plain-median-ms	        12.00 tls-first-ping-tls-median-ms
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
		"| raw Incus floor, lab pool: 3 parallel launches → all have addresses | median 3.10 s, max 3.40 s on rsf, btrfs (launched after 1.90 s); one container alone: median 3.20 s | — | — |",
		"| raw Incus floor, dir pool: 3 parallel launches → all have addresses | median 9.00 s, max 9.50 s on rsf-bench-dir, dir (launched after 7.90 s) | — | — |",
		// btrfs: within 6 s but 2.4 s over the floor
		"| apply → Ready, lab pool | median 5.50 s, max 6.50 s (5 runs) on rsf, btrfs; 2.40 s over the floor, 1.77× the floor | ≤ floor + 2 s; ≤ 6 s on a copy-on-write pool | **no** |",
		"| apply → Ready, dir pool | median 10.5 s, max 11.0 s (5 runs) on rsf-bench-dir, dir; 1.50 s over the floor, 1.17× the floor | ≤ floor + 2 s | yes |",
		"| apply → Ready phases, lab pool (medians since the apply) | created 0.15 s, started 1.50 s, addresses 3.10 s, configured 4.00 s, replication linked 4.50 s, sentinels agree 5.00 s, Ready 5.50 s | — | — |",
		"| apply → Ready, 5 formations at once | all Ready after 19.2 s (median 8.74 s), 2.19× one formation | ≤ 2× one formation | **no** |",
		"| member rebuild → full redundancy, lab pool | median 4.90 s, max 5.30 s (3 runs) on rsf, btrfs: replaced 3.00 s, linked 4.20 s, known to every sentinel 4.90 s; Ready 5.10 s; 1.70 s over the floor of one launch | ≤ floor + 2 s | yes |",
		"| member rebuild → full redundancy, dir pool | median 12.0 s, max 12.5 s (3 runs) on rsf-bench-dir, dir: replaced 9.20 s, linked 11.0 s, known to every sentinel 12.0 s; Ready 12.2 s; 3.00 s over the floor of three launches | ≤ floor + 2 s | **no** |",
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
		"| TLS: client SET+GET round trip, TLS / plaintext | 1.200 (median 300 vs 250 µs, p99 500 vs 400 µs; 5000 each); a fresh client's first PING: median 12.0 ms vs 4.00 ms | — | — |",
		"| TLS: kill → status updated, fast path (down-after 5000 ms), TLS − plaintext | +0.20 s (median 3.10 s with TLS, 2.90 s plaintext; 3 drills each) | ≤ 0.5 s | yes |",
		"| TLS: kill → status updated, Sentinel alone (down-after 5000 ms), TLS − plaintext | +0.80 s (median 6.90 s with TLS, 6.10 s plaintext; 3 drills each) | ≤ 0.5 s | **no** |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// Output of BenchmarkApplyToReady before it measured the floor (one pool,
// in-process manager) still makes the lab pool's rows, e.g. for a
// bench-compare with an older revision.
func TestApplyBeforeTheFloor(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        []string
	}{{
		name:  "old metric names",
		input: "BenchmarkApplyToReady-2 1 1 ns/op 33.53 apply-parallel-all-ready-s 5.000 apply-parallel-formations 18.74 apply-parallel-median-s 25.5 apply-ready-max-s 18.23 apply-ready-median-s 5.000 apply-ready-runs\n",
		want: []string{
			"| apply → Ready, lab pool | median 18.2 s, max 25.5 s (5 runs; in-process manager, no floor measured) | ≤ floor + 2 s; ≤ 6 s on a copy-on-write pool | — |",
			"| apply → Ready, dir pool | not measured | ≤ floor + 2 s | — |",
			"| apply → Ready, 5 formations at once | all Ready after 33.5 s (median 18.7 s), 1.84× one formation | ≤ 2× one formation | yes |",
			"| member rebuild → full redundancy, lab pool | not measured | ≤ floor + 2 s | — |",
		},
	}, {
		name: "the lab's pool still dir: not judged against 6 s",
		input: "    apply_test.go:88: pool lab: rsf, driver dir\n" +
			"BenchmarkApplyToReady-2 1 1 ns/op 9.5 apply-lab-ready-median-s 9.9 apply-lab-ready-max-s 2 apply-lab-runs 1.5 apply-lab-overhead-s 1.19 apply-lab-floor-ratio 8.0 floor-lab-median-s\n",
		want: []string{
			"| apply → Ready, lab pool | median 9.50 s, max 9.90 s (2 runs) on rsf, dir; 1.50 s over the floor, 1.19× the floor | ≤ floor + 2 s; ≤ 6 s on a copy-on-write pool | yes |",
			"| apply → Ready phases, lab pool (medians since the apply) | not measured |",
		},
	}, {
		name:  "a rebuild faster than one launch alone",
		input: "BenchmarkApplyToReady-2 1 1 ns/op 4.0 rebuild-dir-redundant-median-s 4.2 rebuild-dir-redundant-max-s 1 rebuild-dir-runs 2.1 rebuild-dir-replaced-median-s 3.9 rebuild-dir-linked-median-s 4.0 rebuild-dir-known-median-s 4.1 rebuild-dir-ready-median-s 4.5 floor-dir-single-median-s\n",
		want: []string{
			"| member rebuild → full redundancy, dir pool | median 4.00 s, max 4.20 s (1 run): replaced 2.10 s, linked 3.90 s, known to every sentinel 4.00 s; Ready 4.10 s; 0.50 s under the floor of one launch | ≤ floor + 2 s | yes |",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) { assertRows(t, tc.input, tc.want) })
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

// BenchmarkEngines's rows: Valkey next to Redis, and the migration judged
// against the image roll's targets.
func TestEngineRows(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        []string
	}{{
		name: "one migration, targets met",
		input: "BenchmarkEngines-2 1 1 ns/op 3.000 engines-apply-runs 2.61 engines-apply-redis-median-s 3.24 engines-apply-redis-max-s 2.05 engines-apply-valkey-median-s 2.63 engines-apply-valkey-max-s -0.56 engines-apply-diff-s" +
			" 5.000 engines-drills 1.95 engines-kill-status-redis-median-s 1.99 engines-kill-status-redis-max-s 1.97 engines-kill-status-valkey-median-s 2.10 engines-kill-status-valkey-max-s 0.02 engines-kill-status-diff-s" +
			" 1.000 engines-migrations 1.31 engines-migration-write-gap-s 0 engines-migration-acked-lost 1.000 engines-migration-master-switches 1.000 engines-migration-master-switches-min 9.52 engines-migration-duration-s 9.52 engines-migration-duration-max-s\n",
		want: []string{
			"| engines: apply → Ready, Valkey − Redis | -0.56 s (median 2.05 s Valkey, 2.61 s Redis; max 2.63 s, 3.24 s; 3 runs each) | — | — |",
			"| engines: kill → status updated, fast path, Valkey − Redis | +0.02 s (median 1.97 s Valkey, 1.95 s Redis; max 2.10 s, 1.99 s; 5 drills each) | median ≤ 3.5 s each (the fast path's) | yes |",
			"| engine migration Redis → Valkey: longest gap in successful writes | 1.31 s (worst of 1 migration(s)) | ≤ 2 s | yes |",
			"| engine migration Redis → Valkey: acknowledged writes lost, master switches | 0 lost, 1 switch(es) per migration; a migration took 9.52 s (median; max 9.52 s) | 0 lost, 1 switch | yes |",
		},
	}, {
		name:  "a migration with two switches and a long gap",
		input: "BenchmarkEngines-2 1 1 ns/op 3.000 engines-migrations 2.4 engines-migration-write-gap-s 0 engines-migration-acked-lost 2.000 engines-migration-master-switches 1.000 engines-migration-master-switches-min 11.0 engines-migration-duration-s 14.2 engines-migration-duration-max-s\n",
		want: []string{
			"| engines: apply → Ready, Valkey − Redis | not measured | — | — |",
			"| engines: kill → status updated, fast path, Valkey − Redis | not measured | median ≤ 3.5 s each (the fast path's) | — |",
			"| engine migration Redis → Valkey: longest gap in successful writes | 2.40 s (worst of 3 migration(s)) | ≤ 2 s | **no** |",
			"| engine migration Redis → Valkey: acknowledged writes lost, master switches | 0 lost, 1 to 2 switch(es) per migration; a migration took 11.0 s (median; max 14.2 s) | 0 lost, 1 switch | **no** |",
		},
	}, {
		name:  "skipped",
		input: "--- SKIP: BenchmarkEngines\n    engines_test.go:58: incusd with the Valkey lab image: unavailable\n",
		want: []string{
			"| engine migration Redis → Valkey: longest gap in successful writes | not measured (skipped: engines_test.go:58: incusd with the Valkey lab image: unavailable) | ≤ 2 s | — |",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) { assertRows(t, tc.input, tc.want) })
	}
}

// assertRows checks that the table made from benchmark output input has
// every row (or row part) in want.
func assertRows(t *testing.T, input string, want []string) {
	t.Helper()
	in, err := parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	table := markdownTable(evaluate(in))
	for _, w := range want {
		if !strings.Contains(table, w) {
			t.Errorf("table lacks %q:\n%s", w, table)
		}
	}
}
