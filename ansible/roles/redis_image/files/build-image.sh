#!/bin/bash
# Build the RedisSentinelFormation container image: a Debian rootfs with
# systemd and the server and Sentinel of one engine (redis-server and
# redis-sentinel, or valkey-server and valkey-sentinel) made with debootstrap,
# packed as an Incus split image (metadata tarball + rootfs tarball).
#
# Driven by the redis_image role; all inputs come from the environment:
#   RSF_WORKDIR          work directory (rootfs/, files/, out/ live here)
#   RSF_DEB_CACHE        debootstrap package cache, kept between builds
#   RSF_ENGINE           redis | valkey: units <engine>-server/<engine>-sentinel,
#                        config directory /etc/<engine>, user <engine>
#   RSF_SUITE            Debian suite (bookworm)
#   RSF_MIRROR           Debian mirror URI
#   RSF_SECURITY_MIRROR  debian-security mirror URI; empty: no security updates
#   RSF_VARIANT          debootstrap variant (minbase)
#   RSF_PACKAGES         comma separated packages to --include
#   RSF_BACKPORTS_PACKAGES  comma separated packages installed afterwards from
#                        <suite>-backports (same mirror); empty: none
#   RSF_IMAGE_VARIANT    the image's "variant" property (redis7, valkey8)
#   RSF_ARCH             Incus architecture name (x86_64, aarch64)
#   RSF_ALIAS            image alias (stored as property user.rsf.alias)
#   RSF_INPUTS_SHA256    checksum of the build inputs (user.rsf.inputs_sha256)
#   RSF_DESCRIPTION      image description
#   RSF_COMPRESSION      gzip | none
# Output: $RSF_WORKDIR/out/{meta,rootfs}.tar[.gz] and, on stdout, a last line
# "fingerprint=<sha256>" (the Incus fingerprint of the split image).
# #incus-node
# RSF_ENGINE=incus builds the nested Incus host of the cluster lab instead #incus-node
# (incus-base from RSF_BACKPORTS_PACKAGES, incus.socket and incus-startup #incus-node
# enabled, no server or Sentinel). Lines that end in "#incus-node" only #incus-node
# serve that image: the redis_image role leaves them out of the input #incus-node
# checksum of the Redis and Valkey images, whose build they do not change. #incus-node
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

for v in RSF_WORKDIR RSF_DEB_CACHE RSF_ENGINE RSF_SUITE RSF_MIRROR RSF_VARIANT RSF_PACKAGES \
         RSF_IMAGE_VARIANT RSF_ARCH RSF_ALIAS RSF_INPUTS_SHA256 RSF_DESCRIPTION RSF_COMPRESSION; do
  if [ -z "${!v:-}" ]; then echo "build-image: $v is not set" >&2; exit 2; fi
done
RSF_SECURITY_MIRROR="${RSF_SECURITY_MIRROR:-}"
RSF_BACKPORTS_PACKAGES="${RSF_BACKPORTS_PACKAGES:-}"
case "$RSF_ENGINE" in
  redis|valkey) ;;
  incus) ;; #incus-node
  *) echo "build-image: RSF_ENGINE must be redis or valkey, not '$RSF_ENGINE'" >&2; exit 2 ;;
esac
# Everything engine specific is named after the engine (Debian's packaging).
ENGINE="$RSF_ENGINE"
SERVER_UNIT="$ENGINE-server.service"
SENTINEL_UNIT="$ENGINE-sentinel.service"
CONF_DIR="/etc/$ENGINE"
SERVER_CONF="$CONF_DIR/$ENGINE.conf"
SENTINEL_CONF="$CONF_DIR/sentinel.conf"

ROOTFS="$RSF_WORKDIR/rootfs"
FILES="$RSF_WORKDIR/files"
OUT="$RSF_WORKDIR/out"
META="$RSF_WORKDIR/meta"

log() { echo "build-image: $(date +%T) $*"; }

# One build per work directory at a time: two plays started together (say
# `make lab` and `make test`) would otherwise debootstrap into one rootfs.
exec 9>"$RSF_WORKDIR/.build.lock"
if ! flock -n 9; then
  log "another build of $RSF_ALIAS is running; waiting for it"
  flock 9
fi

