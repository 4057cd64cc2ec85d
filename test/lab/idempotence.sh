#!/usr/bin/env bash
# Run the lab host playbook twice against the lab inventory: the first run
# must succeed (it converges a fresh host), the second must change nothing.
# Prints the wall time of both runs.
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_ansible

declare -a secs
for n in 1 2; do
  logfile="$LAB_LOG_DIR/idempotence-run$n.log"
  log "run $n: ansible-playbook -i ${LAB_INVENTORY#"$REPO_ROOT"/} ${LAB_PLAYBOOK#"$REPO_ROOT"/}${LAB_NAME_VARS[*]:+ ${LAB_NAME_VARS[*]}}"
  start=$(date +%s.%N)
  rc=0
  run_playbook "$logfile" || rc=$?
  secs[$n]="$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  changed="$(check_run "run $n" "$logfile" "$rc")"
  log "run $n: ${secs[$n]} s wall time, changed=$changed ($(grep -A1 '^PLAY RECAP' "$logfile" | tail -n1 | tr -s ' '))"
  if [ "$n" -eq 2 ] && [ "$changed" != 0 ]; then
    echo "Tasks that changed on the second run:" >&2
    changed_tasks "$logfile" >&2
    fail "second run is not idempotent: changed=$changed (expected 0); log: $logfile"
  fi
done

log "pool $RSF_POOL: driver $(pool_field "$RSF_POOL" driver), size $(pool_field "$RSF_POOL" config.size)"
log "timing: run 1 ${secs[1]} s, run 2 ${secs[2]} s"
log "PASS: second run changed=0 failed=0"
