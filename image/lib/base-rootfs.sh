# shellcheck shell=bash
# The cached base root filesystem: mmdebstrap of Debian trixie (or Raspberry Pi OS) with the
# role's and architecture's package lists, as a tarball under $CAMRIG_CACHE/rootfs/base/ named by
# a hash of every input (suite, architecture, sources, package lists, hook scripts,
# mmdebstrap options). Same inputs: the tarball is reused (seconds); any change, or a fresh
# machine: mmdebstrap runs again (amd64 about 1 minute, arm64 under qemu-user 10-45). Its
# initramfs is built from image/initramfs as it was then, and rebuilt by image/build when
# that changes (initramfs_refresh).

SUITE=trixie
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# base_sources SOURCES RPIOS_MIRROR: the apt source lines, one per line.
base_sources() {
	local sources=$1 rpios_mirror=$2
	echo "deb $DEBIAN_MIRROR $SUITE main non-free-firmware"
	if [ "$sources" = rpios ]; then
		echo "deb $rpios_mirror $SUITE main"
	fi
}

# base_packages ROLE ARCH SOURCES EXTRA: the package names, sorted, one per line.
base_packages() {
	local role=$1 arch=$2 sources=$3 extra=$4 p=$IMAGE_DIR/packages
	{
		read_list "$p/common.list"
		if [ "$sources" = rpios ]; then
			read_list "$p/rpios-$arch.list"
			read_list "$p/rpios-$role.list"
		else
			read_list "$p/$arch.list"
			read_list "$p/$role.list"
		fi
		tr ', ' '\n\n' <<<"$extra" | grep -v '^$' || true
	} | sort -u
}

# base_rootfs ROLE ARCH SOURCES RPIOS_MIRROR RPIOS_KEYRING EXTRA_PACKAGES -> prints the tarball path.
base_rootfs() {
	local role=$1 arch=$2 sources=$3 rpios_mirror=$4 rpios_keyring=$5 extra=$6
	need mmdebstrap mmdebstrap
	local pkgs srcs opts key out
	pkgs=$(base_packages "$role" "$arch" "$sources" "$extra")
	srcs=$(base_sources "$sources" "$rpios_mirror")
	opts=(
		--variant=minbase --arch="$arch" --components=main,non-free-firmware
		--dpkgopt=force-unsafe-io
		--dpkgopt='path-exclude=/usr/share/man/*'
		--dpkgopt='path-exclude=/usr/share/info/*'
		--dpkgopt='path-exclude=/usr/share/doc/*'
		--dpkgopt='path-include=/usr/share/doc/*/copyright'
		--dpkgopt='path-exclude=/usr/share/locale/*'
		--dpkgopt='path-include=/usr/share/locale/locale.alias'
	)
	if [ "$sources" = rpios ]; then
		[ -n "$rpios_keyring" ] && [ -f "$rpios_keyring" ] ||
			die "--sources rpios needs --rpios-keyring FILE (raspberrypi-archive-keyring's raspberrypi-archive-keyring.gpg, plus Debian's keyring)"
		opts+=(--keyring="$rpios_keyring" --keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
	fi
	key=$(
		{
			echo "camrig-base v1 $SUITE $arch $role $sources"
			echo "$srcs"
			echo "$pkgs"
			printf '%s\n' "${opts[@]}"
			[ -n "$rpios_keyring" ] && sha256sum <"$rpios_keyring"
			sha256sum "$IMAGE_DIR/lib/base-customize.sh" | cut -d' ' -f1
		} | sha256sum | cut -c1-16
	)
	# In a directory of its own: older checkouts prune rootfs/base-*.tar of other keys.
	local dir=$CAMRIG_CACHE/rootfs/base
	out=$dir/$role-$arch-$sources-$key.tar
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
	log "mmdebstrap $SUITE $arch ($role, $sources): not cached, building $out"
	# Written under a temporary name and renamed: the cache never holds half a tarball, and
	# an interrupted build leaves only a temp that the next build removes.
	local tmp=$out.tmp.$$
	trap 'rm -f "$tmp"' EXIT
	# Installing initramfs-tools' configuration before the kernel (essential hook) makes
	# the kernel's postinst build the one initramfs the image needs, with camrig's scripts.
	# The base records their hash: image/build rebuilds the initramfs when they change
	# (initramfs_refresh), so they are not part of the base's key.
	# shellcheck disable=SC2046 # one package name per word
	mmdebstrap "${opts[@]}" \
		--include="$(paste -sd, <<<"$pkgs")" \
		--essential-hook="mkdir -p \"\$1/etc/initramfs-tools\"" \
		--essential-hook="sync-in $IMAGE_DIR/initramfs /etc/initramfs-tools" \
		--essential-hook="echo $(initramfs_hash) >\"\$1/$INITRAMFS_STAMP\"" \
		--customize-hook="$IMAGE_DIR/lib/base-customize.sh \"\$1\"" \
		--format=tar "$SUITE" "$tmp" - <<<"$srcs" >&2 ||
		{ rm -f "$tmp"; die "mmdebstrap failed for $role/$arch/$sources"; }
	sync "$tmp"
	mv "$tmp" "$out"
	trap - EXIT
	# Older bases of the same role/arch/sources are superseded; the four newest stay, since
	# checkouts of other branches (each with its own key) may be building from them right
	# now, and pruning one of those makes its next build run mmdebstrap again.
	ls -t "$dir/$role-$arch-$sources-"*.tar | tail -n +5 | while read -r old; do
		rm -f "$old" "$old.lock"
	done
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
		# What update-initramfs wrote: the initramfs, raspi-firmware's copies of it, and
		# its own record of what it built.
		mkdir -p "$(dirname "$cache")"
		(cd "$root" && find boot/initrd.img-* boot/firmware/initramfs* var/lib/initramfs-tools \
			-maxdepth 0 2>/dev/null || true) | tar -C "$root" -cf "$cache.tmp.$$" -T - &&
			mv "$cache.tmp.$$" "$cache"
		# Entries of older image/initramfs versions go with their bases' successors.
		ls -t "$CAMRIG_CACHE/initramfs/"*.tar | tail -n +13 | xargs -r rm -f
	fi
	echo "$hash" >"$root/$INITRAMFS_STAMP"
}
