#!/usr/bin/env bash
# Compare the benchmark suite (bench/) of two git revisions with benchstat.
#
#   scripts/benchcmp.sh REV_A REV_B [go test benchmark flags...]
#
# Each revision is checked out into its own temporary worktree and its
# bench test binary built once; the two binaries then run alternately, one
# count at a time, so that a drift of the machine's load hits both alike.
# Environment: COUNT (default 10), BENCH (regexp, default .), BENCHTIME
# (default 1s).  Extra arguments go to the test binaries (e.g.
# -test.cpu=1).  The raw results stay in $OUT (default a temporary folder).
set -euo pipefail

usage() {
	echo "usage: $0 REV_A REV_B [test binary flags...]" >&2
	exit 2
}
[ $# -ge 2 ] || usage
rev_a=$1 rev_b=$2
shift 2

root=$(git rev-parse --show-toplevel)
count=${COUNT:-10}
bench=${BENCH:-.}
benchtime=${BENCHTIME:-1s}
tmp=$(mktemp -d)
out=${OUT:-$tmp}
mkdir -p "$out"

cleanup() {
	for w in a b; do
		[ -d "$tmp/wt-$w" ] && git -C "$root" worktree remove --force "$tmp/wt-$w" >/dev/null 2>&1
	done
	git -C "$root" worktree prune
	[ "$out" = "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT

build() { # name rev
	local name=$1 rev=$2 wt=$tmp/wt-$1
	git -C "$root" rev-parse --verify --quiet "$rev^{commit}" >/dev/null ||
		{ echo "$0: $rev: not a revision" >&2; exit 2; }
	git -C "$root" worktree add --detach --quiet "$wt" "$rev"
	if [ ! -d "$wt/bench" ]; then
		echo "$0: $rev has no bench/ folder" >&2
		exit 1
	fi
	# libaem is C: build it the way the tree says, when the tree says how
	if [ -f "$wt/Makefile" ] && make -C "$wt" -n libaem >/dev/null 2>&1; then
		make -C "$wt" --no-print-directory libaem >&2
	fi
	(cd "$wt" && go test -c -o "$tmp/$name.test" ./bench) >&2
	: >"$out/$name.txt"
}

echo "building $rev_a and $rev_b ..." >&2
build a "$rev_a"
build b "$rev_b"

for ((i = 1; i <= count; i++)); do
	echo "run $i/$count ..." >&2
	for name in a b; do
		# run from the revision's own tree: tests may read files beside them
		(cd "$tmp/wt-$name/bench" && "$tmp/$name.test" -test.run '^$' \
			-test.bench "$bench" -test.benchtime "$benchtime" -test.count 1 "$@") >>"$out/$name.txt"
	done
done

cd "$root"
label_a=$rev_a label_b=$rev_b
[ "$label_a" != "$label_b" ] || label_b="$rev_b(again)"
go tool benchstat "$label_a=$out/a.txt" "$label_b=$out/b.txt"
[ "$out" = "$tmp" ] || echo "raw results: $out/a.txt $out/b.txt" >&2
