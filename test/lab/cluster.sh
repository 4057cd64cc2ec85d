#!/usr/bin/env bash
# Cluster lab test (lab only): run the cluster lab playbook twice (the first
# run converges it: node image, bridge rsfclbr0, nodes, Incus cluster,
# remote; the second must change nothing), then check through the machine's
# remote that the three members are ONLINE, that the lab images (with their
# user.rsf.engine) and the formation profile (eth0 on the macvlan network)
# are in the cluster, and that a container launched on cache-02 takes an
# address of the cluster bridge and answers the machine there (a
# throwaway redis-server, TCP from the host). The container is always
# deleted (trap on EXIT). The cluster lab is left up.
#
# Needs a converged lab host (the idempotence test runs before it in
# run.sh). Traffic goes only to the nodes and the container this script
# created, on the cluster lab's own NAT-less bridge.
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_ansible
command -v incus >/dev/null 2>&1 || skip "incus is not installed (run the lab host playbook first)"
incus query /1.0 >/dev/null 2>&1 || skip "the Incus daemon is not answering (run the lab host playbook first)"
for alias in "$RSF_IMAGE_ALIAS" "$RSF_VALKEY_IMAGE_ALIAS"; do
  incus query "/1.0/images/aliases/$alias" >/dev/null 2>&1 \
    || skip "image alias $alias not found (run the lab host playbook first)"
done

CLUSTER_PLAYBOOK="$ANSIBLE_DIR/playbooks/lab_cluster.yml"
REMOTE=rsfcl
MEMBERS="cache-01 cache-02 cache-03"
CL_SUBNET=10.79.0.0/24
PREFIX=rsfclt-

# Containers left in the cluster by earlier runs killed before their trap.
if incus query "$REMOTE:/1.0" >/dev/null 2>&1; then
  for old in $(incus list "$REMOTE:" --format csv -c n "$PREFIX" 2>/dev/null); do
    pid="${old##*-}"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "removing leftover container $old"
      incus delete --force "$REMOTE:$old" >/dev/null 2>&1 || true
    fi
  done
fi

declare -a secs
for n in 1 2; do
  logfile="$LAB_LOG_DIR/cluster-run$n.log"
  log "run $n: ansible-playbook -i ${LAB_INVENTORY#"$REPO_ROOT"/} ${CLUSTER_PLAYBOOK#"$REPO_ROOT"/}"
  start=$(date +%s.%N)
  rc=0
  ansible-playbook -i "$LAB_INVENTORY" "$CLUSTER_PLAYBOOK" >"$logfile" 2>&1 || rc=$?
  secs[$n]="$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  changed="$(check_run "run $n" "$logfile" "$rc")"
  log "run $n: ${secs[$n]} s wall time, changed=$changed"
  if [ "$n" -eq 2 ] && [ "$changed" != 0 ]; then
    echo "Tasks that changed on the second run:" >&2
    changed_tasks "$logfile" >&2
    fail "second run of the cluster lab playbook is not idempotent: changed=$changed (expected 0); log: $logfile"
  fi
done

json() { python3 -c "import json, sys; data = json.load(sys.stdin); $1"; }

# Members, as the cluster reports them through the machine's remote.
online="$(incus query "$REMOTE:/1.0/cluster/members?recursion=1" \
  | json 'print(" ".join(sorted(m["server_name"] for m in data if m["status"] == "Online")))')"
[ "$online" = "$MEMBERS" ] || fail "online members are '$online', expected '$MEMBERS'"
log "members online: $online"

