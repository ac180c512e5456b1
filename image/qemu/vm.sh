# shellcheck shell=bash
# Booting camrig images in QEMU (software emulation) for tests and benchmarks; sourced by
# ci/image-test, ci/image-bench, ci/camera-test, ci/rpios-test and ci/rig-vm-test (after
# ci/lib.sh, which it uses: `poll`, `free_port`).
#
# The kernel and initramfs come from the image build (image/build writes NAME.vmlinuz,
# NAME.initrd, NAME.cmdline next to NAME.img), booted directly with -kernel/-initrd; the
# disk is a virtio block device. Networking is QEMU's user network with restrict=on (the
# guest reaches nothing) and host forwards bound to 127.0.0.1 only. On that network the
# host is 10.0.2.2 and host forwards go to the guest's address, 10.0.2.15 unless its
# identity gives it another (`--guest`).
# `--restrict off` (for one vm_start) lifts restrict=on: slirp then delivers the guest's
# UDP replies to a "udp:" host forward (restricted slirp drops every UDP datagram from the
# guest). The guest still reaches only 10.0.2.0/24, where 10.0.2.2 is the host's loopback,
# as long as its identity has no gateway and no DNS server (the test rig's have none).
# A rig of VMs (ci/rig-vm-test) gives each guest NICs on tap devices instead ("tap:…"),
# with QEMU started inside the network namespace that holds them (`--netns`).

# shellcheck source=ci/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../ci/lib.sh"

VM_SSH_OPTS=(-o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR)

# Each started VM's vm_start arguments and serial log, by its VAR, so that a guest whose
# kernel oopses under QEMU's emulation can be booted again (vm_recover).
declare -gA VM_ARGS=() VM_LOG=() VM_RETRIES=()
# How many times one VM is booted again after such an oops before the wait gives up.
VM_OOPS_RETRIES=2

# vm_start [OPTIONS] VAR IMAGE_PREFIX ARCH DISK SERIAL_LOG EXTRA_CMDLINE [NET...] [-- QEMU_ARG...]
# Starts QEMU in the background; VAR_PID holds its pid, VAR_T0 its start time (s.ns).
# IMAGE_PREFIX is the build output without extension (out/camrig-node-amd64); DISK is the
# raw disk to boot (a copy of IMAGE_PREFIX.img); QEMU's own output goes to SERIAL_LOG.qemu.
# NET: "tcp:PORT:GUESTPORT" or "udp:PORT:GUESTPORT", a host forward on the user network;
# "tap:IFNAME:MAC", a NIC on tap device IFNAME instead of the user network (one per link).
# QEMU_ARGs go to QEMU as they are (e.g. -rtc base=…).
# OPTIONS: --restrict on|off (the user network's, default on), --guest ADDR (where host
# forwards go, default 10.0.2.15), --netns NS (QEMU runs in network namespace NS, where its
# tap devices are), --smp N (default 2), --mem MB (default 1024).
vm_start() {
	local restrict=on guest=10.0.2.15 netns='' smp=2 mem=1024 all=("$@")
	while [[ "$1" == --* ]]; do
		case "$1" in
		--restrict) restrict=$2 ;;
		--guest) guest=$2 ;;
		--netns) netns=$2 ;;
		--smp) smp=$2 ;;
		--mem) mem=$2 ;;
		*) echo "vm_start: unknown option $1" >&2; return 1 ;;
		esac
		shift 2
	done
	local var=$1 prefix=$2 arch=$3 disk=$4 log=$5 extra=$6
	shift 6
	VM_ARGS[$var]=$(printf '%q ' "${all[@]}")
	VM_LOG[$var]=$log
	[ -n "${VM_RECOVERING:-}" ] || VM_RETRIES[$var]=0
	local fwd="" nics=() f proto hport gport ifname mac
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		f=$1
		shift
		case "$f" in
		tap:*)
			ifname=${f#tap:}
			mac=${ifname#*:}
			ifname=${ifname%%:*}
			nics+=(-netdev "tap,id=$ifname,ifname=$ifname,script=no,downscript=no"
				-device "virtio-net-pci,netdev=$ifname,mac=$mac")
			;;
		tcp:* | udp:*)
			IFS=: read -r proto hport gport <<<"$f"
			fwd+=",hostfwd=$proto:127.0.0.1:$hport-$guest:$gport"
			;;
		*) echo "vm_start: unknown network $f" >&2; return 1 ;;
		esac
	done
	[ "${1:-}" != -- ] || shift
	[ ${#nics[@]} -gt 0 ] ||
		nics=(-netdev "user,id=net0,restrict=$restrict$fwd" -device "virtio-net-pci,netdev=net0")
	local cmdline
	cmdline="$(cat "$prefix.cmdline") $extra"
	local qemu
	case "$arch" in
	amd64) qemu=(qemu-system-x86_64) ;;
	arm64) qemu=(qemu-system-aarch64 -machine virt -cpu cortex-a72) ;;
	*) echo "vm_start: unknown arch $arch" >&2; return 1 ;;
	esac
	local in_netns=()
	[ -z "$netns" ] || in_netns=(ip netns exec "$netns")
	: >"$log"
	# setpriv --pdeathsig: QEMU dies with the script that started it, even a script killed
	# with SIGKILL (whose EXIT trap never runs): no orphaned guest holds its ports and CPU
	# for the next run. `ip netns exec` and setpriv exec QEMU, so $! is QEMU itself.
	"${in_netns[@]}" setpriv --pdeathsig KILL "${qemu[@]}" -accel tcg,thread=multi -smp "$smp" -m "$mem" \
		-nographic -monitor none -serial "file:$log" -no-reboot \
		-kernel "$prefix.vmlinuz" -initrd "$prefix.initrd" -append "$cmdline" \
		-drive "if=none,id=disk0,file=$disk,format=raw,cache=unsafe" \
		-device virtio-blk-pci,drive=disk0 \
		"${nics[@]}" "$@" \
		</dev/null >"$log.qemu" 2>&1 &
	printf -v "${var}_PID" '%s' "$!"
	printf -v "${var}_T0" '%s' "$(date +%s.%N)"
}

