// Command benchtable reads `go test -bench` output of the operator's
// benchmarks (test/bench, internal/redisclient) on stdin, prints one
// Markdown table (figure | measured | target | met?) and writes it, with
// the machine description and how each figure is measured, to
// docs/benchmarks.md. Lab host timings come from the Timings table of
// docs/lab-host.md (and from test/lab/idempotence.sh's "timing:" line when
// it is in the input).
//
//	go test -run '^$' -bench . -benchtime 1x ./test/bench/ | go run ./hack/benchtable
//
// It exits 1 when the input reports a failed benchmark or package (the
// table is still written, with the missing figures marked).
//
// With -compare LABEL it reads the output of hack/bench-compare.sh instead:
// two variants of the operator run alternately, each run preceded by a
// "### VARIANT before ..." or "### VARIANT after ..." line. It prints a
// before/after table and writes it as the "Before and after" section of the
// document, leaving the rest of the document as it is (see compare.go). A
// plain run keeps that section from the document it overwrites.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	out := flag.String("o", "docs/benchmarks.md", "Markdown file to write (\"\" writes none)")
	labDoc := flag.String("lab-doc", "docs/lab-host.md,docs/lab.md", "comma-separated documents whose timings tables have the lab host playbook and `make lab` timings")
	note := flag.String("note", "", "load conditions and anything else to say about the run")
	compare := flag.String("compare", "", "read hack/bench-compare.sh output (### VARIANT before/after markers); LABEL names the before variant; writes only the \"Before and after\" section of -o")
	tree := flag.String("tree", "", "with -compare: the working tree the after variant was built from (default: HEAD's short commit, \"-dirty\" when a file other than -o differs)")
	flag.Parse()

	if *compare != "" {
		if *tree == "" {
			*tree = workingTree(*out)
		}
		os.Exit(runCompare(os.Stdin, os.Stdout, *compare, *tree, *out, *note))
	}

	in, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	in.lab = labTimings(*labDoc, in.lab)
	rows := evaluate(in)
	table := markdownTable(rows)
	fmt.Print(table)
	if *out != "" {
		old, err := os.ReadFile(*out)
		if err != nil && !os.IsNotExist(err) {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(2)
		}
		doc := document(in, rows, table, *note, string(old))
		if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "benchtable: wrote %s\n", *out)
	}
	if len(in.failures) > 0 {
		fmt.Fprintf(os.Stderr, "benchtable: failures in the input: %s\n", strings.Join(in.failures, "; "))
		os.Exit(1)
	}
}

// input is what the benchmark output says.
type input struct {
	metrics  map[string]float64 // unit -> value
	ran      map[string]bool    // benchmark names that reported a result
	skipped  map[string]string  // benchmark -> reason
	failures []string
	cpu      string
	lab      map[string]string // lab timing figure -> value
	pools    map[string]string // BenchmarkApplyToReady's pool tag -> "name, driver"
}

var (
	benchLine  = regexp.MustCompile(`^(Benchmark[^\s-]+)(-\d+)?\s+(\d+)\s+(.*)$`)
	statusLine = regexp.MustCompile(`^\s*--- (SKIP|FAIL): (Benchmark\S+)`)
	labLine    = regexp.MustCompile(`timing: run 1 ([\d.]+) s, run 2 ([\d.]+) s`)
	poolLine   = regexp.MustCompile(`: pool (\w+): (\S+), driver (\S+)$`)
	procSuffix = regexp.MustCompile(`-\d+$`)
)

func parse(r io.Reader) (*input, error) {
	in := &input{metrics: map[string]float64{}, ran: map[string]bool{}, skipped: map[string]string{}, lab: map[string]string{}, pools: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var pending string // benchmark whose SKIP/FAIL reason follows
	for sc.Scan() {
		line := sc.Text()
		if m := benchLine.FindStringSubmatch(line); m != nil {
			in.ran[m[1]] = true
			fields := strings.Fields(m[4])
			for i := 0; i+1 < len(fields); i += 2 {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err != nil {
					break
				}
				in.metrics[fields[i+1]] = v
			}
			pending = ""
			continue
		}
		if m := statusLine.FindStringSubmatch(line); m != nil {
			name := procSuffix.ReplaceAllString(m[2], "")
			if m[1] == "FAIL" {
				in.failures = append(in.failures, name+" failed")
			} else {
				in.skipped[name] = ""
			}
			pending = name
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "cpu: "):
			in.cpu = strings.TrimPrefix(line, "cpu: ")
		case strings.HasPrefix(line, "FAIL\t"), strings.HasPrefix(line, "BENCH-FAILED"):
			in.failures = append(in.failures, trimmed)
		case pending != "" && strings.HasPrefix(line, "    ") && trimmed != "":
			if _, ok := in.skipped[pending]; ok && in.skipped[pending] == "" {
				in.skipped[pending] = trimmed
			}
		}
		if m := poolLine.FindStringSubmatch(line); m != nil {
			in.pools[m[1]] = m[2] + ", " + m[3]
		}
		if m := labLine.FindStringSubmatch(line); m != nil {
			in.lab["first"] = m[1] + " s (test/lab/idempotence.sh, this run)"
			in.lab["second"] = m[2] + " s (test/lab/idempotence.sh, this run)"
		}
	}
	return in, sc.Err()
}

