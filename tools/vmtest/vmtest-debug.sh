#!/usr/bin/env bash
# tools/vmtest/vmtest-debug.sh - run the vmtest suites against the AEM
# modules on a KASAN + lockdep + kmemleak kernel (tools/vmtest/debug.config).
#
# Builds the debug kernel of the newest kernel line, or of DEBUG_LINE, once
# (tools/vmtest/debug-kernel.sh caches it; a line of another release than
# the host's builds it, and the modules, in that release's chroot), then
# runs tools/vmtest/vmtest.sh (which builds the module, the hostile tests,
# the libaem suite and the goaem test binary and hands them to run.sh; plain
# run.sh when vmtest.sh is absent) with KERNEL/KDIR pointing at it, a longer timeout
# (KASAN under TCG is several times slower than the stock kernel) and a post
# step that, after the suites:
#   1. scans kmemleak and prints what it found (the modules still loaded, so
#      their frames are symbolised), then marks those objects as seen;
#   2. unloads every module, loads them again, unloads them again (module
#      init/exit paths, and teardown with nothing open);
#   3. scans kmemleak again: leaks left by the exit paths.
# Fails when run.sh fails (a suite failed, or the kernel log holds a report:
# BUG:, WARNING:, Oops, KASAN:, lockdep, sleeping in atomic context ...),
# when kmemleak lists an unreferenced object, or when the unload cycle fails;
# prints each report.
#
# Usage: tools/vmtest/vmtest-debug.sh [--self-test] [run.sh options...]
#   run.sh options    passed through unchanged (--modparam, --pre, --post,
#                     or, with VMTEST_RUNNER=run.sh, the suites themselves)
#   --self-test       instead of the AEM modules, load a canary module four
#                     times: clean (must pass), leaking (kmemleak must fail
#                     the run), out-of-bounds read, allocation under a
#                     spinlock and an AB-BA mutex order (KASAN, the
#                     atomic-sleep check and lockdep must each be reported)
#
# Environment: as run.sh (EXTRA_APPEND, QEMU_MEM, TEST_TIMEOUT, LOG, ...),
# with these defaults changed:
#   TIMEOUT       2700 s for the whole VM run
#   TEST_TIMEOUT  900 s per test program
#   QEMU_MEM      2G (as run.sh; a kmemleak scan walks every struct page,
#                 so it costs ~20 s per GiB under TCG on a busy machine)
#   VMTEST_BOOT_RETRIES  2 (run.sh: 1): boots tried again when the guest
#                 dies before init
#   LOG           <repo>/build/vmtest-debug/console.log
#   KMOD_DIR      <repo>/kmod; it is built in a copy under build/vmtest-debug,
#                 so the stock `make vmtest` objects are left alone
#   AEM_DEBUG_KERNEL_CACHE, JOBS   see debug-kernel.sh
#   DEBUG_LINE    the kernel line (default: the newest in tools/vmtest/lines)
#   VMTEST_EXPECT the VM time the progress lines expect (default "9 min",
#                 what a 7.2 run took)
#   VMTEST_RUNNER vmtest.sh or run.sh (default vmtest.sh when it exists);
#                 VMTEST_SUITES etc. reach vmtest.sh unchanged
#   VMTEST_FAULT  1 (default with vmtest.sh): after the suites, run
#                 tools/vmtest/fault-guest.sh: libaem and hostile tests
#                 again with failslab and fail_page_alloc failing their
#                 allocations (FAULT_PROB percent, default 10; FAULT_TESTS,
#                 default the list there)
#
# Exit status: 0 pass; 1 failure; 77 skipped (not root and the kernel is not
# built, or packages are missing).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/vmtest-debug

# shellcheck source=lib.sh
. "$here/lib.sh"

note() { echo "vmtest-debug: $*" >&2; }
die() { echo "vmtest-debug: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

self_test=0
args=()
for a in "$@"; do
	case "$a" in
	--self-test) self_test=1 ;;
	-h|--help) usage; exit 0 ;;
	*) args+=("$a") ;;
	esac
done

# --- kernel ----------------------------------------------------------------

t0=$(date +%s)
rc=0
kenv=$("$here/debug-kernel.sh" ${DEBUG_LINE:+--line "$DEBUG_LINE"} --env) || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
eval "$kenv"
export KERNEL KDIR AEM_LINE
note "debug kernel ready in $(($(date +%s) - t0))s: $KERNEL"

