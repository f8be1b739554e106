#!/usr/bin/env bash
# readme-check.sh: follow README.md literally on a fresh clone of the current
# commit, as a new user would:
#   1. the commands of the README's first block (`make run`; `make test`
#      unless this is already running inside make test, or
#      READMECHECK_MAKE_TEST=0),
#   2. the Go example saved as main.go in a new module, with the lines of the
#      README's "new module" block,
#   3. the C example saved as app.c, built and run with the README's lines,
#   4. the HTTP server built and run with the README's two lines (on a free
#      port rather than 8080), and loaded once with curl,
#   5. the README's aembench line for that server, shorter and with fewer
#      connections.
# The code and commands are taken from the README itself, so the check fails
# when the README stops working. Uncommitted changes are not in the clone.
#
#   scripts/readme-check.sh [COMMIT]     (default HEAD)
#
# Environment: READMECHECK_KEEP=1 keeps the temporary directory;
# AEM_README_CHECK_IN names an enclosing command (make test sets it).
set -euo pipefail

top=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
commit=$(git -C "$top" rev-parse --verify "${1:-HEAD}^{commit}")
work=$(mktemp -d /tmp/aem-readme-check.XXXXXX)
if [ "${READMECHECK_KEEP:-0}" = 1 ]; then
	echo "readme-check: keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi

say() { printf 'readme-check: %s\n' "$*"; }
fail() { say "FAILED: $*"; exit 1; }

# block SECTION LANG N: the N-th (from 1) fenced block of language LANG in
# the README's section SECTION ("" is the part before the first section).
block() {
	awk -v section="$1" -v lang="$2" -v want="$3" '
		/^## / { cur = substr($0, 4); next }
		!fenced && /^```/ {
			fenced = 1
			if (cur == section && substr($0, 4) == lang) { n++; take = (n == want) }
			next
		}
		fenced && /^```$/ { fenced = 0; take = 0; next }
		take { print }
	' "$AEM/README.md"
}

# run_lines TEXT: run a block's commands in one shell, echoing each first.
run_lines() {
	bash -euo pipefail -c "set -x; $1"
}

say "cloning $commit into $work/aem"
git clone --quiet --no-checkout "$top" "$work/aem"
git -C "$work/aem" checkout --quiet --detach "$commit"
export AEM=$work/aem

# ---- 1. the two commands ----
first=$(block "" sh 1)
[ -n "$first" ] || fail "no command block at the top of README.md"
while IFS= read -r line; do
	cmd=${line%%#*}
	cmd=$(echo "$cmd" | sed 's/[[:space:]]*$//')
	[ -n "$cmd" ] || continue
	case "$cmd" in
	"make test")
		if [ -n "${AEM_README_CHECK_IN:-}" ]; then
			say "make test: not run again: the enclosing run ($AEM_README_CHECK_IN) is that command"
			continue
		fi
		if [ "${READMECHECK_MAKE_TEST:-1}" = 0 ]; then
			say "make test: left out (READMECHECK_MAKE_TEST=0)"
			continue
		fi
		;;
	esac
	say "step: $cmd (in the clone)"
	(cd "$AEM" && run_lines "$cmd") || fail "$cmd"
done <<<"$first"

# ---- 2. the Go example in a new module ----
program=$(block Go go 1)
steps=$(block Go sh 1)
[ -n "$program" ] && [ -n "$steps" ] || fail "the Go example or its commands are missing from README.md"
grep -q 'save the program above as main.go' <<<"$steps" ||
	fail "the Go commands no longer say where to save the program"
mkdir -p "$work/go"
say "step: the Go example in a new module"
# the README's comment line is where the user saves the program
script=$(awk -v prog="$work/program.go" '
	/save the program above as main.go/ { print "cp " prog " main.go"; next }
	{ print }' <<<"$steps")
printf '%s\n' "$program" >"$work/program.go"
out=$(cd "$work/go" && run_lines "$script" 2>&1) || { echo "$out"; fail "the Go example"; }
echo "$out"
grep -q 'stressed -> desserts' <<<"$out" || fail "the Go example did not print its replies"

# ---- 3. the C example with the README's build line ----
program=$(block C c 1)
build=$(block C sh 1)
[ -n "$program" ] && [ -n "$build" ] || fail "the C example or its build line is missing from README.md"
mkdir -p "$work/c"
printf '%s\n' "$program" >"$work/c/app.c"
say "step: the C example, built and run with the README's lines"
out=$(cd "$work/c" && run_lines "$build" 2>&1) || { echo "$out"; fail "the C example"; }
echo "$out"
grep -q "^libaem $(cat "$AEM/VERSION") " <<<"$out" || fail "the C example did not report libaem's version"

# ---- 4. the HTTP server's two commands ----
http=$(block "HTTP server" sh 1)
build=$(sed -n 1p <<<"$http")
serve=$(sed -n 2p <<<"$http")
[ -n "$build" ] && [ -n "$serve" ] || fail "the HTTP server's build and run lines are missing from README.md"
say "step: $build (in the clone)"
(cd "$AEM" && run_lines "$build") || fail "$build"
# The README's address, on a port the system picks: 8080 may be taken.
serve=${serve//127.0.0.1:8080/127.0.0.1:0}
say "step: $serve, then one request"
(cd "$AEM" && exec $serve >"$work/http.out" 2>&1) &
server=$!
for _ in $(seq 100); do
	url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$work/http.out")
	[ -n "$url" ] && break
	sleep 0.1
done
[ -n "$url" ] || { kill "$server"; cat "$work/http.out"; fail "the HTTP server printed no address"; }
reply=$(curl -sS --max-time 10 "$url/") || { kill "$server"; fail "curl $url/"; }
kill -INT "$server"
wait "$server" || { cat "$work/http.out"; fail "the HTTP server did not exit 0 on SIGINT"; }
[ "$reply" = "hello, world" ] || fail "the HTTP server answered '$reply'"
grep -q 'requests per system call' "$work/http.out" || fail "the HTTP server printed no counts on SIGINT"

# ---- 5. the HTTP load line, shortened ----
load=$(block "HTTP server" sh 2)
[ -n "$load" ] || fail "the HTTP server's aembench line is missing from README.md"
load=${load//--duration 2s/--duration 300ms --warmup 50ms}
load=${load//--conns 256/--conns 16}
say "step: $load (shortened)"
(cd "$AEM" && run_lines "$load") >"$work/load.out" 2>&1 || { cat "$work/load.out"; fail "$load"; }
grep -Eq '^ *http/.* aem ' "$work/load.out" || { cat "$work/load.out"; fail "the HTTP load printed no row for AEM's server"; }

say "passed: README.md works as written at $commit"
