#!/usr/bin/env bash
# Usage: hack/envtest-bins.sh [COMMAND...]
#
# Puts kube-apiserver and etcd for envtest (and the local control plane) into
# one folder and prints its path; each COMMAND (kubelet, kube-scheduler,
# kube-controller-manager: the image tests' node) is built into it too. The usual setup-envtest download is not
# reachable here, so: etcd comes from Debian's etcd-server package and
# kube-apiserver is built from the k8s.io/kubernetes module at the minor
# version of k8s.io/api in go.mod (the newest patch of that minor whose source
# the module proxy serves). The build is cached twice: in the repo's ignored
# bin/ folder and in a per-machine cache, so a second clean clone on the same
# machine does not rebuild it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
api_version=$(cd "$root" && go list -m -f '{{.Version}}' k8s.io/api) # e.g. v0.37.2
minor=${api_version#v0.}
minor=${minor%%.*}
patch=${api_version##*.}
cache_root="${RSF_CACHE_DIR:-$HOME/.cache/rsf-operator}/k8s"
commands=(kube-apiserver "$@")

log() { echo "envtest-bins: $*" >&2; }

# The newest already-built v1.<minor>.x, in bin/ or the machine cache.
cached_build() {
	local p
	for ((p = patch; p >= 0; p--)); do
		for dir in "$root/bin/k8s/v1.$minor.$p" "$cache_root/v1.$minor.$p"; do
			[ -x "$dir/kube-apiserver" ] && { echo "v1.$minor.$p $dir"; return 0; }
		done
	done
	return 1
}

# The newest v1.<minor>.x whose source zip the proxy serves; prints its go.mod path.
downloadable_version() {
	local p json
	for ((p = patch; p >= 0; p--)); do
		json=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v1.$minor.$p" 2>/dev/null || true)
		if [ -n "$json" ] && ! grep -q '"Error"' <<<"$json"; then
			echo "v1.$minor.$p $(sed -n 's/.*"GoMod": "\(.*\)",*/\1/p' <<<"$json")"
			return 0
		fi
		log "k8s.io/kubernetes v1.$minor.$p is not served by the module proxy; trying the previous patch"
	done
	log "no k8s.io/kubernetes v1.$minor.x source is available from the module proxy"
	return 1
}

# A module build has no git metadata; stamp the version /version reports.
version_ldflags() {
	local v=$1 pkg=k8s.io/component-base/version minor_number
	minor_number=${v#v1.}
	minor_number=${minor_number%%.*}
	echo "-X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor_number -X $pkg.gitTreeState=clean"
}

# The go.mod of k8s.io/kubernetes at version $1.
module_gomod() {
	(cd /tmp && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$1") | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p'
}

build_commands() { # $1 version, $2 its go.mod, $3 destination folder, then the commands
	local version=$1 gomod=$2 dest=$3 work
	shift 3
	work=$(mktemp -d)
	trap 'rm -rf "$work"' RETURN
	log "building $* $version from the Go module proxy (with an empty Go build cache, kube-apiserver alone takes about 22 CPU-minutes, user + system; the packages the project compiles too are taken from the cache)"
	{
		printf 'module kube-apiserver-build\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\n' "$version"
		# k8s.io/kubernetes replaces its staging repos with local paths; map
		# each one to the published module of the same patch level instead.
		sed -n "s#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 v0${version#v1}#p" "$gomod"
	} >"$work/go.mod"
	# The project's module versions too, and the project's build flags (no
	# -trimpath, cgo as the machine has it): the packages both compile
	# (k8s.io/api, apimachinery, client-go, protobuf, the standard library:
	# 87% of the source the project's tests compile) then have the same
	# dependencies and flags, so the Go build cache compiles each once.
	local requires
	requires=$(cd "$root" && go list -m -f '{{if not .Main}}-require={{.Path}}@{{.Version}}{{end}}' all)
	# shellcheck disable=SC2086 # one -require flag per word
	(cd "$work" && go mod edit $requires)
	local packages=("${@/#/k8s.io/kubernetes/cmd/}")
	(cd "$work" && go get "${packages[@]/%/@$version}" >&2 &&
		go build -ldflags="-s -w $(version_ldflags "$version")" -o "$work/out/" "${packages[@]}")
	mkdir -p "$dest"
	for command in "$@"; do
		mv "$work/out/$command" "$dest/$command"
	done
}

gomod=
if found=$(cached_build); then
	version=${found%% *}
else
	read -r version gomod < <(downloadable_version)
fi
src="$cache_root/$version"
dest="$root/bin/k8s/$version"
missing_commands() {
	missing=()
	for command in "${commands[@]}"; do
		[ -x "$src/$command" ] || [ -x "$dest/$command" ] || missing+=("$command")
	done
}
missing_commands
if [ ${#missing[@]} -gt 0 ]; then
	# make test runs this beside the suites, which may call it too: one
	# builds, the other waits, then finds the build.
	mkdir -p "$cache_root"
	exec 9>"$cache_root/.build.lock"
	flock 9
	missing_commands
	if [ ${#missing[@]} -gt 0 ]; then
		build_commands "$version" "${gomod:-$(module_gomod "$version")}" "$src" "${missing[@]}"
	fi
	flock -u 9
fi
mkdir -p "$dest"
for command in "${commands[@]}"; do
	# Copied aside, then renamed: a caller beside this one never runs a
	# half-copied binary.
	[ -x "$dest/$command" ] || { cp "$src/$command" "$dest/.$command.$$" && mv "$dest/.$command.$$" "$dest/$command"; }
done
"$root/hack/apt-install.sh" etcd-server
ln -sf /usr/bin/etcd "$dest/etcd"
log "$("$dest/kube-apiserver" --version) and etcd $(/usr/bin/etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p') in $dest"
echo "$dest"
