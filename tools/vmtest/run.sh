#!/usr/bin/env bash
# tools/vmtest/run.sh - run test suites against the AEM kernel module in a VM.
#
# Builds the modules in kmod/ against a kernel build tree, packs them with the
# given test binaries into a busybox initramfs, boots a kernel under
# qemu-system-x86_64 with TCG (never KVM: guests hang in it on these
# machines), loads the modules, runs every suite with AEM_BACKEND=kernel,
# reloads a source module while a ring is open, dumps dmesg and powers off.
# The host then reads the console log and fails when a suite failed, a marker
# is missing, or the kernel printed a real report (BUG:, WARNING:, Oops,
# KASAN:, lockdep, kmemleak, general protection ...).
#
# Usage: tools/vmtest/run.sh [options]
#   --c-tests DIR[=NAME]   one suite: every executable file in DIR, run one by
#                          one (exit 0 pass, 77 skip, anything else fail);
#                          the suite is named NAME (default: basename of DIR)
#   --c-test FILE          one executable as a suite of its own
#   --go-test BIN[=PKGDIR] a Go test binary (go test -c) as a suite; runs with
#                          $GO_TEST_ARGS from PKGDIR's copy (testdata/ is
#                          copied when PKGDIR is given)
#   --exec 'NAME=BIN ARGS' a program with arguments as a suite of its own
#                          (e.g. a benchmark: 'bench=build/aembench --backend kernel')
#   --reload MOD           after the suites, unload and reload module MOD while
#                          a ring is open (repeatable)
#   --holder BIN           the program that holds the ring open during
#                          --reload: run as `BIN MOD READY GO`, it creates file
#                          READY once its ring uses MOD, waits for file GO
#                          (created after rmmod + insmod), then checks the ring
#                          and exits 0/77/fail. Without it the harness only
#                          holds /dev/aem open.
#   --modparam 'MOD ARGS'  insmod arguments for module MOD (repeatable)
#   --pre CMD              shell command run in the VM before the suites
#   --post CMD             shell command run in the VM after the suites, e.g.
#                          'echo scan > /sys/kernel/debug/kmemleak; cat /sys/kernel/debug/kmemleak'
#   --file SRC[=DEST]      copy an extra file into the initramfs (DEST absolute)
#   --no-build             do not run make in the module directory
#   --no-modules           boot without loading any module (harness self-test)
#   -h, --help             print this header
#
# Environment:
#   KDIR          kernel build tree (default: newest
#                 /usr/src/linux-headers-*-cloud-amd64)
#   KERNEL        bzImage to boot (default: /boot/vmlinuz-<KDIR's release>,
#                 else the newest /boot/vmlinuz-*-cloud-amd64)
#   AEM_LINE      build the modules inside this kernel line's chroot
#                 (tools/vmtest/chroot.sh; KDIR is then a path inside it);
#                 unset: with the host's make and gcc
#   HEARTBEAT     seconds between progress lines while the VM runs (60)
#   VMTEST_EXPECT the expected VM time for those lines (default "1.5 min")
#   KMOD_DIR      module source directory (default: <repo>/kmod); modules are
#                 loaded in modules.order order
#   EXTRA_APPEND  extra kernel command line
#   TIMEOUT       hard limit for the whole VM run in seconds (default 900)
#   TEST_TIMEOUT  limit for each test program inside the VM (default 300); a
#                 program still running then has every task's kernel stack
#                 printed and is killed
#   GO_TEST_ARGS  arguments for Go test binaries (default: -test.v -test.count=1
#                 -test.short -test.timeout=TEST_TIMEOUT-30s; -test.short scales
#                 down the tests that pin the embedded backend, which the host
#                 runs at full scale and TCG runs 10-20x slower)
#   QEMU_MEM, QEMU_SMP  guest memory and CPUs (default 2G, 2)
#   LOG           console log path (default: <repo>/build/vmtest/console.log)
#   VMTEST_IGNORE extended regex of kernel-log lines never treated as reports
#   VMTEST_BOOT_RETRIES  boots tried again when the guest dies before init,
#                 i.e. before any AEM code ran (default 1); the failed boot's
#                 console is kept as LOG.failed-boot and summarised
#   VERBOSE=1     print the whole console log, not only the summary
#   KEEP=1        keep the initramfs work directory
#
# Exit status: 0 all suites passed and the kernel log is clean; 1 failure;
# 77 skipped (a required tool or file is missing and we are not root).
#
# Markers printed in the VM, parsed here:
#   VMTEST BEGIN / VMTEST END
#   VMTEST INSMOD <mod> rc=<n>
#   VMTEST TEST <suite>/<test> rc=<n>        (one per program in --c-tests)
#   VMTEST SUITE <name> rc=<n>
#   VMTEST RELOAD <mod> rmmod=<n> insmod=<n> holder=<n>
#   VMTEST SUMMARY suites=<n> passed=<n> failed=<n> tests=<n> skipped=<n>
#   VMTEST DMESG BEGIN / VMTEST DMESG END
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

