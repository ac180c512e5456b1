# shellcheck shell=bash
# The cached root file systems an image starts from, in two layers:
#
# - the architecture's base (arch_base): mmdebstrap of Debian trixie with packages/common.list
#   and packages/<arch>.list, one for every card of that architecture (node and controller,
#   Debian's or Raspberry Pi OS's sources), as $CAMRIG_CACHE/rootfs/base/<arch>-<hash>.tar;
# - the card's layer (base_rootfs): what its role, sources and --extra-packages add
#   (packages/<role>.list, or rpios-<arch>.list + rpios-<role>.list and the Raspberry Pi OS
#   archive), installed with apt-get in a chroot of the unpacked base, as
#   $CAMRIG_CACHE/rootfs/layer/<role>-<arch>-<sources>-<hash>.tar. A card whose layer adds
#   nothing (a controller from Debian's sources) uses the base itself.
#
# Each is named by a hash of every input (the layer's includes the base's name). Same
# inputs: reused in seconds; any change, or a fresh machine: rebuilt (the amd64 base about a
# minute, the arm64 base under qemu-user about ten, a layer one to three). Their initramfs is
# built from image/initramfs as it was then, and rebuilt by image/build when that changes
# (initramfs_refresh).

SUITE=trixie
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# layer_sources SOURCES RPIOS_MIRROR: the apt source line a card's layer adds (none for Debian's).
layer_sources() {
	local sources=$1 rpios_mirror=$2
	if [ "$sources" = rpios ]; then
		echo "deb [signed-by=/etc/apt/keyrings/camrig-rpios.gpg] $rpios_mirror $SUITE main"
	fi
}

# layer_packages ROLE ARCH SOURCES EXTRA: the package names a card's layer installs, sorted.
layer_packages() {
	local role=$1 arch=$2 sources=$3 extra=$4 p=$IMAGE_DIR/packages
	{
		if [ "$sources" = rpios ]; then
			read_list "$p/rpios-$arch.list"
			read_list "$p/rpios-$role.list"
		else
			read_list "$p/$role.list"
		fi
		tr ', ' '\n' <<<"$extra" | grep -v '^$' || true
	} | sort -u
}

# timestamped: copies stdin to stderr with the time on each line (a build's log is its profile).
timestamped() {
	local line
	while IFS= read -r line; do printf '[%(%H:%M:%S)T] %s\n' -1 "$line" >&2; done
}

