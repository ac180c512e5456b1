# shellcheck shell=bash
# Shared helpers of image/build and the QEMU scripts: logging, the cache root, tool checks.

CAMRIG_CACHE=${CAMRIG_CACHE:-/var/cache/camrig}
IMAGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_DIR=$(cd "$IMAGE_DIR/.." && pwd)

log() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

# need CMD PACKAGE: fail with the Debian package to install (ci/install-deps has them all).
need() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package '$2' (ci/install-deps does)"
}

# Reads a package list file: one name per line, '#' comments, blank lines ignored.
read_list() {
	[ -f "$1" ] || return 0
	sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$' || true
}

# Debian architecture name -> Rust target triple.
rust_target() {
	case "$1" in
	amd64) echo x86_64-unknown-linux-gnu ;;
	arm64) echo aarch64-unknown-linux-gnu ;;
	*) die "unknown architecture '$1' (amd64 or arm64)" ;;
	esac
}

# Foreign-architecture chroots run through qemu-user via binfmt_misc; in a container the
# binfmt_misc file system may not be mounted yet.
ensure_binfmt() {
	local arch=$1
	[ "$arch" = "$(dpkg --print-architecture)" ] && return 0
	need arch-test arch-test
	need qemu-aarch64-static qemu-user-static
	if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
		mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
			die "cannot mount binfmt_misc: foreign-architecture builds need it"
	fi
	if ! arch-test "$arch" >/dev/null 2>&1; then
		update-binfmts --enable "qemu-${arch/arm64/aarch64}" >/dev/null 2>&1 || true
		arch-test "$arch" >/dev/null 2>&1 ||
			die "cannot run $arch binaries: install qemu-user-static and binfmt-support"
	fi
}

# rpios_archive_id MIRROR KEYRING: what a Raspberry Pi OS archive serves, as a cache key: its
# trixie Release file (every index's hash) and the key it is checked with, not its URL (ci/
# rpios-test serves its stand-in on a free port each run; a new Release rebuilds what
# depends on the archive).
rpios_archive_id() {
	local mirror=$1 keyring=$2 release
	release=$(curl -fsS --max-time 60 "$mirror/dists/trixie/Release") ||
		die "cannot fetch $mirror/dists/trixie/Release: is --rpios-mirror right, and the archive reachable?"
	{ echo "$release"; sha256sum <"$keyring"; } | sha256sum | cut -c1-16
}