export TIMEOUT=${TIMEOUT:-2700}
export VMTEST_EXPECT=${VMTEST_EXPECT:-9 min}
export TEST_TIMEOUT=${TEST_TIMEOUT:-900}
export QEMU_MEM=${QEMU_MEM:-2G}
# A guest of this kernel once died before init on a CI machine (no AEM
# code had run); a failed boot costs seconds, so it gets two more tries.
export VMTEST_BOOT_RETRIES=${VMTEST_BOOT_RETRIES:-2}
export EXTRA_APPEND=${EXTRA_APPEND:-}
mkdir -p "$out"

# --- the post step (runs in the VM after the suites) -----------------------

# Objects younger than 5 s are never reported, and a scan right after the
# suites can still see pointers in freed-but-unscanned memory: wait, scan
# twice. `clear` after the first listing keeps the second listing to what
# the unload cycle added.
read -r -d '' post <<'EOF' || true
kml=/sys/kernel/debug/kmemleak
kscan() { sleep 6; echo scan >$kml; echo scan >$kml; printf '\nVMTEST KMEMLEAK %s BEGIN\n' "$1"; cat $kml; printf '\nVMTEST KMEMLEAK %s END\n' "$1"; }
if [ -w $kml ]; then kscan suites; echo clear >$kml; else printf '\nVMTEST KMEMLEAK unavailable\n'; fi
# The modules the guest loads at boot: not the test-only second
# implementations (*_vN.ko), which their tests load and unload themselves.
mods=$(grep -v '_v[0-9][0-9]*\.ko$' /etc/modules.list | sed 's/\.ko$//' | tac)
urc=0
for m in $mods; do rmmod "$m" || { echo "vmtest-debug: rmmod $m failed"; urc=1; }; done
for ko in $(grep -v '_v[0-9][0-9]*\.ko$' /etc/modules.list); do
  n=${ko%.ko}; a=$(grep "^$n " /etc/modparams | tail -n 1 | cut -d' ' -f2-)
  insmod "/lib/modules/$ko" $a || { echo "vmtest-debug: insmod $ko failed"; urc=1; }
done
for m in $mods; do rmmod "$m" || { echo "vmtest-debug: rmmod $m failed"; urc=1; }; done
printf '\nVMTEST UNLOAD-CYCLE rc=%s\n' "$urc"
if [ -w $kml ]; then kscan unload; fi
EOF

# --- module sources --------------------------------------------------------

stage=$out/src.$$
stage_run() { # stage_run SRC: stage SRC for this run, print where
	stage_kmod "$1" "$stage/kmod"
	echo "$stage/kmod"
}

# --- verdict over run.sh's console log -------------------------------------

# check_log LOG: the checks run.sh does not do. Prints each problem.
check_log() {
	local log=$1 bad=0 phase n
	# run.sh has said why a guest never reached init; nothing below ran.
	grep -q '^VMTEST BEGIN' "$log" || return 1
	for phase in suites unload; do
		n=$(sed -n "/^VMTEST KMEMLEAK $phase BEGIN/,/^VMTEST KMEMLEAK $phase END/p" "$log" |
			grep -c '^unreferenced object' || true)
		if [ "$n" -gt 0 ]; then
			note "FAIL: kmemleak: $n unreferenced object(s) after the $phase:"
			sed -n "/^VMTEST KMEMLEAK $phase BEGIN/,/^VMTEST KMEMLEAK $phase END/p" "$log" |
				sed '1d;$d' | head -n 400 | sed 's/^/vmtest-debug:   | /' >&2
			bad=1
		fi
	done
	if grep -q '^VMTEST KMEMLEAK unavailable' "$log" ||
		! grep -q '^VMTEST KMEMLEAK suites END' "$log"; then
		note "FAIL: kmemleak scan did not run (debugfs missing, or the VM died first)"
		bad=1
	fi
	if grep -q 'kmemleak: Kernel memory leak detector disabled' "$log"; then
		note "FAIL: kmemleak disabled itself during the run:"
		grep -B2 -A5 'kmemleak: ' "$log" | head -n 40 | sed 's/^/vmtest-debug:   | /' >&2
		bad=1
	fi
	if grep -q 'turning off the locking correctness validator' "$log"; then
		note "FAIL: lockdep turned itself off (a report earlier, or a table ran out):"
		grep -B3 -A3 'turning off the locking correctness validator' "$log" | head -n 40 |
			sed 's/^/vmtest-debug:   | /' >&2
		bad=1
	fi
	if ! grep -q '^VMTEST UNLOAD-CYCLE rc=0' "$log"; then
		note "FAIL: module unload/reload cycle: $(grep '^VMTEST UNLOAD-CYCLE\|^vmtest-debug: ' "$log" | tr '\n' ' ')"
		bad=1
	fi
	return "$bad"
}