// labTimings reads the lab timings tables of the documents (rows starting
// with "| Playbook, first run", "| Playbook, converged host" and any row
// naming `make lab`) unless the input already had this run's timings.
func labTimings(paths string, got map[string]string) map[string]string {
	for _, path := range strings.Split(paths, ",") {
		labTimingsFrom(strings.TrimSpace(path), got)
	}
	return got
}

func labTimingsFrom(path string, got map[string]string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 2 {
			continue
		}
		name, value := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		src := value + " (" + path + ")"
		switch {
		case strings.HasPrefix(name, "Playbook, first run") && got["first"] == "":
			got["first"] = src
		case strings.HasPrefix(name, "Playbook, converged host") && got["second"] == "":
			got["second"] = src
		case strings.Contains(name, "`make lab`") && got["make-lab"] == "":
			got["make-lab"] = src
		}
	}
}

// row is one line of the table.
type row struct {
	figure, measured, target, met, how string
}

// num formats a value with a unit.
func num(v float64, unit string) string {
	switch {
	case v == 0:
		return "0" + unit
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64) + unit
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64) + unit
	default:
		return strconv.FormatFloat(v, 'f', 2, 64) + unit
	}
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

const (
	notMeasured = "not measured"
	notRecorded = "not recorded"
	noTarget    = "—"
)

