#!/usr/bin/env bash
# tools/vmtest/deb-test.sh - `make vmtest-deb`: the aem-dkms package on each
# kernel line, as a user installs it.
#
# Per line: in that release's chroot (tools/vmtest/chroot.sh, group dkms),
# `apt-get install <repo>/build/aem-dkms_<VERSION>_all.deb`; DKMS builds the
# modules against the line's headers with the release's gcc. Checks that
# every module was installed for that kernel and reports VERSION, then
# boots the line's kernel under TCG with exactly those modules (run.sh
# --no-build) and runs a few libaem programs through /dev/aem (setup, nop,
# a timer, the generator, process and socket events: every module serves
# one), then purges the package and checks that DKMS removed the modules.
#
# Usage: tools/vmtest/deb-test.sh
# Environment: KERNELS (as vmtest.sh), TIMEOUT/TEST_TIMEOUT (as run.sh).
# Logs: build/vmtest-deb/<line>/{apt.log,console.log}.
# Exit status: 0 every line passed; 1 a line failed; 77 skipped (not root).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/build/vmtest-deb
modules="aem aem_timer aem_gen aem_proc aem_fd aem_sock"
programs="setup nop timer_oneshot gen src_proc src_fd"

note() { echo "vmtest-deb: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "vmtest-deb: SKIP: installing a package in a chroot needs root" >&2; exit 77; }

version=$(cat "$repo/VERSION")
deb=$("$repo/tools/deb/build.sh")
note "built $deb"

note "building the libaem programs"
make -s -C "$repo/libaem/tests" OUT="$out/progs-all" >/dev/null
rm -rf "$out/progs"
mkdir -p "$out/progs"
for p in $programs; do cp "$out/progs-all/$p" "$out/progs/"; done

# test_line LINE: 0 when the package installs, loads, works and goes away.
test_line() {
	local line=$1 kenv dir rc=0 m ko
	kenv=$("$here/chroot.sh" "$line" --with dkms --env) || return
	eval "$kenv"
	dir=$out/$line
	rm -rf "$dir"
	mkdir -p "$dir/ko"
	note "$line ($RELEASE, $KRELEASE): apt-get install $deb"
	# A package left from an interrupted run would make this an upgrade.
	"$here/chroot.sh" "$line" -- apt-get purge -y -qq aem-dkms >/dev/null 2>&1 || true
	if ! "$here/chroot.sh" "$line" -- apt-get install -y "$deb" >"$dir/apt.log" 2>&1; then
		tail -n 30 "$dir/apt.log" >&2
		note "FAIL: $line: apt-get install failed (log $dir/apt.log)"
		return 1
	fi
	for m in $modules; do
		ko=$(find "$ROOT/lib/modules/$KRELEASE/updates" "$ROOT/usr/lib/modules/$KRELEASE/updates" \
			-name "$m.ko*" 2>/dev/null | head -n 1)
		if [ -z "$ko" ]; then
			note "FAIL: $line: DKMS installed no $m.ko for $KRELEASE (log $dir/apt.log)"
			rc=1
			continue
		fi
		# DKMS compresses like the kernel's own modules; busybox insmod wants them plain.
		case $ko in
		*.xz) xz -dc "$ko" >"$dir/ko/$m.ko" ;;
		*.zst) zstd -qdc "$ko" >"$dir/ko/$m.ko" ;;
		*.gz) gzip -dc "$ko" >"$dir/ko/$m.ko" ;;
		*) cp "$ko" "$dir/ko/$m.ko" ;;
		esac
		local v
		v=$(modinfo -F version "$dir/ko/$m.ko")
		[ "$v" = "$version" ] || { note "FAIL: $line: $m.ko reports version '$v', not $version"; rc=1; }
	done
	[ "$rc" -eq 0 ] || return 1
	printf '%s.ko\n' $modules >"$dir/ko/modules.order"
	note "$line: DKMS built $(ls "$dir/ko" | grep -c '\.ko$') modules ($(modinfo -F vermagic "$dir/ko/aem.ko" | cut -d' ' -f1)); loading them in the VM"
	KDIR=$ROOT$KDIR KERNEL=$KERNEL KMOD_DIR=$dir/ko LOG=$dir/console.log VMTEST_EXPECT="1 min" \
		"$here/run.sh" --no-build --c-tests "$out/progs=deb" || rc=$?
	[ "$rc" -eq 0 ] || { note "FAIL: $line: the packaged modules did not pass in the VM (log $dir/console.log)"; return 1; }
	if ! "$here/chroot.sh" "$line" -- apt-get purge -y aem-dkms >>"$dir/apt.log" 2>&1; then
		note "FAIL: $line: apt-get purge failed (log $dir/apt.log)"
		return 1
	fi
	if find "$ROOT/lib/modules/$KRELEASE" "$ROOT/usr/lib/modules/$KRELEASE" -name 'aem*.ko*' 2>/dev/null | grep -q .; then
		note "FAIL: $line: modules left after purge"
		return 1
	fi
	note "$line: PASS uname -r $(sed -n 's/^VMTEST BEGIN \([^ ]*\).*/\1/p' "$dir/console.log" | head -n 1): installed, loaded, $(sed -n 's/^VMTEST SUMMARY //p' "$dir/console.log" | tail -n 1), purged"
}

all=$(awk '!/^#/ && NF { printf "%s%s", sep, $1; sep = "," }' "$here/lines")
IFS=, read -r -a lines <<<"${KERNELS:-$all}"
fail=0 results=()
for line in "${lines[@]}"; do
	rc=0
	test_line "$line" || rc=$?
	[ "$rc" -eq 77 ] && exit 77
	if [ "$rc" -eq 0 ]; then results+=("$line: PASS"); else results+=("$line: FAIL"); fail=1; fi
done
note "aem-dkms $version: ${results[*]}"
exit "$fail"
