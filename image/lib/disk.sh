# shellcheck shell=bash
# Lays out a camrig disk image from directories, without loop mounts: each partition is
# built as a file (mkfs.vfat + mcopy, mkfs.ext4 -d), the partition table is written onto
# the image file with sfdisk, and the partitions are copied in with dd.
#
#   1  FAT32  CAMRIG-BOOT  firmware, kernel, initramfs, DTBs (arm64) / EFI loader (amd64),
#                          config.txt, cmdline.txt, and the card's camrig.toml
#   2  ext4   camrig-root  the read-only root (no journal: it is never written)
#   3  ext4   camrig-data  recordings, journal, SSH host key, machine-id; grown on first boot

BOOT_MIB=${BOOT_MIB:-256}
DATA_MIB=${DATA_MIB:-128}
ALIGN_MIB=4

# fat_image DIR FILE SIZE_MIB: a FAT32 file system with DIR's contents.
fat_image() {
	local dir=$1 file=$2 mib=$3
	rm -f "$file"
	mkfs.vfat -F 32 -n CAMRIG-BOOT -C "$file" $((mib * 1024)) >/dev/null
	if [ -n "$(ls -A "$dir")" ]; then
		# mtools copies into the file system image directly (no mount).
		MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$file" "$dir"/* ::/
	fi
}

# ext4_image DIR FILE LABEL SIZE_MIB [mkfs options...]
ext4_image() {
	local dir=$1 file=$2 label=$3 mib=$4
	shift 4
	rm -f "$file"
	truncate -s "${mib}M" "$file"
	mkfs.ext4 -q -F -L "$label" -m 0 -E root_owner=0:0 "$@" -d "$dir" "$file"
}

# root_size_mib DIR: the root file system's size: content + 12% + 48 MiB for metadata.
root_size_mib() {
	local kib
	kib=$(du -s --apparent-size --block-size=1K "$1" | cut -f1)
	echo $(((kib * 112 / 100) / 1024 + 48))
}

# disk_image OUT BOOT_FILE ROOT_FILE DATA_FILE
disk_image() {
	local out=$1 boot=$2 root=$3 data=$4
	local mib=$((1024 * 1024 / 512)) # sectors per MiB
	local b r d
	b=$(($(stat -c %s "$boot") / 512))
	r=$(($(stat -c %s "$root") / 512))
	d=$(($(stat -c %s "$data") / 512))
	local s1=$((ALIGN_MIB * mib))
	local s2=$((s1 + b))
	local s3=$((s2 + r))
	local total=$((s3 + d))
	rm -f "$out"
	truncate -s $((total * 512)) "$out"
	# MBR, not GPT: the Raspberry Pi 3B+ boot ROM reads only MBR partition tables.
	sfdisk --quiet --no-reread --no-tell-kernel "$out" <<-SFDISK
		label: dos
		label-id: 0x63616d72
		unit: sectors
		start=$s1, size=$b, type=c, bootable
		start=$s2, size=$r, type=83
		start=$s3, size=$d, type=83
	SFDISK
	dd if="$boot" of="$out" bs=512 seek="$s1" conv=notrunc,sparse status=none
	dd if="$root" of="$out" bs=512 seek="$s2" conv=notrunc,sparse status=none
	dd if="$data" of="$out" bs=512 seek="$s3" conv=notrunc,sparse status=none
}

# boot_offset IMAGE: byte offset of partition 1 (for mtools' IMAGE@@OFFSET).
boot_offset() {
	local start
	start=$(sfdisk --json "$1" | sed -n 's/.*"start": *\([0-9]*\).*/\1/p' | head -1)
	[ -n "$start" ] || die "$1 has no partition table"
	echo $((start * 512))
}
