package main

import (
	"fmt"
	"strings"
)

// The rows of test/bench BenchmarkApplyToReady: per storage pool (the
// lab's and a dir pool), the raw Incus floor, apply -> Ready next to it and
// its phases, member rebuild -> full redundancy; and several formations at
// once on the lab's pool.

// applyPools are the pool tags of the metric names, in table order.
var applyPools = []struct{ tag, name string }{{"lab", "lab pool"}, {"dir", "dir pool"}}

// applyPhases are the phases of a bring-up the benchmark reports (metric
// apply-<pool>-<phase>-median-s), in order, with their names in the table.
var applyPhases = []struct{ metric, name string }{
	{"created", "created"},
	{"started", "started"},
	{"address", "addresses"},
	{"configured", "configured"},
	{"linked", "replication linked"},
	{"sentinels", "sentinels agree"},
}

const (
	// floorMargin is how far above the raw Incus floor apply -> Ready and a
	// rebuild may be (issue 16).
	floorMargin = 2.0
	// cowTarget is apply -> Ready on a copy-on-write pool (issue 16, set on
	// a machine where it took ~17 s).
	cowTarget = 6.0
	// parallelTarget bounds N formations at once against one.
	parallelTarget = 2.0
)

const (
	howFloor    = "test/bench BenchmarkApplyToReady, in the same run as the apply figures, the pools alternating run by run: three containers of the lab image launched at once through the Incus client, as `incus launch rsf-redis7-bookworm-v1 -p rsf-redis` would (root disk on the pool, eth0 on rsfbr0, addresses by DHCP), timed until all three are Running with an IPv4 address (Incus lifecycle events, each started container's state read every 50 ms); then deleted. \"Launched\" is when the three create calls (create + start) returned; \"one container alone\" is the same with one container, measured before each member rebuild (the rebuilds' floor). One unmeasured launch per pool first, so that a copy-on-write pool has the image's volume. Median of the runs."
	howApply    = "test/bench BenchmarkApplyToReady: the operator binary as its own process with the lab's flags (hack/lab.sh) against the envtest API server; one formation (3 members, its password Secrets already there, spec.incus.storagePool the pool) created, timed until a watch on the formations delivers Ready=True and phase Ready, then deleted and its containers gone before the next run; the floor of the same pool is measured right before each run. Overhead = median apply → Ready − median floor; ratio = their quotient, which should hold across machines where absolute times do not. Targets (issue 16): within 2 s of the floor; on the copy-on-write pool ≤ 6 s, a figure set on a machine where apply → Ready took ~17 s before issue 16 — on the machine this page was measured on until then (AMD EPYC, nproc 2) it took 10.4 s before issue 16 (docs/benchmarks.md of 2026-12-01: in-process manager, dir pool), so there 6 s is a stricter target than it was where it was set. Not judged against 6 s when the lab's pool is dir."
	howPhases   = "Same runs, medians of each phase's time since the apply, as seen from outside the operator: created and started are Incus's lifecycle events of the last of the three containers, addresses when the last had an IPv4 address in its network namespace (/proc/<init pid>/net/fib_trie read every 20 ms once started: cheaper for Incus than polling its state); configured = every status.members[].role master or replica (its redis-server answered), replication linked = one master and every replica's masterLinkUp, sentinels agree = status.sentinels.reachable = 3 and quorumOK, all from the watched status (first version showing it)."
	howParallel = "test/bench BenchmarkApplyToReady: the formations created back to back on the lab's pool (after the single-formation runs), timed from the first create until the last is Ready (watched); ratio to the median of one formation on that pool in the same run. Right before, the raw floor of as many containers (3 per formation) launched at once with the Incus client on that pool until all have an address: on a small machine Incus's own work for them grows faster than linearly, which bounds what the operator can reach. Then the platform's own ratio, no operator involved: 3, then as many containers launched at once, each with redis-server and redis-sentinel started by one exec as soon as it has its address (the image's own configuration), timed until every start returned; this is what the same hardware does for 1 and for 5 formations' containers, and where it is above the target so is anything built on it."
	howRebuild  = "test/bench BenchmarkApplyToReady: on a Ready formation per pool, once every member's sentinel lists every replica, a replica's container is deleted (as `incus delete --force`) and timed, from the moment the delete returned (the container is gone; how long the delete took is given apart), until: the new container is Running with an IPv4 address (replaced), status shows it a linked replica again (linked; only status versions after one showing the loss count), every member's sentinel, asked with SENTINEL REPLICAS as the operator's admin user, lists it without s_down, o_down or disconnected (known), and Ready (watched). Full redundancy = linked and known. Target (issue 16): within 2 s of the floor; as a rebuild is one container, its floor is one container of the lab image launched alone on the same pool (as for the three), measured right before each rebuild. The pools alternate run by run."
)

