#!/usr/bin/env bash
# Installs what hangar's tests and `hangar dev` need on a Debian machine, when
# it is missing, and caches downloads under $HANGAR_CACHE (~/.cache/hangar):
#
#   apt:    qemu-system-x86, zstd, lz4, busybox-static, cpio
#   minio:  $HANGAR_CACHE/bin/minio (built from the Go module proxy)
#   kernel: $HANGAR_CACHE/kernel/{vmlinuz,modules/,release} (linux-image-cloud-amd64;
#           release is the `uname -r` the modules belong to)
#   fuse:   /dev/fuse for lazy restore (restore.lazy, storage/snapshot/lazyfs);
#           loaded with modprobe when missing. No fuse3 package: lazyfs
#           mounts directly as root and never runs fusermount.
#
# Idempotent: a second run with everything present does nothing and is fast.
set -euo pipefail

HANGAR_CACHE=${HANGAR_CACHE:-$HOME/.cache/hangar}
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
export DEBIAN_FRONTEND=noninteractive

log() { printf 'deps: %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_packages() {
	local missing=()
	local pkg
	for pkg in qemu-system-x86 zstd lz4 busybox-static cpio; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		as_root apt-get update -qq
		as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

minio_server() {
	local bin=$HANGAR_CACHE/bin/minio stamp=$HANGAR_CACHE/bin/minio.version
	if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$MINIO_VERSION" ]; then
		return
	fi
	log "building the MinIO server $MINIO_VERSION (takes a few minutes, once)"
	mkdir -p "$HANGAR_CACHE/bin"
	GOBIN=$HANGAR_CACHE/bin GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
	echo "$MINIO_VERSION" >"$stamp"
}

guest_kernel() {
	local dir=$HANGAR_CACHE/kernel
	if [ -f "$dir/vmlinuz" ] && [ -d "$dir/modules" ]; then
		return
	fi
	log "fetching the guest kernel (linux-image-cloud-amd64)"
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	# The meta package depends on the versioned image package; download that.
	(cd "$tmp" && apt-get download -q linux-image-cloud-amd64 >/dev/null 2>&1) ||
		{ as_root apt-get update -qq && (cd "$tmp" && apt-get download -q linux-image-cloud-amd64 >/dev/null); }
	local pkg
	pkg=$(dpkg-deb -f "$tmp"/linux-image-cloud-amd64_*.deb Depends | tr ',' '\n' | grep -o 'linux-image-[0-9][^ ]*' | head -1)
	(cd "$tmp" && apt-get download -q "$pkg" >/dev/null)
	dpkg-deb -x "$tmp/${pkg}"_*.deb "$tmp/root"
	rm -rf "$dir.new"
	mkdir -p "$dir.new"
	cp "$tmp"/root/boot/vmlinuz-* "$dir.new/vmlinuz"
	local release
	release=$(ls "$tmp/root/lib/modules")
	mv "$tmp/root/lib/modules/$release" "$dir.new/modules"
	echo "$release" >"$dir.new/release"
	echo "$pkg" >"$dir.new/package"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
}

# fuse_device makes /dev/fuse available, or says that lazy restore will
# fall back to eager downloads (its tests skip) without it.
fuse_device() {
	[ -e /dev/fuse ] && return
	as_root modprobe fuse 2>/dev/null || true
	[ -e /dev/fuse ] || log "no /dev/fuse: lazy restore (restore.lazy) will download eagerly"
}

apt_packages
minio_server
guest_kernel
fuse_device
log "ready (cache: $HANGAR_CACHE)"
