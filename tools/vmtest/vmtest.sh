#!/usr/bin/env bash
# tools/vmtest/vmtest.sh - `make vmtest`: build what the VM runs, then run it.
#
# Builds the modules (kmod/), the hostile-use tests and the reload holder
# (tests/vm/), the libaem C suite (libaem/tests/) and the goaem test binary
# (go test -c ./goaem), and hands them all to tools/vmtest/run.sh, which
# boots the Debian cloud kernel under TCG, loads the modules, runs every
# suite with AEM_BACKEND=kernel, unloads and reloads each source module
# while a ring is open, and fails on any kernel report.
#
# Usage: tools/vmtest/vmtest.sh [run.sh options...]
#   Extra options go to run.sh unchanged (e.g. --post CMD, --modparam ...).
# Environment: as run.sh (KDIR, KERNEL, EXTRA_APPEND, TIMEOUT, ...), plus
#   VMTEST_SUITES  which suites to build and run (default: "hostile libaem goaem")
#   GO             the go command (default: go)
# Exit status: as run.sh (0 pass, 1 fail, 77 skipped).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/vmtest
suites=${VMTEST_SUITES:-hostile libaem goaem}
GO=${GO:-go}

note() { echo "vmtest: $*" >&2; }
has() { [[ " $suites " == *" $1 "* ]]; }

mkdir -p "$out"
args=()

if has hostile; then
	note "building tests/vm"
	make -s -C "$repo/tests/vm" OUT="$out/vm"
	args+=(--c-tests "$out/vm/tests=hostile" --holder "$out/vm/reload_holder")
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
	else
		note "SKIP: goaem suite (no tests or no go command)"
	fi
fi

# Every source module, unloaded and reloaded under an open ring.
for m in aem_timer aem_gen aem_proc aem_fd; do
	args+=(--reload "$m")
done

exec "$here/run.sh" "${args[@]}" "$@"
