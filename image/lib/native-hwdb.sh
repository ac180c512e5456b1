#!/bin/sh
# mmdebstrap hooks of a foreign-architecture base (arm64 on an amd64 host): udev's hardware
# database is compiled by the build host's own architecture, not under qemu-user, where
# `systemd-hwdb update` (udev's postinst and its trigger) took over five minutes of the arm64
# base. Trixie's systemd-hwdb from the native base (same suite, same systemd, so the same
# hwdb.bin) compiles the foreign root's hwdb.d into its /usr/lib/udev/hwdb.bin.
#
#   native-hwdb.sh stub ROOT             essential hook: systemd-hwdb diverted, a no-op in its place
#   native-hwdb.sh compile ROOT TOOLS    customize hook: the real one back, hwdb.bin compiled with
#                                        the native base tarball TOOLS (before base-customize.sh
#                                        removes hwdb.d)
set -eu
mode=$1 root=$2
real=/usr/bin/systemd-hwdb
case "$mode" in
stub)
	chroot "$root" dpkg-divert --quiet --local --rename --divert "$real.camrig-native" --add "$real"
	printf '#!/bin/sh\n# camrig base build: compiled natively (image/lib/native-hwdb.sh)\nexit 0\n' >"$root$real"
	chmod 755 "$root$real"
	;;
compile)
	tools_tar=$3
	rm -f "$root$real"
	chroot "$root" dpkg-divert --quiet --local --rename --divert "$real.camrig-native" --remove "$real"
	tools=$(mktemp -d "${TMPDIR:-/tmp}/camrig-hwdb.XXXXXX")
	trap 'rm -rf "$tools"' EXIT
	tar -C "$tools" --numeric-owner -xpf "$tools_tar"
	mkdir -p "$tools/target"
	unshare --mount --propagation private -- sh -euc '
		mount --bind "$2" "$1/target"
		chroot "$1" systemd-hwdb --root=/target update --usr
	' sh "$tools" "$root"
	[ -s "$root/usr/lib/udev/hwdb.bin" ] || { echo "native-hwdb: no hwdb.bin written" >&2; exit 1; }
	echo "native-hwdb: $(stat -c %s "$root/usr/lib/udev/hwdb.bin") bytes of hwdb.bin, compiled natively" >&2
	;;
*) echo "usage: native-hwdb.sh stub ROOT | compile ROOT TOOLS_TAR" >&2; exit 64 ;;
esac
