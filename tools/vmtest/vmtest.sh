#!/usr/bin/env bash
# tools/vmtest/vmtest.sh - `make vmtest`: build what the VM runs, then run it.
#
# Builds the modules (kmod/), the hostile-use tests and the reload holder
# (tests/vm/), the libaem C suite (libaem/tests/) and the goaem test
# binaries (go test -c ./goaem; ./goaem/aemhttp, the HTTP server over
# loopback on the module; ./goaem/aemnet, net.Listener and net.Conn on
# it), and hands them all to tools/vmtest/run.sh once per kernel line: it
# boots that line's Debian cloud kernel under TCG, loads the modules built
# against that line's headers with that release's compiler (in its
# chroot, tools/vmtest/chroot.sh), runs every suite with
# AEM_BACKEND=kernel, unloads and reloads each source module while a ring
# is open, and fails on any kernel report. The end is one line per kernel:
# its `uname -r` (as the guest printed it) and the suite counts.
#
# Usage: tools/vmtest/vmtest.sh [run.sh options...]
#   Extra options go to run.sh unchanged (e.g. --post CMD, --modparam ...).
# Environment: as run.sh (EXTRA_APPEND, TIMEOUT, ...), plus
#   KERNELS        comma-separated kernel lines (default: every line in
#                  tools/vmtest/lines: 6.1,6.12,7.2)
#   KDIR, KERNEL   one run against this tree and image instead of the lines
#                  (AEM_LINE, when set, names the chroot that builds for KDIR)
#   VMTEST_SUITES  which suites to build and run (default: "hostile libaem goaem";
#                  also "devfuzz": aemfuzz for DEVFUZZ_TIME seconds, default 60)
#   GO             the go command (default: go)
# Logs: build/vmtest/<line>/console.log.
# Exit status: 0 every line passed; 1 a line failed (the others still run);
# 77 skipped (as run.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/vmtest
suites=${VMTEST_SUITES:-hostile libaem goaem}
GO=${GO:-go}

note() { echo "vmtest: $*" >&2; }
has() { [[ " $suites " == *" $1 "* ]]; }

if [ "$(id -u)" -ne 0 ] && [ -z "${KDIR:-}" ] && [ -z "${KERNEL:-}" ]; then
	echo "vmtest: SKIP: each kernel line is built in a chroot of its Debian release, which needs root" >&2
	exit 77
fi

mkdir -p "$out"
args=()

if has hostile; then
	note "building tests/vm"
	make -s -C "$repo/tests/vm" OUT="$out/vm"
	args+=(--c-tests "$out/vm/tests=hostile" --holder "$out/vm/reload_holder")
fi

# The fuzzer of /dev/aem (fuzz/dev): with the hostile suite, a replay of its
# regression seeds; as suite devfuzz (`make fuzz`), DEVFUZZ_TIME seconds of
# random cases (default 60).
if has hostile || has devfuzz; then
	note "building fuzz/dev"
	make -s -C "$repo/fuzz/dev" OUT="$out/fuzzdev"
	args+=(--file "$repo/fuzz/dev/seeds.txt=/suites/aemfuzz/seeds.txt")
	if has hostile; then
		args+=(--exec "aemfuzz=$out/fuzzdev/aemfuzz -f /suites/aemfuzz/seeds.txt")
	fi
	if has devfuzz; then
		args+=(--exec "devfuzz=$out/fuzzdev/aemfuzz -t ${DEVFUZZ_TIME:-60}")
	fi
fi

if has libaem; then
	if [ -f "$repo/libaem/tests/Makefile" ] && [ -f "$repo/libaem/Makefile" ]; then
		note "building the libaem C suite"
		make -s -C "$repo/libaem/tests" OUT="$out/libaem"
		args+=(--c-tests "$out/libaem=libaem")
	else
		note "SKIP: libaem suite (no libaem/Makefile yet)"
	fi
fi

if has goaem; then
	if compgen -G "$repo/goaem/*_test.go" >/dev/null && command -v "$GO" >/dev/null; then
		note "building the goaem test binary"
		(cd "$repo" && CGO_ENABLED=1 "$GO" test -c -o "$out/goaem.test" ./goaem)
		args+=(--go-test "$out/goaem.test=$repo/goaem")
		(cd "$repo" && CGO_ENABLED=1 "$GO" test -c -o "$out/aemhttp.test" ./goaem/aemhttp)
		args+=(--go-test "$out/aemhttp.test=$repo/goaem/aemhttp")
		(cd "$repo" && CGO_ENABLED=1 "$GO" test -c -o "$out/aemnet.test" ./goaem/aemnet)
		args+=(--go-test "$out/aemnet.test=$repo/goaem/aemnet")
	else
		note "SKIP: goaem suite (no tests or no go command)"
	fi
fi

# Every source module, unloaded and reloaded under an open ring.
for m in aem_timer aem_gen aem_proc aem_fd aem_sock; do
	args+=(--reload "$m")
done

if [ -n "${KDIR:-}" ] || [ -n "${KERNEL:-}" ]; then
	exec "$here/run.sh" "${args[@]}" "$@"
fi

# shellcheck source=lib.sh
. "$here/lib.sh"
all=$(awk '!/^#/ && NF { printf "%s%s", sep, $1; sep = "," }' "$here/lines")
IFS=, read -r -a lines <<<"${KERNELS:-$all}"
results=() failed_lines=() fail=0
for line in "${lines[@]}"; do
	rc=0
	kenv=$("$here/chroot.sh" "$line" --env) || rc=$?
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 77 ] && exit 77
		results+=("$line: FAIL (no build chroot; see above)")
		fail=1
		continue
	fi
	eval "$kenv"
	dir=$out/$line
	stage_kmod "$repo/kmod" "$dir/kmod"
	log=$dir/console.log
	note "kernel line $line: $KRELEASE ($RELEASE)"
	rc=0
	AEM_LINE=$line KDIR=$KDIR KERNEL=$KERNEL KMOD_DIR=$dir/kmod LOG=$log \
		"$here/run.sh" "${args[@]}" "$@" || rc=$?
	[ "$rc" -eq 77 ] && exit 77
	uname_r=$(sed -n 's/^VMTEST BEGIN \([^ ]*\).*/\1/p' "$log" 2>/dev/null | head -n 1)
	summary=$(sed -n 's/^VMTEST SUMMARY //p' "$log" 2>/dev/null | tail -n 1)
	verdict=PASS
	[ "$rc" -eq 0 ] || { verdict=FAIL; fail=1; failed_lines+=("$line"); }
	results+=("$line: $verdict uname -r ${uname_r:-?}: ${summary:-no summary} (log $log)")
done
# Each failed line's failures again at the very end: with three lines the
# first one's report is pages above the tail a CI log shows.
for line in "${failed_lines[@]}"; do
	note "$line: what failed (from $out/$line/console.log):"
	failure_digest "$out/$line/console.log" | head -n 60 | sed "s/^/vmtest:   $line | /" >&2 || true
done
for r in "${results[@]}"; do note "$r"; done
exit "$fail"
