package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata/bench-compare.out is a real alternating run of ApplyToReady,
// Failover and SteadyState (older marker format, "### VARIANT before BENCH
// <name> <time>"), trimmed to the lines benchtable reads.
func fixture(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "bench-compare.out"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestSplitVariants(t *testing.T) {
	for _, tc := range []struct {
		name, input   string
		before, after string // "" with wantErr
		runs          int    // marked runs of each variant
		wantErr       bool
	}{{
		name: "script markers, alternating, build output before the first",
		input: "go: downloading x\n" +
			"### VARIANT before ApplyToReady f81b8ca\nA1\nBENCH-FAILED: before ApplyToReady\n" +
			"### VARIANT after ApplyToReady working-tree\nB1\n" +
			"### VARIANT before Failover f81b8ca\nA2\n" +
			"### VARIANT after Failover working-tree\nB2\n",
		before: "A1\nBENCH-FAILED: before ApplyToReady\nA2\n", after: "B1\nB2\n", runs: 2,
	}, {
		name:   "older markers; another ### line ends the variant",
		input:  "### VARIANT before BENCH ApplyToReady 19:12:10\nA\n### VARIANT after BENCH ApplyToReady 19:14:49\nB\n### DONE 19:26:35\nnot a variant\n",
		before: "A\n", after: "B\n", runs: 1,
	}, {
		name:   "marker without anything after the variant",
		input:  "### VARIANT before\nA\n### VARIANT after\n",
		before: "A\n", after: "", runs: 1,
	}, {
		name:    "no after variant",
		input:   "### VARIANT before X abc\nA\n",
		wantErr: true,
	}, {
		name:    "not a marker: VARIANTS, beforehand",
		input:   "### VARIANTS before X\nA\n### VARIANT beforehand X\nB\n### VARIANT after X\nC\n",
		wantErr: true,
	}, {
		name:    "no markers at all (plain make bench output)",
		input:   "BenchmarkFailover-2 1 5 ns/op\nPASS\n",
		wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := splitVariants(strings.NewReader(tc.input))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error; before %q after %q", v.before, v.after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.before != tc.before || v.after != tc.after {
				t.Errorf("before %q after %q, want %q and %q", v.before, v.after, tc.before, tc.after)
			}
			if v.runs["before"] != tc.runs || v.runs["after"] != tc.runs {
				t.Errorf("runs %v, want %d each", v.runs, tc.runs)
			}
		})
	}
}

func TestSplitFixture(t *testing.T) {
	v, err := splitVariants(strings.NewReader(fixture(t)))
	if err != nil {
		t.Fatal(err)
	}
	if v.runs["before"] != 3 || v.runs["after"] != 3 {
		t.Fatalf("runs %v", v.runs)
	}
	for _, tc := range []struct {
		variant, text string
		unit          string
		want          float64
	}{
		{"before", v.before, "apply-ready-median-s", 11.35},
		{"after", v.after, "apply-ready-median-s", 11.71},
		{"before", v.before, "switch-status-max-s", 0.05673},
		{"after", v.after, "switch-status-max-s", 0.3491},
		{"before", v.before, "steady-status-writes-per-reconcile", 0},
		{"after", v.after, "steady-status-writes-per-reconcile", 1},
	} {
		in, err := parse(strings.NewReader(tc.text))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := in.metrics[tc.unit]; !ok || got != tc.want {
			t.Errorf("%s %s = %v (present %v), want %v", tc.variant, tc.unit, got, ok, tc.want)
		}
		if in.cpu != "AMD EPYC" || len(in.failures) != 0 {
			t.Errorf("%s: cpu %q failures %v", tc.variant, in.cpu, in.failures)
		}
	}
}

