#!/usr/bin/env bash
# The lab's Prometheus, end to end: runs the real `hack/lab.sh up` as a
# second lab of its own (RSF_LAB_DIR in a temporary folder, namespace
# rsf-labtest-<pid>, so other containers; free loopback ports for the
# operator's metrics and probes and for Prometheus), and checks:
#   - up prints the Prometheus address;
#   - Prometheus runs with the config rendered into the lab's folder
#     (promtool accepts it) and its TSDB there;
#   - /api/v1/targets shows the operator's job with health "up" (polled up
#     to 60 s) and Prometheus has the formation's rsf_formation_master_present
#     with its namespace label;
#   - /api/v1/rules lists every alert rule of config/prometheus/alerts.yaml;
#   - `hack/lab.sh status` reports Prometheus ready and its target up;
#   - a second up leaves the same Prometheus (pid) running;
#   - `hack/lab.sh down` stops it (no process left, port free), deletes the
#     formation's containers and the lab's folder.
# The default lab (.lab in the repository, namespace default) is never
# touched: the test checks it is as it was. An EXIT trap runs down (and
# removes what down left) when the test fails or is interrupted.
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_root
command -v incus >/dev/null 2>&1 || skip "incus is not installed (run the lab host playbook first)"
incus query /1.0 >/dev/null 2>&1 || skip "the Incus daemon is not answering (run the lab host playbook first)"
# What the sample formation (config/samples) uses.
incus query "/1.0/images/aliases/$RSF_IMAGE_ALIAS" >/dev/null 2>&1 ||
  skip "image alias $RSF_IMAGE_ALIAS not found (run the lab host playbook first)"
for obj in profiles/rsf-redis networks/rsfbr0 storage-pools/rsf; do
  incus query "/1.0/$obj" >/dev/null 2>&1 || skip "Incus ${obj%%s/*} ${obj#*/} not found (run the lab host playbook first)"
done
for cmd in go kubectl curl python3; do
  command -v "$cmd" >/dev/null 2>&1 || skip "$cmd not found"
done

LAB="$REPO_ROOT/hack/lab.sh"
FORMATION=cache # config/samples
NS="rsf-labtest-$$"

# Containers of earlier runs that were killed before their trap (their
# namespace names a pid that is gone).
for old in $(incus list --format csv -c n 'cache-rsf-labtest-' 2>/dev/null); do
  owner="$(incus config get "$old" user.rsf.formation 2>/dev/null || true)"
  pid="${owner%/*}"; pid="${pid#rsf-labtest-}"
  if [[ "$owner" =~ ^rsf-labtest-[0-9]+/$FORMATION$ ]] && ! kill -0 "$pid" 2>/dev/null; then
    log "removing leftover container $old ($owner)"
    incus delete --force "$old" >/dev/null 2>&1 || true
  fi
done

assets="$("$REPO_ROOT/hack/envtest-bins.sh" 2>/dev/null)" || fail "hack/envtest-bins.sh failed (kube-apiserver + etcd)"

# Three distinct free loopback ports (held together while chosen).
read -r p_metrics p_probe p_prom < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
METRICS_ADDR="127.0.0.1:$p_metrics"
PROBE_ADDR="127.0.0.1:$p_probe"
PROM_ADDR="127.0.0.1:$p_prom"
PROM="http://$PROM_ADDR"

LABDIR="$(mktemp -d "${TMPDIR:-/tmp}/rsf-labtest.XXXXXX")"
[ "$LABDIR" != "$REPO_ROOT/.lab" ] || fail "the test's lab folder is the default lab's"
export RSF_LAB_DIR="$LABDIR" RSF_LAB_NAMESPACE="$NS" RSF_ENVTEST_ASSETS="$assets" \
  RSF_LAB_METRICS_ADDR="$METRICS_ADDR" RSF_LAB_PROBE_ADDR="$PROBE_ADDR" RSF_LAB_PROMETHEUS_ADDR="$PROM_ADDR"
LOG="$LAB_LOG_DIR/lab_prometheus-$$"
log "lab in $LABDIR, namespace $NS, metrics $METRICS_ADDR, probes $PROBE_ADDR, Prometheus $PROM_ADDR; logs $LOG-*.log"

