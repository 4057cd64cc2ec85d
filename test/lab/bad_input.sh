#!/usr/bin/env bash
# Bad input: the lab host playbook must stop in its preflight play with a
# clear message and change nothing (PLAY RECAP changed=0, host state equal
# before and after), for:
#   a) a bridge subnet that collides with an address already on the host
#      (loopback, and the address of the host's first global interface; the
#      address is only read, no traffic is sent to it)
#   a') an HTTPS API address (incus_host_https_address) that is not loopback
#   a'') an unsupported storage driver (zfs) and an invalid pool size
#   b) staging / production with placeholder, weak or missing passwords
#   c) an unsupported OS (the supported list overridden to Debian 11)
#   d) an unknown rsf_environment
#   d') an image engine other than redis or valkey
#   e) a staging inventory whose vault.yml is ansible-vault encrypted: run
#      without the vault password (Ansible refuses to start), and with it but
#      holding a weak password (the vault is decrypted, preflight refuses)
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_ansible

# Fingerprint of everything the playbook could change (only the objects it
# manages: other users of this Incus host may add their own meanwhile).
host_state() {
  {
    cat /etc/apt/sources.list.d/bookworm-backports.sources 2>/dev/null || echo 'no backports source'
    dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\n' incus-base incus debootstrap dnsmasq-base btrfs-progs 2>/dev/null || true
    if command -v incus >/dev/null 2>&1 && incus query /1.0 >/dev/null 2>&1; then
      incus query /1.0 | python3 -c 'import json, sys; print(json.load(sys.stdin)["config"].get("core.https_address", ""))'
      for obj in "storage-pools/$RSF_POOL" "networks/$RSF_BRIDGE" "profiles/$RSF_PROFILE" \
                 "images/aliases/$RSF_IMAGE_ALIAS" "images/aliases/$RSF_VALKEY_IMAGE_ALIAS"; do
        incus query "/1.0/$obj" 2>/dev/null | python3 -c '
import json, sys
o = json.load(sys.stdin)
for volatile in ("used_by", "status", "locations"):
    o.pop(volatile, None)
print(json.dumps(o, sort_keys=True))' 2>/dev/null || echo "$obj absent"
      done
    else
      echo "incus not running"
    fi
  } | sha256sum | cut -d' ' -f1
}

passed=0
# expect_preflight_failure NAME EXPECTED-REGEX [ansible-playbook args...]
expect_preflight_failure() {
  local name="$1" expected="$2"; shift 2
  local logfile="$LAB_LOG_DIR/bad_input-$name.log" rc=0 before after changed failed
  before="$(host_state)"
  run_playbook "$logfile" "$@" || rc=$?
  after="$(host_state)"
  changed="$(recap_value "$logfile" changed)"
  failed="$(recap_value "$logfile" failed)"
  [ "$rc" -ne 0 ] || { tail -n 30 "$logfile" >&2; fail "$name: the playbook succeeded; expected it to stop in preflight"; }
  [ "$failed" = 1 ] || { tail -n 30 "$logfile" >&2; fail "$name: expected failed=1 in the recap, got '${failed:-no recap}'"; }
  [ "$changed" = 0 ] || { tail -n 30 "$logfile" >&2; fail "$name: expected changed=0 in the recap, got '$changed'"; }
  grep -q '^PLAY \[Lab host' "$logfile" && fail "$name: the play went past preflight"
  grep -Eq 'PREFLIGHT FAILED: .*'"$expected" "$logfile" \
    || { grep -E 'fatal|failed:' "$logfile" >&2 || tail -n 30 "$logfile" >&2; fail "$name: no 'PREFLIGHT FAILED: ...$expected' message"; }
  [ "$before" = "$after" ] || fail "$name: the host changed although preflight failed"
  log "ok: $name -> $(grep -Eo 'PREFLIGHT FAILED: [^"]*' "$logfile" | head -n1 | cut -c1-150)"
  passed=$((passed + 1))
}

# a) subnet collisions (read-only look at the host's addresses).
expect_preflight_failure subnet-loopback "collides with address 127\.0\.0\.1/8 on interface lo" \
  -e incus_bridge_ipv4_address=127.0.0.2/8
host_if="$(ip -o -4 addr show scope global | awk -v br="$RSF_BRIDGE" '$2 != br { print $2, $4; exit }')"
if [ -n "$host_if" ]; then
  read -r if_name if_addr <<<"$host_if"
  expect_preflight_failure subnet-host-interface "collides with address ${if_addr//./\\.} on interface $if_name" \
    -e "incus_bridge_ipv4_address=$if_addr"
