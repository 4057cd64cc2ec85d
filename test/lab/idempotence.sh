#!/usr/bin/env bash
# Run the lab host playbook twice against the lab inventory: the first run
# must succeed (it converges a fresh host), the second must change nothing.
# Prints the wall time of both runs.
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_ansible

check_run() { # N LOG RC
  local n="$1" logfile="$2" rc="$3" failed changed unreachable
  failed="$(recap_value "$logfile" failed)"
  changed="$(recap_value "$logfile" changed)"
  unreachable="$(recap_value "$logfile" unreachable)"
  if [ "$rc" -ne 0 ] || [ -z "$failed" ] || [ "$failed" != 0 ] || [ "$unreachable" != 0 ]; then
    tail -n 40 "$logfile" >&2
    fail "run $n of the lab host playbook failed (exit $rc, failed=${failed:-?}); log: $logfile"
  fi
  echo "$changed"
}

declare -a secs
for n in 1 2; do
  logfile="$LAB_LOG_DIR/idempotence-run$n.log"
  log "run $n: ansible-playbook -i ${LAB_INVENTORY#"$REPO_ROOT"/} ${LAB_PLAYBOOK#"$REPO_ROOT"/}"
  start=$(date +%s.%N)
  rc=0
  run_playbook "$logfile" || rc=$?
  secs[$n]="$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  changed="$(check_run "$n" "$logfile" "$rc")"
  log "run $n: ${secs[$n]} s wall time, changed=$changed ($(grep -A1 '^PLAY RECAP' "$logfile" | tail -n1 | tr -s ' '))"
  if [ "$n" -eq 2 ] && [ "$changed" != 0 ]; then
    echo "Tasks that changed on the second run:" >&2
    awk '/^TASK / { task = $0 } /^changed:/ { print task }' "$logfile" | uniq >&2
    fail "second run is not idempotent: changed=$changed (expected 0); log: $logfile"
  fi
done

log "timing: run 1 ${secs[1]} s, run 2 ${secs[2]} s"
log "PASS: second run changed=0 failed=0"
