#!/usr/bin/env bash
# tools/vmtest/soak.sh - `make soak SOAK_TIME=30m`: one VM that loops the
# hostile suites and the /dev/aem fuzzer with fresh random seeds until the
# time is up, scanning the kernel log after every program.
#
# Builds the modules, the hostile tests of tests/vm, libaem's hostile_*
# tests (static) and aemfuzz (fuzz/dev), boots one VM (the newest kernel
# line's Debian kernel, or with SOAK_DEBUG=1 the KASAN + lockdep + kmemleak
# kernel of tools/vmtest/debug-kernel.sh) and runs soak-guest.sh in it. The
# first kernel report, failed test or fuzzer finding stops the soak; the
# round's seed is printed (AEM_TEST_SEED=<seed> for a test, `aemfuzz -s
# <seed>` for the fuzzer). Not part of `make test`.
#
# Environment:
#   SOAK_TIME     how long to loop: 30m, 900s, 1h or plain seconds (default 30m)
#   SOAK_FUZZ     seconds of aemfuzz per round (default 60)
#   SOAK_LINE     kernel line (default: the newest in tools/vmtest/lines)
#   SOAK_DEBUG=1  the debug kernel instead of the line's Debian kernel
# Log: build/soak/console.log. Exit: 0 clean, 1 a finding, 77 skipped.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/soak
note() { echo "soak: $*" >&2; }

secs=${SOAK_TIME:-30m}
case $secs in
*h) secs=$((${secs%h} * 3600)) ;;
*m) secs=$((${secs%m} * 60)) ;;
*s) secs=${secs%s} ;;
esac
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || { note "SOAK_TIME=${SOAK_TIME:-}: want 30m, 900s, 1h or seconds"; exit 2; }
fuzz_secs=${SOAK_FUZZ:-60}

if [ "$(id -u)" -ne 0 ]; then
	note "SKIP: the kernel line is built in a chroot, which needs root"
	exit 77
fi

mkdir -p "$out"
note "building the hostile tests, libaem's hostile tests and aemfuzz"
make -s -C "$repo/tests/vm" OUT="$out/vm"
make -s -C "$repo/libaem/tests" OUT="$out/libaem" STATIC=1 \
	$(cd "$repo/libaem/tests" && ls hostile_*.c | sed "s|^\(.*\)\.c$|$out/libaem/\1|")
make -s -C "$repo/fuzz/dev" OUT="$out/fuzzdev"

args=(--exec "soak=$here/soak-guest.sh $secs $fuzz_secs" --file "$out/fuzzdev/aemfuzz=/soak/aemfuzz")
for t in "$out"/vm/tests/* "$out"/libaem/hostile_*; do
	args+=(--file "$t=/soak/tests/${t##*/}")
done

# The whole VM: the soak, a round's last programs and the dump after it.
export TIMEOUT=$((secs + fuzz_secs + 900))
export TEST_TIMEOUT=$((secs + fuzz_secs + 600))
export VMTEST_EXPECT="$((secs / 60)) min"
export LOG=$out/console.log

line=${SOAK_LINE:-$(awk '!/^#/ && NF { l = $1 } END { print l }' "$here/lines")}
if [ "${SOAK_DEBUG:-0}" = 1 ]; then
	kenv=$("$here/debug-kernel.sh" --line "$line" --env)
	eval "$kenv"
	export KERNEL KDIR AEM_LINE
else
	kenv=$("$here/chroot.sh" "$line" --env)
	eval "$kenv"
	export KERNEL KDIR
	export AEM_LINE=$line
fi
# shellcheck source=lib.sh
. "$here/lib.sh"
stage_kmod "$repo/kmod" "$out/kmod"
note "soaking for ${secs}s on $KERNEL (log $LOG)"
rc=0
KMOD_DIR=$out/kmod "$here/run.sh" "${args[@]}" || rc=$?
grep -E '^SOAK (ROUND|FAIL|DONE)' "$LOG" | tail -n 3 | sed 's/^/soak: /' >&2 || true
if grep -q '^SOAK FAIL' "$LOG"; then
	note "$(grep '^SOAK FAIL' "$LOG" | tail -n 1)"
	note "reproduce: AEM_TEST_SEED=<seed> for the test named, or aemfuzz -s <seed> in the VM"
fi
rounds=$(sed -n 's/^SOAK DONE rounds=\([0-9]*\).*/\1/p' "$LOG" | tail -n 1)
note "$( [ "$rc" -eq 0 ] && echo PASS || echo FAIL ): ${rounds:-?} rounds in ${secs}s"
exit "$rc"
