#!/usr/bin/env bash
# Syntax check of every playbook under ansible/playbooks (and ansible/tests),
# of the lab inventory, and of the shell scripts of the lab tooling.
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_ansible

shopt -s nullglob
playbooks=("$ANSIBLE_DIR"/playbooks/*.yml "$ANSIBLE_DIR"/tests/*.yml)
[ "${#playbooks[@]}" -gt 0 ] || fail "no playbooks found under $ANSIBLE_DIR/playbooks"

for pb in "${playbooks[@]}"; do
  out="$(ansible-playbook -i "$LAB_INVENTORY" --syntax-check "$pb" 2>&1)" \
    || { echo "$out" >&2; fail "syntax check of ${pb#"$REPO_ROOT"/} failed"; }
  log "ok: ${pb#"$REPO_ROOT"/}"
done

# The inventory parses, puts localhost in incus_hosts and in the lab group.
inv="$(ansible-inventory -i "$LAB_INVENTORY" --graph 2>&1)" \
  || { echo "$inv" >&2; fail "ansible-inventory cannot read the lab inventory"; }
grep -q -- '--@incus_hosts:' <<<"$inv" || fail "lab inventory has no incus_hosts group"
grep -q -- '--localhost' <<<"$inv" || fail "lab inventory has no localhost host"
log "ok: ${LAB_INVENTORY#"$REPO_ROOT"/}"

# The documented defaults the Go operator relies on (group_vars).
vars="$(ansible -i "$LAB_INVENTORY" incus_hosts -m ansible.builtin.debug \
  -a 'msg={{ [rsf_environment, incus_storage_pool, incus_storage_driver, incus_storage_size, incus_bridge_name, incus_bridge_ipv4_address, incus_profile_name, redis_image_name ~ "-" ~ redis_image_version, valkey_image_name ~ "-" ~ valkey_image_version] | join(" ") }}' 2>&1)" \
  || { echo "$vars" >&2; fail "cannot evaluate the lab group_vars"; }
grep -q '"lab rsf btrfs 30GiB rsfbr0 10.77.0.1/24 rsf-redis rsf-redis7-bookworm-v1 rsf-valkey8-bookworm-v1"' <<<"$vars" \
  || { echo "$vars" >&2; fail "lab group_vars do not hold the operator's default names"; }
log "ok: group_vars defaults (rsf btrfs 30GiB, rsfbr0 10.77.0.1/24, rsf-redis, rsf-redis7-bookworm-v1, rsf-valkey8-bookworm-v1)"

for script in "$ANSIBLE_DIR"/bootstrap.sh "$ANSIBLE_DIR"/roles/*/files/*.sh "$REPO_ROOT"/test/lab/*.sh "$REPO_ROOT"/hack/*.sh; do
  bash -n "$script" || fail "bash -n ${script#"$REPO_ROOT"/}"
done
python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read())' "$ANSIBLE_DIR"/roles/incus_host/files/check_subnet.py \
  || fail "check_subnet.py does not compile"
log "ok: shell scripts and check_subnet.py parse"
log "PASS"