const (
	applyLine  = "BenchmarkApplyToReady-2 1 1 ns/op 33.53 apply-parallel-all-ready-s 5.000 apply-parallel-formations 18.74 apply-parallel-median-s 25.5 apply-ready-max-s 18.23 apply-ready-median-s 5.000 apply-ready-runs\n"
	steadyLine = "BenchmarkSteadyState-2 1 1 ns/op 1.000 steady-incus-reads-per-reconcile 0 steady-incus-writes-per-reconcile 0.06666 steady-reconciles-per-s 9.000 steady-redis-cmds-per-reconcile 0 steady-redis-write-cmds-per-reconcile 15.00 steady-resync-period-s 0 steady-status-writes-per-reconcile\n"
	procLine   = "BenchmarkOperatorProcess-2 1 1 ns/op 1.2 proc-cpu-pct-10 90.3 proc-hwm-MiB-10 0.7 proc-reconciles-per-s-10 77.0 proc-rss-MiB-10\n"
)

func TestCompareRows(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after string
		want          []string // every table row, in order (prefixes)
		absent        []string
	}{{
		name:   "measured by both",
		before: applyLine, after: applyLine,
		want: []string{
			"| apply → Ready, lab pool | median 18.2 s, max 25.5 s (5 runs; in-process manager, no floor measured) | median 18.2 s, max 25.5 s (5 runs; in-process manager, no floor measured) | ≤ floor + 2 s; ≤ 6 s on a copy-on-write pool |",
			"| apply → Ready, 5 formations at once | all Ready after 33.5 s (median 18.7 s), 1.84× one formation | all Ready after 33.5 s (median 18.7 s), 1.84× one formation | ≤ 2× one formation |",
		},
		absent: []string{"failover", "steady state", "lab host", "`make lab`", "image roll", "controller scale"},
	}, {
		name:   "steady state measured by the before variant only (skipped after)",
		before: applyLine + steadyLine,
		after:  applyLine + "--- SKIP: BenchmarkSteadyState\n    real_test.go:300: incusd unavailable, skipping\n",
		want: []string{
			"| apply → Ready, lab pool |",
			"| apply → Ready, 5 formations at once |",
			"| steady state: Incus write calls per reconcile | 0 | not measured (skipped: real_test.go:300: incusd unavailable, skipping) | 0 |",
			"| steady state: Incus read calls per reconcile | 1.00 | not measured | bounded (≤ 4: one per member + 1) |",
			"| steady state: Redis commands per reconcile | 9.00 admin (0 writes) | not measured | bounded |",
			"| steady state: reconciles per second (1 formation) | 0.07/s (resync 15.0 s) | not measured | — |",
			"| steady state: status writes per reconcile | 0 | not measured | — |",
		},
	}, {
		name:   "operator process measured by the after variant only, kept in evaluate()'s order",
		before: steadyLine,
		after:  steadyLine + procLine,
		want: []string{
			"| steady state: Incus write calls per reconcile | 0 | 0 | 0 |",
			"| steady state: Incus read calls per reconcile |",
			"| steady state: Redis commands per reconcile |",
			"| steady state: reconciles per second (1 formation) |",
			"| steady state: status writes per reconcile | 0 | 0 | — |",
			"| operator CPU, 10 formation(s) | not measured | 1.20 % of one core (0.70 reconciles/s) | — |",
			"| operator resident memory, 10 formation(s) | not measured | 77.0 MiB (VmHWM 90.3 MiB) (target **not met**) | ≤ 80 MB (76.3 MiB) |",
		},
		absent: []string{"operator CPU / resident memory", "apply"},
	}, {
		name:   "nothing measured",
		before: "PASS\n", after: "BENCH-FAILED: after Failover\n",
		absent: []string{"| apply", "| failover", "| lab"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			eval := func(s string) []row {
				in, err := parse(strings.NewReader(s))
				if err != nil {
					t.Fatal(err)
				}
				return evaluate(in)
			}
			table := compareTable("abc", compareRows(eval(tc.before), eval(tc.after)))
			lines := strings.Split(strings.TrimSpace(table), "\n")
			if lines[0] != "| Figure | Before (abc) | After (this tree) | Target |" {
				t.Errorf("header %q", lines[0])
			}
			if len(lines) != 2+len(tc.want) {
				t.Errorf("%d rows, want %d:\n%s", len(lines)-2, len(tc.want), table)
			}
			at := 0
			for _, w := range tc.want {
				i := at
				for i < len(lines) && !strings.HasPrefix(lines[i], w) {
					i++
				}
				if i == len(lines) {
					t.Errorf("no row %q after line %d:\n%s", w, at, table)
					continue
				}
				at = i + 1
			}
			for _, a := range tc.absent {
				if strings.Contains(table, a) {
					t.Errorf("table has %q:\n%s", a, table)
				}
			}
		})
	}
}