func evaluate(in *input) []row {
	m := func(unit string) (float64, bool) { v, ok := in.metrics[unit]; return v, ok }
	missing := func(bench string) string {
		if reason, ok := in.skipped[bench]; ok {
			return notMeasured + " (skipped: " + strings.TrimSpace(reason) + ")"
		}
		return notMeasured
	}
	var rows []row
	add := func(r row) { rows = append(rows, r) }

	// apply -> Ready, the floor, member rebuild
	applyRows(in, m, missing, add)

	// failover
	failoverRows(m, missing, add)

	// TLS next to plaintext
	tlsRows(m, missing, add)

	// image roll
	if gap, ok := m("roll-write-gap-s"); ok {
		lost, _ := m("roll-acked-lost")
		switches, _ := m("roll-master-switches")
		took, _ := m("roll-duration-s")
		how := "test/bench BenchmarkImageRoll: a Ready formation's image alias is changed to a second alias of the lab image, so every container is replaced (replicas first, then a planned failover that holds writes until the replicas caught up, then the old master), while a writer sends SET + WAIT 1 every 20 ms through the connection Secret's FailoverClient."
		add(row{"image roll: longest gap in successful writes", num(gap, " s"), "≤ 2 s", yesNo(gap <= 2), how})
		add(row{"image roll: acknowledged writes lost, master switches", fmt.Sprintf("%s lost, %s switch(es); roll took %s", num(lost, ""), num(switches, ""), num(took, " s")), "0 lost, 1 switch", yesNo(lost == 0 && switches == 1), how})
	} else {
		add(row{"image roll: longest gap in successful writes", missing("BenchmarkImageRoll"), "≤ 2 s", noTarget, ""})
	}

	// Valkey next to Redis, and the migration
	engineRows(m, missing, add)

	// password rotations
	rotationRows(m, missing, add)

	// on the three-member Incus cluster
	clusterRows(m, missing, add)
	handoverRows(m, missing, add)

	// client overhead
	if p, ok := m("plain-median-ns"); ok && p > 0 {
		i, _ := m("instrumented-median-ns")
		ratio := i / p
		add(row{"client overhead, instrumented / plain go-redis", fmt.Sprintf("%.4f (%+.2f %%; SET+GET median %s vs %s µs)", ratio, 100*(ratio-1), num(i/1000, ""), num(p/1000, "")), "≤ 1.03 (≤ 3 %)", yesNo(ratio <= 1.03),
			"internal/redisclient BenchmarkGetSetPaired: a SET + GET round trip on a loopback redis-server through the plain client and the instrumented one (metrics hook), interleaved and alternating which goes first; ratio of the medians."})
	} else {
		add(row{"client overhead, instrumented / plain go-redis", missing("BenchmarkGetSetPaired"), "≤ 1.03 (≤ 3 %)", noTarget, ""})
	}

	// steady state
	if w, ok := m("steady-incus-writes-per-reconcile"); ok {
		r, _ := m("steady-incus-reads-per-reconcile")
		cmds, _ := m("steady-redis-cmds-per-reconcile")
		wcmds, _ := m("steady-redis-write-cmds-per-reconcile")
		rps, _ := m("steady-reconciles-per-s")
		sw, _ := m("steady-status-writes-per-reconcile")
		resync, _ := m("steady-resync-period-s")
		how := "One formation Ready on real containers, in-process manager with counting decorators around the real Incus connector (internal/incus.Counting) and go-redis dialer (internal/redisadmin.Counting). After a whole resync period without an Incus write, the counters are reset and read after the window; reconciles from controller_runtime_reconcile_total."
		add(row{"steady state: Incus write calls per reconcile", num(w, ""), "0", yesNo(w == 0), how + " Writes are CreateInstance, StartInstance, StopInstance, DeleteInstance, UpdateInstanceDevice, WriteFile and Exec."})
		add(row{"steady state: Incus read calls per reconcile", num(r, ""), "bounded (≤ 4: one per member + 1)", yesNo(r <= 4), "Same window; every other Server method. The bound is this table's reading of \"a bounded number\" for 3 members."})
		measured := fmt.Sprintf("%s admin (%s writes)", num(cmds, ""), num(wcmds, ""))
		if canary, ok := m("steady-canary-cmds-per-reconcile"); ok {
			measured += fmt.Sprintf(" + %s canary", num(canary, ""))
		}
		add(row{"steady state: Redis commands per reconcile", measured, "bounded", yesNo(cmds <= 30),
			"Same window; admin commands are Admin calls × the commands each sends (redisadmin.CommandsPerCall; AUTH on new connections not counted). The canary (controllers/canary.go: SET + GET through a FailoverClient, at most every 5 s) bypasses the Admin dialer: its commands are the larger of what its client's hook counted (rsf_cache_hits/misses_total, subsystem canary) and 2 × its successful probes (rsf_formation_canary_latency_seconds count), without the client's own Sentinel discovery. \"Bounded\" is checked on the admin commands as ≤ 10 per member."})
		add(row{"steady state: reconciles per second (1 formation)", fmt.Sprintf("%s (resync %s)", num(rps, "/s"), num(resync, " s")), noTarget, noTarget, "Same window. A Ready formation is reconciled once per resync period plus Sentinel events; more would be a reconcile loop."})
		add(row{"steady state: status writes per reconcile", num(sw, ""), noTarget, noTarget, "Same window; MODIFIED events of the formation seen by a watch (the status fields that changed are logged in the benchmark output)."})
	} else {
		add(row{"steady state: Incus write calls per reconcile", missing("BenchmarkSteadyState"), "0", noTarget, ""})
	}

	// operator process
	procN := procSizes(in.metrics)
	howProc := "bin/manager as its own process (default flags: 10 workers, resync 15 s) against the envtest API server, formations Ready on real containers; after 20 s to settle, over the window: CPU = (utime+stime delta)/wall from /proc/<pid>/stat, RSS = the largest VmRSS sampled every second, VmHWM from /proc/<pid>/status, reconciles/s from its /metrics."
	if len(procN) == 0 {
		add(row{"operator CPU / resident memory", missing("BenchmarkOperatorProcess"), "RSS ≤ 80 MB with 10", noTarget, ""})
	}
	for _, n := range procN {
		tag := strconv.Itoa(n)
		cpu := in.metrics["proc-cpu-pct-"+tag]
		rss := in.metrics["proc-rss-MiB-"+tag]
		hwm := in.metrics["proc-hwm-MiB-"+tag]
		rps := in.metrics["proc-reconciles-per-s-"+tag]
		add(row{fmt.Sprintf("operator CPU, %d formation(s)", n), fmt.Sprintf("%s of one core (%s reconciles/s)", num(cpu, " %"), num(rps, "")), noTarget, noTarget, howProc})
		target, met := noTarget, noTarget
		if n == 10 {
			target = "≤ 80 MB (76.3 MiB)"
			met = yesNo(rss*(1<<20) <= 80e6)
		}
		add(row{fmt.Sprintf("operator resident memory, %d formation(s)", n), fmt.Sprintf("%s (VmHWM %s)", num(rss, " MiB"), num(hwm, " MiB")), target, met, howProc})
	}

	// scale on the fake backend
	if t, ok := m("scale-converge-s"); ok {
		n, _ := m("scale-formations")
		hwm, _ := m("scale-hwm-MiB")
		heap, _ := m("scale-heap-inuse-MiB")
		rpf, _ := m("scale-reconciles-per-formation")
		how := "envtest API server + the manager in-process (default options) on the fake Incus backend (incusfake) and the simulated Redis world (internal/redisadmin/redisfake, which answers like Redis 7.0 from the configuration the operator writes), no-op Sentinel watcher, in a loopback-only network namespace. From the first create (with the namespace's password Secrets in place) until the last formation is Ready; memory is the benchmark process (manager, its cache and the fakes), not the API server."
		add(row{fmt.Sprintf("controller scale: %d formations to Ready (fake Incus)", int(n)), fmt.Sprintf("%s (%s reconciles per formation)", num(t, " s"), num(rpf, "")), noTarget, noTarget, how})
		add(row{fmt.Sprintf("controller scale: memory with %d formations", int(n)), fmt.Sprintf("VmHWM %s (Go heap in use %s)", num(hwm, " MiB"), num(heap, " MiB")), noTarget, noTarget, how})
		if w, ok := m("scale-steady-incus-writes-per-reconcile"); ok {
			r, _ := m("scale-steady-incus-reads-per-reconcile")
			rps, _ := m("scale-steady-reconciles-per-s")
			add(row{fmt.Sprintf("controller scale: steady state with %d formations", int(n)), fmt.Sprintf("%s Incus writes and %s reads per reconcile, %s reconciles/s", num(w, ""), num(r, ""), num(rps, "")), "0 writes", yesNo(w == 0),
				"After all are Ready, counters reset, one resync period + 5 s."})
		}
	} else {
		add(row{"controller scale: 500 formations to Ready (fake Incus)", missing("BenchmarkScaleFake"), noTarget, noTarget, ""})
	}

	// lab host
	for _, l := range []struct{ key, figure string }{
		{"first", "lab host playbook, first run"},
		{"second", "lab host playbook, second run (changed=0)"},
		{"make-lab", "`make lab`"},
	} {
		v := in.lab[l.key]
		if v == "" {
			v = notRecorded
		}
		add(row{l.figure, v, noTarget, noTarget, "Recorded by other work: test/lab/idempotence.sh prints the wall time of both playbook runs; docs/lab-host.md keeps the measured values."})
	}
	return rows
}

