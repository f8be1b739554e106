#!/usr/bin/env bash
# tools/vmtest/debug-kernel.sh - build (once) a KASAN + lockdep + kmemleak
# kernel from Debian's linux-source-<line> for `make vmtest-debug`.
#
# The line defaults to the newest in tools/vmtest/lines (7.2, from sid):
# API changes bite there first. A line of another release than the host's
# is configured and built inside that release's chroot (tools/vmtest/chroot.sh,
# group debug) with its own gcc; the tree lives in the cache below, which
# the chroot sees at the same path.
#
# The kernel is x86_64_defconfig plus tools/vmtest/debug.config, built in
# place in a cache directory keyed by a hash of the source package version,
# the compiler version, the fragment and the functions below that configure
# and build it. A second run finds the finished tree and only prints where it
# is. The build runs under `nice -n 19` with -j$JOBS (default 2): the machine
# is shared.
#
# Usage: tools/vmtest/debug-kernel.sh [--line LINE] [--check] [--env] [--rebuild]
#   --line LINE   the kernel line (default: AEM_DEBUG_LINE, else the newest)
#   (no option)   build or reuse; print the cache directory on stdout
#   --env         print KERNEL=<bzImage>, KDIR=<tree> and AEM_LINE=<line>
#                 (empty when the host builds it) lines instead
#   --check       then prove the kernel: build a canary module against the
#                 tree, boot it with a busybox initramfs under TCG, check that
#                 KASAN, lockdep and kmemleak are on, insmod/rmmod the canary,
#                 scan kmemleak and report boot-to-init time
#   --rebuild     discard the cached tree for this key first
#   --canary DIR  write the canary module's source into DIR and exit
#   -h, --help    print this header
#
# Environment:
#   AEM_DEBUG_KERNEL_CACHE  cache root (default /var/cache/aem/debug-kernel)
#   JOBS                    make -j (default 2)
#   AEM_DEBUG_LINE          the kernel line when --line is not given
#   HEARTBEAT               seconds between progress lines while building (60)
#
# Cache layout, <root>/<key>/:
#   linux/      the configured and built source tree (KDIR for external modules)
#   bzImage     the kernel to boot
#   build.log   make's output
#   DONE        written last: key inputs and build time; its absence means the
#               tree is unfinished and the next run resumes the build
#
# Exit status: 0 ok; 1 failure; 77 not root and something must be installed
# or built.
#
# Measured on the 2-core development machine, shared with other builds and
# VMs (load average 4-15), gcc 12.2, linux-source-6.1 6.1.192-2:
#   cold build   17 min (1025 s make bzImage modules_prepare modules, nice 19,
#                -j2, plus 14 s unpack and configure); 2.1 GB tree
#   cached run   0.04 s (prints the cached directory)
#   --check      38 s wall; the kernel reaches /init after 15 s of guest
#                uptime at load 5, 27-45 s at load 13-15
#   kmemleak     one scan takes ~20 s per GiB of guest memory under TCG
# and for linux-source-7.2 7.2.13-1 in the sid chroot, gcc 16.2:
#   cold build   3953 s (make 3857 s) at load 10-13 beside another kernel
#                build; 24 CPU-minutes
#   vmtest-debug 519 s a run
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/debug.config
cache_root=${AEM_DEBUG_KERNEL_CACHE:-/var/cache/aem/debug-kernel}
JOBS=${JOBS:-2}
# shellcheck source=lib.sh
. "$here/lib.sh"

