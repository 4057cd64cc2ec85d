#!/usr/bin/env bash
# The local lab: a control plane (kube-apiserver + etcd, as in envtest, on
# 127.0.0.1 only), the operator, and the sample formation on this machine's
# Incus. `make lab` runs the lab-host playbook first, then `hack/lab.sh up`.
#
#   hack/lab.sh up       build, start what does not run yet (control plane,
#                        operator, Prometheus scraping the operator), apply
#                        the sample, wait until rsf/cache is Ready (idempotent)
#   hack/lab.sh down     delete the sample (the operator removes its
#                        containers), stop everything, remove .lab/ (idempotent)
#   hack/lab.sh status   what runs
#
# Everything lives in .lab/ (git-ignored; RSF_LAB_DIR): kubeconfig, etcd data,
# Prometheus config and TSDB (.lab/prometheus/), pid files, logs. Environment:
#   RSF_ENVTEST_ASSETS     folder with kube-apiserver + etcd (default: the
#                          output of hack/envtest-bins.sh)
#   RSF_LAB_DIR            the lab's folder (.lab in the repository); a second
#                          lab on the same machine needs its own
#   RSF_LAB_NAMESPACE      namespace of the sample formation (default; created
#                          when missing). The formation's containers are named
#                          after it, so a second lab needs its own namespace
#   RSF_LAB_METRICS_ADDR   operator metrics address (127.0.0.1:8080)
#   RSF_LAB_PROBE_ADDR     operator probe address (127.0.0.1:8081)
#   RSF_LAB_PROMETHEUS_ADDR  Prometheus listen address (127.0.0.1:9090)
#   RSF_LAB_READY_TIMEOUT  how long to wait for rsf/cache to be Ready (5m)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
lab=${RSF_LAB_DIR:-$root/.lab}
[[ $lab == /* ]] || lab=$PWD/$lab
lab=${lab%/}
cd "$root"

default_lab=$root/.lab
# Marks a folder as a lab's: down removes RSF_LAB_DIR only when it holds it
# (or is the default .lab), never an arbitrary folder.
lab_marker=.rsf-lab
kubeconfig=$lab/kubeconfig
namespace=${RSF_LAB_NAMESPACE:-default}
formation=cache
samples=config/samples
crds=config/crd/bases
metrics_addr=${RSF_LAB_METRICS_ADDR:-127.0.0.1:8080}
probe_addr=${RSF_LAB_PROBE_ADDR:-127.0.0.1:8081}
prom_addr=${RSF_LAB_PROMETHEUS_ADDR:-127.0.0.1:9090}
ready_timeout=${RSF_LAB_READY_TIMEOUT:-5m}
controlplane_start_timeout=180 # seconds, until the kubeconfig exists and /readyz answers
stop_timeout=20                # seconds between SIGTERM and SIGKILL

# Prometheus (Debian's package; hack/apt-install.sh prometheus). Its config
# is rendered from config/prometheus/prometheus.yml into $prom_dir.
prometheus_bin=$(command -v prometheus 2>/dev/null || echo /usr/bin/prometheus)
prom_dir=$lab/prometheus
prom_config=$prom_dir/prometheus.yml
prom_template=config/prometheus/prometheus.yml
prom_rules=$root/config/prometheus/alerts.yaml
prom_scrape_interval=5s
prom_job=rsf-operator # the job name in $prom_template
prom_start_timeout=60 # seconds, until /-/ready answers

[[ $namespace =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || {
	echo "lab: RSF_LAB_NAMESPACE '$namespace' is not a valid namespace name" >&2
	exit 2
}

log() { printf '\033[1mlab %s:\033[0m %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

# --- processes --------------------------------------------------------------
# Each background process is started with setsid, so it leads its own session;
# its pid is in .lab/<name>.pid and is also the session id of everything it
# started (envtest puts kube-apiserver and etcd in their own process groups,
# but they stay in the session).

# running PID: the process exists and is not a zombie.
running() {
	local stat
	stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ $stat != Z* ]]
}

# lab_prometheus ARGS: true when ARGS (a command line, as ps prints it) is
# this lab's Prometheus: the prometheus binary with this lab's config file as
# its first argument (ensure_prometheus puts it there). Not any Prometheus:
# the system's prometheus.service or another lab's has another config.
lab_prometheus() {
	[[ $1 == "$prometheus_bin --config.file=$prom_config "* ]]
}

# lab_pid NAME: prints the pid of the lab's NAME process when it runs. The
# pid must still be a session leader running one of this repository's
# binaries, or for NAME prometheus this lab's Prometheus (guards against a
# pid reused by something else).
lab_pid() {
	local name=$1 pid args
	[ -f "$lab/$name.pid" ] || return 1
	pid=$(<"$lab/$name.pid")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	running "$pid" || return 1
	[ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ] || return 1
	args=$(ps -o args= -p "$pid")
	if [ "$name" = prometheus ]; then
		lab_prometheus "$args" || return 1
	else
		[[ $args == "$root/bin/"* ]] || return 1
	fi
	echo "$pid"
}

# session_members SID: live processes of the session that run a binary of this
# repository or of the envtest assets folder (etcd, kube-apiserver), or that
# are this lab's Prometheus.
session_members() {
	local sid=$1 pid args
	for pid in $(pgrep -s "$sid" 2>/dev/null || true); do
		running "$pid" || continue
		args=$(ps -o args= -p "$pid" 2>/dev/null) || continue
		if [[ $args == "$root/"* ]] || { [ -n "${assets:-}" ] && [[ $args == "$assets/"* ]]; } || lab_prometheus "$args"; then
			echo "$pid"
		fi
	done
}

# stop_proc NAME: SIGTERM the process, wait up to $stop_timeout s for it and
# everything in its session to exit, then SIGKILL what is left.
stop_proc() {
	local name=$1 pid sid left i
	[ -f "$lab/$name.pid" ] || return 0
	sid=$(<"$lab/$name.pid")
	[[ $sid =~ ^[0-9]+$ ]] || {
		rm -f "$lab/$name.pid"
		return 0
	}
	if pid=$(lab_pid "$name"); then
		log "stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
	else
		# The leader is gone; what it started may still run (orphaned etcd
		# and kube-apiserver after a SIGKILL).
		# kube-apiserver first: it hangs in its shutdown when etcd is gone.
		left=$(session_members "$sid")
		if [ -n "$left" ]; then
			log "$name (pid $sid) is gone; stopping what it left running: $(echo $left)"
			for pid in $left; do
				[[ $(ps -o args= -p "$pid" 2>/dev/null) == */etcd\ * ]] || kill -TERM "$pid" 2>/dev/null || true
			done
			for ((i = 0; i < stop_timeout; i++)); do
				[ "$(session_members "$sid" | wc -w)" -le 1 ] && break
				sleep 0.5
			done
			# shellcheck disable=SC2046
			kill -TERM $(session_members "$sid") 2>/dev/null || true
		fi
	fi
	for ((i = 0; i < stop_timeout * 2; i++)); do
		left=$(session_members "$sid")
		[ -z "$left" ] && break
		sleep 0.5
	done
	left=$(session_members "$sid")
	if [ -n "$left" ]; then
		log "$name did not stop within ${stop_timeout}s; killing $(echo $left)"
		# shellcheck disable=SC2086
		kill -KILL $left 2>/dev/null || true
		sleep 1
	fi
	rm -f "$lab/$name.pid"
}