// failoverRows are the failover drill rows (test/bench BenchmarkFailover):
// per path, kill -> new master, kill -> status and the longest write gap;
// then +switch-master -> status over every drill.
func failoverRows(m func(string) (float64, bool), missing func(string) string, add func(row)) {
	drills, _ := m("drills")
	lost, _ := m("drill-acked-lost")
	const how = "test/bench BenchmarkFailover: one formation (down-after 5000 ms), the drills alternating between spec.sentinel.fastFailover on (fast path) and off (Sentinel alone), each once the formation is Ready at that setting: hard-stop the master's container (incus stop --force; the kill is the start of that call; only once the container ran longer than the operator's 1 min crash window, as the master role alternates between two members) while a writer sends SET + WAIT 1 every 20 ms through the connection Secret's FailoverClient. Each drill checks status.lastFailover.path names the path measured."
	for _, p := range []struct{ tag, name, switchTarget, statusTarget, gapTarget string }{
		{"fast", "fast path", "median ≤ 3 s", "median ≤ 3.5 s", "median ≤ 4 s"},
		{"sentinel", "Sentinel alone", noTarget + " (down-after 5000 ms + election; 6.3 s before the fast path)", "≤ 7.5 s at down-after 5000 ms", noTarget},
	} {
		// Before the fast path, BenchmarkFailover measured Sentinel alone
		// under unprefixed names: a comparison with such a revision reads
		// them as the Sentinel path's.
		pm := func(name string) (float64, bool) {
			v, ok := m(p.tag + "-" + name)
			if !ok && p.tag == "sentinel" {
				v, ok = m(name)
			}
			return v, ok
		}
		med, ok := pm("kill-switch-median-s")
		if !ok {
			for _, fig := range []string{"kill → new master", "kill → status updated", "longest gap in acknowledged writes"} {
				add(row{"failover, " + p.name + ": " + fig, missing("BenchmarkFailover"), noTarget, noTarget, ""})
			}
			continue
		}
		mx, _ := pm("kill-switch-max-s")
		stMed, _ := pm("kill-status-median-s")
		stMax, _ := pm("kill-status-max-s")
		switchMet, statusMet, gapMet := noTarget, yesNo(stMax <= 7.5), noTarget
		gapMed, gapOK := pm("write-gap-median-s")
		gapMax, _ := pm("write-gap-max-s")
		if p.tag == "fast" {
			switchMet, statusMet, gapMet = yesNo(med <= 3), yesNo(stMed <= 3.5), yesNo(gapMed <= 4)
		}
		add(row{"failover, " + p.name + ": kill → new master", fmt.Sprintf("median %s, max %s (%d drills)", num(med, " s"), num(mx, " s"), int(drills)), p.switchTarget, switchMet,
			how + " Kill → new master: until a surviving sentinel's SENTINEL GET-MASTER-ADDR-BY-NAME, polled every 20 ms, names another master."})
		add(row{"failover, " + p.name + ": kill → status updated", fmt.Sprintf("median %s, max %s", num(stMed, " s"), num(stMax, " s")), p.statusTarget, statusMet,
			"From the kill until status.master names another member (API polled every 20 ms)."})
		gap := missing("BenchmarkFailover")
		if gapOK {
			gap = fmt.Sprintf("median %s, max %s; %d acknowledged writes lost over all drills", num(gapMed, " s"), num(gapMax, " s"), int(lost))
		} else {
			gapMet = noTarget
		}
		add(row{"failover, " + p.name + ": longest gap in acknowledged writes", gap, p.gapTarget, gapMet,
			"The writer's longest time between two successful writes (each SET + WAIT 1; min-replicas-to-write 1 makes the master refuse writes it cannot replicate), from the kill until the formation is Ready again."})
	}
	if med, ok := m("switch-status-median-s"); ok {
		mx, _ := m("switch-status-max-s")
		add(row{"failover: +switch-master → status updated", fmt.Sprintf("median %s, max %s (both paths)", num(med, " s"), num(mx, " s")), "≤ 1 s", yesNo(mx <= 1),
			"The time the status change was first seen (API polled every 20 ms) minus status.lastFailover.time, the moment the operator's Sentinel watcher received +switch-master. 0 when status named the new master before the event arrived (a reconcile saw Sentinel's new state first). Judged on the max."})
	} else {
		add(row{"failover: +switch-master → status updated", missing("BenchmarkFailover"), "≤ 1 s", noTarget, ""})
	}
}

// tlsKillStatusMargin is how much longer kill -> status may take with TLS
// than without (the TLS issue's target).
const tlsKillStatusMargin = 0.5