# Unmount anything left mounted below the rootfs (deepest first): a build that
# died inside debootstrap or apt may leave proc/sys mounted there.
unmount_rootfs() {
  [ -d "$ROOTFS" ] || return 0
  awk -v root="$ROOTFS" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts \
    | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
trap unmount_rootfs EXIT

unmount_rootfs
rm -rf "$ROOTFS" "$OUT" "$META"
mkdir -p "$ROOTFS" "$OUT" "$META/templates" "$RSF_DEB_CACHE"

in_root() { chroot "$ROOTFS" "$@"; }

log "debootstrap $RSF_SUITE ($RSF_VARIANT) with $RSF_PACKAGES"
debootstrap --variant="$RSF_VARIANT" --include="$RSF_PACKAGES" \
  --cache-dir="$RSF_DEB_CACHE" "$RSF_SUITE" "$ROOTFS" "$RSF_MIRROR" >"$RSF_WORKDIR/debootstrap.log" 2>&1 || {
  echo "build-image: debootstrap failed; last lines of $RSF_WORKDIR/debootstrap.log:" >&2
  tail -n 30 "$RSF_WORKDIR/debootstrap.log" >&2
  exit 1
}

# Never start services inside the build chroot.
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $RSF_MIRROR $RSF_SUITE main
deb $RSF_MIRROR $RSF_SUITE-updates main
EOF
[ -z "$RSF_SECURITY_MIRROR" ] \
  || echo "deb $RSF_SECURITY_MIRROR $RSF_SUITE-security main" >>"$ROOTFS/etc/apt/sources.list"
# Backports are enabled only in images that install packages from it (apt
# gives them priority 100: nothing else is upgraded from there).
[ -z "$RSF_BACKPORTS_PACKAGES" ] \
  || echo "deb $RSF_MIRROR $RSF_SUITE-backports main" >>"$ROOTFS/etc/apt/sources.list"
if [ -n "$RSF_SECURITY_MIRROR" ] || [ -n "$RSF_BACKPORTS_PACKAGES" ]; then
  mount -t proc proc "$ROOTFS/proc"
  in_root apt-get -q update >"$RSF_WORKDIR/upgrade.log" 2>&1 || {
    echo "build-image: apt-get update failed; see $RSF_WORKDIR/upgrade.log" >&2
    tail -n 30 "$RSF_WORKDIR/upgrade.log" >&2
    exit 1
  }
fi
if [ -n "$RSF_SECURITY_MIRROR" ]; then
  log "applying $RSF_SUITE-updates and $RSF_SUITE-security"
  in_root apt-get -q -y -o Dpkg::Options::=--force-confold --no-install-recommends upgrade >>"$RSF_WORKDIR/upgrade.log" 2>&1 || {
    echo "build-image: apt-get upgrade failed; see $RSF_WORKDIR/upgrade.log" >&2
    tail -n 30 "$RSF_WORKDIR/upgrade.log" >&2
    exit 1
  }
fi
# debootstrap installs from <suite> only: backports packages come now, with
# their dependencies from <suite> (policy-rc.d keeps their services stopped).
if [ -n "$RSF_BACKPORTS_PACKAGES" ]; then
  log "installing ${RSF_BACKPORTS_PACKAGES//,/ } from $RSF_SUITE-backports"
  # shellcheck disable=SC2086 # one word per package
  in_root apt-get -q -y -o Dpkg::Options::=--force-confold --no-install-recommends \
    -t "$RSF_SUITE-backports" install ${RSF_BACKPORTS_PACKAGES//,/ } >"$RSF_WORKDIR/backports.log" 2>&1 || {
    echo "build-image: apt-get install -t $RSF_SUITE-backports failed; see $RSF_WORKDIR/backports.log" >&2
    tail -n 30 "$RSF_WORKDIR/backports.log" >&2
    exit 1
  }
fi
if mountpoint -q "$ROOTFS/proc"; then umount "$ROOTFS/proc"; fi
in_root apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin

if [ "$ENGINE" = incus ]; then log "configuring systemd-networkd, $(in_root incus --version | sed 's/^/incus /') and identity files"; else #incus-node
log "configuring systemd-networkd, $ENGINE ($(in_root "$ENGINE-server" --version)) and identity files"
fi #incus-node
# eth0's configuration is rendered by Incus when a container is created
# (metadata template below): the operator's pinned address, else DHCP.
in_root systemctl enable systemd-networkd.service >/dev/null 2>&1

# Units that have nothing to do in a container share the CPU with every
# other container booting beside it: a third of a boot's CPU time. Kernel
# modules, pstore, kernel command line networks and debug file systems
# are the host's; ext4 scrubbing and fstrim are the host's storage's; apt
# and dpkg timers would change a node the operator rebuilds from the image
# instead; a login prompt on the console is never used (incus exec is).
in_root systemctl mask systemd-modules-load.service 'modprobe@.service' systemd-pstore.service \
  systemd-network-generator.service sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-fs-fuse-connections.mount e2scrub_reap.service e2scrub_all.timer fstrim.timer \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  console-getty.service 'getty@.service' >/dev/null 2>&1

if [ "$ENGINE" != incus ]; then #incus-node
# <engine>-server and <engine>-sentinel are installed but DISABLED: the
# operator writes their configuration first, then enables and starts them,
# so an unconfigured node never serves.
in_root systemctl disable "$SERVER_UNIT" "$SENTINEL_UNIT" >/dev/null 2>&1
for unit in "$SERVER_UNIT" "$SENTINEL_UNIT"; do
  state="$(in_root systemctl is-enabled "$unit" 2>/dev/null || true)"
  if [ "$state" != "disabled" ]; then
    echo "build-image: $unit is '$state' in the image, expected 'disabled'" >&2
    exit 1
  fi
done

# The server never restarts on its own (see the drop-in); Sentinel keeps
# Debian's Restart=always: it holds no data.
install -D -m 0644 "$FILES/server-no-restart.conf" "$ROOTFS/etc/systemd/system/$SERVER_UNIT.d/10-rsf-no-restart.conf"

# Sentinel rewrites its own config file (and the server's CONFIG REWRITE
# its own): /etc/<engine> and the files in it belong to the engine's user.
in_root chown "$ENGINE:$ENGINE" "$CONF_DIR" "$SERVER_CONF" "$SENTINEL_CONF"
chmod 2770 "$ROOTFS$CONF_DIR"
chmod 0640 "$ROOTFS$SERVER_CONF" "$ROOTFS$SENTINEL_CONF"
fi #incus-node
# The nested incusd is socket-activated, and incus-startup starts it at boot #incus-node
# when it is a cluster member or has instances to autostart. #incus-node
if [ "$ENGINE" = incus ]; then #incus-node
  for unit in incus.socket incus-startup.service; do #incus-node
    state="$(in_root systemctl is-enabled "$unit" 2>/dev/null || true)" #incus-node
    [ "$state" = enabled ] || { echo "build-image: $unit is '$state' in the image, expected 'enabled'" >&2; exit 1; } #incus-node
  done #incus-node
fi #incus-node

# Every container gets its own machine-id (generated at first boot) and its
# hostname from the metadata templates below; no DNS servers are configured.
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
echo localhost >"$ROOTFS/etc/hostname"
: >"$ROOTFS/etc/resolv.conf"

# Keep it small: no manual pages, translations or docs besides copyright files.
rm -rf "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/info/*
find "$ROOTFS/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/cache/debconf/*-old
rm -f "$ROOTFS/usr/sbin/policy-rc.d"
unmount_rootfs

log "packing rootfs ($(du -sh "$ROOTFS" | cut -f1))"
case "$RSF_COMPRESSION" in
  gzip) ext=tar.gz; zflag=-z ;;
  none) ext=tar; zflag= ;;
  *) echo "build-image: RSF_COMPRESSION must be gzip or none" >&2; exit 2 ;;
