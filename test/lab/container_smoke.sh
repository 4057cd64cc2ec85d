#!/usr/bin/env bash
# Smoke test of the lab host, once per image: engine E is redis for the
# Redis 7 image (container rsf-smoke-<pid>) and valkey for the Valkey 8 one
# (rsfvk-smoke-<pid>); RSF_SMOKE_ENGINES="redis valkey" by default, each run
# by a child of this script with RSF_SMOKE_ENGINE=E. Launch a throwaway
# container from the image with the formation profile, check the image's
# contract (property user.rsf.engine=E, E-server and E-sentinel disabled,
# nothing listening, E-server's Restart=no drop-in, /etc/E E:E 2770 with its
# conf files E:E 0640 and writable by E), configure and start E-server and
# E-sentinel in it, and talk to them from the host over the NAT-less bridge.
# The container is always deleted (trap on EXIT).
#
# Traffic goes only to the containers this script created, on the lab bridge.
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_root
command -v incus >/dev/null 2>&1 || skip "incus is not installed (run the lab host playbook first)"
incus query /1.0 >/dev/null 2>&1 || skip "the Incus daemon is not answering (run the lab host playbook first)"

if [ -z "${RSF_SMOKE_ENGINE:-}" ]; then
  for engine in ${RSF_SMOKE_ENGINES:-redis valkey}; do
    RSF_SMOKE_ENGINE="$engine" "$0" || exit 1
  done
  log "PASS: ${RSF_SMOKE_ENGINES:-redis valkey}"
  exit 0
fi
E="$RSF_SMOKE_ENGINE"
case "$E" in
  redis) IMAGE="$RSF_IMAGE_ALIAS" PREFIX=rsf-smoke- VERSION='v=7\.' ;;
  valkey) IMAGE="$RSF_VALKEY_IMAGE_ALIAS" PREFIX=rsfvk-smoke- VERSION='v=8\.' ;;
  *) fail "RSF_SMOKE_ENGINE must be redis or valkey, not '$E'" ;;
esac
incus query "/1.0/images/aliases/$IMAGE" >/dev/null 2>&1 \
  || skip "image alias $IMAGE not found (run the lab host playbook first)"

if ! command -v redis-cli >/dev/null 2>&1; then
  log "installing redis-tools on the host (redis-cli)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools >/dev/null; } \
    || fail "cannot install redis-tools"
fi

# Remove containers left by earlier runs that were killed before their trap.
for old in $(incus list --format csv -c n "$PREFIX" 2>/dev/null); do
  pid="${old##*-}"
  if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
    log "removing leftover container $old"
    incus delete --force "$old" >/dev/null 2>&1 || true
  fi
done