const (
	docHead    = "# Benchmarks\n\nintro\n\n## Machine\n\n- CPU: x\n\n## Results\n\n| Figure | Measured | Target | Met? |\n| --- | --- | --- | --- |\n| a | 1 | — | — |\n\n"
	docTail    = "## How each figure is measured\n\n- **a**: how\n\n## Raw metrics\n\n```\na 1\n```\n"
	oldSection = compareBegin + "\n## Before and after\n\nold sentence.\n\n| old |\n" + compareEnd + "\n"
	newSection = compareBegin + "\n## Before and after\n\nnew sentence.\n\n| new |\n" + compareEnd + "\n"
)

func TestInsertCompare(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
		wantErr         bool
	}{{
		name: "inserted right after Results",
		doc:  docHead + docTail,
		want: docHead + newSection + "\n" + docTail,
	}, {
		name: "replaces an existing section",
		doc:  docHead + oldSection + "\n" + docTail,
		want: docHead + newSection + "\n" + docTail,
	}, {
		name: "replaces an existing section wherever it is",
		doc:  docHead + docTail + "\n" + oldSection,
		want: docHead + docTail + "\n" + newSection,
	}, {
		name: "Results is the last section",
		doc:  docHead,
		want: strings.TrimRight(docHead, "\n") + "\n\n" + newSection,
	}, {
		name: "no Results section",
		doc:  "# Benchmarks\n",
		want: "# Benchmarks\n\n" + newSection,
	}, {
		name:    "begin marker without end marker",
		doc:     docHead + compareBegin + "\n## Before and after\n" + docTail,
		wantErr: true,
	}, {
		name:    "end marker without begin marker",
		doc:     docHead + compareEnd + "\n" + docTail,
		wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := insertCompare(tc.doc, newSection)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error:\n%s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			again, err := insertCompare(got, newSection)
			if err != nil || again != got {
				t.Errorf("not idempotent (%v):\n%s", err, again)
			}
		})
	}
}

func TestDocumentKeepsCompare(t *testing.T) {
	in, err := parse(strings.NewReader(applyLine))
	if err != nil {
		t.Fatal(err)
	}
	rows := evaluate(in)
	table := markdownTable(rows)
	for _, tc := range []struct {
		name, old string
		keep      bool
	}{
		{"no old document", "", false},
		{"old document without a section", docHead + docTail, false},
		{"old document with a section", docHead + oldSection + "\n" + docTail, true},
		{"section without its end marker is not carried", docHead + compareBegin + "\n## Before and after\n" + docTail, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := document(in, rows, table, "", tc.old)
			if !tc.keep {
				if strings.Contains(doc, "bench-compare:") || strings.Contains(doc, "Before and after") {
					t.Fatalf("document has a compare section:\n%s", doc)
				}
				return
			}
			if strings.Count(doc, compareBegin) != 1 || !strings.Contains(doc, oldSection) {
				t.Fatalf("section not carried over once:\n%s", doc)
			}
			results, section, how := strings.Index(doc, "## Results"), strings.Index(doc, compareBegin), strings.Index(doc, "## How each figure")
			if !(results < strings.Index(doc, table) && strings.Index(doc, table) < section && section < how) {
				t.Fatalf("section not between the results table and the next section:\n%s", doc)
			}
			if !strings.Contains(doc, compareEnd+"\n\n## How each figure") {
				t.Fatalf("no blank line after the section:\n%s", doc)
			}
			// A compare run on the refreshed document replaces it in place.
			replaced, err := insertCompare(doc, newSection)
			if err != nil || strings.Contains(replaced, "old sentence") || strings.Index(replaced, compareBegin) != section {
				t.Fatalf("replace after refresh (%v):\n%s", err, replaced)
			}
		})
	}
}

