#!/usr/bin/env bash
# Storage pool scenarios of the lab host playbook. They run on a pool, bridge
# and profile of their own (never the lab's: other users' containers may be on
# it), passed as extra vars. Each scenario runs the playbook (without its
# install and images tags) twice; the second run must change nothing
# (changed=0).
#   fresh    no pool: created with btrfs in a sparse loop file; the profile's
#            root disk is on it. Two containers are launched and deleted, which
#            leaves the image's volume cached on the pool.
#   to-dir   the same pool, unused, with incus_storage_driver=dir: converted
#            (profile device off, cached image volume and pool deleted, dir
#            pool created, device back). This is the old lab's pool.
#   in-use   that dir pool with a running container on it, playbook with the
#            default (btrfs): nothing changes (changed=0 on both runs), a
#            NOTICE names the container and says how to convert; the
#            container still runs on dir.
#            The same with a custom volume instead of the container (one run).
#   convert  container and volume deleted: the pool is converted to btrfs, the
#            profile's root disk is back on it, and a container launched with
#            the profile runs there.
# Everything the script created is deleted on exit (also left-overs of an
# earlier run that was killed).
set -euo pipefail
# shellcheck source=test/lab/lib.sh
source "$(dirname "$0")/lib.sh"
require_root
require_ansible
command -v incus >/dev/null 2>&1 || skip "incus is not installed (run the idempotence test or the lab host playbook first)"
incus query "/1.0/images/aliases/$RSF_IMAGE_ALIAS" >/dev/null 2>&1 \
  || skip "image alias $RSF_IMAGE_ALIAS not found (run the idempotence test or the lab host playbook first)"

POOL="${RSF_TEST_POOL:-rsft-pool}"
BRIDGE="${RSF_TEST_BRIDGE:-rsftbr0}"
BRIDGE_IPV4="${RSF_TEST_BRIDGE_IPV4:-10.80.0.1/24}"
PROFILE="${RSF_TEST_PROFILE:-rsft-redis}"
CT_PREFIX="rsft-ct-"
for name in "$POOL" "$BRIDGE" "$PROFILE"; do
  case "$name" in
    rsf|rsfbr0|rsf-redis|"$RSF_POOL"|"$RSF_BRIDGE"|"$RSF_PROFILE")
      fail "test name '$name' is a lab name: set RSF_TEST_POOL, RSF_TEST_BRIDGE and RSF_TEST_PROFILE to names of its own" ;;
  esac
done
# The packages and images are the idempotence test's (a converged run of
# theirs takes most of a playbook run): these runs converge the daemon,
# pool, bridge and profile only.
TEST_ARGS=(--skip-tags install,images
           -e "incus_storage_pool=$POOL" -e "incus_bridge_name=$BRIDGE"
           -e "incus_bridge_ipv4_address=$BRIDGE_IPV4" -e "incus_profile_name=$PROFILE")

cleanup() {
  local rc=$?
  for ct in $(incus list --format csv -c n "$CT_PREFIX" 2>/dev/null); do
    incus delete --force "$ct" >/dev/null 2>&1 || true
  done
  incus profile delete "$PROFILE" >/dev/null 2>&1 || true
  incus storage volume delete "$POOL" rsft-vol >/dev/null 2>&1 || true
  incus storage delete "$POOL" >/dev/null 2>&1 || true
  incus network delete "$BRIDGE" >/dev/null 2>&1 || true
  for obj in "storage-pools/$POOL" "profiles/$PROFILE" "networks/$BRIDGE"; do
    if incus query "/1.0/$obj" >/dev/null 2>&1; then
      echo "[storage_pool] FAIL: $obj is still there after cleanup" >&2
      rc=1
    fi
  done
  return "$rc"
}
cleanup || fail "cannot remove what an earlier run left"
trap 'cleanup; exit $?' EXIT
trap 'exit 1' INT TERM

seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# scenario NAME EXPECT [ARGS...]: run the playbook twice with the test names
# and ARGS. EXPECT: "changes" (run 1 must change something) or "nothing"
# (run 1 must change nothing too). Run 2 must always be changed=0.
# Sets LAST_LOG to the log of run 1.
scenario() {
  local name="$1" expect="$2"; shift 2
  local n logfile rc start secs changed
  for n in 1 2; do
    logfile="$LAB_LOG_DIR/storage_pool-$name-run$n.log"
    start=$(date +%s.%N)
    rc=0
    run_playbook "$logfile" "${TEST_ARGS[@]}" "$@" || rc=$?
    secs="$(seconds_since "$start")"
    changed="$(check_run "$name run $n" "$logfile" "$rc")"
    log "$name run $n: changed=$changed, $secs s"
    if [ "$n" -eq 1 ]; then
      LAST_LOG="$logfile"
      case "$expect" in
        changes) [ "$changed" != 0 ] || fail "$name run 1 changed nothing; log: $logfile" ;;
        nothing) [ "$changed" = 0 ] || { changed_tasks "$logfile" >&2; fail "$name run 1 changed=$changed, expected 0; log: $logfile"; } ;;
      esac
    elif [ "$changed" != 0 ]; then
      changed_tasks "$logfile" >&2
      fail "$name: second run is not idempotent: changed=$changed; log: $logfile"
    fi
  done
}