NAME="$PREFIX$$"
PW="smoke-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
SPW="smoke-sentinel-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK="$(mktemp -d)"
cleanup() {
  rc=$?
  incus delete --force "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  if incus query "/1.0/instances/$NAME" >/dev/null 2>&1; then
    echo "[container_smoke $E] FAIL: container $NAME is still there after cleanup" >&2
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT

in_ct() { incus exec "$NAME" -- "$@"; }

# The image itself says which engine it holds (the operator checks it).
fp="$(incus query "/1.0/images/aliases/$IMAGE" | python3 -c 'import json, sys; print(json.load(sys.stdin)["target"])')"
read -r engine variant < <(incus query "/1.0/images/$fp" | python3 -c '
import json, sys
p = json.load(sys.stdin).get("properties") or {}
print(p.get("user.rsf.engine") or "-", p.get("variant") or "-")')
[ "$engine" = "$E" ] || fail "image $IMAGE has user.rsf.engine '$engine', expected '$E'"
log "image $IMAGE (${fp:0:12}): user.rsf.engine=$engine, variant=$variant"

log "launching $NAME from $IMAGE with profile $RSF_PROFILE"
t0=$(date +%s.%N)
incus launch "$IMAGE" "$NAME" --profile "$RSF_PROFILE" >/dev/null \
  || fail "incus launch $IMAGE failed"

# Its IPv4 address on the bridge, from DHCP (bounded wait).
subnet="$(incus network get "$RSF_BRIDGE" ipv4.address)"
ip=""
for _ in $(seq 1 60); do
  ip="$(incus query "/1.0/instances/$NAME/state" | python3 -c '
import json, sys
state = json.load(sys.stdin)
for addr in (state.get("network") or {}).get("eth0", {}).get("addresses", []):
    if addr["family"] == "inet" and addr["scope"] == "global":
        print(addr["address"]); break
')"
  [ -n "$ip" ] && break
  sleep 1
done
[ -n "$ip" ] || fail "$NAME got no IPv4 address on $RSF_BRIDGE within 60 s"
python3 -c 'import ipaddress, sys; sys.exit(0 if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_interface(sys.argv[2]).network else 1)' "$ip" "$subnet" \
  || fail "$NAME has address $ip outside the bridge subnet $subnet"
log "$NAME has $ip (bridge $RSF_BRIDGE $subnet) after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

# Wait for systemd in the container to finish booting (bounded).
for _ in $(seq 1 30); do
  state="$(in_ct systemctl is-system-running 2>/dev/null || true)"
  case "$state" in running|degraded) break ;; esac
  sleep 1
done
log "systemd in $NAME: ${state:-unknown}"

# The image's contract: E installed, units disabled, nothing serving.
for unit in "$E-server" "$E-sentinel"; do
  st="$(in_ct systemctl is-enabled "$unit" 2>/dev/null || true)"
  [ "$st" = "disabled" ] || fail "$unit is '$st' in the image, expected 'disabled'"
  st="$(in_ct systemctl is-active "$unit" 2>/dev/null || true)"
  [ "$st" != "active" ] || fail "$unit runs in an unconfigured container"
done
version="$(in_ct "$E-server" --version)"
grep -q "$VERSION" <<<"$version" || fail "$E-server in the image is not the expected version: $version"
st="$(in_ct systemctl show "$E-server.service" -p Restart --value)"
[ "$st" = no ] || fail "$E-server.service has Restart=$st, expected no (drop-in 10-rsf-no-restart.conf)"
if redis-cli -h "$ip" -p 6379 --no-auth-warning ping >/dev/null 2>&1; then
  fail "an unconfigured node answers on $ip:6379"
fi
modes="$(in_ct stat -c '%U:%G %a' "/etc/$E" "/etc/$E/$E.conf" "/etc/$E/sentinel.conf" | tr '\n' ' ')"
[ "$modes" = "$E:$E 2770 $E:$E 640 $E:$E 640 " ] \
  || fail "/etc/$E, $E.conf and sentinel.conf are '$modes', expected $E:$E 2770, 640, 640"
in_ct runuser -u "$E" -- test -w "/etc/$E" || fail "/etc/$E is not writable by the $E user"
in_ct runuser -u "$E" -- test -w "/etc/$E/sentinel.conf" || fail "/etc/$E/sentinel.conf is not writable by the $E user"
log "image contract ok: ${version%% sha=*}, units disabled, $E-server Restart=no, nothing listening, /etc/$E $E:$E 2770 (conf files 0640)"

# Minimal configuration, as the operator would write it, then enable+start.
cat >"$WORK/$E.conf" <<CONF
bind 0.0.0.0
port 6379
protected-mode yes
requirepass $PW
dir /var/lib/$E
logfile /var/log/$E/$E-server.log
CONF
cat >"$WORK/sentinel.conf" <<CONF
bind 0.0.0.0
port 26379
protected-mode yes
requirepass $SPW
dir /var/lib/$E
logfile /var/log/$E/$E-sentinel.log
sentinel monitor smoke 127.0.0.1 6379 1
sentinel auth-pass smoke $PW
CONF
for f in "$E.conf" sentinel.conf; do
  incus file push --uid 0 --gid 0 --mode 0640 "$WORK/$f" "$NAME/etc/$E/$f" >/dev/null
  in_ct chown "$E:$E" "/etc/$E/$f"
done
in_ct systemctl enable --now "$E-server.service" >/dev/null 2>&1 \
  || { in_ct journalctl -u "$E-server" --no-pager -n 20 >&2 || true; fail "$E-server did not start"; }
in_ct systemctl enable --now "$E-sentinel.service" >/dev/null 2>&1 \
  || { in_ct journalctl -u "$E-sentinel" --no-pager -n 20 >&2 || true; fail "$E-sentinel did not start"; }

rcli() { redis-cli -h "$ip" --no-auth-warning "$@"; }

pong=""
for _ in $(seq 1 20); do
  pong="$(rcli -a "$PW" ping 2>/dev/null || true)"
  [ "$pong" = "PONG" ] && break
  sleep 0.5
done
[ "$pong" = "PONG" ] || fail "redis-cli -h $ip ping answered '${pong}' instead of PONG"
log "redis-cli -h $ip ping -> PONG"

noauth="$(rcli ping 2>&1 || true)"
grep -q NOAUTH <<<"$noauth" || fail "$E-server accepted a command without the password: $noauth"

value="smoke-$$-$(date +%s)"
[ "$(rcli -a "$PW" set rsf:smoke "$value")" = "OK" ] || fail "SET failed"
[ "$(rcli -a "$PW" get rsf:smoke)" = "$value" ] || fail "GET did not return the value just SET"
log "SET/GET from the host ok"

master=""
for _ in $(seq 1 20); do
  master="$(rcli -p 26379 -a "$SPW" sentinel get-master-addr-by-name smoke 2>/dev/null | tr '\n' ' ' || true)"
  [ "$master" = "127.0.0.1 6379 " ] && break
  sleep 0.5
done
[ "$master" = "127.0.0.1 6379 " ] || fail "sentinel on $ip:26379 does not report master 127.0.0.1 6379 (got '$master')"
# Sentinel rewrites its own config file at start (adds its myid).
rewritten=""
for _ in $(seq 1 20); do
  if in_ct grep -q '^sentinel myid ' "/etc/$E/sentinel.conf"; then rewritten=yes; break; fi
  sleep 0.5
done
[ -n "$rewritten" ] || fail "$E-sentinel did not rewrite /etc/$E/sentinel.conf"
log "sentinel on $ip:26379 monitors 127.0.0.1:6379 and rewrote its sentinel.conf"

log "PASS $E (container $NAME is deleted on exit)"
