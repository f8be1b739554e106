#!/bin/sh
# tools/vmtest/soak-guest.sh - the soak's loop, run inside the VM by
# tools/vmtest/soak.sh (busybox sh).
#
# Usage: soak-guest.sh SECONDS FUZZ-SECONDS
# Until SECONDS have passed: one round is every hostile test program
# (/soak/tests/*) with AEM_TEST_SEED set to the round's seed, then aemfuzz
# with that seed for FUZZ-SECONDS; after each program the kernel log is
# scanned, and the first report, failed test or fuzzer finding ends the
# soak with the round's seed printed. Markers (parsed by soak.sh):
#   SOAK ROUND <n> seed=<seed>
#   SOAK FAIL round=<n> seed=<seed> what=<program>: <why>
#   SOAK DONE rounds=<n> seconds=<s>

secs=$1 fuzz_secs=$2
t0=$(date +%s)
end=$((t0 + secs))
report_re='BUG:|WARNING:|Oops|KASAN:|UBSAN:|general protection|kernel BUG|possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage|sleeping function called from invalid context|refcount_t:|list_(add|del) corruption|blocked for more than|^unreferenced object'
seen=$(dmesg | wc -l)

# new_reports: kernel log lines since the last look that are reports.
new_reports() {
	now=$(dmesg | wc -l)
	# A wrapped log buffer has fewer lines: look at all of it then.
	[ "$now" -ge "$seen" ] || seen=0
	dmesg | tail -n +$((seen + 1)) | grep -E "$report_re"
	seen=$now
}

fail() { # fail WHAT WHY
	printf '\nSOAK FAIL round=%s seed=%s what=%s: %s\n' "$round" "$seed" "$1" "$2"
	printf '\nSOAK DONE rounds=%s seconds=%s\n' "$round" "$(($(date +%s) - t0))"
	exit 1
}

# check WHAT RC OUT: a finding, a failed test or a kernel report ends the soak.
check() {
	r=$(new_reports)
	if [ -n "$r" ]; then
		echo "$r" | head -n 20
		fail "$1" "kernel report"
	fi
	case $2 in
	0 | 77) ;;
	*) tail -n 30 "$3"; fail "$1" "exit $2" ;;
	esac
}

round=0
seed=none
while [ "$(date +%s)" -lt "$end" ]; do
	round=$((round + 1))
	seed=0x$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
	printf '\nSOAK ROUND %s seed=%s\n' "$round" "$seed"
	echo "soak: round $round seed $seed" >/dev/kmsg
	ran=0 skipped=0
	for t in /soak/tests/*; do
		[ -x "$t" ] || continue
		AEM_TEST_SEED=$seed timeout -s KILL 300 "$t" >/tmp/soak.out 2>&1
		rc=$?
		[ "$rc" -eq 137 ] && echo "${t##*/}: killed after 300 s (a hang)" >>/tmp/soak.out
		check "${t##*/}" "$rc" /tmp/soak.out
		ran=$((ran + 1))
		[ "$rc" -eq 77 ] && skipped=$((skipped + 1))
		[ "$(date +%s)" -lt "$end" ] || break
	done
	echo "soak: round $round: $ran hostile tests clean ($skipped skipped)"
	left=$((end - $(date +%s)))
	[ "$left" -gt 0 ] || break
	[ "$left" -lt "$fuzz_secs" ] && fs=$left || fs=$fuzz_secs
	timeout -s KILL $((fs + 120)) /soak/aemfuzz -s "$seed" -t "$fs" >/tmp/soak.out 2>&1
	rc=$?
	tail -n 3 /tmp/soak.out
	check aemfuzz "$rc" /tmp/soak.out
done
printf '\nSOAK DONE rounds=%s seconds=%s\n' "$round" "$(($(date +%s) - t0))"
