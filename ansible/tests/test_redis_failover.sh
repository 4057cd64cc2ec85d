#!/usr/bin/env bash
# Failover smoke test for a RedisSentinelFormation (the seed's
# test_redis_failover.sh, pointed at a formation): kills the current master's
# container, polls the sentinels until they name a new master, asserts the
# elapsed time is under 30 s and that INFO replication on the new master says
# role:master. Suitable for game-day drills.
#
#   KUBECONFIG=... ansible/tests/test_redis_failover.sh [-n namespace] [-t max_seconds] formation
#
# Needs kubectl (reads the formation, its connection Secret and, for the
# final INFO, the operator's admin password from <formation>-password-state:
# run it as an admin), the incus CLI on the lab host (stops the container)
# and redis-cli (redis-tools).
set -euo pipefail

namespace=default
max_seconds=30
while getopts "n:t:" opt; do
	case $opt in
	n) namespace=$OPTARG ;;
	t) max_seconds=$OPTARG ;;
	*) echo "usage: $0 [-n namespace] [-t max_seconds] formation" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { echo "usage: $0 [-n namespace] [-t max_seconds] formation" >&2; exit 2; }
formation=$1

fail() { echo "FAIL: $*" >&2; exit 1; }
field() { kubectl -n "$namespace" get rsf "$formation" -o jsonpath="{$1}"; }
secret_key() { kubectl -n "$namespace" get secret "$secret" -o jsonpath="{.data.$1}" | base64 -d; }
is_ipv4() { [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; }

secret=$(field .status.connection.secretName)
[ -n "$secret" ] || fail "formation $namespace/$formation has no status.connection yet (is it Ready?)"
master_name=$(secret_key REDIS_SENTINEL_MASTER_NAME)
sentinel_user=$(secret_key REDIS_SENTINEL_USERNAME)
sentinel_pass=$(secret_key REDIS_SENTINEL_PASSWORD)
# INFO is an administrative command: the backend user may not run it.
admin_pass=$(kubectl -n "$namespace" get secret "$formation-password-state" -o jsonpath='{.data.admin}' | base64 -d)
[ -n "$admin_pass" ] || fail "cannot read the admin password from Secret $namespace/$formation-password-state"
IFS=, read -r -a sentinels <<<"$(secret_key REDIS_SENTINEL_ADDRS)"
old_member=$(field .status.master.member)
old_address=$(field .status.master.address)
[ -n "$old_member" ] || fail "formation has no master in status"
# The member's Incus instance is named apart from it (see docs/security.md).
old_instance=$(field ".status.members[?(@.name==\"$old_member\")].instance")
[ -n "$old_instance" ] || fail "status records no instance for member $old_member"

sentinel_cli() { # host:port, args...
	local addr=$1
	shift
	REDISCLI_AUTH=$sentinel_pass timeout 2 redis-cli -h "${addr%:*}" -p "${addr##*:}" --user "$sentinel_user" --no-auth-warning "$@" 2>/dev/null
}

echo "master is $old_member ($old_address); hard-stopping its container $old_instance"
start=$(date +%s.%N)
incus stop --force "$old_instance"

new_address=""
while [ -z "$new_address" ]; do
	elapsed=$(echo "$(date +%s.%N) - $start" | bc)
	if (($(echo "$elapsed > 60" | bc))); then
		fail "no new master named by any sentinel after 60 s"
	fi
	for addr in "${sentinels[@]}"; do
		[ "${addr%:*}" = "$old_address" ] && continue # the killed member's sentinel
		reply=$(sentinel_cli "$addr" SENTINEL get-master-addr-by-name "$master_name" | head -n1 || true)
		case $reply in *NOAUTH* | *WRONGPASS* | *NOPERM*) fail "sentinel $addr refused the connection Secret's credentials: $reply" ;; esac
		if is_ipv4 "$reply" && [ "$reply" != "$old_address" ]; then
			new_address=$reply
			break
		fi
	done
	[ -n "$new_address" ] || sleep 0.1
done
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
printf 'new master %s elected %.1f s after the kill\n' "$new_address" "$elapsed"
(($(echo "$elapsed < $max_seconds" | bc))) || fail "failover took ${elapsed}s, the criterion is < ${max_seconds}s"

role=$(REDISCLI_AUTH=$admin_pass redis-cli -h "$new_address" --user rsf-admin --no-auth-warning INFO replication | tr -d '\r' | sed -n 's/^role://p')
[ "$role" = "master" ] || fail "INFO replication on $new_address says role:$role"
echo "PASS: INFO replication on $new_address reports role:master; the operator restarts $old_member as a replica"