note() { echo "debug-kernel: $*" >&2; }
die() { echo "debug-kernel: $*" >&2; exit 1; }
skip() { echo "debug-kernel: SKIP: $*" >&2; exit 77; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

# --- canary module ---------------------------------------------------------

# write_canary DIR: a trivial external module that proves the tree builds
# modules the kernel loads, and can be told to misbehave so the harness's
# report detection is tested too: leak=1 leaks a kmalloc, oob=1 reads one
# byte past a kmalloc, sleep=1 makes a GFP_KERNEL allocation under a spinlock,
# abba=1 takes two mutexes in both orders (lockdep's circular-locking report).
write_canary() {
	mkdir -p "$1"
	cat >"$1/Kbuild" <<-'EOF'
		obj-m := aem_canary.o
	EOF
	# printf, not a <<- here-document: make needs the recipes' tabs.
	printf '%s\n' 'KDIR ?= /lib/modules/$(shell uname -r)/build' 'all:' \
		'	$(MAKE) -C $(KDIR) M=$(CURDIR) modules' 'clean:' \
		'	$(MAKE) -C $(KDIR) M=$(CURDIR) clean' >"$1/Makefile"
	cat >"$1/aem_canary.c" <<-'EOF'
		// SPDX-License-Identifier: GPL-2.0
		/* aem_canary: a module that misbehaves on request, to prove that the
		 * debug kernel's checkers fire and the harness sees their reports. */
		#include <linux/module.h>
		#include <linux/slab.h>
		#include <linux/spinlock.h>
		#include <linux/mutex.h>

		static bool leak, oob, sleep, abba;
		module_param(leak, bool, 0444);
		module_param(oob, bool, 0444);
		module_param(sleep, bool, 0444);
		module_param(abba, bool, 0444);

		static DEFINE_SPINLOCK(canary_lock);
		static DEFINE_MUTEX(canary_a);
		static DEFINE_MUTEX(canary_b);
		static void *keep;
		/* volatile: the compiler must not prove the index out of range. */
		static volatile size_t canary_len = 24;

		static int __init canary_init(void)
		{
			char *p = kmalloc(canary_len, GFP_KERNEL);

			if (!p)
				return -ENOMEM;
			memset(p, 0x5a, canary_len);
			if (oob)
				pr_info("aem_canary: byte past the end %d\n", p[canary_len]);
			if (sleep) {
				void *q;

				spin_lock(&canary_lock);
				q = kmalloc(8, GFP_KERNEL);	/* may sleep: atomic-sleep report */
				spin_unlock(&canary_lock);
				kfree(q);
			}
			if (abba) {
				/* One thread is enough: lockdep judges the orders, not a deadlock. */
				mutex_lock(&canary_a);
				mutex_lock(&canary_b);
				mutex_unlock(&canary_b);
				mutex_unlock(&canary_a);
				mutex_lock(&canary_b);
				mutex_lock(&canary_a);
				mutex_unlock(&canary_a);
				mutex_unlock(&canary_b);
			}
			if (leak)
				p = NULL;	/* drop the only reference */
			keep = p;
			pr_info("aem_canary: loaded leak=%d oob=%d sleep=%d abba=%d\n",
				leak, oob, sleep, abba);
			return 0;
		}

		static void __exit canary_exit(void)
		{
			kfree(keep);
			pr_info("aem_canary: unloaded\n");
		}

		module_init(canary_init);
		module_exit(canary_exit);
		MODULE_LICENSE("GPL");
		MODULE_DESCRIPTION("AEM vmtest-debug canary");
	EOF
}

# --- options ---------------------------------------------------------------

mode=dir check=0 rebuild=0 line=${AEM_DEBUG_LINE:-}
while [ $# -gt 0 ]; do
	case "$1" in
	--line) [ $# -ge 2 ] || die "--line needs a kernel line"; line=$2; shift 2 ;;
	--env) mode=env; shift ;;
	--check) check=1; shift ;;
	--rebuild) rebuild=1; shift ;;
	--canary) [ $# -ge 2 ] || die "--canary needs a directory"; write_canary "$2"; exit 0 ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

# --- line ------------------------------------------------------------------

[ -n "$line" ] || line=$(awk '!/^#/ && NF { l = $1 } END { print l }' "$here/lines")
release=$(awk -v l="$line" '$1 == l { print $2 }' "$here/lines")
[ -n "$release" ] || die "unknown kernel line '$line' (see $here/lines)"
srcpkg=linux-source-$line
# The host's own release builds with the host's tools, as it always has;
# any other release in its chroot. chroot_root is empty for the host.
chroot_root=''
if [ "$release" != "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" ]; then
	rc=0
	chroot_root=$("$here/chroot.sh" "$line" --with debug) || rc=$?
	[ "$rc" -eq 0 ] || exit "$rc"
fi
tarball=$chroot_root/usr/src/$srcpkg.tar.xz

# expected_build: for the progress lines, what the last finished build of
# the same source took in this cache, else the figure measured for the
# line (the header).
expected_build() {
	local last
	last=$(grep -l "^source: $srcpkg " "$cache_root"/*/DONE 2>/dev/null | xargs -r ls -t | head -n 1)
	if [ -n "$last" ]; then
		sed -n 's/^built: .*, build \([0-9]*\)s.*/\1/p' "$last" | awk '{ printf "%d min (last build here)", ($1 + 59) / 60 }'
	else
		case $line in
		6.1) echo "17 min (measured; see the header)" ;;
		*) echo "? (no earlier build of $srcpkg here; 6.1's took 17 min)" ;;
		esac
	fi
}

