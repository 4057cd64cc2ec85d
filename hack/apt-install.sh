#!/usr/bin/env bash
# Usage: hack/apt-install.sh [--from SUITE] PKG...
#
# Installs the given Debian packages when any is missing, without letting
# their maintainer scripts start services (tests start their own servers).
# Idempotent: prints nothing and does nothing when all are installed.
#
# --from SUITE installs them from that suite (apt-get -t SUITE), e.g.
# bookworm-backports for Valkey 8. Its apt source is not added here: when
# no source names SUITE, the script stops and says which make target adds
# it (bookworm-backports: `make lab-host`, whose incus_host role adds
# /etc/apt/sources.list.d/bookworm-backports.sources).
#
# Services: Debian enables a package's services at boot when it installs it
# (prometheus.service on every interface, :9090, where the lab's Prometheus
# listens on 127.0.0.1; redis-server and redis-sentinel on 6379 and 26379,
# without a password; etcd on 2379). The packages are installed here for
# their binaries, so the services of the packages this script installed (the
# ones asked for and the dependencies apt pulled in) are disabled at boot,
# with `systemctl disable` (`--root=/` when systemd is not PID 1; it also
# disables the SysV init script of the same name), or without systemctl with
# deb-systemd-helper and update-rc.d. The choice is the administrator's from
# then on: Debian keeps a disabled service disabled across upgrades. Packages
# that were installed before are left alone. To turn one back on:
#   systemctl enable --now prometheus.service
set -euo pipefail
suite=
if [ "${1:-}" = --from ]; then
	[ $# -ge 2 ] || { echo "apt-install: --from needs a suite" >&2; exit 2; }
	suite=$2
	shift 2
fi
missing=()
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

# installed: the installed packages, one a line, sorted.
installed() {
	dpkg-query -W -f='${binary:Package}\t${Status}\n' 2>/dev/null |
		awk -F'\t' '$2 == "install ok installed" { print $1 }' | sort
}

# disable_services PKG...: disables at boot the systemd units (those with an
# [Install] section; templates are only ever enabled per instance) and SysV
# init scripts the packages ship.
disable_services() {
	local pkg f unit units=() owners=() scripts=() disabled=() sysv_too=false i
	for pkg in "$@"; do
		while read -r f; do
			case $f in
			/lib/systemd/system/*.service | /lib/systemd/system/*.socket | /lib/systemd/system/*.timer | \
				/usr/lib/systemd/system/*.service | /usr/lib/systemd/system/*.socket | /usr/lib/systemd/system/*.timer)
				unit=${f##*/}
				[[ $unit == *@.* ]] && continue
				grep -q '^[[:space:]]*\[Install\]' "$f" 2>/dev/null && units+=("$unit") && owners+=("$pkg")
				;;
			/etc/init.d/?*) [ -f "$f" ] && scripts+=("${f##*/}") ;;
			esac
		done < <(dpkg-query -L "$pkg" 2>/dev/null)
	done
	if [ ${#units[@]} -gt 0 ]; then
		if command -v systemctl >/dev/null; then
			# systemctl also disables the SysV script of the same name.
			if [ -d /run/systemd/system ]; then
				systemctl disable --quiet "${units[@]}" >&2 && disabled=("${units[@]}") && sysv_too=true
			else
				systemctl --root=/ disable --quiet "${units[@]}" >&2 && disabled=("${units[@]}") && sysv_too=true
			fi
		elif command -v deb-systemd-helper >/dev/null; then
			# It refuses to run outside a maintainer script unless told
			# which package's it is.
			for i in "${!units[@]}"; do
				DPKG_MAINTSCRIPT_PACKAGE=${owners[i]} deb-systemd-helper disable "${units[i]}" >&2 &&
					disabled+=("${units[i]}")
			done
		fi
		[ ${#disabled[@]} -gt 0 ] || echo "apt-install: WARNING: could not disable ${units[*]} at boot" >&2
	fi
	for f in "${scripts[@]}"; do
		$sysv_too && [[ " ${disabled[*]} " == *" $f.service "* ]] && continue
		if update-rc.d "$f" disable >/dev/null 2>&1; then
			disabled+=("/etc/init.d/$f")
		else
			echo "apt-install: WARNING: could not disable /etc/init.d/$f at boot" >&2
		fi
	done
	[ ${#disabled[@]} -eq 0 ] ||
		echo "apt-install: disabled at boot (installed for their binaries; the tests and the lab run their own): ${disabled[*]}" >&2
}

release=()
if [ -n "$suite" ]; then
	# A one-line source (deb URI SUITE ...) or a deb822 one (Suites: ... SUITE ...).
	if ! grep -qsE "^[[:space:]]*(deb(-src)?[[:space:]].*[[:space:]]$suite([[:space:]]|$)|Suites:.*[[:space:]]$suite([[:space:]]|$))" \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
		hint="add an apt source for $suite"
		[ "$suite" = bookworm-backports ] &&
			hint="run \`make lab-host\` first: its incus_host role adds /etc/apt/sources.list.d/bookworm-backports.sources (\`make test\` runs it in test-lab)"
		echo "apt-install: ${missing[*]} come from $suite, which no apt source names: $hint" >&2
		exit 1
	fi
	release=(-t "$suite")
fi

echo "apt-install: installing ${missing[*]}${suite:+ from $suite}" >&2
policy=/usr/sbin/policy-rc.d
created_policy=false
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=true
fi
trap '$created_policy && rm -f "$policy"' EXIT
before=$(installed)
export DEBIAN_FRONTEND=noninteractive
# make test runs this beside builds that call it too, and ansible: wait for
# apt's locks rather than fail on them.
lock_wait=(-o DPkg::Lock::Timeout=600)
apt-get install "${lock_wait[@]}" -y -q --no-install-recommends "${release[@]}" "${missing[@]}" >&2 ||
	{ apt-get update "${lock_wait[@]}" -q >&2 && apt-get install "${lock_wait[@]}" -y -q --no-install-recommends "${release[@]}" "${missing[@]}" >&2; }
# shellcheck disable=SC2046 # package names have no spaces
disable_services $(comm -13 <(echo "$before") <(installed))