else
  log "no global IPv4 address besides $RSF_BRIDGE on this host: host-interface collision case not applicable"
fi
expect_preflight_failure subnet-not-an-address "is not an IPv4 address" \
  -e incus_bridge_ipv4_address=10.77.0.300/24

# a'') a storage driver the role cannot set up, and a pool size Incus would refuse.
expect_preflight_failure storage-driver-unsupported "incus_storage_driver is 'zfs'; it must be btrfs .* or dir" \
  -e incus_storage_driver=zfs
expect_preflight_failure storage-size-invalid "incus_storage_size is '30 gigs'; it must be a size such as 30GiB" \
  -e 'incus_storage_size="30 gigs"'

# a') an HTTPS API address that is not loopback.
expect_preflight_failure https-not-loopback "incus_host_https_address '0\.0\.0\.0:8443' is not a loopback address" \
  -e incus_host_https_address=0.0.0.0:8443

# b) secrets outside the lab.
expect_preflight_failure staging-placeholder "redis_password is a lab placeholder" \
  -e rsf_environment=staging
expect_preflight_failure production-weak "redis_password is weak for environment 'production'" \
  -e rsf_environment=production -e redis_password=short-pw-123 -e redis_sentinel_password=short-pw-456
expect_preflight_failure staging-missing "redis_sentinel_password is not set for environment 'staging'" \
  -e rsf_environment=staging -e redis_password=Zq8vL2mN4xR7tY1wK5pS -e redis_sentinel_password=

# c) unsupported OS: this Debian 12 host against a supported list without it.
expect_preflight_failure unsupported-os "unsupported OS Debian 12" \
  -e '{"rsf_supported_platforms": [{"distribution": "Debian", "major_version": "11"}]}'

# d) unknown environment.
expect_preflight_failure unknown-environment "rsf_environment is 'prod'" \
  -e rsf_environment=prod

# d') an engine the image role cannot build.
expect_preflight_failure unknown-engine "redis_image_engine is 'keydb'; it must be redis or valkey" \
  -e redis_image_engine=keydb

# e) an encrypted staging vault, in a throwaway inventory outside the repo.
inv_dir="$(mktemp -d)"
trap 'rm -rf "$inv_dir"' EXIT
mkdir -p "$inv_dir/group_vars/staging"
cp -r "$ANSIBLE_DIR/inventory/group_vars/all" "$ANSIBLE_DIR/inventory/group_vars/incus_hosts" "$inv_dir/group_vars/"
cat >"$inv_dir/staging.yml" <<'INV'
all:
  children:
    staging:
      children:
        incus_hosts:
          hosts:
            localhost:
              ansible_connection: local
              ansible_python_interpreter: "{{ ansible_playbook_python }}"
INV
echo 'rsf_environment: staging' >"$inv_dir/group_vars/staging/main.yml"
printf '%s\n' 'vault_redis_password: "tooshort"' 'vault_redis_sentinel_password: "Zq8vL2mN4xR7tY1wK5pSx"' \
  >"$inv_dir/group_vars/staging/vault.yml"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$inv_dir/vault-pass"
ansible-vault encrypt --vault-password-file "$inv_dir/vault-pass" "$inv_dir/group_vars/staging/vault.yml" >/dev/null
head -n1 "$inv_dir/group_vars/staging/vault.yml" | grep -q '^\$ANSIBLE_VAULT;' || fail "ansible-vault did not encrypt the test vault"

logfile="$LAB_LOG_DIR/bad_input-vault-no-password.log"
before="$(host_state)"
rc=0
ansible-playbook -i "$inv_dir/staging.yml" "$LAB_PLAYBOOK" >"$logfile" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "vault-no-password: the playbook ran without the vault password"
grep -qi 'no vault secrets' "$logfile" || { tail -n 20 "$logfile" >&2; fail "vault-no-password: no 'no vault secrets' message"; }
grep -q '^changed:' "$logfile" && fail "vault-no-password: a task changed something"
[ "$before" = "$(host_state)" ] || fail "vault-no-password: the host changed"
log "ok: vault-no-password -> $(grep -io 'attempting to decrypt but no vault secrets found' "$logfile" | head -n1)"
passed=$((passed + 1))

# Same inventory with its vault password: decrypted, and the weak secret in it is refused.
LAB_INVENTORY="$inv_dir/staging.yml" expect_preflight_failure vault-weak-secret \
  "redis_password is weak for environment 'staging'" --vault-password-file "$inv_dir/vault-pass"

log "PASS: $passed bad inputs stopped in preflight with changed=0"