func TestRunCompare(t *testing.T) {
	// The fixture with the after variant's Failover run failed.
	real := fixture(t)
	from, to := strings.Index(real, "### VARIANT after BENCH Failover"), strings.Index(real, "### VARIANT before BENCH SteadyState")
	if from < 0 || to < from {
		t.Fatal("fixture lacks the after Failover run")
	}
	failing := real[:from] + "### VARIANT after Failover working-tree\n--- FAIL: BenchmarkFailover\n    real_test.go:150: drill 1: boom\nFAIL\nBENCH-FAILED: after Failover\n" + real[to:]
	for _, tc := range []struct {
		name, input string
		code        int
		want        []string
		absent      []string
	}{{
		name:  "real run",
		input: real,
		code:  0,
		want: []string{
			"`f81b8ca` (before) against the working tree at `abc1234-dirty` (after), measured on ",
			"alternated per benchmark (before, then after); conditions: busy machine.\n",
			"| apply → Ready, lab pool | median 11.3 s, max 16.2 s (5 runs; in-process manager, no floor measured) | median 11.7 s, max 13.2 s (5 runs; in-process manager, no floor measured) | ≤ floor + 2 s; ≤ 6 s on a copy-on-write pool |",
			"| failover: +switch-master → status updated | median 0.05 s, max 0.06 s (both paths) | median 0.07 s, max 0.35 s (both paths) | ≤ 1 s |",
			"| steady state: status writes per reconcile | 0 | 1.00 | — |",
		},
		absent: []string{"Failures", "| lab host", "| image roll", "| operator"},
	}, {
		name:  "a failed after variant: exit 1, the rest still written",
		input: failing,
		code:  1,
		want: []string{
			"| failover, Sentinel alone: kill → status updated | median 6.41 s, max 6.54 s | not measured | ≤ 7.5 s at down-after 5000 ms |",
			"| steady state: status writes per reconcile | 0 | 1.00 | — |",
			"Failures in this run: after: BenchmarkFailover failed; after: BENCH-FAILED: after Failover",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "benchmarks.md")
			if err := os.WriteFile(out, []byte(docHead+oldSection+"\n"+docTail), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout bytes.Buffer
			if code := runCompare(strings.NewReader(tc.input), &stdout, "f81b8ca", "abc1234-dirty", out, "busy machine."); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			doc := string(data)
			if !strings.HasPrefix(doc, docHead+compareBegin+"\n## Before and after\n\n") || !strings.HasSuffix(doc, compareEnd+"\n\n"+docTail) || strings.Contains(doc, "old sentence") {
				t.Errorf("section not replaced in place:\n%s", doc)
			}
			if !strings.Contains(doc, stdout.String()) || !strings.HasPrefix(stdout.String(), "| Figure | Before (f81b8ca) | After (this tree) | Target |") {
				t.Errorf("stdout is not the section's table:\n%s", stdout.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(doc, w) {
					t.Errorf("document lacks %q:\n%s", w, doc)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(doc, a) {
					t.Errorf("document has %q:\n%s", a, doc)
				}
			}
		})
	}
}

func TestDirty(t *testing.T) {
	for _, tc := range []struct {
		name, status, skip string
		want               bool
	}{
		{"clean", "", "docs/benchmarks.md", false},
		{"only the document being written", " M docs/benchmarks.md\n", "docs/benchmarks.md", false},
		{"a modified file", " M docs/benchmarks.md\n M controllers/reconcile.go\n", "docs/benchmarks.md", true},
		{"an untracked file", "?? test/chaos/killpoints_test.go\n", "docs/benchmarks.md", true},
		{"document outside the repository", " M docs/benchmarks.md\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dirty(tc.status, tc.skip); got != tc.want {
				t.Errorf("dirty = %v, want %v", got, tc.want)
			}
		})
	}
}
