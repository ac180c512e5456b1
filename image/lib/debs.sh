# shellcheck shell=bash
# camrig's own .deb packages, built with cargo-deb for the image's architecture in the trixie
# build environment with the image's package sources (the node links libcamera, and every
# crate then shares one build there: image/camera-test/node-deb): native for amd64,
# cross-compiled for arm64 with Debian's aarch64 cross compilers as linker and C compiler
# (openh264's, SQLite's and the libcamera shim's C/C++ parts).

CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-}

ensure_cargo_deb() {
	local tools=$CAMRIG_CACHE/tools lock
	mkdir -p "$tools"
	# One installer at a time (ci/prefetch installs it in the background).
	exec {lock}>"$tools/.cargo-deb.lock"
	flock "$lock"
	if [ ! -x "$tools/bin/cargo-deb" ]; then
		log "installing cargo-deb into $tools"
		cargo install --locked cargo-deb ${CARGO_DEB_VERSION:+--version "$CARGO_DEB_VERSION"} --root "$tools" >&2
	fi
	exec {lock}>&-
	export PATH="$tools/bin:$PATH"
}

# deb_runtime_packages DIR: the libcamera runtime packages the .debs in DIR depend on (the
# node's libcamera0.x, named by dpkg-shlibdeps when it was built), one per line: the image
# installs them in its layer, so no list names a libcamera soname.
deb_runtime_packages() {
	local deb
	for deb in "$1"/*.deb; do
		[ -e "$deb" ] || continue
		dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/^ *([^ (|]+).*/\1/' | grep '^libcamera' || true
	done | sort -u
}

# build_debs ARCH OUTDIR CRATE... : one .deb per crate into OUTDIR, all from one build in the
# image's trixie build environment (image/camera-test/node-deb: natively for amd64, with the
# arm64 cross environment for arm64; for Raspberry Pi OS images (`$sources` rpios, set by
# image/build) that cross environment also has the image's own archive, $rpios_mirror and
# $rpios_keyring, whose libcamera-dev the node links).
build_debs() {
	local arch=$1 outdir=$2
	shift 2
	mkdir -p "$outdir"
	rm -f "$outdir"/*.deb
	[ $# -gt 0 ] || return 0
	local args=(--arch "$arch" --packages "$*")
	if [ "${sources:-debian}" = rpios ]; then
		args+=(--sources rpios --rpios-mirror "$rpios_mirror" --rpios-keyring "$rpios_keyring")
	fi
	"$IMAGE_DIR/camera-test/node-deb" "${args[@]}" "$outdir" ||
		die "camrig's packages ($*) failed to build ($arch, ${sources:-debian} sources)"
}
