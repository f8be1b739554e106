# tools/vmtest/lib.sh - sourced by the vmtest scripts.
#
# heartbeat_start WHO PHASE EXPECTED [FILE [REGEX]]
#   every $HEARTBEAT seconds (default 60) print on stderr
#     WHO: PHASE: 4m00s elapsed, expected ~17m [last FILE line matching REGEX]
#   until heartbeat_stop. EXPECTED is a duration as text ("17 min").
# heartbeat_stop
#   end it (also safe when none is running).

heartbeat_pid=''

heartbeat_start() {
	local who=$1 phase=$2 expected=$3 file=${4:-} re=${5:-.} t0
	t0=$(date +%s)
	heartbeat_stop
	(
		# A progress line must never end the loop: no errexit in here.
		set +e +o pipefail
		trap 'kill "$sp" 2>/dev/null; exit 0' TERM
		while :; do
			sleep "${HEARTBEAT:-60}" &
			sp=$!
			wait "$sp"
			e=$(($(date +%s) - t0))
			last=''
			if [ -n "$file" ] && [ -f "$file" ]; then
				last=$(grep -a -E "$re" "$file" 2>/dev/null | tail -n 1 | cut -c1-100)
			fi
			printf '%s: %s: %dm%02ds elapsed, expected ~%s%s\n' "$who" "$phase" \
				$((e / 60)) $((e % 60)) "$expected" "${last:+ [$last]}" >&2
		done
	) &
	heartbeat_pid=$!
}

heartbeat_stop() {
	if [ -n "$heartbeat_pid" ]; then
		kill "$heartbeat_pid" 2>/dev/null || true
		wait "$heartbeat_pid" 2>/dev/null || true
		heartbeat_pid=''
	fi
}

# stage_kmod SRC DST: a copy of the module sources in SRC (no build output)
# at DST, so builds for several kernels, or two runs at once, never share
# objects. DST must be under the repository for a chroot build to see it.
stage_kmod() {
	local src=$1 dst=$2
	rm -rf "$dst"
	mkdir -p "$dst"
	tar -C "$src" --exclude='*.o' --exclude='*.ko' --exclude='*.mod' --exclude='*.mod.c' \
		--exclude='.*.cmd' --exclude='.*.d' --exclude=modules.order --exclude=Module.symvers \
		--exclude='.tmp_versions' -cf - . | tar -C "$dst" -xf -
	# The version the modules report (MODULE_VERSION) sits at the top.
	if [ ! -e "$dst/VERSION" ] && [ -e "$src/../VERSION" ]; then
		cp "$src/../VERSION" "$dst/VERSION"
	fi
}

# failure_digest LOG: the lines of a guest's console log that say what
# failed: tests killed or still running, FAIL lines (Go's, and the C
# tests' t_fail with the seed that repeats it), testify's Error and
# Messages lines, hostile_sqe's unanswered SQEs, Go's timeout panics and the tests they name,
# suites with a bad exit status.
failure_digest() {
	grep -E '^--- .*(killed after|still running after)|^--- task |^---   |^\s*--- FAIL|^FAIL [^ ]+:[0-9]+: |^no result for SQE |^\s+(Error|Messages):|^panic: test timed out|^running tests:|^\s+Test[A-Za-z0-9_/]+ \(|^VMTEST TEST .* rc=[^07]' "$1"
}
