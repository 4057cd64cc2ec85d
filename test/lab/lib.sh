#!/usr/bin/env bash
# Shared helpers for the lab host tests (sourced, not run).
# shellcheck disable=SC2034

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ANSIBLE_DIR="$REPO_ROOT/ansible"
LAB_INVENTORY="$ANSIBLE_DIR/inventory/lab.yml"
LAB_PLAYBOOK="$ANSIBLE_DIR/playbooks/lab_host.yml"
LAB_LOG_DIR="${LAB_LOG_DIR:-${TMPDIR:-/tmp}/rsf-lab-tests}"
mkdir -p "$LAB_LOG_DIR"

# Plain output: the recap is parsed.
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_RETRY_FILES_ENABLED=0

# Names the lab host playbook creates (group_vars/incus_hosts/main.yml).
# RSF_POOL, RSF_BRIDGE, RSF_BRIDGE_IPV4 and RSF_PROFILE set in the environment
# are passed to every playbook run as extra vars, so that the suite can run
# against its own pool, bridge and profile on a host whose lab is in use:
#   RSF_POOL=t-pool RSF_BRIDGE=tbr0 RSF_BRIDGE_IPV4=10.81.0.1/24 RSF_PROFILE=t-redis test/lab/run.sh
LAB_NAME_VARS=()
[ -z "${RSF_POOL:-}" ] || LAB_NAME_VARS+=(-e "incus_storage_pool=$RSF_POOL")
[ -z "${RSF_BRIDGE:-}" ] || LAB_NAME_VARS+=(-e "incus_bridge_name=$RSF_BRIDGE")
[ -z "${RSF_BRIDGE_IPV4:-}" ] || LAB_NAME_VARS+=(-e "incus_bridge_ipv4_address=$RSF_BRIDGE_IPV4")
[ -z "${RSF_PROFILE:-}" ] || LAB_NAME_VARS+=(-e "incus_profile_name=$RSF_PROFILE")
RSF_IMAGE_ALIAS="${RSF_IMAGE_ALIAS:-rsf-redis7-bookworm-v1}"
RSF_VALKEY_IMAGE_ALIAS="${RSF_VALKEY_IMAGE_ALIAS:-rsf-valkey8-bookworm-v1}"
RSF_PROFILE="${RSF_PROFILE:-rsf-redis}"
RSF_BRIDGE="${RSF_BRIDGE:-rsfbr0}"
RSF_POOL="${RSF_POOL:-rsf}"

log() { echo "[$(basename "$0" .sh)] $*"; }
fail() { echo "[$(basename "$0" .sh)] FAIL: $*" >&2; exit 1; }

# skip MSG: exit 0 with a SKIP line, except under CI=true where a missing
# prerequisite is a failure.
skip() {
  if [ "${CI:-}" = "true" ]; then
    fail "$* (CI=true: prerequisites must be present, not skipped)"
  fi
  echo "[$(basename "$0" .sh)] SKIP: $*"
  exit 0
}

require_root() {
  [ "$(id -u)" -eq 0 ] || skip "must run as root (installs packages, drives Incus)"
}

require_ansible() {
  command -v ansible-playbook >/dev/null 2>&1 \
    || skip "ansible-playbook not found (run ansible/bootstrap.sh)"
}

# recap_value LOG FIELD: FIELD (ok, changed, failed, ...) of the single host
# line in the PLAY RECAP of an ansible-playbook log; empty when no recap.
recap_value() {
  awk -v field="$2" '
    /^PLAY RECAP/ { in_recap = 1; next }
    in_recap && / : / {
      for (i = 1; i <= NF; i++) if ($i ~ "^" field "=") { split($i, kv, "="); print kv[2]; exit }
    }' "$1"
}

# run_playbook LOG [ARGS...]: run the lab host playbook (with the names from
# the environment, then ARGS, which win), output to LOG; returns
# ansible-playbook's exit status.
run_playbook() {
  local logfile="$1"; shift
  local rc=0
  ansible-playbook -i "$LAB_INVENTORY" "$LAB_PLAYBOOK" "${LAB_NAME_VARS[@]}" "$@" >"$logfile" 2>&1 || rc=$?
  return "$rc"
}

# check_run NAME LOG RC: fail unless the playbook run NAME (log LOG, exit
# status RC) succeeded (exit 0, failed=0, unreachable=0); prints its changed
# count.
check_run() {
  local name="$1" logfile="$2" rc="$3" failed changed unreachable
  failed="$(recap_value "$logfile" failed)"
  changed="$(recap_value "$logfile" changed)"
  unreachable="$(recap_value "$logfile" unreachable)"
  if [ "$rc" -ne 0 ] || [ -z "$failed" ] || [ "$failed" != 0 ] || [ "$unreachable" != 0 ]; then
    tail -n 40 "$logfile" >&2
    fail "$name of the lab host playbook failed (exit $rc, failed=${failed:-?}); log: $logfile"
  fi
  echo "$changed"
}

# changed_tasks LOG: names of the tasks that reported a change in LOG.
changed_tasks() {
  awk '/^TASK / { task = $0 } /^changed:/ { print task }' "$1" | uniq
}

# pool_field POOL FIELD: FIELD (driver, config.size, ...) of an Incus storage
# pool, "absent" when there is no such pool.
pool_field() {
  local json
  json="$(incus query "/1.0/storage-pools/$1" 2>/dev/null)" || { echo absent; return 0; }
  python3 -c '
import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value.get(key, "") if isinstance(value, dict) else ""
print(value)' "$2" <<<"$json"
}