// tlsRows are test/bench BenchmarkTLS's rows: the client round trip TLS vs
// plaintext (no target) and kill -> status with TLS vs plaintext per path.
func tlsRows(m func(string) (float64, bool), missing func(string) string, add func(row)) {
	const how = "test/bench BenchmarkTLS: in one run, two formations side by side under one manager, both with the defaults (3 members, down-after 5000 ms): one plaintext, one with spec.tls enabled and clientAuth Required (the operator's CA; every link TLS-only)."
	figure := "TLS: client SET+GET round trip, TLS / plaintext"
	if ratio, ok := m("tls-rtt-ratio"); ok {
		pm, _ := m("tls-rtt-plain-median-ns")
		pp, _ := m("tls-rtt-plain-p99-ns")
		tm, _ := m("tls-rtt-tls-median-ns")
		tp, _ := m("tls-rtt-tls-p99-ns")
		n, _ := m("tls-rtt-n")
		measured := fmt.Sprintf("%.3f (median %s vs %s µs, p99 %s vs %s µs; %d each)", ratio, num(tm/1000, ""), num(pm/1000, ""), num(tp/1000, ""), num(pp/1000, ""), int(n))
		if fp, ok := m("tls-first-ping-plain-median-ms"); ok {
			ft, _ := m("tls-first-ping-tls-median-ms")
			measured += fmt.Sprintf("; a fresh client's first PING: median %s vs %s", num(ft, " ms"), num(fp, " ms"))
		}
		add(row{figure, measured, noTarget, noTarget, how + " SET + GET through the client built from each connection Secret (redisclient.FromSecretData: a Sentinel FailoverClient, rediss:// with the Secret's CA and client certificate for TLS), on warm connections, the formations alternating in batches of 100 and which goes first alternating; medians, p99 and the ratio of the medians (TLS first). The first PING of a fresh client (Sentinel discovery, dials, TLS handshakes, AUTH; the Secret read not counted) is timed apart, alternating too."})
	} else {
		add(row{figure, missing("BenchmarkTLS"), noTarget, noTarget, ""})
	}
	drills, _ := m("tls-drills")
	for _, p := range []struct{ tag, name string }{{"fast", "fast path"}, {"sentinel", "Sentinel alone"}} {
		figure := "TLS: kill → status updated, " + p.name + " (down-after 5000 ms), TLS − plaintext"
		target := fmt.Sprintf("≤ %g s", tlsKillStatusMargin)
		diff, ok := m("tls-" + p.tag + "-kill-status-diff-s")
		if !ok {
			add(row{figure, missing("BenchmarkTLS"), target, noTarget, ""})
			continue
		}
		plain, _ := m("tls-" + p.tag + "-kill-status-plain-median-s")
		withTLS, _ := m("tls-" + p.tag + "-kill-status-tls-median-s")
		add(row{figure, fmt.Sprintf("%+.2f s (median %s with TLS, %s plaintext; %d drills each)", diff, num(withTLS, " s"), num(plain, " s"), int(drills)), target, yesNo(diff <= tlsKillStatusMargin),
			how + " Per failover path (spec.sentinel.fastFailover on, then off: Sentinel alone detects the loss over its TLS links), the two formations' masters are hard-stopped in turn, as in BenchmarkFailover (once past the crash window; the formation Ready again before the next drill), timed from the kill until status.master names another member (API polled every 20 ms); difference of the medians. Sentinel alone varies by up to 1 s between drills (it delays a failover's start by a random 0-1 s, SENTINEL_MAX_DESYNC), so with few drills its difference is uncertain by about as much as the target: raise BENCH_TLS_DRILLS to tighten it."})
	}
}