# inside CMD...: run CMD with the build tools of the line's release. The
# functions below are passed along by their text.
inside() {
	if [ -z "$chroot_root" ]; then
		"$@"
	else
		"$here/chroot.sh" "$line" -- bash -c "$(declare -f note configure_kernel build_kernel)
JOBS=$JOBS; \"\$@\"" inside "$@"
	fi
}

# --- packages --------------------------------------------------------------

need=()
want() { # want TEST-EXPR PACKAGE
	if ! eval "$1" >/dev/null 2>&1; then need+=("$2"); fi
}
if [ -z "$chroot_root" ]; then
	want "test -r $tarball" "$srcpkg"
	want 'command -v gcc' gcc
	want 'command -v make' make
	want 'command -v bc' bc
	want 'command -v bison' bison
	want 'command -v flex' flex
	want 'test -e /usr/include/libelf.h' libelf-dev
	want 'test -e /usr/include/openssl/ssl.h' libssl-dev
	want 'command -v perl' perl
fi
want 'command -v xz' xz-utils
want 'command -v cpio' cpio
want 'command -v modinfo' kmod
want 'command -v flock' util-linux
if [ "$check" = 1 ]; then
	want 'command -v qemu-system-x86_64' qemu-system-x86
	want 'test -x /bin/busybox && ! ldd /bin/busybox' busybox-static
fi
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || skip "missing Debian packages: ${need[*]} (not root, so not installing them)"
	note "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
		# A stale package index is the usual cause on a fresh machine.
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
fi

# --- configure and build ---------------------------------------------------
# Only these two functions (with the fragment, the source version and the
# compiler) feed the cache key: editing the rest of this script does not
# throw away a 20-minute build.