# start_proc NAME CMD...: start CMD in its own session, detached, with its
# output appended to .lab/NAME.log; records the pid.
start_proc() {
	local name=$1 pid
	shift
	printf '\n=== %s: %s\n' "$(date -Is)" "$*" >>"$lab/$name.log"
	setsid nohup "$@" >>"$lab/$name.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" >"$lab/$name.pid"
	sleep 0.2
	# setsid execs in place when it is not a process-group leader (always
	# the case for a job of a non-interactive shell): check it did.
	if running "$pid" && [ "$(ps -o sid= -p "$pid" | tr -d ' ')" != "$pid" ]; then
		die "$name (pid $pid) did not get its own session"
	fi
	log "started $name (pid $pid, log $(show "$lab/$name.log"))"
}

# show PATH: PATH relative to the repository when it is inside it.
show() { echo "${1#"$root/"}"; }

tail_logs() {
	local f
	for f in "$lab/manager.log" "$lab/controlplane.log" "$lab/kube-apiserver.log" "$lab/etcd.log" "$lab/prometheus.log"; do
		[ -s "$f" ] || continue
		echo "----- last lines of $(show "$f") -----" >&2
		tail -n 25 "$f" >&2
	done
}

# listening HOST:PORT: something accepts TCP connections there.
listening() {
	local host=${1%:*} port=${1##*:}
	host=${host#[}
	host=${host%]}
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

controlplane_ready() {
	[ -f "$kubeconfig" ] && k get --raw /readyz >/dev/null 2>&1
}

# The lab's namespace is chosen by its first `up` and recorded in
# $lab/namespace; down and status use the recorded one (down must delete the
# containers up made, whatever RSF_LAB_NAMESPACE says now).
use_recorded_namespace() {
	local recorded
	recorded=$(cat "$lab/namespace" 2>/dev/null) || return 0
	[ -n "$recorded" ] && [ "$recorded" != "$namespace" ] || return 0
	case $1 in
	up) die "the lab in $(show "$lab") has its sample in namespace $recorded, not $namespace: run down first, or set RSF_LAB_NAMESPACE=$recorded" ;;
	down) log "the lab in $(show "$lab") has its sample in namespace $recorded: using that (not $namespace)" ;;
	esac
	namespace=$recorded
}