# The default lab, to check it is left as it was: whether it exists, the
# pids of its processes, its containers.
default_lab_state() {
  {
    [ -e "$REPO_ROOT/.lab" ] && echo "$REPO_ROOT/.lab exists"
    grep -H . "$REPO_ROOT"/.lab/*.pid 2>/dev/null || true
    incus list "user.rsf.formation=default/$FORMATION" --format csv -c n 2>/dev/null || true
  } | sort
}
default_before="$(default_lab_state)"

downed=false
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if ! $downed; then
    log "cleaning up: hack/lab.sh down (log $LOG-cleanup.log)"
    "$LAB" down >"$LOG-cleanup.log" 2>&1 || log "down failed during clean-up (see $LOG-cleanup.log)"
    # What down could not stop: processes whose command line names this
    # run's lab folder (a fresh mktemp path: only this run's).
    for pid in $(pgrep -f -- "$LABDIR/" 2>/dev/null || true); do
      [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null && log "killed leftover process $pid"
    done
    for name in $(incus list "user.rsf.formation=$NS/$FORMATION" --format csv -c n 2>/dev/null || true); do
      [ "$(incus config get "$name" user.rsf.formation 2>/dev/null)" = "$NS/$FORMATION" ] || continue
      log "deleting leftover container $name"
      incus delete --force "$name" >/dev/null 2>&1 || true
    done
  fi
  rm -rf "$LABDIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# json_py EXPR URL: EXPR (Python, over the JSON document d) applied to the
# answer of URL; empty when the request fails.
json_py() {
  curl -sf --max-time 5 "$2" 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin)
$1" 2>/dev/null || true
}

listening() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${1%:*}" "${1##*:}" 2>/dev/null; }

# --- up -----------------------------------------------------------------------
listening "$PROM_ADDR" && fail "$PROM_ADDR was taken before the lab started"
start=$(date +%s)
if ! "$LAB" up >"$LOG-up.log" 2>&1; then
  tail -n 40 "$LOG-up.log" >&2
  fail "hack/lab.sh up failed (log $LOG-up.log)"
fi
log "up: $(( $(date +%s) - start )) s"
grep -qF "Prometheus: $PROM (targets: $PROM/targets, alerts: $PROM/alerts)" "$LOG-up.log" ||
  { tail -n 15 "$LOG-up.log" >&2; fail "up did not print the Prometheus address $PROM"; }
log "ok: up prints 'Prometheus: $PROM (targets: ..., alerts: ...)'"

# The process: the lab's own, with its config and TSDB in the lab's folder.
[ -f "$LABDIR/prometheus.pid" ] || fail "no $LABDIR/prometheus.pid"
prom_pid="$(<"$LABDIR/prometheus.pid")"
args="$(ps -o args= -p "$prom_pid" 2>/dev/null)" || fail "Prometheus (pid $prom_pid) is not running"
[[ "$args" == *"prometheus --config.file=$LABDIR/prometheus/prometheus.yml "* ]] ||
  fail "pid $prom_pid is not the lab's Prometheus: $args"
[[ "$args" == *"--storage.tsdb.path=$LABDIR/prometheus/data "* ]] || fail "Prometheus's TSDB is not in the lab's folder: $args"
[[ "$args" == *"--web.listen-address=$PROM_ADDR "* ]] || fail "Prometheus does not listen on $PROM_ADDR: $args"
[ -d "$LABDIR/prometheus/data/wal" ] || fail "no TSDB (wal) under $LABDIR/prometheus/data"
config="$LABDIR/prometheus/prometheus.yml"
promtool check config "$config" >"$LOG-promtool.log" 2>&1 || { cat "$LOG-promtool.log" >&2; fail "promtool check config $config"; }
grep -q 'scrape_interval: 5s' "$config" || fail "$config: scrape interval is not 5s"
grep -qF -- "- $REPO_ROOT/config/prometheus/alerts.yaml" "$config" || fail "$config: rule file is not $REPO_ROOT/config/prometheus/alerts.yaml"
grep -qF "\"$METRICS_ADDR\"" "$config" || fail "$config: the target is not the operator's $METRICS_ADDR"
if grep -q '\${RSF_' "$config"; then fail "$config still has a placeholder"; fi
log "ok: Prometheus pid $prom_pid, config $config (promtool ok), TSDB in $LABDIR/prometheus/data"

# The operator's target is up.
start=$(date +%s)
health=""
while [ $(( $(date +%s) - start )) -lt 60 ]; do
  health="$(json_py '
for t in d["data"]["activeTargets"]:
    if t["labels"].get("job") == "rsf-operator":
        print(t["scrapeUrl"], t["health"], t.get("lastError", ""))' "$PROM/api/v1/targets")"
  [[ "$health" == "http://$METRICS_ADDR/metrics up"* ]] && break
  sleep 2
done
[[ "$health" == "http://$METRICS_ADDR/metrics up"* ]] ||
  fail "the operator's target is not up after 60 s: '${health:-no rsf-operator target}'"
log "ok: target rsf-operator http://$METRICS_ADDR/metrics up after $(( $(date +%s) - start )) s"

# Prometheus has the formation's metrics, with its namespace (honor_labels).
value=""
while [ $(( $(date +%s) - start )) -lt 60 ]; do
  value="$(json_py 'print(" ".join(r["value"][1] for r in d["data"]["result"]))' \
    "$PROM/api/v1/query?query=rsf_formation_master_present%7Bnamespace%3D%22$NS%22%2Cformation%3D%22$FORMATION%22%7D")"
  # The first scrape may predate the master (up waits for Ready, not for
  # Prometheus): wait for the value the formation has now.
  [ "$value" = 1 ] && break
  sleep 2
done
[ "$value" = 1 ] || fail "rsf_formation_master_present{namespace=\"$NS\",formation=\"$FORMATION\"} is '${value:-absent}', not 1"
log "ok: rsf_formation_master_present{namespace=\"$NS\",formation=\"$FORMATION\"} = 1"

# The alert rules of config/prometheus/alerts.yaml are loaded.
want="$(sed -n 's/^[[:space:]]*- alert:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' "$REPO_ROOT/config/prometheus/alerts.yaml" | sort)"
[ -n "$want" ] || fail "no alert rules found in config/prometheus/alerts.yaml"
have="$(json_py '
for g in d["data"]["groups"]:
    for r in g["rules"]:
        if r["type"] == "alerting":
            print(r["name"])' "$PROM/api/v1/rules" | sort)"
missing="$(comm -23 <(echo "$want") <(echo "$have"))"
[ -z "$missing" ] || fail "alert rules missing from /api/v1/rules: $(echo $missing)"
grep -qx RSFRedisNoMaster <<<"$have" || fail "RSFRedisNoMaster is not loaded"
log "ok: /api/v1/rules lists the $(wc -l <<<"$want") alert rules of alerts.yaml (RSFRedisNoMaster among them)"

# --- status -------------------------------------------------------------------
"$LAB" status >"$LOG-status.log" 2>&1 || { cat "$LOG-status.log" >&2; fail "hack/lab.sh status failed"; }
grep -qF "prometheus:    running (pid $prom_pid), /-/ready ok on $PROM" "$LOG-status.log" ||
  { cat "$LOG-status.log" >&2; fail "status does not report Prometheus (pid $prom_pid) ready on $PROM"; }
grep -qF "rsf-operator http://$METRICS_ADDR/metrics: up" "$LOG-status.log" ||
  { cat "$LOG-status.log" >&2; fail "status does not report the operator's target up"; }
log "ok: status reports Prometheus ready and its target up"

# --- a second up ----------------------------------------------------------------
start=$(date +%s)
"$LAB" up >"$LOG-up2.log" 2>&1 || { tail -n 40 "$LOG-up2.log" >&2; fail "the second up failed (log $LOG-up2.log)"; }
[ "$(<"$LABDIR/prometheus.pid")" = "$prom_pid" ] && ps -o args= -p "$prom_pid" >/dev/null ||
  fail "the second up did not leave Prometheus (pid $prom_pid) running: pid file says $(<"$LABDIR/prometheus.pid")"
grep -qF "Prometheus already running (pid $prom_pid)" "$LOG-up2.log" || fail "the second up did not say Prometheus was already running"
log "ok: a second up ($(( $(date +%s) - start )) s) leaves Prometheus pid $prom_pid alone"

# --- down ---------------------------------------------------------------------
start=$(date +%s)
downed=true
"$LAB" down >"$LOG-down.log" 2>&1 || { downed=false; tail -n 30 "$LOG-down.log" >&2; fail "hack/lab.sh down failed (log $LOG-down.log)"; }
log "down: $(( $(date +%s) - start )) s"
# A zombie (exited, not yet reaped by whatever adopted it) has stopped.
stat="$(ps -o stat= -p "$prom_pid" 2>/dev/null || true)"
if [ -n "$stat" ] && [[ "$stat" != Z* ]] && ps -o args= -p "$prom_pid" | grep -q prometheus; then
  downed=false; fail "Prometheus (pid $prom_pid) still runs after down"
fi
if listening "$PROM_ADDR"; then downed=false; fail "$PROM_ADDR still answers after down"; fi
left="$(for pid in $(pgrep -f -- "$LABDIR/" 2>/dev/null); do [[ "$(ps -o stat= -p "$pid")" == Z* ]] || echo "$pid"; done)"
[ -z "$left" ] || { downed=false; fail "processes of the lab left after down: $(ps -o pid=,args= -p "$(echo $left | tr ' ' ,)")"; }
left="$(incus list "user.rsf.formation=$NS/$FORMATION" --format csv -c n 2>/dev/null || true)"
[ -z "$left" ] || { downed=false; fail "containers of $NS/$FORMATION left after down: $(echo $left)"; }
[ ! -e "$LABDIR" ] || { downed=false; fail "down left $LABDIR"; }
log "ok: down stopped Prometheus (port $p_prom free), left no process and no container, removed $LABDIR"

[ "$(default_lab_state)" = "$default_before" ] || fail "the default lab ($REPO_ROOT/.lab, namespace default) changed during the test"
log "ok: the default lab is as it was"
log "PASS"