for image in "redis $RSF_IMAGE_ALIAS" "valkey $RSF_VALKEY_IMAGE_ALIAS"; do
  read -r engine alias <<<"$image"
  want="$(incus query "/1.0/images/aliases/$alias" | json 'print(data["target"])')"
  got="$(incus query "$REMOTE:/1.0/images/aliases/$alias" 2>/dev/null | json 'print(data["target"])')" \
    || fail "image alias $alias is missing in the cluster"
  [ "$got" = "$want" ] || fail "alias $alias is ${got:0:12} in the cluster, ${want:0:12} on the machine"
  e="$(incus query "$REMOTE:/1.0/images/$got" | json 'print((data.get("properties") or {}).get("user.rsf.engine", ""))')"
  [ "$e" = "$engine" ] || fail "image $alias in the cluster has user.rsf.engine '$e', expected '$engine'"
  log "image $alias in the cluster: ${got:0:12}, user.rsf.engine=$e"
done

profile="$(incus query "$REMOTE:/1.0/profiles/$RSF_PROFILE" \
  | json 'd = data["devices"]; print(d["eth0"].get("network", ""), d["root"].get("pool", ""))')" \
  || fail "profile $RSF_PROFILE is missing in the cluster"
[ "$profile" = "rsfmv rsf" ] || fail "profile $RSF_PROFILE in the cluster has eth0/root on '$profile', expected 'rsfmv rsf'"
log "profile $RSF_PROFILE in the cluster: eth0 on rsfmv, root on pool rsf"

# A container on cache-02: its address comes from the cluster bridge's
# DHCP (macvlan on the node's eth0) and the machine reaches it.
NAME="$PREFIX$$"
cleanup() {
  rc=$?
  incus delete --force "$REMOTE:$NAME" >/dev/null 2>&1 || true
  if incus query "$REMOTE:/1.0/instances/$NAME" >/dev/null 2>&1; then
    echo "[cluster] FAIL: container $NAME is still in the cluster after cleanup" >&2
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT

t0=$(date +%s.%N)
incus launch "$REMOTE:$RSF_IMAGE_ALIAS" "$REMOTE:$NAME" --target cache-02 --profile "$RSF_PROFILE" >/dev/null \
  || fail "incus launch $RSF_IMAGE_ALIAS on cache-02 failed"
location="$(incus query "$REMOTE:/1.0/instances/$NAME" | json 'print(data["location"])')"
[ "$location" = cache-02 ] || fail "$NAME is on '$location', expected cache-02"
ip=""
for _ in $(seq 1 60); do
  ip="$(incus query "$REMOTE:/1.0/instances/$NAME/state" | json '
for a in (data.get("network") or {}).get("eth0", {}).get("addresses", []):
    if a["family"] == "inet" and a["scope"] == "global":
        print(a["address"]); break')"
  [ -n "$ip" ] && break
  sleep 1
done
[ -n "$ip" ] || fail "$NAME got no IPv4 address within 60 s"
python3 -c 'import ipaddress, sys; sys.exit(0 if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else 1)' "$ip" "$CL_SUBNET" \
  || fail "$NAME has address $ip outside $CL_SUBNET"
log "$NAME on cache-02 has $ip after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

# Something to reach: a throwaway redis-server on the container's address
# (the image's units stay disabled), asked PING over TCP from the machine.
incus exec "$REMOTE:$NAME" -- redis-server --bind "$ip" --port 6379 --protected-mode no \
  --daemonize yes --save '' --appendonly no >/dev/null || fail "cannot start redis-server in $NAME"
pong=""
for _ in $(seq 1 20); do
  pong="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/6379"; printf "PING\r\n" >&3; IFS= read -r line <&3; printf %s "${line%$'"'"'\r'"'"'}"' _ "$ip" 2>/dev/null || true)"
  [ "$pong" = "+PONG" ] && break
  sleep 0.5
done
[ "$pong" = "+PONG" ] || fail "the machine got '${pong}' from $ip:6379 instead of +PONG"
log "machine -> $ip:6379 (cache-02, macvlan): PING -> +PONG"

log "timing: run 1 ${secs[1]} s, run 2 ${secs[2]} s"
log "PASS: second run changed=0, members online, images and profile in the cluster, container on cache-02 reachable"