# --- up ---------------------------------------------------------------------

resolve_assets() {
	assets=${RSF_ENVTEST_ASSETS:-}
	[ -n "$assets" ] || assets=$(hack/envtest-bins.sh)
	[ -x "$assets/kube-apiserver" ] && [ -x "$assets/etcd" ] ||
		die "no kube-apiserver + etcd in '$assets' (RSF_ENVTEST_ASSETS, or the output of hack/envtest-bins.sh)"
	assets=$(cd "$assets" && pwd)
}

ensure_controlplane() {
	local pid i
	if pid=$(lab_pid controlplane) && controlplane_ready; then
		log "control plane already running (pid $pid)"
		return 0
	fi
	# Whatever is left of an earlier run (dead leader, orphaned etcd) goes first.
	stop_proc controlplane
	rm -f "$kubeconfig"
	start_proc controlplane "$root/bin/lab-controlplane" \
		--assets "$assets" --crd-dir "$root/$crds" --kubeconfig "$kubeconfig" \
		--etcd-data-dir "$lab/etcd" --log-dir "$lab" --stop-timeout 8s
	cp bin/lab-controlplane "$lab/controlplane.bin" # what runs, to notice a rebuild
	pid=$(<"$lab/controlplane.pid")
	for ((i = 0; i < controlplane_start_timeout; i++)); do
		running "$pid" || die "the control plane exited during start-up"
		controlplane_ready && {
			log "control plane ready: $(k config view -o jsonpath='{.clusters[0].cluster.server}')"
			return 0
		}
		sleep 1
	done
	die "the control plane was not ready within ${controlplane_start_timeout}s"
}

# The operator restarts when its binary, the kubeconfig (a new control plane)
# or its flags changed since it was started.
ensure_manager() {
	local want pid i
	want="$(sha256sum bin/manager | cut -d' ' -f1) $(sha256sum "$kubeconfig" | cut -d' ' -f1) $metrics_addr $probe_addr"
	if pid=$(lab_pid manager); then
		if [ "$(cat "$lab/manager.fingerprint" 2>/dev/null)" = "$want" ]; then
			log "operator already running (pid $pid)"
			return 0
		fi
		log "operator binary, kubeconfig or flags changed: restarting it"
	fi
	stop_proc manager
	if curl -s -o /dev/null --max-time 2 "http://$probe_addr/readyz"; then
		die "something else already answers on $probe_addr; set RSF_LAB_PROBE_ADDR (and RSF_LAB_METRICS_ADDR) to free loopback ports"
	fi
	KUBECONFIG=$kubeconfig start_proc manager "$root/bin/manager" \
		--metrics-bind-address "$metrics_addr" --health-probe-bind-address "$probe_addr" --log-format json
	echo "$want" >"$lab/manager.fingerprint"
	pid=$(<"$lab/manager.pid")
	for ((i = 0; i < 60; i++)); do
		running "$pid" || die "the operator exited during start-up"
		if curl -sf --max-time 2 "http://$probe_addr/readyz" >/dev/null; then
			log "operator ready (probes on $probe_addr, metrics on $metrics_addr)"
			return 0
		fi
		sleep 1
	done
	die "the operator's /readyz did not answer within 60s"
}

# --- Prometheus -------------------------------------------------------------
# Debian's Prometheus, as a lab process: config rendered from $prom_template
# into $prom_config (checked with promtool first), TSDB in $prom_dir/data,
# listening on $prom_addr only. A config or rules change is reloaded (SIGHUP);
# a new binary or address restarts it.

prometheus_ready() { curl -sf --max-time 2 "http://$1/-/ready" >/dev/null; }

# prom_metric NAME: the value of an unlabelled metric of the lab's Prometheus.
prom_metric() {
	curl -sf --max-time 2 "http://$prom_addr/metrics" 2>/dev/null | awk -v m="$1" '$1 == m { print $2 }' || true
}