// engineRows are test/bench BenchmarkEngines's rows: apply -> Ready and
// kill -> status of Valkey next to Redis, and the live Redis -> Valkey
// migration under a writer (the image roll's targets).
func engineRows(m func(string) (float64, bool), missing func(string) string, add func(row)) {
	const how = "test/bench BenchmarkEngines: in one run, under one manager (in-process, default options), formations of both engines with the defaults (3 members, down-after 5000 ms; spec.incus.image unset, so each engine's lab image: rsf-redis7-bookworm-v1, rsf-valkey8-bookworm-v1), each engine in its own namespace."
	figure := "engines: apply → Ready, Valkey − Redis"
	if diff, ok := m("engines-apply-diff-s"); ok {
		r, _ := m("engines-apply-redis-median-s")
		v, _ := m("engines-apply-valkey-median-s")
		rMax, _ := m("engines-apply-redis-max-s")
		vMax, _ := m("engines-apply-valkey-max-s")
		runs, _ := m("engines-apply-runs")
		add(row{figure, fmt.Sprintf("%+.2f s (median %s Valkey, %s Redis; max %s, %s; %d runs each)", diff, num(v, " s"), num(r, " s"), num(vMax, " s"), num(rMax, " s"), int(runs)), noTarget, noTarget,
			how + " BENCH_ENGINE_APPLY (3) formations per engine created one at a time, the engines alternating (which goes first too), each timed from the create until a watch on the formations first sees it Ready (as BenchmarkApplyToReady, on the lab's pool), then deleted and its containers gone before the next; one unmeasured creation per engine first (each image's first launch on the pool). Medians, and Valkey − Redis of the medians. Either engine's apply → Ready is bimodal here: in about half the runs replication is linked (and the formation Ready) 0.3-1.2 s after every member is configured, in the others at once (the benchmark logs each run's phases), so with 3 runs per engine the difference is uncertain by about 1 s: raise BENCH_ENGINE_APPLY to tighten it."})
	} else {
		add(row{figure, missing("BenchmarkEngines"), noTarget, noTarget, ""})
	}
	figure = "engines: kill → status updated, fast path, Valkey − Redis"
	const killTarget = "median ≤ 3.5 s each (the fast path's)"
	if diff, ok := m("engines-kill-status-diff-s"); ok {
		r, _ := m("engines-kill-status-redis-median-s")
		v, _ := m("engines-kill-status-valkey-median-s")
		rMax, _ := m("engines-kill-status-redis-max-s")
		vMax, _ := m("engines-kill-status-valkey-max-s")
		drills, _ := m("engines-drills")
		add(row{figure, fmt.Sprintf("%+.2f s (median %s Valkey, %s Redis; max %s, %s; %d drills each)", diff, num(v, " s"), num(r, " s"), num(vMax, " s"), num(rMax, " s"), int(drills)), killTarget, yesNo(r <= 3.5 && v <= 3.5),
			how + " One formation per engine, both Ready with spec.sentinel.fastFailover on; their masters are hard-stopped in turn, BENCH_ENGINE_DRILLS (5) each, as in BenchmarkTLS (once past the operator's 1 min crash window; the formation Ready again before the next drill; each drill checks status.lastFailover.path is the fast path), timed from the kill until status.master names another member (API polled every 20 ms); medians, and Valkey − Redis of the medians. The target is the fast path's own, met by each engine."})
	} else {
		add(row{figure, missing("BenchmarkEngines"), killTarget, noTarget, ""})
	}
	figure = "engine migration Redis → Valkey: longest gap in successful writes"
	gap, ok := m("engines-migration-write-gap-s")
	if !ok {
		add(row{figure, missing("BenchmarkEngines"), "≤ 2 s", noTarget, ""})
		return
	}
	n, _ := m("engines-migrations")
	lost, _ := m("engines-migration-acked-lost")
	maxSwitches, _ := m("engines-migration-master-switches")
	minSwitches, ok := m("engines-migration-master-switches-min")
	if !ok {
		minSwitches = maxSwitches
	}
	took, _ := m("engines-migration-duration-s")
	tookMax, _ := m("engines-migration-duration-max-s")
	howMigration := "test/bench BenchmarkEngines: BENCH_ENGINE_MIGRATIONS (3) times, a fresh Ready Redis formation with the defaults (alone: the other formations deleted) has spec.engine changed to valkey (spec.incus.image unset) while a writer sends SET + WAIT 1 every 20 ms through the connection Secret's FailoverClient, as in BenchmarkImageRoll: the operator replaces the replicas with Valkey members, moves the master to one of them by a planned failover and replaces the old master. Timed from the patch until every status.members[].engine is valkey, every container was replaced (Incus creation times) and the formation is Ready at the new generation. Longest time between two successful writes from the patch on (the worst migration); acknowledged writes missing when read back (all migrations); master switches: status.failovers' increase, per migration; duration: median and max."
	add(row{figure, fmt.Sprintf("%s (worst of %d migration(s))", num(gap, " s"), int(n)), "≤ 2 s", yesNo(gap <= 2), howMigration})
	switches := fmt.Sprintf("%d", int(maxSwitches))
	if minSwitches != maxSwitches {
		switches = fmt.Sprintf("%d to %d", int(minSwitches), int(maxSwitches))
	}
	add(row{"engine migration Redis → Valkey: acknowledged writes lost, master switches", fmt.Sprintf("%d lost, %s switch(es) per migration; a migration took %s (median; max %s)", int(lost), switches, num(took, " s"), num(tookMax, " s")),
		"0 lost, 1 switch", yesNo(lost == 0 && minSwitches == 1 && maxSwitches == 1), howMigration})
}