# run_debug LOG RUN.SH-ARGS...: run.sh on the debug kernel plus our checks.
run_debug() {
	local log=$1 rc=0
	shift
	# `|| rc=$?`, not set +e/-e: a caller may run us with errexit off.
	LOG=$log "$here/$runner" --post "$post" "$@" || rc=$?
	[ "$rc" -eq 77 ] && return 77
	if [ -s "$log" ] && ! check_log "$log"; then
		rc=1
	fi
	return "$rc"
}

# --- self-test -------------------------------------------------------------

runner=${VMTEST_RUNNER:-vmtest.sh}
[ -x "$here/$runner" ] || runner=run.sh

if [ "$self_test" = 1 ]; then
	runner=run.sh
	canary=$out/canary
	rm -rf "$canary"
	"$here/debug-kernel.sh" --canary "$canary"
	export KMOD_DIR=$canary
	fail=0
	expect() { # expect NAME WANT(pass|fail) PATTERN... -- RUN.SH-ARGS...
		local name=$1 want=$2 rc log t
		shift 2
		local pats=()
		while [ "$1" != -- ]; do pats+=("$1"); shift; done
		shift
		log=$out/self-test-$name.log
		t=$(date +%s)
		note "self-test $name: expecting $want"
		rc=0
		run_debug "$log" "$@" >"$out/self-test-$name.out" 2>&1 || rc=$?
		[ "$rc" -eq 77 ] && { note "self-test $name: skipped"; exit 77; }
		note "self-test $name: rc=$rc in $(($(date +%s) - t))s (output $out/self-test-$name.out)"
		if [ "$want" = pass ] && [ "$rc" -ne 0 ]; then
			tail -n 40 "$out/self-test-$name.out" >&2
			note "self-test $name: FAIL: a clean module did not pass"
			fail=1
		elif [ "$want" = fail ] && [ "$rc" -ne 1 ]; then
			note "self-test $name: FAIL: the run did not fail (rc=$rc)"
			fail=1
		fi
		local p
		for p in "${pats[@]+"${pats[@]}"}"; do
			if grep -qE "$p" "$out/self-test-$name.out"; then
				note "self-test $name:   reported: $(grep -m1 -E "$p" "$out/self-test-$name.out" | sed 's/^vmtest[-a-z]*: *| *//')"
			else
				note "self-test $name: FAIL: no '$p' in the output"
				fail=1
			fi
		done
	}
	expect clean pass -- "${args[@]+"${args[@]}"}"
	expect leak fail 'kmemleak: [0-9]+ unreferenced' 'unreferenced object 0x' -- \
		--modparam 'aem_canary leak=1' "${args[@]+"${args[@]}"}"
	# Apart: a KASAN report taints the kernel, which turns lockdep off.
	expect kasan fail 'BUG: KASAN: slab-out-of-bounds' -- \
		--modparam 'aem_canary oob=1' "${args[@]+"${args[@]}"}"
	expect locking fail 'sleeping function called from invalid context' \
		'possible circular locking dependency' -- \
		--modparam 'aem_canary sleep=1 abba=1' "${args[@]+"${args[@]}"}"
	[ "$fail" -eq 0 ] || die "self-test FAILED"
	note "self-test passed: clean runs pass, and kmemleak, KASAN, the atomic-sleep check and lockdep fail a run"
	exit 0
fi

# --- the real run ----------------------------------------------------------

trap 'rm -rf "$stage"' EXIT
KMOD_DIR=$(stage_run "${KMOD_DIR:-$repo/kmod}")
export KMOD_DIR
log=${LOG:-$out/console.log}
# After the suites, the same C tests again with allocations failing
# (fault-guest.sh; needs the libaem and hostile suites in the VM).
if [ "$runner" = vmtest.sh ] && [ "${VMTEST_FAULT:-1}" = 1 ]; then
	args+=(--exec "fault=$here/fault-guest.sh ${FAULT_PROB:-10} ${FAULT_TESTS:-}")
fi
t=$(date +%s)
rc=0
run_debug "$log" "${args[@]+"${args[@]}"}" || rc=$?
note "run took $(($(date +%s) - t))s; console log $log"
case $rc in
0) note "PASS (KASAN, lockdep, atomic-sleep and kmemleak clean)" ;;
77) note "SKIP" ;;
*) note "FAIL" ;;
esac
exit "$rc"
