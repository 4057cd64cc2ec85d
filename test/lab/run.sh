#!/usr/bin/env bash
# Lab host test suite (what `make test-lab` runs): installs Ansible if missing,
# then runs, in order, the syntax check, the idempotence test (which also
# converges this host with the lab host playbook), the storage pool scenarios
# (on a pool, bridge and profile of their own), the container smoke test (of
# the Redis and the Valkey image),
# the bad input test, the cluster lab test (converges the three-member
# Incus cluster beside the lab host twice, ~2.5-5 min, and leaves it up)
# and the lab's Prometheus test (hack/lab.sh up, status, down as a second
# lab of its own). That one needs kube-apiserver, which make test builds
# beside the suites from the start: last, it has the most time to be built
# on a fresh machine. Every script runs even when an earlier
# one failed; the exit status is non-zero when any failed. With CI=true a
# missing prerequisite fails instead of skipping.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"

if [ "$(id -u)" -eq 0 ]; then
  "$REPO_ROOT/ansible/bootstrap.sh"
elif [ "${CI:-}" = "true" ]; then
  echo "run.sh: FAIL: the lab tests must run as root under CI=true" >&2
  exit 1
fi

tests=(syntax_check idempotence storage_pool container_smoke bad_input cluster lab_prometheus)
passed=0 failed=0 failures=()
suite_start=$(date +%s)
for t in "${tests[@]}"; do
  echo "=== $t"
  start=$(date +%s)
  if "$HERE/$t.sh"; then
    passed=$((passed + 1))
    echo "--- PASS $t ($(( $(date +%s) - start )) s)"
  else
    failed=$((failed + 1)); failures+=("$t")
    echo "--- FAIL $t ($(( $(date +%s) - start )) s)"
  fi
done

leftover="$(for prefix in rsf-smoke- rsfvk-smoke- rsft-ct- cache-rsf-labtest-; do incus list --format csv -c n "$prefix" 2>/dev/null || true; done)"
leftover+="$(incus list rsfcl: --format csv -c n rsfclt- 2>/dev/null || true)"
if [ -n "$leftover" ]; then
  echo "run.sh: containers left behind: $leftover" >&2
  failed=$((failed + 1)); failures+=("leftover-containers")
fi

echo "lab tests: $(( $(date +%s) - suite_start )) s${failures[*]:+, failed: ${failures[*]}}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
