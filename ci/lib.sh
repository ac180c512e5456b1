# shellcheck shell=bash
# What the ci scripts share, defined once. Each script starts with
#
#   set -euo pipefail
#   cd "$(dirname "$0")/.."
#   source ci/lib.sh
#
# and then has: the cache root ($CAMRIG_CACHE, exported) and cargo's target directory
# ($CARGO_TARGET_DIR, exported; $CAMRIG_CACHE/target unless set), image/lib/common.sh's `need`,
# `log` and `die`, and the helpers below: steps with their times (`step`, `step_times`),
# `fail` (with the script's own `fail_context`, if it defines one), `check`, `poll`,
# `free_port`, `wait_http`, cleanups run at exit (`on_exit`), and the test rig's identities
# from the one fixture site file (`fixture_identities`). Sourcing it twice is harmless.

[ -z "${CI_LIB_SOURCED:-}" ] || return 0
CI_LIB_SOURCED=1

# shellcheck source=image/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../image/lib/common.sh"
export CAMRIG_CACHE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CAMRIG_CACHE/target}
# The script's name in its messages (ci/image-test → image-test).
CI_NAME=${CI_NAME:-$(basename "$0")}

# --- steps -------------------------------------------------------------------------------
# step NAME: starts a step (a header with the script's time so far); step_times prints every
# step's duration, so a run's log says where its time went.
CI_STEPS=()
CI_STEP_START=$SECONDS
_ci_step_end() {
	[ ${#CI_STEPS[@]} = 0 ] || [[ "${CI_STEPS[-1]}" == *$'\t'* ]] || CI_STEPS[-1]+=$'\t'$((SECONDS - CI_STEP_START))
}
step() {
	_ci_step_end
	CI_STEPS+=("$*")
	CI_STEP_START=$SECONDS
	printf '\n=== %s: %s (%ss)\n' "$CI_NAME" "$*" "$SECONDS"
}
step_times() {
	local s
	_ci_step_end
	for s in "${CI_STEPS[@]}"; do
		printf '%6ss  %s\n' "${s##*$'\t'}" "${s%$'\t'*}"
	done
}

# fail MESSAGE: says what failed, then what the script's `fail_context` function (if it has
# one) shows to explain it (a guest's console, a service's log), and exits 1.
fail() {
	printf '%s: FAIL: %s\n' "$CI_NAME" "$*" >&2
	if declare -F fail_context >/dev/null; then
		fail_context >&2 || true
	fi
	exit 1
}

# show_log FILE [WHAT]: the last 40 lines of a log (default: a guest's serial console), if it
# exists.
show_log() {
	local what=${2:-"the guest's serial console"}
	[ -n "$1" ] && [ -f "$1" ] || return 0
	printf -- '--- last lines of %s (%s):\n' "$what" "$1"
	tail -n 40 "$1"
}

# check DESCRIPTION COMMAND...: runs a check, prints it, stops at the first failure.
check() {
	local what=$1
	shift
	if "$@"; then
		printf '  ok   %s\n' "$what"
	else
		fail "$what"
	fi
}

# poll [-i SECONDS] TIMEOUT COMMAND...: runs COMMAND (its output discarded) every SECONDS
# (default 1) until it succeeds, or returns 1 when TIMEOUT seconds have passed. With
# image/qemu/vm.sh sourced, every round also boots again a guest whose kernel oopsed under
# QEMU's emulation (vm_recover).
poll() {
	local interval=1
	if [ "$1" = -i ]; then
		interval=$2
		shift 2
	fi
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		if declare -F vm_recover >/dev/null; then
			vm_recover
		fi
		sleep "$interval"
	done
}

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL TIMEOUT [curl options...]: waits for a 2xx answer.
wait_http() {
	local url=$1 timeout=$2
	shift 2
	poll -i 0.2 "$timeout" curl -fsS -o /dev/null --max-time 3 "$@" "$url"
}

# --- cleanup -----------------------------------------------------------------------------
# on_exit COMMAND...: runs COMMAND when the script exits (also on SIGTERM and SIGINT), after
# every command registered later (a VM registered after its directory stops before the
# directory goes). $CI_EXIT_STATUS is the script's exit status meanwhile.
CI_EXIT=() CI_EXIT_STATUS=0
on_exit() {
	CI_EXIT+=("$(printf '%q ' "$@")")
}
_ci_exit() {
	CI_EXIT_STATUS=$?
	local i
	for ((i = ${#CI_EXIT[@]} - 1; i >= 0; i--)); do
		eval "${CI_EXIT[i]}" || true
	done
	return "$CI_EXIT_STATUS"
}
trap _ci_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# stop_process PID: stops a background process this script started, and waits for it.
stop_process() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# --- test identities ---------------------------------------------------------------------
# The test rig: every device a ci script boots is one of ci/fixtures/site.toml.
CI_SITE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fixtures/site.toml
# The administrator key in the fixture, replaced by each run's own.
CI_SITE_ADMIN_KEY_COMMENT=ci-admin-key-replaced-per-run

# fixture_identities DIR DEVICE...: each DEVICE's camrig.toml made from ci/fixtures/site.toml
# by `camrig-provision build`, as a real rig's cards are: a fresh administrator key DIR/admin
# (its public key in place of the fixture's), the rig's secrets in DIR/state (token, api-token,
# host-keys/<device>/, admin_known_hosts), each card in DIR/cards/<device>/camrig.toml.
fixture_identities() {
	local dir=$1 site provision
	shift
	mkdir -p "$dir"
	provision=$(host_bin camrig-provision)
	ssh-keygen -q -t ed25519 -N '' -C "admin@$CI_NAME" -f "$dir/admin"
	site=$dir/site.toml
	sed "s|\"ssh-ed25519 [A-Za-z0-9+/=]* $CI_SITE_ADMIN_KEY_COMMENT\"|\"$(cat "$dir/admin.pub")\"|" "$CI_SITE" >"$site"
	grep -qF "\"$(cat "$dir/admin.pub")\"" "$site" ||
		fail "$CI_SITE has no administrator key with the comment $CI_SITE_ADMIN_KEY_COMMENT to replace"
	local only=() device
	for device in "$@"; do only+=(--only "$device"); done
	"$provision" build "$site" --state "$dir/state" --out "$dir/cards" "${only[@]}" \
		>"$dir/provision.log" || fail "camrig-provision build $CI_SITE failed: $(cat "$dir/provision.log")"
}

# host_bin CRATE: builds CRATE's binary for this host (debug; cargo makes it only when stale)
# and prints its path.
host_bin() {
	cargo build --locked -q -p "$1" >&2 || fail "$1 does not build"
	echo "$CARGO_TARGET_DIR/debug/$1"
}

# identity_address CAMRIG_TOML: the device's address (without its prefix length).
identity_address() {
	sed -n 's|^address = "\([0-9.]*\)/[0-9]*"$|\1|p' "$1" | head -n 1
}

# known_host_line DIR DEVICE PORT: DEVICE's provisioned host key (fixture_identities DIR) as a
# known_hosts line for 127.0.0.1:PORT, so the first SSH login already checks it strictly.
known_host_line() {
	printf '[127.0.0.1]:%s %s\n' "$3" "$(cut -d' ' -f1,2 "$1/state/host-keys/$2/ssh_host_ed25519_key.pub")"
}