# arch_base ARCH -> prints the tarball path of the architecture's base (built if missing).
arch_base() {
	local arch=$1
	need mmdebstrap mmdebstrap
	local pkgs opts key out
	pkgs=$({ read_list "$IMAGE_DIR/packages/common.list"; read_list "$IMAGE_DIR/packages/$arch.list"; } | sort -u)
	opts=(
		--variant=minbase --arch="$arch" "--components=main,non-free-firmware"
		--dpkgopt=force-unsafe-io
		--dpkgopt='path-exclude=/usr/share/man/*'
		--dpkgopt='path-exclude=/usr/share/info/*'
		--dpkgopt='path-exclude=/usr/share/doc/*'
		--dpkgopt='path-include=/usr/share/doc/*/copyright'
		--dpkgopt='path-exclude=/usr/share/locale/*'
		--dpkgopt='path-include=/usr/share/locale/locale.alias'
	)
	key=$(
		{
			echo "camrig-base v2 $SUITE $arch $DEBIAN_MIRROR"
			echo "$pkgs"
			printf '%s\n' "${opts[@]}"
			sha256sum "$IMAGE_DIR/lib/base-customize.sh" "$IMAGE_DIR/lib/initramfs-recompress" \
				"$IMAGE_DIR/lib/native-hwdb.sh" | cut -d' ' -f1
		} | sha256sum | cut -c1-16
	)
	# In a directory of its own: older checkouts prune rootfs/base-*.tar of other keys.
	local dir=$CAMRIG_CACHE/rootfs/base
	out=$dir/$arch-$key.tar
	mkdir -p "$dir"
	# One builder per base at a time: a second build of the same inputs (another checkout,
	# CI) waits here and then finds the finished tarball.
	exec {lock}>"$out.lock"
	flock "$lock"
	clean_stale_temps "$dir"
	if [ -s "$out" ]; then
		log "base root filesystem cached: $out"
		echo "$out"
		return 0
	fi
	ensure_binfmt "$arch"
	# A foreign architecture's hardware database is compiled natively, by the native base's
	# systemd-hwdb (lib/native-hwdb.sh): that base is built first if missing (CI needs it
	# anyway), and is not part of this key (same suite, same systemd).
	local native=()
	if [ "$arch" != "$(dpkg --print-architecture)" ]; then
		local tools
		tools=$(arch_base "$(dpkg --print-architecture)") || exit 1
		native=(
			--essential-hook="$IMAGE_DIR/lib/native-hwdb.sh stub \"\$1\""
			--customize-hook="$IMAGE_DIR/lib/native-hwdb.sh compile \"\$1\" $tools"
		)
	fi
	log "mmdebstrap $SUITE $arch (the base of every $arch card): not cached, building $out"
	# Written under a temporary name and renamed: the cache never holds half a tarball, and
	# an interrupted build leaves only a temp that the next build removes. The name carries
	# this (sub)shell's own pid, not the script's ($$): image/build runs the base in the
	# background, which goes on when the script dies, and must not look interrupted.
	local tmp=$out.tmp.$BASHPID t0=$SECONDS
	trap 'rm -f "$tmp"' EXIT
	# Installing initramfs-tools' configuration before the kernel (essential hook) makes
	# the kernel's postinst build the one initramfs the image needs, with camrig's scripts
	# (zstd level 1; the customize hook recompresses it natively, lib/initramfs-recompress).
	# The base records their hash: image/build rebuilds the initramfs when they change
	# (initramfs_refresh), so they are not part of the base's key.
	mmdebstrap "${opts[@]}" \
		--include="$(paste -sd, <<<"$pkgs")" \
		--essential-hook="mkdir -p \"\$1/etc/initramfs-tools\"" \
		--essential-hook="sync-in $IMAGE_DIR/initramfs /etc/initramfs-tools" \
		--essential-hook="echo $(initramfs_hash) >\"\$1/$INITRAMFS_STAMP\"" \
		"${native[@]}" \
		--customize-hook="$IMAGE_DIR/lib/base-customize.sh \"\$1\"" \
		--format=tar "$SUITE" "$tmp" "deb $DEBIAN_MIRROR $SUITE main non-free-firmware" 2>&1 | timestamped ||
		{ rm -f "$tmp"; die "mmdebstrap failed for the $arch base"; }
	sync "$tmp"
	mv "$tmp" "$out"
	trap - EXIT
	log "the $arch base took $((SECONDS - t0)) s"
	# Older bases of the architecture are superseded; the four newest stay, since checkouts
	# of other branches (each with its own key) may be building from them right now, and
	# pruning one of those makes its next build run mmdebstrap again.
	prune_newest "$dir" "$arch-????????????????.tar" 4
	echo "$out"
}

# prune_newest DIR GLOB N: removes all but the N newest files of DIR matching GLOB (and their locks).
prune_newest() {
	local old
	# SC2012: the names are ours, without newlines; SC2086: GLOB is a pattern, split and
	# expanded on purpose.
	# shellcheck disable=SC2012,SC2086
	ls -t "$1"/$2 2>/dev/null | tail -n +$(($3 + 1)) | while read -r old; do
		rm -f "$old" "$old.lock"
	done
}