# render_prometheus_config: $prom_template with the lab's values.
render_prometheus_config() {
	local t
	t=$(<"$prom_template")
	t=${t//'${RSF_SCRAPE_INTERVAL}'/"$prom_scrape_interval"}
	t=${t//'${RSF_ALERT_RULES}'/"$prom_rules"}
	t=${t//'${RSF_OPERATOR_METRICS}'/"$metrics_addr"}
	[[ $t != *'${RSF_'* ]] || die "$prom_template has a placeholder hack/lab.sh does not know: $(grep -o '\${RSF_[A-Z_]*}' <<<"$t" | sort -u | tr '\n' ' ')"
	printf '# Rendered by hack/lab.sh from %s (overwritten by every up).\n%s\n' "$prom_template" "$t"
}

wait_prometheus_ready() {
	local pid=$1 i
	for ((i = 0; i < prom_start_timeout; i++)); do
		running "$pid" || die "Prometheus exited during start-up (see $(show "$lab/prometheus.log"))"
		prometheus_ready "$prom_addr" && return 0
		sleep 1
	done
	die "Prometheus's /-/ready did not answer on $prom_addr within ${prom_start_timeout}s"
}

reload_prometheus() {
	local pid=$1 before after i
	before=$(prom_metric prometheus_config_last_reload_success_timestamp_seconds)
	kill -HUP "$pid"
	for ((i = 0; i < 30; i++)); do
		sleep 1
		[ "$(prom_metric prometheus_config_last_reload_successful)" != 0 ] ||
			die "Prometheus (pid $pid) refused the new config (see $(show "$lab/prometheus.log"))"
		after=$(prom_metric prometheus_config_last_reload_success_timestamp_seconds)
		if [ -n "$after" ] && [ "$after" != "$before" ]; then
			log "Prometheus reloaded its config and rules (pid $pid)"
			return 0
		fi
	done
	die "Prometheus (pid $pid) did not reload its config within 30s (see $(show "$lab/prometheus.log"))"
}

ensure_prometheus() {
	local candidate=$prom_dir/prometheus.yml.new want_proc want_config pid out hint
	if [ ! -x "$prometheus_bin" ] || ! command -v promtool >/dev/null; then
		log "installing Prometheus (Debian package prometheus)"
		hack/apt-install.sh prometheus
		prometheus_bin=$(command -v prometheus) || die "no prometheus binary after installing the package"
	fi
	mkdir -p "$prom_dir/data"
	render_prometheus_config >"$candidate"
	if ! out=$(promtool check config "$candidate" 2>&1); then
		echo "$out" >&2
		die "promtool check config refused the rendered $(show "$candidate")"
	fi
	want_proc="$prometheus_bin $prom_addr $prom_dir/data"
	want_config="$(sha256sum <"$candidate" | cut -d' ' -f1) $(sha256sum <"$prom_rules" | cut -d' ' -f1)"
	if pid=$(lab_pid prometheus); then
		if [ "$(sed -n 1p "$lab/prometheus.fingerprint" 2>/dev/null)" = "$want_proc" ]; then
			if [ "$(sed -n 2p "$lab/prometheus.fingerprint" 2>/dev/null)" = "$want_config" ]; then
				rm -f "$candidate"
				wait_prometheus_ready "$pid"
				log "Prometheus already running (pid $pid)"
				return 0
			fi
			log "Prometheus config or alert rules changed: reloading"
			mv "$candidate" "$prom_config"
			reload_prometheus "$pid"
			printf '%s\n%s\n' "$want_proc" "$want_config" >"$lab/prometheus.fingerprint"
			return 0
		fi
		log "Prometheus binary, address or data folder changed: restarting it"
	fi
	# Checked before stopping the lab's own, which may listen there.
	if [ "$(cat "$lab/prometheus.addr" 2>/dev/null)" != "$prom_addr" ] || ! lab_pid prometheus >/dev/null; then
		if listening "$prom_addr"; then
			rm -f "$candidate"
			hint=""
			[[ $prom_addr != *:9090 ]] || hint=" (Debian's prometheus.service listens on :9090: systemctl disable --now prometheus)"
			die "something else already listens on $prom_addr$hint; set RSF_LAB_PROMETHEUS_ADDR to a free loopback port"
		fi
	fi
	stop_proc prometheus
	mv "$candidate" "$prom_config"
	# --config.file first: lab_prometheus recognises the process by it.
	start_proc prometheus "$prometheus_bin" --config.file="$prom_config" \
		--storage.tsdb.path="$prom_dir/data" --web.listen-address="$prom_addr" \
		--web.external-url="http://$prom_addr/"
	printf '%s\n%s\n' "$want_proc" "$want_config" >"$lab/prometheus.fingerprint"
	echo "$prom_addr" >"$lab/prometheus.addr"
	wait_prometheus_ready "$(<"$lab/prometheus.pid")"
	log "Prometheus ready on http://$prom_addr (scrapes the operator on $metrics_addr every $prom_scrape_interval)"
}

# prometheus_targets ADDR: one line per active target of the operator's job
# ("<job> <scrape URL>: <health>[ (<last error>)]"), or why there is none.
prometheus_targets() {
	curl -sf --max-time 2 "http://$1/api/v1/targets?state=active" 2>/dev/null | python3 -c '
import json, sys
job = sys.argv[1]
try:
    targets = json.load(sys.stdin)["data"]["activeTargets"]
except Exception as e:
    print("cannot read /api/v1/targets: %s" % e)
    sys.exit(0)
found = [t for t in targets if t.get("labels", {}).get("job") == job]
for t in found:
    err = t.get("lastError") or ""
    print("%s %s: %s%s" % (job, t.get("scrapeUrl", "?"), t.get("health", "?"), " (%s)" % err if err else ""))
if not found:
    print("no %s target (yet: Prometheus lists it a few seconds after it starts)" % job)
' "$prom_job"
}

# --- up (continued) ---------------------------------------------------------

cmd_up() {
	local start=$SECONDS pid nsflag=""
	if [ "$lab" != "$default_lab" ] && [ -d "$lab" ] && [ ! -e "$lab/$lab_marker" ] && [ -n "$(ls -A "$lab")" ]; then
		die "RSF_LAB_DIR $lab is not empty and holds no $lab_marker: not a lab folder; choose a new or empty one"
	fi
	use_recorded_namespace up
	[ "$namespace" = default ] || nsflag=" -n $namespace"
	up_ok=false
	trap 'rc=$?; if [ "$up_ok" != true ]; then log "up failed (exit $rc); log tails follow"; tail_logs; fi' EXIT
	mkdir -p "$lab"
	chmod 700 "$lab"
	touch "$lab/$lab_marker"
	echo "$namespace" >"$lab/namespace"
	resolve_assets
	echo "$assets" >"$lab/assets"

	log "building bin/manager and bin/lab-controlplane"
	go build -o bin/manager .
	go build -o bin/lab-controlplane ./hack/controlplane
	if pid=$(lab_pid controlplane) && ! cmp -s bin/lab-controlplane "$lab/controlplane.bin" 2>/dev/null; then
		log "note: bin/lab-controlplane changed since the running control plane (pid $pid) started; 'make lab-down lab' picks it up"
	fi

	ensure_controlplane
	log "installing the CRDs"
	k apply --server-side --force-conflicts -f "$crds" >/dev/null
	k wait --for=condition=Established crd/redissentinelformations.redis.incusops.io crd/incushosts.redis.incusops.io --timeout=60s >/dev/null

	ensure_manager
	ensure_prometheus

	if [ "$namespace" != default ] && ! k get namespace "$namespace" >/dev/null 2>&1; then
		log "creating namespace $namespace"
		k create namespace "$namespace" >/dev/null
	fi
	log "applying $samples (namespace $namespace)"
	# -k: the folder holds a kustomization.yaml next to the manifests.
	k apply -k "$samples" --namespace "$namespace"
	log "waiting up to $ready_timeout for rsf/$formation to be Ready"
	if ! k wait --for=condition=Ready "rsf/$formation" --namespace "$namespace" --timeout="$ready_timeout"; then
		k describe rsf "$formation" --namespace "$namespace" >&2 || true
		die "rsf/$formation did not become Ready within $ready_timeout"
	fi

	echo
	k get rsf --namespace "$namespace" -o wide
	cat <<EOF

The lab is up ($((SECONDS - start))s).
  export KUBECONFIG=$kubeconfig
  kubectl get rsf$nsflag -o wide
  kubectl describe rsf$nsflag $formation
  kubectl get secret$nsflag $formation-connection -o yaml     # how a backend connects
  incus list user.rsf.formation=$namespace/$formation
Prometheus: http://$prom_addr (targets: http://$prom_addr/targets, alerts: http://$prom_addr/alerts)
Logs:   $(show "$lab")/manager.log (operator, JSON), $(show "$lab")/controlplane.log,
        $(show "$lab")/kube-apiserver.log, $(show "$lab")/etcd.log, $(show "$lab")/prometheus.log
Status: make lab-status      Tear down: make lab-down
EOF
	up_ok=true
}

# --- down -------------------------------------------------------------------

# Deletes the sample's containers that are still there: only instances whose
# user.rsf.formation is exactly <namespace>/<formation>, whatever their name
# (<formation>-<namespace>-<hash>-N, or <formation>-N from older operators).
delete_leftover_containers() {
	local name owner found=false
	command -v incus >/dev/null || return 0
	for name in $(incus list "user.rsf.formation=$namespace/$formation" --format csv --columns n 2>/dev/null || true); do
		owner=$(incus config get "$name" user.rsf.formation 2>/dev/null || true)
		if [ "$owner" != "$namespace/$formation" ]; then
			log "leaving $name alone: user.rsf.formation is '${owner}', not $namespace/$formation"
			continue
		fi
		found=true
		log "deleting leftover container $name"
		incus delete --force "$name"
	done
	$found || log "no leftover containers of $namespace/$formation"
}

cmd_down() {
	local start=$SECONDS failed=false
	if [ "$lab" != "$default_lab" ] && [ -d "$lab" ] && [ ! -e "$lab/$lab_marker" ] && [ -n "$(ls -A "$lab")" ]; then
		die "RSF_LAB_DIR $lab is not empty and holds no $lab_marker: not a lab folder, not touching it"
	fi
	use_recorded_namespace down
	# assets: only to recognise orphaned etcd/kube-apiserver processes.
	assets=$(cat "$lab/assets" 2>/dev/null || echo "${RSF_ENVTEST_ASSETS:-}")
	if [ -d "$lab" ] && lab_pid controlplane >/dev/null && controlplane_ready; then
		if k get rsf "$formation" --namespace "$namespace" >/dev/null 2>&1; then
			if lab_pid manager >/dev/null; then
				log "deleting $samples (the operator's finalizer deletes the containers)"
				if ! k delete -k "$samples" --namespace "$namespace" --ignore-not-found --wait --timeout=3m; then
					log "WARNING: deleting the sample did not finish within 3m; the containers are removed directly below"
					k describe rsf "$formation" --namespace "$namespace" >&2 || true
					tail_logs
					failed=true
				fi
			else
				log "the operator is not running: skipping the Kubernetes delete; the containers are removed directly below"
			fi
		fi
	fi
	stop_proc prometheus
	stop_proc manager
	stop_proc controlplane
	delete_leftover_containers
	rm -rf "$lab"
	log "lab removed ($((SECONDS - start))s)"
	if $failed; then
		log "down finished, but the operator did not delete the formation in time (see the log tails above)"
		return 1
	fi
}

# --- status -----------------------------------------------------------------

cmd_status() {
	local pid addr
	use_recorded_namespace status
	if pid=$(lab_pid controlplane); then
		if controlplane_ready; then
			echo "control plane: running (pid $pid), /readyz ok, $(k config view -o jsonpath='{.clusters[0].cluster.server}')"
		else
			echo "control plane: running (pid $pid), /readyz NOT ok"
		fi
	else
		echo "control plane: not running"
	fi
	if pid=$(lab_pid manager); then
		if curl -sf --max-time 2 "http://$probe_addr/readyz" >/dev/null; then
			echo "operator:      running (pid $pid), /readyz ok on $probe_addr"
		else
			echo "operator:      running (pid $pid), /readyz NOT ok on $probe_addr"
		fi
	else
		echo "operator:      not running"
	fi
	if pid=$(lab_pid prometheus); then
		addr=$(cat "$lab/prometheus.addr" 2>/dev/null || echo "$prom_addr")
		if prometheus_ready "$addr"; then
			echo "prometheus:    running (pid $pid), /-/ready ok on http://$addr"
			prometheus_targets "$addr" | sed 's/^/  target:      /'
		else
			echo "prometheus:    running (pid $pid), /-/ready NOT ok on http://$addr"
		fi
	else
		echo "prometheus:    not running"
	fi
	if controlplane_ready; then
		echo
		k get rsf --all-namespaces -o wide
		echo
		echo "KUBECONFIG=$kubeconfig; logs in $(show "$lab")/"
	fi
	if command -v incus >/dev/null; then
		echo
		incus list "user.rsf.formation=$namespace/$formation" --columns ns4 2>/dev/null || true
	fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