# configure_kernel TREE FRAGMENT: x86_64_defconfig + FRAGMENT, then check
# that every line of FRAGMENT survived olddefconfig (a dependency that is
# not met silently drops an option otherwise).
configure_kernel() {
	local tree=$1 frag=$2 line sym val bad=0
	make -C "$tree" -s x86_64_defconfig
	(cd "$tree" && scripts/kconfig/merge_config.sh -m .config "$frag") >/dev/null
	make -C "$tree" -s olddefconfig
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			grep -qxF "$line" "$tree/.config" ||
				{ note "config: wanted $line, got: $(grep -E "^(# )?${line%%=*}[= ]" "$tree/.config" || echo unset)"; bad=1; } ;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }
			sym=${sym%% *}
			if val=$(grep -E "^$sym=" "$tree/.config"); then
				note "config: wanted $sym off, got $val (something selects it)"
				bad=1
			fi ;;
		esac
	done <"$frag"
	return $bad
}

# build_kernel TREE LOG: the image, and what an external module build needs:
# modules_prepare (generated headers, modpost, objtool) and Module.symvers,
# which `make modules` writes from vmlinux's exports (the fragment leaves two
# tiny =m options, so that costs seconds).
build_kernel() {
	local tree=$1 log=$2
	nice -n 19 make -C "$tree" -j"$JOBS" bzImage >>"$log" 2>&1 &&
		nice -n 19 make -C "$tree" -j"$JOBS" modules_prepare modules >>"$log" 2>&1 &&
		test -s "$tree/Module.symvers"
}

pkgver=$(inside dpkg-query -W -f='${Version}' "$srcpkg" 2>/dev/null || stat -c %Y "$tarball")
gccver=$(inside gcc -dumpfullversion)
key=$({
	echo "$srcpkg $pkgver"
	echo "$gccver"
	cat "$fragment"
	declare -f configure_kernel build_kernel
} | sha256sum | cut -c1-16)
dir=$cache_root/$key
tree=$dir/linux

emit() {
	if [ "$mode" = env ]; then
		printf 'KERNEL=%s\nKDIR=%s\nAEM_LINE=%s\n' "$dir/bzImage" "$tree" "${chroot_root:+$line}"
	else
		echo "$dir"
	fi
}

build_if_needed() {
	if [ "$rebuild" = 0 ] && [ -e "$dir/DONE" ]; then
		note "reusing cached debug kernel $dir ($(sed -n 's/^built: //p' "$dir/DONE"))"
		return 0
	fi
	[ "$(id -u)" -eq 0 ] || [ -w "$cache_root" ] ||
		skip "no cached debug kernel at $dir and $cache_root is not writable (not root)"
	mkdir -p "$cache_root"
	# One builder per key; a second caller waits and then reuses.
	exec 9>"$cache_root/$key.lock"
	if ! flock -n 9; then
		note "another build of $key is running; waiting for it"
		flock 9
	fi
	if [ "$rebuild" = 1 ]; then
		rm -rf "$dir"
		rebuild=0
	elif [ -e "$dir/DONE" ]; then
		note "reusing cached debug kernel $dir ($(sed -n 's/^built: //p' "$dir/DONE"))"
		return 0
	fi
	mkdir -p "$dir"
	local t0 t1 t2
	t0=$(date +%s)
	if [ ! -e "$dir/.unpacked" ]; then
		note "unpacking $tarball ($srcpkg $pkgver) into $dir"
		rm -rf "$tree" "$dir/$srcpkg"
		tar -xJf "$tarball" -C "$dir"
		mv "$dir/$srcpkg" "$tree"
		touch "$dir/.unpacked"
	fi
	note "configuring: x86_64_defconfig + $fragment"
	inside configure_kernel "$tree" "$fragment" || die "the fragment does not apply cleanly (see above)"
	t1=$(date +%s)
	note "building bzImage + modules_prepare (nice -n 19, -j$JOBS, gcc $gccver; log $dir/build.log); this takes a while"
	heartbeat_start debug-kernel "building $srcpkg" "$(expected_build)" "$dir/build.log" '^  [A-Z]'
	local brc=0
	inside build_kernel "$tree" "$dir/build.log" || brc=$?
	heartbeat_stop
	if [ "$brc" -ne 0 ]; then
		grep -E 'error|Error' "$dir/build.log" | tail -n 20 >&2 || true
		tail -n 20 "$dir/build.log" >&2
		die "kernel build failed (log $dir/build.log)"
	fi
	cp "$tree/arch/x86/boot/bzImage" "$dir/bzImage"
	t2=$(date +%s)
	{
		echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ), build $((t2 - t1))s, unpack+config $((t1 - t0))s, -j$JOBS"
		echo "source: $srcpkg $pkgver"
		echo "gcc: $gccver${chroot_root:+ (in the $release chroot)}"
		echo "release: $(make -C "$tree" -s kernelrelease)"
	} >"$dir/DONE"
	note "built $dir in $((t2 - t0))s (build $((t2 - t1))s)"
}

# Only the result goes to stdout; make and friends talk on stderr.
build_if_needed >&2

# --- check -----------------------------------------------------------------

# check_kernel: boot the kernel with a throwaway busybox initramfs and load
# the canary built against the tree.
check_kernel() {
	local work rc t0 t1 log boot_s
	# Under the cache: a chroot build of the canary must see it.
	work=$(mktemp -d "$cache_root/check.XXXXXX")
	# shellcheck disable=SC2064 # expand now: $work is local
	trap "rm -rf '$work'" EXIT
	write_canary "$work/canary"
	note "building the canary module against $tree"
	inside make -C "$work/canary" KDIR="$tree" >"$work/canary.log" 2>&1 ||
		{ cat "$work/canary.log" >&2; die "canary module build failed"; }
	grep -i warning "$work/canary.log" >&2 || true
	local root=$work/root
	mkdir -p "$root"/{bin,dev,proc,sys,tmp}
	cp /bin/busybox "$root/bin/busybox"
	cp "$work/canary/aem_canary.ko" "$root/"
	cat >"$root/init" <<-'EOF'
		#!/bin/busybox sh
		/bin/busybox --install -s /bin
		mount -t proc proc /proc
		mount -t sysfs sysfs /sys
		mount -t devtmpfs devtmpfs /dev
		mount -t debugfs debugfs /sys/kernel/debug
		echo "CHECK INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
		insmod /aem_canary.ko; echo "CHECK INSMOD rc=$?"
		rmmod aem_canary; echo "CHECK RMMOD rc=$?"
		sleep 6
		echo scan >/sys/kernel/debug/kmemleak; echo "CHECK SCAN rc=$?"
		echo "CHECK KMEMLEAK BEGIN"; cat /sys/kernel/debug/kmemleak; echo "CHECK KMEMLEAK END"
		echo "CHECK DMESG BEGIN"; dmesg; echo "CHECK DMESG END"
		poweroff -f
	EOF
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
	log=$work/console.log
	note "booting $dir/bzImage under TCG"
	t0=$(date +%s.%N)
	set +e
	timeout --kill-after=10 900 qemu-system-x86_64 -accel tcg -cpu max -m 2G -smp 2 \
		-nographic -no-reboot -net none -monitor none -serial "file:$log" \
		-kernel "$dir/bzImage" -initrd "$work/initrd.gz" \
		-append "console=ttyS0,115200 rdinit=/init panic=-1 loglevel=5" </dev/null >"$work/qemu.out" 2>&1
	rc=$?
	set -e
	t1=$(date +%s.%N)
	tr -d '\r' <"$log" >"$work/c" && mv "$work/c" "$log"
	cp "$log" "${TMPDIR:-/tmp}/debug-kernel-check.console.log"
	local fail=0
	[ "$rc" -eq 0 ] || { note "FAIL: qemu exited $rc"; fail=1; }
	boot_s=$(sed -n 's/^CHECK INIT uptime=//p' "$log")
	[ -n "$boot_s" ] || { note "FAIL: init never ran"; fail=1; }
	local want_line
	for want_line in 'KernelAddressSanitizer initialized' 'Lock dependency validator' \
		'Kernel memory leak detector initialized' 'CHECK INSMOD rc=0' 'CHECK RMMOD rc=0' \
		'CHECK SCAN rc=0' 'aem_canary: loaded' 'aem_canary: unloaded'; do
		if grep -qF "$want_line" "$log"; then
			note "  ok: $(grep -m1 -F "$want_line" "$log" | sed 's/^\[ *[0-9.]*\] //')"
		else
			note "FAIL: no '$want_line' in the console log"
			fail=1
		fi
	done
	if grep -q 'kmemleak: Kernel memory leak detector disabled' "$log"; then
		note "FAIL: kmemleak disabled itself"
		fail=1
	fi
	local leaks
	leaks=$(sed -n '/^CHECK KMEMLEAK BEGIN/,/^CHECK KMEMLEAK END/p' "$log" | grep -c '^unreferenced object' || true)
	note "  kmemleak after boot + canary: $leaks unreferenced objects"
	note "  boot to init: ${boot_s:-?}s guest uptime; whole VM run $(echo "$t1 - $t0" | bc)s wall"
	note "  console log: ${TMPDIR:-/tmp}/debug-kernel-check.console.log"
	[ "$fail" -eq 0 ] || die "check failed"
	note "check passed"
}

if [ "$check" = 1 ]; then
	check_kernel >&2
fi
emit