# base_rootfs ROLE ARCH SOURCES RPIOS_MIRROR RPIOS_KEYRING EXTRA_PACKAGES -> prints the
# tarball the card's root file system starts from: the architecture's base with the card's
# layer on top (cached), or the base itself when the layer adds nothing.
base_rootfs() {
	local role=$1 arch=$2 sources=$3 rpios_mirror=$4 rpios_keyring=$5 extra=$6
	local base pkgs srcs key out
	if [ "$sources" = rpios ]; then
		[ -n "$rpios_keyring" ] || die "--sources rpios needs --rpios-keyring FILE (raspberrypi-archive-keyring's raspberrypi-archive-keyring.gpg)"
		[ -f "$rpios_keyring" ] ||
			die "--sources rpios needs --rpios-keyring FILE (raspberrypi-archive-keyring's raspberrypi-archive-keyring.gpg)"
	fi
	local archive_id=
	if [ "$sources" = rpios ]; then
		archive_id=$(rpios_archive_id "$rpios_mirror" "$rpios_keyring") || exit 1
	fi
	base=$(arch_base "$arch") || exit 1
	pkgs=$(layer_packages "$role" "$arch" "$sources" "$extra")
	srcs=$(layer_sources "$sources" "$rpios_mirror")
	if [ -z "$pkgs" ] && [ -z "$srcs" ]; then
		echo "$base"
		return 0
	fi
	key=$(
		{
			echo "camrig-layer v1 $(basename "$base") $role $sources"
			echo "$pkgs"
			# The archive by what it serves, not by its URL (lib/common.sh).
			echo "$archive_id"
		} | sha256sum | cut -c1-16
	)
	local dir=$CAMRIG_CACHE/rootfs/layer
	out=$dir/$role-$arch-$sources-$key.tar
	mkdir -p "$dir" "$CAMRIG_CACHE/work"
	exec {lock}>"$out.lock"
	flock "$lock"
	clean_stale_temps "$dir"
	if [ -s "$out" ]; then
		log "$role/$sources layer cached: $out"
		echo "$out"
		return 0
	fi
	log "$role/$sources layer on $(basename "$base"): not cached, building $out"
	ensure_binfmt "$arch"
	local tmp=$out.tmp.$BASHPID work t0=$SECONDS
	work=$(mktemp -d "$CAMRIG_CACHE/work/layer-$role-$arch-$sources.XXXXXX")
	trap 'rm -rf "$work" "$tmp"' EXIT
	tar -C "$work" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base" || die "cannot unpack $base"
	if [ -n "$srcs" ]; then
		mkdir -p "$work/etc/apt/keyrings"
		cp "$rpios_keyring" "$work/etc/apt/keyrings/camrig-rpios.gpg"
		chmod 644 "$work/etc/apt/keyrings/camrig-rpios.gpg"
		echo "$srcs" >"$work/etc/apt/sources.list.d/camrig-$sources.list"
	fi
	# apt in the chroot (dpkg runs the maintainer scripts there; under qemu-user on arm64),
	# with the host's resolver, /proc and /dev in a private mount namespace, no daemons
	# started (policy-rc.d). A source's archive may also carry newer versions of the base's
	# packages (Raspberry Pi's raspi-firmware): dist-upgrade takes them.
	local resolv_saved=0
	if [ -e "$work/etc/resolv.conf" ] || [ -L "$work/etc/resolv.conf" ]; then
		mv "$work/etc/resolv.conf" "$work/etc/resolv.conf.camrig-saved"
		resolv_saved=1
	fi
	cp /etc/resolv.conf "$work/etc/resolv.conf"
	printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
	chmod +x "$work/usr/sbin/policy-rc.d"
	# shellcheck disable=SC2016,SC2086 # expanded by the inner shell; one package name per word
	unshare --mount --propagation private -- bash -euo pipefail -c '
		root=$1; shift
		mount -t proc proc "$root/proc"
		mount --rbind /dev "$root/dev"
		export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
		chroot "$root" apt-get -q update
		chroot "$root" apt-get -q -y --no-install-recommends install "$@"
		if [ -s "$root/etc/apt/sources.list.d/camrig-rpios.list" ]; then
			chroot "$root" apt-get -q -y --no-install-recommends dist-upgrade
		fi
		chroot "$root" apt-get clean
	' bash "$work" $pkgs 2>&1 | timestamped ||
		die "installing the $role/$sources layer's packages failed: $(paste -sd' ' <<<"$pkgs")"
	rm -f "$work/usr/sbin/policy-rc.d" "$work/etc/resolv.conf"
	[ "$resolv_saved" = 0 ] || mv "$work/etc/resolv.conf.camrig-saved" "$work/etc/resolv.conf"
	# New kernels (rpios) get the same pruning, depmod and recompressed initramfs as the base's.
	"$IMAGE_DIR/lib/base-customize.sh" "$work" || die "lib/base-customize.sh failed on the $role/$sources layer"
	tar -C "$work" --numeric-owner --xattrs --xattrs-include='*' -cf "$tmp" . ||
		die "cannot write $tmp"
	sync "$tmp"
	mv "$tmp" "$out"
	rm -rf "$work"
	trap - EXIT
	log "the $role/$sources layer took $((SECONDS - t0)) s"
	prune_newest "$dir" "$role-$arch-$sources-????????????????.tar" 4
	echo "$out"
}

