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
RSF_IMAGE_ALIAS="${RSF_IMAGE_ALIAS:-rsf-redis7-bookworm-v1}"
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

# run_playbook LOG [ARGS...]: run the lab host playbook, output to LOG and
# stdout's tail; returns ansible-playbook's exit status.
run_playbook() {
  local logfile="$1"; shift
  local rc=0
  ansible-playbook -i "$LAB_INVENTORY" "$LAB_PLAYBOOK" "$@" >"$logfile" 2>&1 || rc=$?
  return "$rc"
}
