#!/usr/bin/env bash
# Compares two variants of the operator side by side in one run (make
# bench-compare): the test/bench benchmarks of the git revision BASE and of
# the working tree. Each benchmark runs for BASE, then for the working tree,
# before the next benchmark starts, so load on the machine during the run
# falls on both variants alike. hack/benchtable -compare turns the output
# (also kept in bin/bench-compare.out) into the "Before and after" section of
# docs/benchmarks.md; the rest of that page stays as `make bench` wrote it.
#
#   BASE           git revision to compare with (required)
#   BENCH_COMPARE  benchmark names of test/bench without "Benchmark", separated
#                  by "|", no regexps (default ApplyToReady|Failover|SteadyState)
#   BENCH_NOTE     load conditions, written into the section
#
# BASE is checked out (detached) in a git worktree under bin/bench-base/<rev>,
# reused by later runs. Both variants' binaries go to bin/bench-compare/. Each
# binary runs from its own tree's test/bench folder, so it uses that tree's
# CRDs (internal/testenv finds them from its source path) and, for
# OperatorProcess, that tree's operator binary. It needs what `make bench`
# needs: root, the lab host (make lab-host) and the envtest binaries.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"

: "${BASE:?set BASE to a git revision to compare the working tree with, e.g. make bench-compare BASE=HEAD~1}"
BENCH_COMPARE=${BENCH_COMPARE:-ApplyToReady|Failover|SteadyState}
BENCH_NOTE=${BENCH_NOTE:-}

log() { echo "bench-compare: $*" >&2; }

full=$(git rev-parse --verify --quiet "$BASE^{commit}") || { log "BASE=$BASE is not a git revision"; exit 2; }
rev=$(git rev-parse --short "$full")

IFS='|' read -r -a names <<<"$BENCH_COMPARE"
[ "${#names[@]}" -gt 0 ] || { log "BENCH_COMPARE is empty"; exit 2; }
for name in "${names[@]}"; do
	[[ $name =~ ^[A-Za-z0-9_]+$ ]] || { log "BENCH_COMPARE: \"$name\" is not a benchmark name (names without \"Benchmark\", separated by |, no regexps)"; exit 2; }
done

# The working tree as the after binary is built from it (others may change it
# while the benchmarks run); the document being written does not count.
tree=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain -- . ':(exclude)docs/benchmarks.md')" ] || tree+=-dirty

# BASE's worktree: reused when it is still checked out at BASE and clean.
wt=$root/bin/bench-base/$rev
git worktree prune
if [ "$(git -C "$wt" rev-parse --show-toplevel 2>/dev/null)" = "$wt" ] &&
	[ "$(git -C "$wt" rev-parse HEAD)" = "$full" ] &&
	[ -z "$(git -C "$wt" status --porcelain)" ]; then
	log "reusing the worktree $wt"
else
	if [ -e "$wt" ]; then
		log "replacing $wt (not a clean worktree at $rev)"
		git worktree remove --force "$wt" 2>/dev/null || rm -rf "$wt"
		git worktree prune
	fi
	mkdir -p "$(dirname "$wt")"
	git worktree add --detach "$wt" "$full" >&2
fi

out=$root/bin/bench-compare
mkdir -p "$out"
with_process=false
[[ "|$BENCH_COMPARE|" == *"|OperatorProcess|"* ]] && with_process=true
build() { # $1 variant, $2 source tree
	log "building the $1 variant from $2"
	(cd "$2" && go test -c -o "$out/$1.test" ./test/bench/)
	if $with_process; then
		(cd "$2" && go build -o "$out/$1-manager" .)
	fi
}
build before "$wt"
build after "$root"
# Built now rather than with `go run` at the end of the pipe, where its
# compilation would overlap the first benchmark (of the before variant only).
go build -o "$out/benchtable" ./hack/benchtable

for name in "${names[@]}"; do
	listed=$( (cd "$root/test/bench" && "$out/after.test" -test.list "^Benchmark$name\$") || true)
	listed+=$( (cd "$wt/test/bench" && "$out/before.test" -test.list "^Benchmark$name\$") || true)
	[ -n "$listed" ] || { log "no Benchmark$name in test/bench of either variant"; exit 2; }
done

assets=$(hack/envtest-bins.sh)
export KUBEBUILDER_ASSETS=$assets

# ScaleFake runs in a loopback-only network namespace, as in `make bench`
# (BENCH_NETNS in the Makefile).
netns() {
	# shellcheck disable=SC2016 # expanded by the inner sh
	unshare --net sh -ec 'ip link set lo up; ip addr add 10.255.255.1/32 dev lo;
		ip route add default dev lo; ip route add unreachable 10.0.0.0/8; exec "$0" "$@"' "$@"
}

run() { # $1 variant, $2 benchmark, $3 label, $4 source tree
	local variant=$1 name=$2 label=$3 dir=$4/test/bench wrap=()
	[ "$name" = ScaleFake ] && wrap=(netns)
	echo "### VARIANT $variant $name $label"
	(
		cd "$dir"
		if $with_process; then export RSF_BENCH_MANAGER="$out/$variant-manager"; fi
		"${wrap[@]}" "$out/$variant.test" -test.v -test.run '^$' -test.bench "^Benchmark$name\$" \
			-test.benchtime 1x -test.timeout 30m
	) || echo "BENCH-FAILED: $variant $name"
}

log "comparing $rev (before) with the working tree at $tree (after): ${names[*]}; output in bin/bench-compare.out"
for name in "${names[@]}"; do
	run before "$name" "$rev" "$wt"
	run after "$name" working-tree "$root"
done 2>&1 | tee "$root/bin/bench-compare.out" |
	"$out/benchtable" -compare "$rev" -tree "$tree" -o docs/benchmarks.md -note "$BENCH_NOTE"
