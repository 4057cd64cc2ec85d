#!/usr/bin/env bash
# Run the lab host playbook twice against the lab inventory: the first run
# must succeed (it converges a fresh host and builds both images, Redis 7 and
# Valkey 8), the second must change nothing. Then both image aliases must
# exist with their engine (property user.rsf.engine). Prints the wall time of
# both runs.
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
for image in "redis $RSF_IMAGE_ALIAS" "valkey $RSF_VALKEY_IMAGE_ALIAS"; do
  read -r engine alias <<<"$image"
  fp="$(incus query "/1.0/images/aliases/$alias" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["target"])')" \
    || fail "image alias $alias is missing after the playbook runs"
  got="$(incus query "/1.0/images/$fp" | python3 -c 'import json, sys; print((json.load(sys.stdin).get("properties") or {}).get("user.rsf.engine", ""))')"
  [ "$got" = "$engine" ] || fail "image $alias has user.rsf.engine '$got', expected '$engine'"
  log "image $alias: ${fp:0:12}, user.rsf.engine=$got"
done
log "timing: run 1 ${secs[1]} s, run 2 ${secs[2]} s"
log "PASS: second run changed=0 failed=0"
