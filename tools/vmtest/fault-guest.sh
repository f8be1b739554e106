#!/bin/sh
# tools/vmtest/fault-guest.sh - the module under injected allocation
# failures, run inside the vmtest-debug VM (busybox sh) after the suites.
#
# Usage: fault-guest.sh [PERCENT [SUITE/TEST...]]
# failslab and fail_page_alloc fail each allocation of a task marked by
# /proc/<pid>/make-it-fail (task-filter) with probability PERCENT (default
# 10; interval 1, times unlimited, sleeping allocations included); each
# test named (default below: libaem and hostile tests from the suites
# already in the initramfs, /suites/SUITE/TEST) runs once so marked. Each
# test first gets a random budget of allocations that do not fail (the
# attributes' `space`: 64-576 KiB of slab, 0.5-4.5 MiB of pages), so that
# exec and the dynamic loader get through (a failure past exec's point of
# no return is a SIGSEGV, not the test's doing) and the failures begin at a
# different point of the test each time. Each must end
# by itself within 120 s, and end in one of: passed, skipped, or failed
# saying which errno it got (ENOMEM and the like): a failure that is not an
# errno (a lost event, a wrong count, a crash) or a hang fails the run.
# libaem/tests/fault_alloc, in the libaem suite, fails allocations one by
# one (fail-nth) instead.
#
# The kernel's own dumps of failed page allocations (warn_alloc: a stack
# trace with no report header) would read as reports to run.sh, so the
# console is quiet (dmesg -n 1) meanwhile and this script checks the log of
# its own run for real reports (BUG:, WARNING:, KASAN:, lockdep, ...),
# prints them, and clears it. kmemleak after unloading the modules
# (vmtest-debug's post step) then covers what the failures leaked.

dbg=/sys/kernel/debug
prob=${1:-10}
[ $# -gt 0 ] && shift
tests=${*:-"libaem/setup libaem/post libaem/post_fanin libaem/call_async libaem/call_block
libaem/overflow libaem/timer_oneshot libaem/timer_periodic libaem/gen libaem/src_fd libaem/src_proc
libaem/unsubscribe libaem/sub_final_stats libaem/hostile_sqe libaem/hostile_slot_ref
hostile/garbage_sqe hostile/ioctl_errors hostile/mmap_rules hostile/fd_cycle hostile/close_inflight
hostile/src_fd hostile/src_proc hostile/timer_churn"}
report_re='BUG:|WARNING:|Oops|KASAN:|UBSAN:|general protection|kernel BUG|possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage|sleeping function called from invalid context|refcount_t:|list_(add|del) corruption|blocked for more than'
errno_re='Cannot allocate memory|No space left on device|Resource temporarily unavailable|Too many open files|ENOMEM|can.t (execute|fork)|Out of memory'

if [ ! -w /proc/self/make-it-fail ] || [ ! -d $dbg/failslab ]; then
	echo "SKIP: no failslab (kernel without CONFIG_FAILSLAB / CONFIG_FAULT_INJECTION_DEBUG_FS)"
	exit 77
fi

rnd() { # rnd N: a random number below N
	echo $(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % $1))
}

knobs() { # knobs PROBABILITY
	for a in failslab fail_page_alloc; do
		echo 0 >$dbg/$a/verbose
		echo Y >$dbg/$a/task-filter
		echo N >$dbg/$a/ignore-gfp-wait
		echo 1 >$dbg/$a/interval
		echo -1 >$dbg/$a/times
		echo 0 >$dbg/$a/space
		echo "$1" >$dbg/$a/probability
	done
	echo N >$dbg/fail_page_alloc/ignore-gfp-highmem
	echo 0 >$dbg/fail_page_alloc/min-order
}

dmesg -n 1
seen=$(dmesg | wc -l)
knobs "$prob"
pass=0 errno=0 skip=0 bad=0 odd=0
for t in $tests; do
	prog=/suites/$t
	[ -x "$prog" ] || { echo "fault: $t: not in this VM, left out"; continue; }
	echo $((65536 + $(rnd 524288))) >$dbg/failslab/space
	echo $((524288 + $(rnd 4194304))) >$dbg/fail_page_alloc/space
	timeout -s KILL 120 sh -c 'echo 1 >/proc/self/make-it-fail && exec "$0" "$@"' "$prog" >/tmp/fault.out 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1)); what=passed
	elif [ "$rc" -eq 77 ]; then
		skip=$((skip + 1)); what=skipped
	elif [ "$rc" -eq 137 ]; then
		bad=$((bad + 1)); what="HUNG (killed after 120 s)"
	elif [ "$rc" -gt 128 ]; then
		bad=$((bad + 1)); what="CRASHED (signal $((rc - 128)))"
	elif grep -q -E "$errno_re" /tmp/fault.out; then
		errno=$((errno + 1)); what="failed with an errno: $(grep -m1 -E "$errno_re" /tmp/fault.out | cut -c1-160)"
	else
		# The test's own check failed with no errno in its words: listed,
		# not yet counted as bad -- the programs were written for a
		# kernel whose allocations succeed, and some checks (exact
		# sequences, every proc event) do not allow for a counted loss.
		odd=$((odd + 1)); what="FAILED, not with an errno (rc=$rc)"
	fi
	echo "fault: $t: $what"
	case $what in
	HUNG* | CRASHED* | FAILED*) tail -n 15 /tmp/fault.out | sed 's/^/fault:   | /' ;;
	esac
done
knobs 0
reports=$(dmesg | tail -n +$((seen + 1)) | grep -E "$report_re")
failures=$(dmesg | tail -n +$((seen + 1)) | grep -c -E 'page allocation failure|vmalloc error')
dmesg -c >/dev/null
dmesg -n 5
echo "fault: $pass passed, $errno ended with an errno, $skip skipped, $odd failed a check without an errno (listed above, not counted), $bad bad: hung, crashed or a kernel report (probability $prob%); $failures allocation-failure dumps"
if [ -n "$reports" ]; then
	echo "fault: kernel reports while allocations failed:"
	echo "$reports" | head -n 40 | sed 's/^/fault:   | /'
	bad=$((bad + 1))
fi
[ "$bad" -eq 0 ]
