#!/bin/sh
# libaem/tests/runner.sh - run the libaem test programs.
#
# Usage: runner.sh [DIR | PROGRAM...]      (default DIR: build/tests)
#
# Each program runs under a time limit and exits 0 (pass), 77 (skip) or
# anything else (fail).  Prints PASS/FAIL/SKIP per test and a summary line,
# and exits non-zero if any test failed.  On the kernel backend
# (AEM_BACKEND=kernel, or no AEM_BACKEND and /dev/aem present) the kernel
# log written during each test is scanned for reports, which fail it.
#
# Environment:
#   AEM_BACKEND    passed through to the tests (kernel|embedded)
#   TEST_TIMEOUT   seconds per test (default 60; 300 for timer_million)
#   TEST_FILTER    only run tests whose name matches this extended regex
#   TEST_LOGDIR    keep each test's output here (default: a temporary dir)
#
# POSIX sh on purpose: it also runs under busybox inside the test VM.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

if [ $# -eq 0 ]; then
	set -- "$top/build/tests"
fi
if [ $# -eq 1 ] && [ -d "$1" ]; then
	dir=$1
	set --
	for f in "$dir"/*; do
		[ -f "$f" ] && [ -x "$f" ] && set -- "$@" "$f"
	done
	[ $# -gt 0 ] || { echo "runner: no test programs in $dir (run make -C libaem/tests)" >&2; exit 2; }
fi

logdir=${TEST_LOGDIR:-}
cleanup=
if [ -z "$logdir" ]; then
	logdir=$(mktemp -d "${TMPDIR:-/tmp}/aem-tests.XXXXXX")
	cleanup=$logdir
fi
mkdir -p "$logdir"
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT

kernel=0
case "${AEM_BACKEND:-}" in
kernel) kernel=1 ;;
'') [ -e /dev/aem ] && kernel=1 ;;
esac

# Real kernel reports only, not every line that mentions lockdep.
report_re='BUG:|WARNING:|Oops|KASAN:|UBSAN:|KFENCE:|general protection|kernel BUG|possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage|INFO: task .* blocked for more than|refcount_t:|list_(add|del) corruption'
scan=0
if [ $kernel -eq 1 ]; then
	if dmesg >/dev/null 2>&1; then
		scan=1
	else
		echo "runner: cannot read the kernel log (dmesg); kernel reports are NOT checked" >&2
	fi
fi

if [ -n "${TEST_FILTER:-}" ]; then
	for prog in "$@"; do
		shift
		echo "${prog##*/}" | grep -Eq "$TEST_FILTER" && set -- "$@" "$prog"
	done
fi

passed=0 failed=0 skipped=0 failures=
echo "runner: backend ${AEM_BACKEND:-auto}$([ $kernel -eq 1 ] && echo ' (kernel)'), $# tests"
for prog in "$@"; do
	name=${prog##*/}
	limit=${TEST_TIMEOUT:-}
	if [ -z "$limit" ]; then
		case $name in
		timer_million | timer_ten_million) limit=300 ;;
		*) limit=60 ;;
		esac
	fi
	log=$logdir/$name.log
	[ $scan -eq 1 ] && before=$(dmesg | wc -l)
	start=$(date +%s)
	timeout "$limit" "$prog" >"$log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - start ))
	reports=
	if [ $scan -eq 1 ]; then
		reports=$(dmesg | tail -n +"$((before + 1))" | grep -E "$report_re")
	fi
	if [ -n "$reports" ]; then
		rc=1
		echo "kernel log during $name:" >>"$log"
		echo "$reports" >>"$log"
	fi
	case $rc in
	0)
		passed=$((passed + 1))
		echo "PASS $name (${secs}s)"
		grep '^note:' "$log" | sed 's/^/    /'
		;;
	77)
		skipped=$((skipped + 1))
		echo "SKIP $name: $(grep -m1 '^SKIP' "$log" | sed 's/^SKIP: *//')"
		;;
	*)
		failed=$((failed + 1))
		failures="$failures $name"
		case $rc in
		124 | 137 | 143) why="timed out after ${limit}s" ;;
		*) why="exit $rc" ;;
		esac
		[ -n "$reports" ] && why="kernel report"
		echo "FAIL $name ($why, ${secs}s)"
		tail -n 40 "$log" | sed 's/^/    /'
		;;
	esac
done

echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ] || { echo "failed:$failures"; exit 1; }
exit 0