# vm_recover: boots again every running VM whose kernel died of an oops ("Kernel panic -
# not syncing: Fatal exception"), at most VM_OOPS_RETRIES times each. Multi-threaded TCG
# now and then runs stale code across a kernel text patch (an "Oops: int3" in early boot,
# seen on the trixie amd64 kernel under Debian 12's QEMU 7.2); that is the emulator's fault,
# not the image's. A panic of any other kind (init died, no root) is not retried, and an
# oops that comes back every time still fails the wait with the console shown. The oopsed
# boot's console is kept next to the log as LOG.oopsN. ci/lib.sh's `poll` calls this.
vm_recover() {
	local var pidvar log tries
	for var in "${!VM_ARGS[@]}"; do
		pidvar=${var}_PID
		[ -n "${!pidvar:-}" ] || continue
		log=${VM_LOG[$var]}
		grep -q 'Kernel panic - not syncing: Fatal exception' "$log" 2>/dev/null || continue
		tries=${VM_RETRIES[$var]:-0}
		[ "$tries" -lt "$VM_OOPS_RETRIES" ] || continue
		VM_RETRIES[$var]=$((tries + 1))
		vm_stop "$var"
		cp "$log" "$log.oops$((tries + 1))"
		echo "vm: $var's guest kernel oopsed under QEMU's emulation ($(grep -m1 -oE 'Oops: [^[]*' "$log" || echo 'Fatal exception')); booting it again ($((tries + 1)) of $VM_OOPS_RETRIES), console kept in $log.oops$((tries + 1))" >&2
		eval "VM_RECOVERING=1 vm_start ${VM_ARGS[$var]}"
	done
}

# vm_stop VAR: powers the VM off (kills QEMU) and waits for it.
vm_stop() {
	local pidvar=${1}_PID
	local pid=${!pidvar:-}
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	printf -v "$pidvar" '%s' ""
}

# vm_wait_exit VAR TIMEOUT: waits for QEMU to exit by itself (guest poweroff/reboot).
vm_wait_exit() {
	local pidvar=${1}_PID deadline=$((SECONDS + $2))
	local pid=${!pidvar}
	while kill -0 "$pid" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.5
	done
	wait "$pid" 2>/dev/null || true
	printf -v "$pidvar" '%s' ""
}

# wait_log FILE PATTERN TIMEOUT: waits for an extended regex in the serial log.
wait_log() {
	poll -i 0.2 "$3" grep -qE "$2" "$1"
}

# vm_ssh KEY PORT [ssh options...] -- COMMAND: runs COMMAND as root in the guest.
vm_ssh() {
	local key=$1 port=$2
	shift 2
	local opts=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	[ "${1:-}" = -- ] && shift
	ssh "${VM_SSH_OPTS[@]}" "${opts[@]}" -i "$key" -p "$port" root@127.0.0.1 "$@"
}

# wait_ssh KEY PORT KNOWN_HOSTS TIMEOUT: waits until SSH logs in (accepting and recording
# the host key in KNOWN_HOSTS on first contact; checking it strictly if it is there).
wait_ssh() {
	poll "$4" vm_ssh "$1" "$2" -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$3" -- true
}
