#!/usr/bin/env bash
# Fuzz targets of the AEM tree, one after another.
#
#   fuzz/run.sh [fuzz]           run every target for FUZZTIME (default 30s)
#   fuzz/run.sh seeds            replay the committed corpora once, as tests
#   fuzz/run.sh build            build the C harnesses only
#   fuzz/run.sh fuzz NAME...     only the named targets (FuzzXxx or a C harness name)
#
# FUZZTIME takes Go's -fuzztime forms: 30s, 2m, 1h, or 1000x (iterations).
# Go targets run as `go test ./fuzz -run '^$' -fuzz '^FuzzX$'`; a failing
# input lands in fuzz/testdata/fuzz/FuzzX/ (commit it: it becomes a test).
# C harnesses are libFuzzer binaries in build/fuzz/; they grow a scratch
# corpus in build/fuzz/corpus/NAME seeded from fuzz/c/corpus/NAME and write
# crashers to build/fuzz/crash/NAME/ (copy one into fuzz/c/corpus/NAME to keep
# it as a regression input).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

mode=${1:-fuzz}
[[ $# -gt 0 ]] && shift
FUZZTIME=${FUZZTIME:-30s}
CC_FUZZ=${CC_FUZZ:-clang}
FUZZ_CFLAGS=${FUZZ_CFLAGS:-}	# extra flags for the C harnesses
out=build/fuzz

go_targets=(FuzzSQEStream FuzzRingScribble FuzzWritebackCall FuzzDecode FuzzLaneScribble FuzzAembenchFlags)
c_targets=(sqe_stream ring_scribble)

# The C harnesses compile the ring core straight from kmod/core with the
# user-space compat layer, so no libaem build is involved.
# CORE_ROOT: a tree whose kmod/ to fuzz instead (e.g. a `git worktree` of
# another revision); the harnesses themselves always come from this tree.
CORE_ROOT=${CORE_ROOT:-.}
c_core_srcs() {
	ls "$CORE_ROOT"/kmod/core/*.c 2>/dev/null || true
}

build_c() {
	tools/deps.sh fuzz
	if ! command -v "$CC_FUZZ" >/dev/null; then
		echo "fuzz/run.sh: $CC_FUZZ not found; C harnesses skipped" >&2
		return 1
	fi
	local srcs
	srcs=$(c_core_srcs)
	if [[ -z $srcs ]]; then
		echo "fuzz/run.sh: no ring core sources in kmod/core; C harnesses skipped" >&2
		return 1
	fi
	mkdir -p "$out"
	local t
	for t in "${c_targets[@]}"; do
		# shellcheck disable=SC2086
		"$CC_FUZZ" -g -O1 -std=gnu11 -Wall -Wno-unused-function -Wno-comment $FUZZ_CFLAGS \
			-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
			-I "$CORE_ROOT/kmod/core" -I "$CORE_ROOT/kmod" -I "$CORE_ROOT/kmod/uapi" -I fuzz/c \
			-o "$out/$t" "fuzz/c/$t.c" $srcs -lpthread ||
			{ echo "fuzz/run.sh: building the C harness $t failed" >&2; exit 1; }
	done
}

# libFuzzer wants whole seconds or a run count.
libfuzzer_budget() {
	local t=$FUZZTIME
	case $t in
	*x) echo "-runs=${t%x}" ;;
	*h) echo "-max_total_time=$(( ${t%h} * 3600 ))" ;;
	*m) echo "-max_total_time=$(( ${t%m} * 60 ))" ;;
	*s) echo "-max_total_time=${t%s}" ;;
	*) echo "-max_total_time=$t" ;;
	esac
}

selected() {
	local name=$1
	[[ ${#want[@]} -eq 0 ]] && return 0
	local w
	for w in "${want[@]}"; do
		[[ $w == "$name" ]] && return 0
	done
	return 1
}

want=("$@")
fail=0

case $mode in
build)
	build_c
	;;
seeds)
	go test -count=1 ./fuzz/... || fail=1
	if build_c; then
		for t in "${c_targets[@]}"; do
			selected "$t" || continue
			files=(fuzz/c/corpus/"$t"/*)
			[[ -e ${files[0]} ]] || continue
			echo "== $t: replaying ${#files[@]} corpus inputs"
			"$out/$t" -runs=0 "${files[@]}" >"$out/$t.seeds.log" 2>&1 || {
				tail -n 60 "$out/$t.seeds.log"
				fail=1
			}
		done
	fi
	;;
fuzz)
	for t in "${go_targets[@]}"; do
		selected "$t" || continue
		echo "== $t for $FUZZTIME"
		# Minimizing each new interesting input may take a minute by
		# default: longer than a short run's whole budget.
		go test ./fuzz -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 10s || fail=1
	done
	if build_c; then
		budget=$(libfuzzer_budget)
		for t in "${c_targets[@]}"; do
			selected "$t" || continue
			echo "== $t for $FUZZTIME"
			mkdir -p "$out/corpus/$t" "$out/crash/$t"
			"$out/$t" "$budget" -timeout=10 -rss_limit_mb=4096 \
				-artifact_prefix="$out/crash/$t/" -print_final_stats=1 \
				"$out/corpus/$t" "fuzz/c/corpus/$t" || fail=1
		done
	fi
	;;
*)
	echo "usage: fuzz/run.sh [fuzz|seeds|build] [TARGET...]" >&2
	exit 2
	;;
esac

if ((fail)); then
	echo "fuzz/run.sh: FAILED" >&2
	exit 1
fi
echo "fuzz/run.sh: ok"
