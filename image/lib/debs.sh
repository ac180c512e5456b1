# shellcheck shell=bash
# camrig's own .deb packages, built with cargo-deb for the image's architecture: native for
# amd64, cross-compiled for arm64 with Debian's gcc-aarch64-linux-gnu as linker and C
# compiler (openh264's and SQLite's C parts). The node is the exception: it links libcamera,
# so it is built in a trixie build environment with the image's package sources
# (build_libcamera_node_deb).

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

# build_libcamera_node_deb ARCH OUTDIR: the camrig-node .deb with real camera support (cargo
# feature `libcamera`) into OUTDIR, built against the libcamera of the image it goes into.
# The host's Debian 12 has no usable libcamera, so it is built in the trixie build
# environments (image/camera-test/node-deb): natively for amd64, with an arm64 cross
# environment (libcamera-dev:arm64 via multiarch) for arm64; for Raspberry Pi OS images
# (`$sources` rpios, set by image/build) that cross environment also has the image's own
# Raspberry Pi OS archive ($rpios_mirror, $rpios_keyring), whose libcamera-dev it takes.
build_libcamera_node_deb() {
	local arch=$1 outdir=$2
	local args=(--arch "$arch")
	if [ "${sources:-debian}" = rpios ]; then
		args+=(--sources rpios --rpios-mirror "$rpios_mirror" --rpios-keyring "$rpios_keyring")
	fi
	"$IMAGE_DIR/camera-test/node-deb" "${args[@]}" "$outdir" ||
		die "the libcamera node package failed to build ($arch, ${sources:-debian} sources)"
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

# build_debs ARCH OUTDIR CRATE... : one .deb per crate into OUTDIR.
build_debs() {
	local arch=$1 outdir=$2
	shift 2
	local target
	target=$(rust_target "$arch")
	mkdir -p "$outdir"
	[ $# -gt 0 ] || return 0
	ensure_cargo_deb
	if [ "$arch" = arm64 ]; then
		need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
		need aarch64-linux-gnu-g++ g++-aarch64-linux-gnu
		rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
		export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
		export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
		export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
		export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
	fi
	mkdir -p "$outdir"
	rm -f "$outdir"/*.deb
	local crate
	for crate in "$@"; do
		if [ "$crate" = camrig-node ]; then
			build_libcamera_node_deb "$arch" "$outdir"
			continue
		fi
		log "cargo deb -p $crate --target $target"
		(cd "$REPO_DIR" && cargo deb --locked -p "$crate" --target "$target" --output "$outdir" >&2) ||
			die "cargo deb failed for $crate ($target)"
	done
}