# shellcheck source=lib.sh
. "$here/lib.sh"

die() { echo "vmtest: $*" >&2; exit 1; }
note() { echo "vmtest: $*" >&2; }
skip() { echo "vmtest: SKIP: $*" >&2; exit 77; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

c_tests=() c_single=() go_tests=() execs=() reloads=() modparams=() pres=() posts=() files=()
holder='' build=1 load_modules=1
while [ $# -gt 0 ]; do
	case "$1" in
	--c-tests) c_tests+=("$2"); shift 2 ;;
	--c-test) c_single+=("$2"); shift 2 ;;
	--go-test) go_tests+=("$2"); shift 2 ;;
	--exec) execs+=("$2"); shift 2 ;;
	--reload) reloads+=("$2"); shift 2 ;;
	--holder) holder=$2; shift 2 ;;
	--modparam) modparams+=("$2"); shift 2 ;;
	--pre) pres+=("$2"); shift 2 ;;
	--post) posts+=("$2"); shift 2 ;;
	--file) files+=("$2"); shift 2 ;;
	--no-build) build=0; shift ;;
	--no-modules) load_modules=0; build=0; shift ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

KMOD_DIR=${KMOD_DIR:-$repo/kmod}
TIMEOUT=${TIMEOUT:-900}
TEST_TIMEOUT=${TEST_TIMEOUT:-300}
# Go's own deadline fires before the watchdog's KILL, so a hung Go test
# prints its goroutines and the names of the tests still running.
GO_TEST_ARGS=${GO_TEST_ARGS:--test.v -test.count=1 -test.short -test.timeout=$((TEST_TIMEOUT > 60 ? TEST_TIMEOUT - 30 : TEST_TIMEOUT))s}
QEMU_MEM=${QEMU_MEM:-2G}
QEMU_SMP=${QEMU_SMP:-2}
LOG=${LOG:-$repo/build/vmtest/console.log}
EXTRA_APPEND=${EXTRA_APPEND:-}

# --- host tools ------------------------------------------------------------

# Each entry: command-or-path|debian package. Checked before anything runs so
# a missing piece is named instead of failing half-way.
need_pkgs=()
want() { # want TEST-EXPR PACKAGE
	if ! eval "$1" >/dev/null 2>&1; then need_pkgs+=("$2"); fi
}
want 'command -v qemu-system-x86_64' qemu-system-x86
want 'command -v cpio' cpio
want 'command -v modinfo' kmod
want 'command -v gzip' gzip
want 'command -v make' make
want 'command -v gcc' gcc
want 'test -x /bin/busybox && ! ldd /bin/busybox' busybox-static
if [ -z "${KDIR:-}" ]; then
	want 'compgen -G "/usr/src/linux-headers-*-cloud-amd64/Makefile"' linux-headers-cloud-amd64
fi
if [ -z "${KERNEL:-}" ]; then
	want 'compgen -G "/boot/vmlinuz-*-cloud-amd64"' linux-image-cloud-amd64
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		skip "missing Debian packages: ${need_pkgs[*]} (not root, so not installing them)"
	fi
	note "installing ${need_pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null; then
		apt-get update >/dev/null
		apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null
	fi
fi

newest() { # newest GLOB...: the highest version-sorted existing path
	local f
	for f in "$@"; do [ -e "$f" ] && echo "$f"; done | sort -V | tail -n 1
}

if [ -z "${KDIR:-}" ]; then
	KDIR=$(newest /usr/src/linux-headers-*-cloud-amd64)
	KDIR=${KDIR%/}
fi
# With AEM_LINE, KDIR is a path in the chroot: its headers, or a tree under
# the repository or /var/cache/aem, which the chroot sees at the same path.
kroot=''
[ -z "${AEM_LINE:-}" ] || kroot=$("$here/chroot.sh" "$AEM_LINE")
[ -n "$KDIR" ] && { [ -e "$kroot$KDIR/Makefile" ] || [ -e "$KDIR/Makefile" ]; } ||
	die "no kernel build tree (KDIR=$KDIR${kroot:+ in $kroot})"