// clusterRows are test/bench BenchmarkCluster's rows: a formation on the
// cluster lab, apply -> Ready, the loss of the master's host, and the
// evacuation of the master's host under a writer.
func clusterRows(m func(string) (float64, bool), missing func(string) string, add func(row)) {
	const how = "test/bench BenchmarkCluster: on the cluster lab (make lab-cluster: Incus cluster members cache-01..03, each an incusd in a privileged nested container of the lab host; members on the macvlan network rsfmv), one manager (in-process, default options) reaching the cluster at cache-01 with cache-02 and cache-03 as fallback URLs; formations with the defaults (3 members, down-after 5000 ms, spread Required)."
	figure := "cluster: apply → Ready, three members on three hosts"
	if med, ok := m("cluster-apply-median-s"); ok {
		mx, _ := m("cluster-apply-max-s")
		runs, _ := m("cluster-apply-runs")
		add(row{figure, fmt.Sprintf("median %s, max %s (%d runs)", num(med, " s"), num(mx, " s"), int(runs)), noTarget, noTarget,
			how + " BENCH_CLUSTER_APPLY (3) formations created one at a time, each timed from the create until status says Ready (polled every 50 ms), then deleted and its containers gone before the next."})
	} else {
		add(row{figure, missing("BenchmarkCluster"), noTarget, noTarget, ""})
	}
	figure = "cluster: master's host hard-stopped → status names a new master"
	if med, ok := m("cluster-kill-status-median-s"); ok {
		mx, _ := m("cluster-kill-status-max-s")
		n, _ := m("cluster-kills")
		add(row{figure, fmt.Sprintf("median %s, max %s (%d drills)", num(med, " s"), num(mx, " s"), int(n)), noTarget, noTarget,
			how + " BENCH_CLUSTER_KILLS (2) times, the nested host holding the master is hard-stopped (incus stop --force on the lab host) and the time until status.master names another member is taken (polled every 100 ms); the node is started again and the formation waited Ready and spread before the next. Sentinel promotes after down-after; Incus answers the operator's first calls after the loss slowly (its heartbeat round takes 20-30 s, see docs/lab-host.md), which the figure includes."})
	} else {
		add(row{figure, missing("BenchmarkCluster"), noTarget, noTarget, ""})
	}
	figure = "cluster: evacuation of the master's host, longest gap in successful writes"
	gap, ok := m("cluster-evacuation-gap-max-s")
	if !ok {
		add(row{figure, missing("BenchmarkCluster"), "≤ 2 s", noTarget, ""})
		return
	}
	n, _ := m("cluster-evacuations")
	lost, _ := m("cluster-evacuation-lost")
	bad, _ := m("cluster-evacuation-bad-switches")
	howEvac := how + " BENCH_CLUSTER_EVACUATIONS (2) times, incus cluster evacuate of the master's host while a writer sends SET + WAIT 1 every 20 ms through the connection Secret's FailoverClient: the operator hands the master role over by a planned failover while the master's stop waits in its handover gate, then Incus moves the container; timed until the formation is Ready with its master on another host; then incus cluster restore. Longest time between two successful writes (the worst evacuation), acknowledged writes missing when read back, evacuations whose status.failovers did not grow by exactly 1."
	add(row{figure, fmt.Sprintf("%s (worst of %d)", num(gap, " s"), int(n)), "≤ 2 s", yesNo(gap <= 2), howEvac})
	add(row{"cluster: evacuation, acknowledged writes lost, master switches", fmt.Sprintf("%d lost; %d of %d evacuation(s) with other than 1 switch", int(lost), int(bad), int(n)), "0 lost, 1 switch each", yesNo(lost == 0 && bad == 0), howEvac})
}

// handoverRows are test/image BenchmarkLeaderHandover's rows: the leader
// lease passing between two replicas of the shipped image.
func handoverRows(m func(string) (float64, bool), missing func(string) string, add func(row)) {
	lease, _ := m("lease-duration-s")
	how := fmt.Sprintf("test/image BenchmarkLeaderHandover: the Deployment make deploy created, image by digest from make image, scaled to two replicas on a real Kubernetes of two nodes on this machine (harness.KubeCluster: kube-apiserver, kube-controller-manager, kube-scheduler, a kubelet and containerd per node; one replica per node, as the pods' host ports require); the leader is stopped and the time until a new holder has the Lease (polled every 100 ms) is taken; the Deployment is back at two Ready pods before the next round. Lease duration %s, renew deadline 10 s, retry period 2 s (controller-runtime's defaults).", num(lease, " s"))
	for _, v := range []struct{ tag, figure, target, detail string }{
		{"term", "leader handover, leader's pod deleted (SIGTERM, a rolling update)", "≤ 4.4 s (one jittered retry period), not the lease duration", " The leader's pod deleted: its kubelet sends SIGTERM, the manager releases the lease as it stops (LeaderElectionReleaseOnCancel), and the standby takes it at its next try: client-go retries every retry period × (1 + up to 1.2 jitter), 2-4.4 s; the figure includes the old leader's shutdown."},
		{"kill", "leader handover, leader's manager killed (SIGKILL, a crash)", "≤ lease duration + 4.4 s", " The leader's manager SIGKILLed through its node's containerd: the lease must expire first (13-15 s after the kill: it was last renewed up to a retry period before), then the next try of the standby or of the killed manager restarted by its kubelet (2-4.4 s)."},
	} {
		med, ok := m("handover-" + v.tag + "-median-s")
		if !ok {
			add(row{v.figure, missing("BenchmarkLeaderHandover"), v.target, noTarget, ""})
			continue
		}
		mx, _ := m("handover-" + v.tag + "-max-s")
		runs, _ := m("handover-" + v.tag + "-runs")
		met := mx <= 4.4
		if v.tag == "kill" {
			met = mx <= lease+4.4
		}
		add(row{v.figure, fmt.Sprintf("median %s, max %s (%d runs)", num(med, " s"), num(mx, " s"), int(runs)), v.target, yesNo(met), how + v.detail})
	}
}