esac
# Device nodes, /proc and /sys contents are provided by Incus at start.
tar --numeric-owner --xattrs --xattrs-include='security.capability' -C "$ROOTFS" \
  --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
  $zflag -cf "$OUT/rootfs.$ext" .

now="$(date +%s)"
cat >"$META/metadata.yaml" <<EOF
architecture: $RSF_ARCH
creation_date: $now
properties:
  description: "$RSF_DESCRIPTION"
  os: debian
  release: $RSF_SUITE
  variant: $RSF_IMAGE_VARIANT
  architecture: $RSF_ARCH
  serial: "$(date -u -d "@$now" +%Y%m%d_%H%M)"
  user.rsf.alias: "$RSF_ALIAS"
  user.rsf.engine: $ENGINE
  user.rsf.inputs_sha256: "$RSF_INPUTS_SHA256"
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
  /etc/systemd/network/10-eth0.network:
    when: [create, copy]
    template: eth0-network.tpl
EOF
install -m 0644 "$FILES/hostname.tpl" "$FILES/hosts.tpl" "$FILES/eth0-network.tpl" "$META/templates/"
tar --numeric-owner --owner=0 --group=0 -C "$META" $zflag -cf "$OUT/meta.$ext" metadata.yaml templates

rm -rf "$ROOTFS" "$META"
log "done: $(du -h "$OUT/rootfs.$ext" | cut -f1) rootfs"
echo "fingerprint=$(cat "$OUT/meta.$ext" "$OUT/rootfs.$ext" | sha256sum | cut -d' ' -f1)"