# expect_pool DRIVER: the test pool has DRIVER and the profile's root disk is on it.
expect_pool() {
  local driver root_pool
  driver="$(pool_field "$POOL" driver)"
  [ "$driver" = "$1" ] || fail "pool $POOL has driver '$driver', expected '$1'"
  root_pool="$(incus query "/1.0/profiles/$PROFILE" | python3 -c 'import json, sys; print(json.load(sys.stdin)["devices"].get("root", {}).get("pool", ""))')"
  [ "$root_pool" = "$POOL" ] || fail "profile $PROFILE has its root disk on '${root_pool:-nothing}', expected pool $POOL"
}

# launch NAME: launch a container with the test profile; prints the seconds
# incus launch took.
launch() {
  local start
  start=$(date +%s.%N)
  incus launch "$RSF_IMAGE_ALIAS" "$1" --profile "$PROFILE" >/dev/null || fail "incus launch $1 failed"
  seconds_since "$start"
}

# --- fresh ---------------------------------------------------------------
scenario fresh changes
expect_pool btrfs
size="$(pool_field "$POOL" config.size)"
source_file="$(pool_field "$POOL" config.source)"
[ -f "$source_file" ] || fail "pool $POOL has no loop file (source '$source_file')"
apparent_kib=$(( $(stat -c %s "$source_file") / 1024 ))
used_kib="$(du -k "$source_file" | cut -f1)"
[ "$used_kib" -lt $((apparent_kib / 2)) ] || fail "loop file $source_file is not sparse (${used_kib} KiB used of ${apparent_kib} KiB)"
log "fresh: pool $POOL is btrfs, size $size, loop file $source_file uses $((used_kib / 1024)) MiB of $((apparent_kib / 1024)) MiB"
t1="$(launch "${CT_PREFIX}a-$$")"
t2="$(launch "${CT_PREFIX}b-$$")"
log "fresh: incus launch on btrfs took $t1 s (first: unpacks the image into its volume), then $t2 s (a snapshot of it)"
incus delete --force "${CT_PREFIX}a-$$" "${CT_PREFIX}b-$$" >/dev/null
incus query "/1.0/storage-pools/$POOL" | grep -q '"/1.0/images/' || fail "no image volume cached on $POOL after the launches"

# --- to-dir --------------------------------------------------------------
scenario to-dir changes -e incus_storage_driver=dir
expect_pool dir
grep -q 'TASK \[incus_host : Storage | delete the image volumes cached' "$LAST_LOG" \
  && grep -A2 'TASK \[incus_host : Storage | delete the image volumes cached' "$LAST_LOG" | grep -q '^changed:' \
  || fail "to-dir: the cached image volume was not deleted by the role; log: $LAST_LOG"
log "to-dir: pool $POOL converted to dir (cached image volume deleted, root disk back on the profile)"

# --- in-use --------------------------------------------------------------
CT="${CT_PREFIX}old-$$"
t_dir="$(launch "$CT")"
log "in-use: incus launch on dir took $t_dir s (unpacks the image)"
scenario in-use nothing
notice="NOTICE: storage pool $POOL keeps driver dir, not btrfs: 1 instance(s) use it ($CT)"
grep -qF "$notice" "$LAST_LOG" || { grep -A3 'keeps driver' "$LAST_LOG" >&2 || true; fail "in-use: no '$notice' in $LAST_LOG"; }
grep -qF 'then run this playbook again' "$LAST_LOG" || fail "in-use: the notice does not say how to convert"
expect_pool dir
[ "$(incus list --format csv -c s "$CT")" = RUNNING ] || fail "in-use: $CT is not running any more"
log "in-use: pool kept on dir, $CT still running; notice: $notice"

# A custom volume on the pool keeps it too (only its first run: same path).
incus delete --force "$CT" >/dev/null
incus storage volume create "$POOL" rsft-vol >/dev/null
logfile="$LAB_LOG_DIR/storage_pool-in-use-volume.log"
rc=0
run_playbook "$logfile" "${TEST_ARGS[@]}" || rc=$?
changed="$(check_run "in-use-volume" "$logfile" "$rc")"
[ "$changed" = 0 ] || { changed_tasks "$logfile" >&2; fail "in-use-volume: changed=$changed, expected 0; log: $logfile"; }
notice="NOTICE: storage pool $POOL keeps driver dir, not btrfs: 0 instance(s) use it, and /1.0/storage-pools/$POOL/volumes/custom/rsft-vol."
grep -qF "$notice" "$logfile" || { grep -A3 'keeps driver' "$logfile" >&2 || true; fail "in-use-volume: no '$notice' in $logfile"; }
expect_pool dir
incus storage volume delete "$POOL" rsft-vol >/dev/null
log "in-use-volume: pool kept on dir while a custom volume is on it (changed=0)"

# --- convert -------------------------------------------------------------
scenario convert changes
expect_pool btrfs
for task in "take the devices on pool $POOL off the profiles" "delete pool $POOL (dir, no instance on it)" \
            "create pool $POOL (btrfs)" "put the profiles' devices back on the new pool $POOL"; do
  grep -A2 -F "TASK [incus_host : Storage | $task]" "$LAST_LOG" | grep -q '^changed:' \
    || fail "convert: task '$task' did not change anything; log: $LAST_LOG"
done
t_btrfs="$(launch "${CT_PREFIX}new-$$")"
[ "$(incus list --format csv -c s "${CT_PREFIX}new-$$")" = RUNNING ] || fail "convert: a container launched on the converted pool is not running"
log "convert: pool $POOL is btrfs; a container launched on it in $t_btrfs s runs"

log "PASS: fresh, to-dir, in-use and convert; every second run changed=0 (logs: $LAB_LOG_DIR/storage_pool-*.log)"