// rotationRows are the password rotation rows (test/bench
// BenchmarkPasswordRotation): one per kind of rotation.
func rotationRows(m func(string) (float64, bool), missing func(string) string, add func(row)) {
	grace, _ := m("rotation-grace-s")
	reload, _ := m("rotation-reload-s")
	const target = "0 errors for a client that reloads within the grace; 0 lost, 0 failovers"
	how := fmt.Sprintf("test/bench BenchmarkPasswordRotation: on one Ready formation (in-process manager, --password-grace %s), one after the other: the backend user's password on the redis-servers (passwordSecretRef's value changes), its password on the sentinels (sentinelPasswordSecretRef), and the operator's own users' passwords (admin, replication, monitoring, peer: the internal credentials Secret is deleted). Two writers send SET + WAIT 1 every 20 ms through a Sentinel FailoverClient built from the connection Secret, with every connection (to the master and to the sentinel) recycled each second, so they log in again all the time. The reloading writer re-reads the connection Secret every %s and switches to a new client when it changed: its failed writes and the longest time between two successful writes are the figures. The stale writer never reloads: its errors after status.passwordRotation.retireAt show the previous password is really retired. A rotation is timed from the change until status.passwordRotation is gone and the password state Secret records no previous password; the writers run two reload periods longer. \"Previous password kept\" is how long the state Secret recorded the previous password beside the new one (polled every 100 ms): the grace as applied. Lost: acknowledged writes of both writers missing when read back; failovers: status.failovers.", num(grace, " s"), num(reload, " s"))
	for _, k := range []struct{ tag, figure string }{
		{"backend", "password rotation, backend user on the redis-servers"},
		{"sentinel", "password rotation, backend user on the sentinels"},
		{"internal", "password rotation, the operator's own users"},
	} {
		p := "rotation-" + k.tag + "-"
		figure := k.figure + ": write errors, longest write gap"
		errs, ok := m(p + "write-errors")
		if !ok {
			add(row{figure, missing("BenchmarkPasswordRotation"), target, noTarget, ""})
			continue
		}
		writes, _ := m(p + "writes")
		gap, _ := m(p + "write-gap-s")
		lost, _ := m(p + "acked-lost")
		failovers, _ := m(p + "failovers")
		took, _ := m(p + "duration-s")
		stale, _ := m(p + "stale-errors")
		measured := fmt.Sprintf("%d errors in %d writes, longest gap %s; %d lost, %d failovers; rotation took %s", int(errs), int(writes), num(gap, " s"), int(lost), int(failovers), num(took, " s"))
		if conn, ok := m(p + "connection-s"); ok {
			measured += fmt.Sprintf(" (connection Secret new after %s)", num(conn, " s"))
		}
		if prev, ok := m(p + "previous-accepted-s"); ok {
			measured += fmt.Sprintf("; previous password kept %s (grace %s)", num(prev, " s"), num(grace, " s"))
		}
		measured += fmt.Sprintf("; a client that never reloads: %d errors after the grace", int(stale))
		add(row{figure, measured, target, yesNo(errs == 0 && lost == 0 && failovers == 0), how})
	}
}

// procSizes are the formation counts of the operator process figures.
func procSizes(metrics map[string]float64) []int {
	var out []int
	for unit := range metrics {
		if tag, ok := strings.CutPrefix(unit, "proc-rss-MiB-"); ok {
			if n, err := strconv.Atoi(tag); err == nil {
				out = append(out, n)
			}
		}
	}
	sort.Ints(out)
	return out
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func markdownTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| Figure | Measured | Target | Met? |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", escape(r.figure), escape(r.measured), escape(r.target), r.met)
	}
	return b.String()
}

// document is the whole page; old is the page it replaces, whose
// "Before and after" section (make bench-compare) is carried over.
func document(in *input, rows []row, table, note, old string) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Generated by `make bench` (hack/benchtable from the `go test -bench` output of test/bench and internal/redisclient). ")
	b.WriteString("Every figure is a Go benchmark run once (`-benchtime 1x`) that reports its measurements; nothing asserts a timing, so `make test` never fails on a slow machine. Rerun `make bench` to refresh this page.\n\n")
	b.WriteString("## Machine\n\n")
	for _, l := range machine(in) {
		b.WriteString("- " + l + "\n")
	}
	if note != "" {
		b.WriteString("- Conditions: " + note + "\n")
	}
	b.WriteString("\n## Results\n\n")
	b.WriteString(table)
	if len(in.failures) > 0 {
		b.WriteString("\nFailures in this run: " + escape(strings.Join(in.failures, "; ")) + "\n")
	}
	if block, ok := compareBlock(old); ok {
		b.WriteString("\n" + block)
	}
	b.WriteString("\n## How each figure is measured\n\n")
	seen := map[string]bool{}
	for _, r := range rows {
		if r.how == "" || seen[r.how] {
			continue
		}
		seen[r.how] = true
		b.WriteString("- **" + r.figure + "**: " + r.how + "\n")
	}
	b.WriteString("\n## Raw metrics\n\n```\n")
	units := make([]string, 0, len(in.metrics))
	for u := range in.metrics {
		if u != "ns/op" && u != "B/op" && u != "allocs/op" {
			units = append(units, u)
		}
	}
	sort.Strings(units)
	for _, u := range units {
		fmt.Fprintf(&b, "%-45s %g\n", u, in.metrics[u])
	}
	b.WriteString("```\n")
	return b.String()
}

func machine(in *input) []string {
	var out []string
	cpu := in.cpu
	if cpu == "" {
		cpu = cpuModel()
	}
	out = append(out, fmt.Sprintf("CPU: %s, nproc %d", cpu, runtime.NumCPU()))
	if mem := memTotal(); mem != "" {
		out = append(out, "Memory: "+mem)
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out = append(out, "Kernel: "+strings.TrimSpace(string(k)))
	}
	if v, err := exec.Command("incus", "version").Output(); err == nil {
		out = append(out, "Incus: "+strings.Join(strings.Fields(string(v)), " "))
	}
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(l))
		if len(f) >= 3 {
			out = append(out, fmt.Sprintf("Load average when the table was written (1/5/15 min): %s %s %s", f[0], f[1], f[2]))
		}
	}
	out = append(out, "Date: "+time.Now().UTC().Format("2006-01-02 15:04 MST"))
	return out
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return ""
}