if [ -z "${KERNEL:-}" ]; then
	rel=${KDIR##*/linux-headers-}
	if [ -e "/boot/vmlinuz-$rel" ]; then
		KERNEL=/boot/vmlinuz-$rel
	else
		KERNEL=$(newest /boot/vmlinuz-*-cloud-amd64)
	fi
fi
[ -n "$KERNEL" ] && [ -e "$KERNEL" ] || die "no kernel image (KERNEL=$KERNEL)"
if [ ! -r "$KERNEL" ]; then
	# Debian installs vmlinuz mode 0600.
	skip "$KERNEL is not readable by $(id -un); run as root"
fi

# --- modules ---------------------------------------------------------------

modules=()
work_build_log=$(mktemp "${TMPDIR:-/tmp}/vmtest-kbuild.XXXXXX")
trap 'rm -f "$work_build_log"' EXIT
if [ "$load_modules" = 1 ]; then
	if [ "$build" = 1 ]; then
		note "building modules in $KMOD_DIR against $KDIR"
		kmake=(make)
		[ -z "${AEM_LINE:-}" ] || kmake=("$here/chroot.sh" "$AEM_LINE" -- make)
		"${kmake[@]}" -C "$KMOD_DIR" KDIR="$KDIR" >"$work_build_log" 2>&1 ||
			{ cat "$work_build_log" >&2; die "module build failed: ${kmake[*]} -C $KMOD_DIR KDIR=$KDIR"; }
		grep -E 'warning|error' "$work_build_log" >&2 || true
	fi
	# modules.order keeps the Kbuild order: the core first, then the sources
	# that need its symbols.
	if [ -f "$KMOD_DIR/modules.order" ]; then
		while read -r m; do
			m=${m##*/}
			m=${m%.o}
			m=${m%.ko}
			ko=$(find "$KMOD_DIR" -name "$m.ko" -print -quit)
			[ -n "$ko" ] || die "modules.order names $m but no $m.ko was built"
			modules+=("$ko")
		done <"$KMOD_DIR/modules.order"
	else
		while IFS= read -r ko; do modules+=("$ko"); done < <(find "$KMOD_DIR" -name '*.ko' | sort)
	fi
	[ ${#modules[@]} -gt 0 ] || die "no .ko files in $KMOD_DIR"
	vermagic=$(modinfo -F vermagic "${modules[0]}")
	vermagic=${vermagic%% *}
	note "modules: $(for m in "${modules[@]}"; do printf '%s ' "${m##*/}"; done)(vermagic $vermagic)"
fi

# --- initramfs -------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/vmtest.XXXXXX")
cleanup() {
	heartbeat_stop
	rm -f "$work_build_log"
	if [ "${KEEP:-0}" = 1 ]; then note "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,root,etc,lib/modules,suites}
cp /bin/busybox "$root/bin/busybox"

# copy_libs BIN: put every shared object BIN needs, and the loader, at the
# same path in the initramfs. ldd honours LD_LIBRARY_PATH, so a libaem.so
# found through it is copied too.
copy_libs() {
	local bin=$1 line lib
	if ! ldd "$bin" >/dev/null 2>&1; then
		return 0 # static
	fi
	while read -r line; do
		case "$line" in
		*"not found"*) die "$bin: shared library not found: $line" ;;
		*"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;
		/*) lib=${line%% (*} ;;
		*) continue ;;
		esac
		if [ ! -e "$root$lib" ]; then
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		fi
	done < <(ldd "$bin")
}

# add_exec SRC DESTDIR: copy one program and its libraries.
add_exec() {
	mkdir -p "$root$2"
	cp -L "$1" "$root$2/"
	chmod +x "$root$2/${1##*/}"
	copy_libs "$1"
}

suites_sh=$root/suites.sh
: >"$suites_sh"

for spec in "${c_tests[@]+"${c_tests[@]}"}"; do
	dir=${spec%%=*}
	name=${dir%/}
	name=${name##*/}
	[ "$spec" != "$dir" ] && name=${spec#*=}
	[ -d "$dir" ] || die "--c-tests $dir: not a directory"
	n=0
	while IFS= read -r f; do
		add_exec "$f" "/suites/$name"
		n=$((n + 1))
	done < <(find "$dir" -maxdepth 1 -type f -perm -u+x ! -name '*.so*' ! -name '*.o' | sort)
	[ "$n" -gt 0 ] || die "--c-tests $dir: no executables"
	echo "run_dir_suite $name" >>"$suites_sh"
done
for f in "${c_single[@]+"${c_single[@]}"}"; do
	[ -x "$f" ] || die "--c-test $f: not executable"
	name=${f##*/}
	add_exec "$f" "/suites/$name"
	echo "run_suite $name /suites/$name/$name" >>"$suites_sh"
done
for spec in "${go_tests[@]+"${go_tests[@]}"}"; do
	bin=${spec%%=*}
	[ -x "$bin" ] || die "--go-test $bin: not executable"
	name=${bin##*/}
	name=${name%.test}
	add_exec "$bin" "/suites/$name"
	if [ "$spec" != "$bin" ] && [ -d "${spec#*=}/testdata" ]; then
		cp -r "${spec#*=}/testdata" "$root/suites/$name/"
	fi
	echo "run_suite $name /suites/$name/${bin##*/} $GO_TEST_ARGS" >>"$suites_sh"
done
for spec in "${execs[@]+"${execs[@]}"}"; do
	name=${spec%%=*}
	cmd=${spec#*=}
	bin=${cmd%% *}
	rest=''
	[ "$cmd" != "$bin" ] && rest=${cmd#* }
	[ -x "$bin" ] && [ "$name" != "$spec" ] || die "--exec $spec: want NAME=BIN [ARGS]"
	add_exec "$bin" "/suites/$name"
	echo "run_suite $name /suites/$name/${bin##*/} $rest" >>"$suites_sh"
done
if [ -n "$holder" ]; then
	add_exec "$holder" /suites/holder
fi
for spec in "${files[@]+"${files[@]}"}"; do
	src=${spec%%=*}
	dest=/suites/files/${src##*/}
	[ "$spec" != "$src" ] && dest=${spec#*=}
	mkdir -p "$root$(dirname "$dest")"
	cp -L "$src" "$root$dest"
done

: >"$root/etc/modules.list"
for ko in "${modules[@]+"${modules[@]}"}"; do
	cp "$ko" "$root/lib/modules/"
	echo "${ko##*/}" >>"$root/etc/modules.list"
done
: >"$root/etc/modparams"
for mp in "${modparams[@]+"${modparams[@]}"}"; do
	echo "$mp" >>"$root/etc/modparams"
done
printf '%s\n' "${reloads[@]+"${reloads[@]}"}" >"$root/etc/reloads"
printf '%s\n' "${pres[@]+"${pres[@]}"}" >"$root/etc/pre.sh"
printf '%s\n' "${posts[@]+"${posts[@]}"}" >"$root/etc/post.sh"
{
	printf 'TEST_TIMEOUT=%s\n' "$TEST_TIMEOUT"
	printf 'HOLDER=%s\n' "${holder:+/suites/holder/${holder##*/}}"
} >"$root/etc/vmtest.conf"

cp "$here/init" "$root/init"
chmod +x "$root/init"

initrd=$work/initrd.cpio.gz
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$initrd"
note "initramfs $(du -h "$initrd" | cut -f1), kernel $KERNEL"

# --- boot ------------------------------------------------------------------

mkdir -p "$(dirname "$LOG")"
# tsc=unstable: under TCG on a loaded host the TSC drifts, and the clocksource
# watchdog's switch away from it mid-run patches kernel text (static keys),
# which has crashed guests (an int3 oops in sched_clock_cpu); decided at boot,
# nothing is patched later.
append="console=ttyS0,115200 rdinit=/init panic=-1 printk.time=1 loglevel=5 tsc=unstable $EXTRA_APPEND"
# boot_vm: one run of the guest; sets qemu_rc and elapsed.
boot_vm() {
	: >"$LOG"
	start=$(date +%s)
	heartbeat_start vmtest "VM on ${vermagic:-$KERNEL}" "${VMTEST_EXPECT:-1.5 min}" "$LOG" '^--- [^ ]+: |^VMTEST (INSMOD|SUITE|RELOAD)'
	set +e
	timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
		-accel tcg -cpu max -m "$QEMU_MEM" -smp "$QEMU_SMP" \
		-nographic -no-reboot -net none -monitor none -serial "file:$LOG" \
		-kernel "$KERNEL" -initrd "$initrd" -append "$append" </dev/null >"$work/qemu.out" 2>&1
	qemu_rc=$?
	set -e
	heartbeat_stop
	elapsed=$(($(date +%s) - start))
	tr -d '\r' <"$LOG" >"$LOG.tmp" && mv "$LOG.tmp" "$LOG"
}

# boot_story: what a guest that never reached init left behind, in a few
# lines (qemu's own words, the console's last lines).
boot_story() {
	echo "the guest never started init: qemu exit status $qemu_rc after ${elapsed}s, $(wc -l <"$LOG") console lines"
	[ -s "$work/qemu.out" ] && head -n 5 "$work/qemu.out" | sed 's/^/qemu: /'
	echo "host: initramfs $(du -h "$initrd" | cut -f1); $(df -h "$work" | awk 'NR == 2 { print $4 " free on " $6 }'); $(free -m | awk '/^Mem:/ { print $7 " MiB memory available" }'); load $(cut -d' ' -f1-3 /proc/loadavg)"
	grep -E 'Kernel panic|not syncing|BUG:|Oops|KASAN:|Out of memory|[Uu]nable to|failed|error' "$LOG" |
		tail -n 5 | sed 's/^/console (problems): /'
	tail -n 6 "$LOG" | sed 's/^/console (last lines): /'
}

# A guest that dies before init has run no AEM code (init loads the
# modules): the host or the emulator failed it. Such a boot is tried again
# (VMTEST_BOOT_RETRIES times, default 1) and the failed one is reported.
boot_vm
tries=${VMTEST_BOOT_RETRIES:-1}
while [ "$tries" -gt 0 ] && [ "$qemu_rc" -ne 124 ] && [ "$qemu_rc" -ne 137 ] &&
	! grep -q '^VMTEST BEGIN' "$LOG"; do
	tries=$((tries - 1))
	cp "$LOG" "$LOG.failed-boot"
	boot_story | sed 's/^/vmtest: /' >&2
	note "booting again (console of the failed boot: $LOG.failed-boot)"
	boot_vm
done

# --- verdict ---------------------------------------------------------------

if [ "${VERBOSE:-0}" = 1 ]; then
	cat "$LOG"
fi
fail=0 reasons=()
bad() { echo "vmtest: FAIL: $*" >&2; fail=1; reasons+=("$*"); }

if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
	bad "VM did not power off within ${TIMEOUT}s"
elif [ "$qemu_rc" -ne 0 ]; then
	bad "qemu exited with $qemu_rc: $(head -c 2000 "$work/qemu.out")"
fi
grep -q '^VMTEST BEGIN' "$LOG" || bad "init never started (no VMTEST BEGIN in $LOG)"
grep -q '^VMTEST END' "$LOG" || bad "init did not finish (no VMTEST END in $LOG)"
grep -q '^VMTEST DMESG END' "$LOG" || bad "no dmesg dump in $LOG"

while read -r _ _ mod rc; do
	[ "$rc" = rc=0 ] || bad "insmod $mod: $rc"
done < <(grep '^VMTEST INSMOD ' "$LOG")
if [ "$load_modules" = 1 ]; then
	got=$(grep -c '^VMTEST INSMOD ' "$LOG" || true)
	# init leaves a source's second implementation (aem_fd_v2.ko) to the tests.
	want=0
	for ko in "${modules[@]}"; do
		case ${ko##*/} in *_v[0-9]*.ko) ;; *) want=$((want + 1)) ;; esac
	done
	[ "$got" -eq "$want" ] || bad "expected $want insmod markers, saw $got"
fi

# Every suite we packed must report exactly once.
expected=()
while read -r _ name _; do expected+=("$name"); done <"$suites_sh"
for r in "${reloads[@]+"${reloads[@]}"}"; do expected+=("reload-$r"); done
for name in "${expected[@]+"${expected[@]}"}"; do
	line=$(grep "^VMTEST SUITE $name rc=" "$LOG" | tail -n 1 || true)
	if [ -z "$line" ]; then
		bad "suite $name: no result marker"
	elif [ "${line##*rc=}" != 0 ]; then
		bad "suite $name: ${line##* }"
	fi
done
grep '^VMTEST TEST .* rc=' "$LOG" | grep -v -E ' rc=(0|77)$' | sed 's/^/vmtest:   failed: /' >&2 || true
grep '^VMTEST RELOAD ' "$LOG" | sed 's/^/vmtest:   /' >&2 || true

# Kernel reports: only lines with a printk timestamp, so test output that
# happens to say "BUG:" is not mistaken for the kernel's.
report_re='^(\S+: )?BUG:|^WARNING:|^------------\[ cut here \]|Oops|^KASAN:|^UBSAN:|possible circular locking|inconsistent lock state|possible recursive locking|suspicious RCU usage|sleeping function called from invalid context|^unreferenced object|general protection|^Kernel panic|kernel BUG at|^INFO: task .* blocked for more than|refcount_t: |list_(add|del) corruption|^Call Trace:'
# A failed allocation's own dump (warn_alloc: "page allocation failure" or
# "vmalloc error", then a stack trace up to </TASK>) is the kernel saying
# that memory ran out, which fault injection makes happen on purpose: its
# trace is not a report. A report inside it still has its own header.
drop_alloc_dumps() {
	awk '/page allocation failure: |vmalloc error: / { skip = 1; next }
	     skip && /<\/TASK>/ { skip = 0; next }
	     skip && /Call Trace:|<TASK>|^ *[? ]*[A-Za-z_.0-9]+\+0x|^(CPU|Hardware name|Workqueue|Tainted): / { next }
	     { skip = 0; print }'
}
# Reports logged before init said VMTEST BEGIN come from firmware and early
# boot, before any AEM module exists (a KASAN report from an early
# interrupt under TCG was seen once): shown, not counted. Everything from
# VMTEST BEGIN on -- module loads included -- is.
strip_ts() { sed -n 's/^\[ *[0-9]\{1,\}\.[0-9]\{1,\}\] //p'; }
early=$(sed '/^VMTEST BEGIN/,$d' "$LOG" | strip_ts | grep -E "$report_re" || true)
if [ -n "$early" ]; then
	note "kernel reports during early boot, before init and any AEM module (not counted):"
	sed 's/^/vmtest:   | /' <<<"$early" >&2
fi
reports=$(sed -n '/^VMTEST BEGIN/,$p' "$LOG" | strip_ts | drop_alloc_dumps | grep -n -E "$report_re" || true)
if [ -n "${VMTEST_IGNORE:-}" ] && [ -n "$reports" ]; then
	reports=$(grep -v -E "$VMTEST_IGNORE" <<<"$reports" || true)
fi
if [ -n "$reports" ]; then
	bad "kernel reports in $LOG:"
	# The dmesg dump holds every report whole; the console alone is all we
	# have when the kernel died before the dump.
	if grep -q '^VMTEST DMESG END' "$LOG"; then
		src=$(sed -n '/^VMTEST DMESG BEGIN/,/^VMTEST DMESG END/p' "$LOG")
	else
		src=$(cat "$LOG")
	fi
	sed -n 's/^\[ *[0-9]\{1,\}\.[0-9]\{1,\}\] //p' <<<"$src" |
		awk -v re="$report_re" '$0 ~ re { n = 40 } n > 0 { print "vmtest:   | " $0; n--; if (++total >= 400) exit }' >&2
fi

summary=$(grep '^VMTEST SUMMARY' "$LOG" | tail -n 1 || true)
note "${summary:-no summary} (${elapsed}s, log $LOG)"
if [ "$fail" -ne 0 ]; then
	if [ "${VERBOSE:-0}" != 1 ]; then
		note "last 40 lines of the console:"
		tail -n 40 "$LOG" | sed 's/^/vmtest:   /' >&2
	fi
	# What failed goes last: a CI log is often read from its tail.
	# The last lines each failed test printed (its FAIL line and seed among them).
	awk '/^--- [^ ]+: / { n = 0; delete buf; next }
	     /^VMTEST TEST .* rc=/ { if ($0 !~ / rc=(0|77)$/) { print "--- output of " $3 " (last lines):"; for (i = (n > 30 ? n - 30 : 0); i < n; i++) print buf[i] } n = 0; delete buf; next }
	     { buf[n++] = $0 }' "$LOG" | head -n 200 | sed 's/^/vmtest:   | /' >&2 || true
	note "what failed:"
	failure_digest "$LOG" | head -n 200 | sed 's/^/vmtest:   | /' >&2 || true
	for r in "${reasons[@]}"; do note "FAIL: $r"; done
	# A CI log is read from its tail: a guest that never reached init
	# says why there.
	if ! grep -q '^VMTEST BEGIN' "$LOG"; then
		boot_story | sed 's/^/vmtest: /' >&2
	fi
	note "${summary:-no summary} (${elapsed}s, log $LOG)"
	exit 1
fi
note "PASS"
