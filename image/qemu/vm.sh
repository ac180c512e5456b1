# shellcheck shell=bash
# Booting camrig images in QEMU (software emulation) for tests and benchmarks; sourced by
# ci/image-test and ci/image-bench.
#
# The kernel and initramfs come from the image build (image/build writes NAME.vmlinuz,
# NAME.initrd, NAME.cmdline next to NAME.img), booted directly with -kernel/-initrd; the
# disk is a virtio block device. Networking is QEMU's user network with restrict=on (the
# guest reaches nothing) and host forwards bound to 127.0.0.1 only. The guest's address on
# that network is 10.0.2.15/24, the host is 10.0.2.2.
# VM_NET_RESTRICT=off (for one vm_start) lifts restrict=on: slirp then delivers the guest's
# UDP replies to a "udp:" host forward (restricted slirp drops every UDP datagram from the
# guest). The guest still reaches only 10.0.2.0/24, where 10.0.2.2 is the host's loopback,
# as long as its identity has no gateway and no DNS server (the controller test's has none).

VM_SSH_OPTS=(-o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR)

# Each started VM's vm_start arguments and network restriction, by its VAR, so that a guest
# whose kernel oopses under QEMU's emulation can be booted again (vm_recover).
declare -gA VM_ARGS=() VM_RESTRICT=() VM_RETRIES=()
# How many times one VM is booted again after such an oops before the wait gives up.
VM_OOPS_RETRIES=2

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# vm_start VAR IMAGE_PREFIX ARCH DISK SERIAL_LOG EXTRA_CMDLINE HOSTFWD...
# Starts QEMU in the background; VAR_PID holds its pid, VAR_T0 its start time (s.ns).
# IMAGE_PREFIX is the build output without extension (out/camrig-node-amd64); DISK is the
# raw disk to boot (a copy of IMAGE_PREFIX.img). HOSTFWD: "tcp:PORT:GUESTPORT" or "udp:...".
vm_start() {
	local var=$1 prefix=$2 arch=$3 disk=$4 log=$5 extra=$6
	VM_ARGS[$var]=$(printf '%q ' "$@")
	VM_RESTRICT[$var]=${VM_NET_RESTRICT:-on}
	[ -n "${VM_RECOVERING:-}" ] || VM_RETRIES[$var]=0
	shift 6
	local fwd="" f proto hport gport
	for f in "$@"; do
		IFS=: read -r proto hport gport <<<"$f"
		fwd+=",hostfwd=$proto:127.0.0.1:$hport-:$gport"
	done
	local cmdline
	cmdline="$(cat "$prefix.cmdline") $extra"
	local qemu machine
	case "$arch" in
	amd64)
		qemu=(qemu-system-x86_64)
		machine=()
		;;
	arm64)
		qemu=(qemu-system-aarch64 -machine virt -cpu cortex-a72)
		machine=()
		;;
	*) echo "vm_start: unknown arch $arch" >&2; return 1 ;;
	esac
	: >"$log"
	# setpriv --pdeathsig: QEMU dies with the script that started it, even a script killed
	# with SIGKILL (whose EXIT trap never runs): no orphaned guest holds its ports and CPU
	# for the next run.
	setpriv --pdeathsig KILL "${qemu[@]}" "${machine[@]}" -accel tcg,thread=multi -smp 2 -m 1024 \
		-nographic -monitor none -serial "file:$log" -no-reboot \
		-kernel "$prefix.vmlinuz" -initrd "$prefix.initrd" -append "$cmdline" \
		-drive "if=none,id=disk0,file=$disk,format=raw,cache=unsafe" \
		-device virtio-blk-pci,drive=disk0 \
		-netdev "user,id=net0,restrict=${VM_NET_RESTRICT:-on}$fwd" -device virtio-net-pci,netdev=net0 \
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
# boot's console is kept next to the log as LOG.oopsN. The wait_* loops call this.
vm_recover() {
	local var pidvar pid log tries
	for var in "${!VM_ARGS[@]}"; do
		pidvar=${var}_PID
		pid=${!pidvar:-}
		[ -n "$pid" ] || continue
		eval "set -- ${VM_ARGS[$var]}"
		log=$5
		grep -q 'Kernel panic - not syncing: Fatal exception' "$log" 2>/dev/null || continue
		tries=${VM_RETRIES[$var]:-0}
		[ "$tries" -lt "$VM_OOPS_RETRIES" ] || continue
		VM_RETRIES[$var]=$((tries + 1))
		vm_stop "$var"
		cp "$log" "$log.oops$((tries + 1))"
		echo "vm: $var's guest kernel oopsed under QEMU's emulation ($(grep -m1 -oE 'Oops: [^[]*' "$log" || echo 'Fatal exception')); booting it again ($((tries + 1)) of $VM_OOPS_RETRIES), console kept in $log.oops$((tries + 1))" >&2
		VM_RECOVERING=1 VM_NET_RESTRICT=${VM_RESTRICT[$var]} vm_start "$@"
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
	local file=$1 pattern=$2 deadline=$((SECONDS + $3))
	until grep -qE "$pattern" "$file" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		vm_recover
		sleep 0.2
	done
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
	local key=$1 port=$2 known=$3 deadline=$((SECONDS + $4))
	local policy=accept-new
	until vm_ssh "$key" "$port" -o StrictHostKeyChecking=$policy -o UserKnownHostsFile="$known" -- true 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		vm_recover
		sleep 1
	done
}

# wait_http URL TIMEOUT [curl options...]: waits for a 2xx answer.
wait_http() {
	local url=$1 deadline=$((SECONDS + $2))
	shift 2
	until curl -fsS -o /dev/null --max-time 3 "$@" "$url" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		vm_recover
		sleep 0.2
	done
}