# clean_stale_temps DIR: removes NAME.tmp.PID files whose builder (PID) no longer runs,
# left by an interrupted build.
clean_stale_temps() {
	local f pid
	for f in "$1"/*.tmp.*; do
		[ -e "$f" ] || continue
		pid=${f##*.tmp.}
		case "$pid" in '' | *[!0-9]*) continue ;; esac
		if ! kill -0 "$pid" 2>/dev/null; then
			log "removing $(basename "$f") (left by an interrupted build)"
			rm -f "$f"
		fi
	done
}

# Where the base records the hash of the image/initramfs it built its initramfs from.
INITRAMFS_STAMP=etc/initramfs-tools/camrig-source.sha256

# initramfs_hash: the hash of image/initramfs (every file's path and contents).
initramfs_hash() {
	(cd "$IMAGE_DIR/initramfs" && find . -type f | LC_ALL=C sort | xargs sha256sum) |
		sha256sum | cut -c1-16
}

# initramfs_refresh ROOT ARCH BASE: when image/initramfs changed since ROOT's base (the
# tarball BASE) was built, puts the current scripts in ROOT/etc/initramfs-tools and rebuilds
# the initramfs in a chroot (update-initramfs; on arm64 raspi-firmware's hook copies it to
# /boot/firmware). Seconds on amd64, minutes under qemu-user (a new base would be most of an
# hour), so the result is cached, keyed by its inputs: the base, image/initramfs and what
# mkinitramfs reads from the overlays (/etc/modprobe.d, which the initramfs carries;
# /etc/fstab; udev's /etc/udev).
initramfs_refresh() {
	local root=$1 arch=$2 base=$3 hash key cache
	hash=$(initramfs_hash)
	[ "$(cat "$root/$INITRAMFS_STAMP" 2>/dev/null)" != "$hash" ] || return 0
	key=$(basename "$base" .tar)-$hash-$(
		cd "$REPO_DIR/overlays" &&
			{ find ./*/etc/modprobe.d ./*/etc/fstab ./*/etc/udev -type f 2>/dev/null || true; } |
			LC_ALL=C sort | xargs -r sha256sum | sha256sum | cut -c1-16
	)
	cache=$CAMRIG_CACHE/initramfs/$key.tar
	find "$root/etc/initramfs-tools" -name 'camrig*' -type f -delete
	cp -a "$IMAGE_DIR/initramfs/." "$root/etc/initramfs-tools/"
	if [ -f "$cache" ]; then
		log "image/initramfs changed since the base was built: its initramfs from the cache"
		tar -C "$root" -xpf "$cache"
	else
		log "image/initramfs changed since the base was built: rebuilding the initramfs"
		ensure_binfmt "$arch"
		mount -t proc proc "$root/proc"
		local rc=0
		chroot "$root" update-initramfs -u -k all >&2 || rc=$?
		umount "$root/proc"
		[ "$rc" = 0 ] || die "update-initramfs failed in the image's root file system"
		"$IMAGE_DIR/lib/initramfs-recompress" "$root" || die "recompressing the initramfs failed"
		# What update-initramfs wrote: the initramfs, raspi-firmware's copies of it, and
		# its own record of what it built.
		mkdir -p "$(dirname "$cache")"
		(cd "$root" && find boot/initrd.img-* boot/firmware/initramfs* var/lib/initramfs-tools \
			-maxdepth 0 2>/dev/null || true) | tar -C "$root" -cf "$cache.tmp.$$" -T - &&
			mv "$cache.tmp.$$" "$cache"
		# Entries of older image/initramfs versions go with their bases' successors.
		prune_newest "$CAMRIG_CACHE/initramfs" '*.tar' 12
	fi
	echo "$hash" >"$root/$INITRAMFS_STAMP"
}