func applyRows(in *input, m func(string) (float64, bool), missing func(string) string, add func(row)) {
	pool := func(tag string) string {
		if p := in.pools[tag]; p != "" {
			return " on " + p
		}
		return ""
	}
	// A pool's driver, "" when the output does not say.
	driver := func(tag string) string {
		_, d, _ := strings.Cut(in.pools[tag], ", ")
		return d
	}
	const bench = "BenchmarkApplyToReady"

	for _, p := range applyPools {
		figure := "raw Incus floor, " + p.name + ": 3 parallel launches → all have addresses"
		med, ok := m("floor-" + p.tag + "-median-s")
		if !ok {
			add(row{figure, missing(bench), noTarget, noTarget, ""})
			continue
		}
		mx, _ := m("floor-" + p.tag + "-max-s")
		launched, _ := m("floor-" + p.tag + "-launched-median-s")
		measured := fmt.Sprintf("median %s, max %s%s (launched after %s)", num(med, " s"), num(mx, " s"), pool(p.tag), num(launched, " s"))
		if single, ok := m("floor-" + p.tag + "-single-median-s"); ok {
			measured += fmt.Sprintf("; one container alone: median %s", num(single, " s"))
		}
		add(row{figure, measured, noTarget, noTarget, howFloor})
	}

	for _, p := range applyPools {
		figure := "apply → Ready, " + p.name
		target := fmt.Sprintf("≤ floor + %g s", floorMargin)
		if p.tag == "lab" {
			target += fmt.Sprintf("; ≤ %g s on a copy-on-write pool", cowTarget)
		}
		med, ok := m("apply-" + p.tag + "-ready-median-s")
		if !ok {
			// Before the floor was measured, one formation ran on the
			// lab's pool with the in-process manager.
			if old, ok := m("apply-ready-median-s"); ok && p.tag == "lab" {
				mx, _ := m("apply-ready-max-s")
				runs, _ := m("apply-ready-runs")
				add(row{figure, fmt.Sprintf("median %s, max %s (%d runs; in-process manager, no floor measured)", num(old, " s"), num(mx, " s"), int(runs)), target, noTarget, howApply})
				continue
			}
			add(row{figure, missing(bench), target, noTarget, ""})
			continue
		}
		mx, _ := m("apply-" + p.tag + "-ready-max-s")
		runs, _ := m("apply-" + p.tag + "-runs")
		overhead, _ := m("apply-" + p.tag + "-overhead-s")
		ratio, _ := m("apply-" + p.tag + "-floor-ratio")
		met := overhead <= floorMargin
		if p.tag == "lab" && driver("lab") != "" && driver("lab") != "dir" {
			met = met && med <= cowTarget
		}
		add(row{figure, fmt.Sprintf("median %s, max %s (%s)%s; %s, %.2f× the floor", num(med, " s"), num(mx, " s"), runsOf(runs), pool(p.tag), overFloor(overhead, ""), ratio), target, yesNo(met), howApply})
	}

	for _, p := range applyPools {
		figure := "apply → Ready phases, " + p.name + " (medians since the apply)"
		var parts []string
		for _, ph := range applyPhases {
			if v, ok := m("apply-" + p.tag + "-" + ph.metric + "-median-s"); ok {
				parts = append(parts, ph.name+" "+num(v, " s"))
			}
		}
		if len(parts) == 0 {
			add(row{figure, missing(bench), noTarget, noTarget, ""})
			continue
		}
		if v, ok := m("apply-" + p.tag + "-ready-median-s"); ok {
			parts = append(parts, "Ready "+num(v, " s"))
		}
		add(row{figure, strings.Join(parts, ", "), noTarget, noTarget, howPhases})
	}

	n, _ := m("apply-parallel-formations")
	if all, ok := m("apply-parallel-all-ready-s"); ok {
		med, _ := m("apply-parallel-median-s")
		measured := fmt.Sprintf("all Ready after %s (median %s)", num(all, " s"), num(med, " s"))
		met := noTarget
		ratio, ok := m("apply-parallel-ratio")
		if !ok { // before the ratio was reported
			if one, found := m("apply-ready-median-s"); found && one > 0 {
				ratio, ok = all/one, true
			}
		}
		if ok {
			measured += fmt.Sprintf(", %.2f× one formation", ratio)
			met = yesNo(ratio <= parallelTarget)
		}
		if floor, ok := m("apply-parallel-floor-s"); ok {
			measured += fmt.Sprintf("; Incus alone, the %d containers launched at once until all have addresses: %s (%s over it)", 3*int(n), num(floor, " s"), num(all-floor, " s"))
		}
		if ratio, ok := m("floor-served-parallel-ratio"); ok {
			one, _ := m("floor-served-one-s")
			every, _ := m("floor-served-parallel-s")
			measured += fmt.Sprintf("; the platform's own ratio, containers launched until redis-server and redis-sentinel run in each (no operator): %d at once %s, 3 %s, %.2f×", 3*int(n), num(every, " s"), num(one, " s"), ratio)
		}
		add(row{fmt.Sprintf("apply → Ready, %d formations at once", int(n)), measured, fmt.Sprintf("≤ %g× one formation", parallelTarget), met, howParallel})
	} else {
		add(row{"apply → Ready, 5 formations at once", missing(bench), fmt.Sprintf("≤ %g× one formation", parallelTarget), noTarget, ""})
	}

	for _, p := range applyPools {
		figure := "member rebuild → full redundancy, " + p.name
		target := fmt.Sprintf("≤ floor + %g s", floorMargin)
		med, ok := m("rebuild-" + p.tag + "-redundant-median-s")
		if !ok {
			add(row{figure, missing(bench), target, noTarget, ""})
			continue
		}
		mx, _ := m("rebuild-" + p.tag + "-redundant-max-s")
		runs, _ := m("rebuild-" + p.tag + "-runs")
		replaced, _ := m("rebuild-" + p.tag + "-replaced-median-s")
		linked, _ := m("rebuild-" + p.tag + "-linked-median-s")
		known, _ := m("rebuild-" + p.tag + "-known-median-s")
		ready, _ := m("rebuild-" + p.tag + "-ready-median-s")
		measured := fmt.Sprintf("median %s, max %s (%s)%s: replaced %s, linked %s, known to every sentinel %s; Ready %s",
			num(med, " s"), num(mx, " s"), runsOf(runs), pool(p.tag), num(replaced, " s"), num(linked, " s"), num(known, " s"), num(ready, " s"))
		if deletion, ok := m("rebuild-" + p.tag + "-deletion-median-s"); ok {
			measured += fmt.Sprintf(", all since the container was gone (the delete itself, a force stop and the delete, took %s)", num(deletion, " s"))
		}
		met := noTarget
		// A rebuild is one container: its floor is one launched alone,
		// measured before each rebuild (older output: the three).
		if floor, ok := m("floor-" + p.tag + "-single-median-s"); ok {
			measured += "; " + overFloor(med-floor, " of one launch")
			met = yesNo(med-floor <= floorMargin)
		} else if floor, ok := m("floor-" + p.tag + "-median-s"); ok {
			measured += "; " + overFloor(med-floor, " of three launches")
			met = yesNo(med-floor <= floorMargin)
		}
		add(row{figure, measured, target, met, howRebuild})
	}
}

// overFloor says how far d is above (or below) the floor named "the
// floor"+which.
func overFloor(d float64, which string) string {
	if d < 0 {
		return fmt.Sprintf("%.2f s under the floor%s", -d, which)
	}
	return fmt.Sprintf("%.2f s over the floor%s", d, which)
}

// runsOf is "1 run", "5 runs".
func runsOf(n float64) string {
	if n == 1 {
		return "1 run"
	}
	return fmt.Sprintf("%d runs", int(n))
}
