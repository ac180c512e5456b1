# shellcheck shell=bash
# The comparison image for ci/image-bench: stock Debian trixie minbase with systemd, udev
# and Debian's kernel (what `mmdebstrap --variant=minbase` plus a kernel gives), booted the
# same way as camrig's images. The only addition is a unit that prints a marker line on the
# serial console once multi-user.target is reached, so the host can time it.

STOCK_MARKER="camrig-bench: stock multi-user.target reached"

# stock_image ARCH OUTDIR -> writes OUTDIR/stock-ARCH.{img,vmlinuz,initrd,cmdline}
stock_image() {
	local arch=$1 outdir=$2 key tar
	local pkgs=systemd-sysv,udev,initramfs-tools,linux-image-$arch
	local unit="[Unit]
Description=camrig bench marker
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo \"$STOCK_MARKER\" > /dev/ttyS0'
[Install]
WantedBy=multi-user.target"
	key=$(printf '%s\n' "stock v1 $SUITE $arch $pkgs" "$unit" | sha256sum | cut -c1-16)
	tar=$CAMRIG_CACHE/rootfs/stock-$arch-$key.tar
	mkdir -p "$CAMRIG_CACHE/rootfs"
	clean_stale_temps "$CAMRIG_CACHE/rootfs"
	if [ ! -s "$tar" ]; then
		log "mmdebstrap stock $SUITE minbase $arch"
		local unitdir
		unitdir=$(mktemp -d)
		printf '%s\n' "$unit" >"$unitdir/bench-marker.service"
		# The hooks' single-quoted "$1" is mmdebstrap's, expanded by the shell it runs them in.
		# shellcheck disable=SC2016
		mmdebstrap --variant=minbase --arch="$arch" --include="$pkgs" \
			--customize-hook="copy-in $unitdir/bench-marker.service /etc/systemd/system" \
			--customize-hook='chroot "$1" systemctl enable bench-marker.service' \
			--customize-hook='echo "LABEL=stock-root / ext4 rw 0 1" > "$1/etc/fstab"' \
			--format=tar "$SUITE" "$tar.tmp.$$" "deb $DEBIAN_MIRROR $SUITE main" >&2
		rm -rf "$unitdir"
		mv "$tar.tmp.$$" "$tar"
	fi
	local work
	mkdir -p "$CAMRIG_CACHE/work"
	work=$(mktemp -d "$CAMRIG_CACHE/work/stock-$arch.XXXXXX")
	mkdir -p "$work/root" "$outdir"
	tar -C "$work/root" --numeric-owner -xpf "$tar"
	cp "$(find "$work/root/boot" -name 'vmlinuz-*' | sort -V | tail -1)" "$outdir/stock-$arch.vmlinuz"
	cp "$(find "$work/root/boot" -name 'initrd.img-*' | sort -V | tail -1)" "$outdir/stock-$arch.initrd"
	echo "root=LABEL=stock-root rw rootwait quiet console=ttyS0" >"$outdir/stock-$arch.cmdline"
	ext4_image "$work/root" "$work/root.ext4" stock-root "$(root_size_mib "$work/root")"
	local s=$(($(stat -c %s "$work/root.ext4") / 512))
	truncate -s $(((8192 + s) * 512)) "$outdir/stock-$arch.img"
	printf 'label: dos\nstart=8192, size=%s, type=83\n' "$s" |
		sfdisk --quiet --no-reread --no-tell-kernel "$outdir/stock-$arch.img"
	dd if="$work/root.ext4" of="$outdir/stock-$arch.img" bs=512 seek=8192 conv=notrunc,sparse status=none
	rm -rf "$work"
}
