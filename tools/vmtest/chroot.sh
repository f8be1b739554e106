#!/usr/bin/env bash
# tools/vmtest/chroot.sh - a cached Debian chroot per kernel line, for
# building the modules with the compiler and kbuild tools of the release
# whose kernel they target (each release's headers expect its own gcc).
#
# Lines (one place for this table: tools/vmtest/lines):
#   6.1  bookworm   6.12  trixie   7.2  sid
#
# The chroot is made with `debootstrap --variant=minbase` from the Debian
# mirror this machine's own apt configuration names, then gets gcc, make,
# kmod and the release's linux-headers-cloud-amd64; the release's
# linux-image-cloud-amd64 is unpacked (not installed: no initramfs is
# built) into <chroot>/guest for the VM. Groups add packages on demand:
#   debug   linux-source-<line> and what a kernel build needs
#   dkms    dkms (the package test installs aem-dkms with apt)
#
# Usage: tools/vmtest/chroot.sh LINE [--with GROUP]... [--env | -- CMD...]
#   (no command)  create or reuse; print the chroot's directory on stdout
#   --env         print LINE, RELEASE, ROOT (the chroot), KDIR (headers,
#                 a path inside the chroot), KERNEL (the guest's vmlinuz, a
#                 host path) and KRELEASE as shell assignments
#   -- CMD...     run CMD inside the chroot, in a private mount namespace
#                 where /proc, /dev, the repository and /var/cache/aem are
#                 mounted at the same paths as outside (so paths need no
#                 translation)
#
# Environment:
#   AEM_CHROOT_CACHE  cache root (default /var/cache/aem/chroot)
#
# Cache layout, <root>/<release>-<key>/ with key = hash of the release, the
# packages and the functions that make it; DONE is written last, holding
# the versions installed. A chroot is never updated in place: a release
# moves on by a new key (edit the table or the packages) or by deleting it.
# Chroots of old keys stay until deleted (about 1 GB each): remove
# /var/cache/aem/chroot/<release>-<key> when nothing runs in it.
#
# Exit status: 0 ok; 1 failure; 2 usage; 77 not root (a chroot needs root).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${AEM_CHROOT_CACHE:-/var/cache/aem/chroot}
aem_cache=/var/cache/aem

note() { echo "chroot: $*" >&2; }
die() { echo "chroot: $*" >&2; exit 1; }
skip() { echo "chroot: SKIP: $*" >&2; exit 77; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
line=$1
shift
release=$(awk -v l="$line" '$1 == l { print $2 }' "$here/lines")
[ -n "$release" ] || die "unknown kernel line '$line' (known: $(awk '!/^#/ { printf "%s ", $1 }' "$here/lines"))"

groups=() mode=dir cmd=()
while [ $# -gt 0 ]; do
	case "$1" in
	--with) [ $# -ge 2 ] || die "--with needs a group"; groups+=("$2"); shift 2 ;;
	--env) mode=env; shift ;;
	--) shift; mode=run; cmd=("$@"); break ;;
	*) usage >&2; exit 2 ;;
	esac
done

[ "$(id -u)" -eq 0 ] || skip "a build chroot for $line ($release) needs root"

# --- what goes in ----------------------------------------------------------

base_pkgs="gcc make kmod linux-headers-cloud-amd64"
group_pkgs() {
	case "$1" in
	debug) echo "linux-source-$line bc bison flex libelf-dev libssl-dev xz-utils cpio perl" ;;
	dkms) echo "dkms" ;;
	*) die "unknown group '$1' (known: debug dkms)" ;;
	esac
}

# debian_archive KIND: the Debian archive (KIND main) or security archive
# (KIND security) this machine's apt already uses.
debian_archive() {
	local uri
	uri=$(apt-get indextargets --format '$(ORIGIN) $(SUITE) $(REPO_URI)' 2>/dev/null |
		awk -v kind="$1" '$1 == "Debian" && (kind == "security" ? $2 ~ /-security$/ : $2 !~ /-/) { print $3; exit }')
	[ -n "$uri" ] || [ "$1" = security ] ||
		die "no Debian archive in this machine's apt configuration (apt-get indextargets)"
	echo "${uri%/}"
}

# make_chroot DIR: debootstrap plus apt settings: the release with its
# updates and security suites (sid has neither), as its users have it. The
# Release files of a mirror snapshot are dated: apt must not reject them as
# expired.
make_chroot() {
	local dir=$1 mirror security
	mirror=$(debian_archive main)
	security=$(debian_archive security)
	debootstrap --variant=minbase "$release" "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 ||
		{ tail -n 20 "$dir.debootstrap.log" >&2; die "debootstrap $release failed (log $dir.debootstrap.log)"; }
	printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\nAPT::Install-Recommends "false";\n' \
		>"$dir/etc/apt/apt.conf.d/99aem"
	{
		printf 'deb %s %s main\n' "$mirror" "$release"
		if [ "$release" != sid ]; then
			printf 'deb %s %s-updates main\n' "$mirror" "$release"
			[ -z "$security" ] || printf 'deb %s %s-security main\n' "$security" "$release"
		fi
	} >"$dir/etc/apt/sources.list"
	rm -f "$dir"/etc/apt/sources.list.d/*
}

# in_root DIR CMD...: CMD inside DIR with /proc, /dev, the repository and
# the cache bound at their own paths, in a mount namespace of its own, so
# nothing stays mounted when it ends, however it ends.
in_root() {
	local dir=$1
	shift
	mkdir -p "$dir/proc" "$dir/dev" "$dir$repo" "$dir$aem_cache"
	# shellcheck disable=SC2016 # expanded by the inner shell
	unshare -m --propagation private sh -c '
		d=$1 r=$2 c=$3; shift 3
		mount -t proc proc "$d/proc" && mount --rbind /dev "$d/dev" &&
		mount --bind "$r" "$d$r" && mount --bind "$c" "$d$c" &&
		exec chroot "$d" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' \
		in_root "$dir" "$repo" "$aem_cache" "$@"
}

# apt_install DIR PKG...: with one retry after refreshing the index.
apt_install() {
	local dir=$1
	shift
	in_root "$dir" apt-get install -y -qq "$@" >>"$dir.apt.log" 2>&1 || {
		in_root "$dir" apt-get update -qq >>"$dir.apt.log" 2>&1
		in_root "$dir" apt-get install -y -qq "$@" >>"$dir.apt.log" 2>&1
	} || { tail -n 20 "$dir.apt.log" >&2; die "apt-get install $* in $release failed (log $dir.apt.log)"; }
}

# unpack_guest DIR: the release's cloud kernel image, unpacked into
# DIR/guest for the VM (the VM loads no other module). Newer releases
# split the image package: its linux-binary-<release> dependency carries
# the kernel then, as usr/lib/modules/<release>/vmlinuz.
unpack_guest() {
	local dir=$1 image pkgs
	image=$(in_root "$dir" apt-cache depends linux-image-cloud-amd64 |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
	[ -n "$image" ] || die "$release: linux-image-cloud-amd64 names no kernel package"
	pkgs="$image $(in_root "$dir" apt-cache depends "$image" |
		awk -v r="${image#linux-image-}" '$1 == "Depends:" && $2 == "linux-binary-" r { print $2 }')"
	rm -rf "$dir/guest" "$dir/tmp/guest-deb"
	mkdir -p "$dir/tmp/guest-deb"
	chmod 777 "$dir/tmp/guest-deb" # apt downloads as _apt
	in_root "$dir" sh -c "cd /tmp/guest-deb && apt-get download -qq $pkgs" >>"$dir.apt.log" 2>&1 ||
		die "$release: apt-get download $pkgs failed (log $dir.apt.log)"
	local deb
	for deb in "$dir"/tmp/guest-deb/*.deb; do dpkg-deb -x "$deb" "$dir/guest"; done
	rm -rf "$dir/tmp/guest-deb"
	[ -n "$(guest_kernel "$dir")" ] || die "$release: no vmlinuz in $pkgs"
	echo "$pkgs" >"$dir/guest/DONE"
}

# guest_kernel DIR: the unpacked vmlinuz, wherever the release puts it.
guest_kernel() {
	local k
	for k in "$1"/guest/boot/vmlinuz-* "$1"/guest/usr/lib/modules/*/vmlinuz; do
		if [ -e "$k" ]; then echo "$k"; fi
	done | sort -V | tail -n 1
}

key=$({
	echo "$line $release $base_pkgs"
	declare -f make_chroot
} | sha256sum | cut -c1-16)
dir=$cache_root/$release-$key

# --- create (once per key) -------------------------------------------------

create() {
	mkdir -p "$cache_root"
	exec 8>"$dir.lock"
	flock 8
	[ -e "$dir/DONE" ] && return 0
	local t0 t1 t2 t3
	t0=$(date +%s)
	rm -rf "$dir" "$dir.apt.log"
	note "creating the $release chroot for the $line line: $dir (debootstrap, ~1 min)"
	make_chroot "$dir"
	t1=$(date +%s)
	note "installing $base_pkgs in $release"
	in_root "$dir" apt-get update -qq >>"$dir.apt.log" 2>&1 || die "apt-get update in $release failed (log $dir.apt.log)"
	apt_install "$dir" $base_pkgs
	t2=$(date +%s)
	{
		echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ), debootstrap $((t1 - t0))s, packages $((t2 - t1))s"
		in_root "$dir" dpkg-query -W -f='${Package} ${Version}\n' gcc linux-headers-cloud-amd64
	} >"$dir/DONE.tmp"
	mv "$dir/DONE.tmp" "$dir/DONE"
	note "made $dir in $((t2 - t0))s (debootstrap $((t1 - t0))s, packages $((t2 - t1))s)"
}

# add_groups: the extra packages, installed on first use.
add_groups() {
	local g pkgs
	for g in "${groups[@]+"${groups[@]}"}"; do
		[ -e "$dir/.group-$g" ] && continue
		pkgs=$(group_pkgs "$g")
		exec 8>"$dir.lock"
		flock 8
		if [ ! -e "$dir/.group-$g" ]; then
			local t0=$(date +%s)
			note "installing $pkgs in $release"
			apt_install "$dir" $pkgs
			echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $(($(date +%s) - t0))s" >"$dir/.group-$g"
			note "installed group $g in $(($(date +%s) - t0))s"
		fi
		exec 8>&-
	done
}

[ -e "$dir/DONE" ] || create >&2
exec 8>&-
if [ ! -e "$dir/guest/DONE" ]; then
	exec 8>"$dir.lock"
	flock 8
	if [ ! -e "$dir/guest/DONE" ]; then
		t0=$(date +%s)
		unpack_guest "$dir" >&2
		note "unpacked the guest kernel $(cat "$dir/guest/DONE") in $(($(date +%s) - t0))s"
	fi
	exec 8>&-
fi
add_groups >&2

case $mode in
dir) echo "$dir" ;;
env)
	kernel=$(guest_kernel "$dir")
	case $kernel in
	*/vmlinuz) krel=${kernel%/vmlinuz}; krel=${krel##*/} ;;
	*) krel=${kernel##*/vmlinuz-} ;;
	esac
	kdir=/usr/src/linux-headers-$krel
	[ -e "$dir$kdir/Makefile" ] || die "$release: no headers for the guest kernel $krel ($dir$kdir)"
	case $krel in
	"$line".*) ;;
	*) die "$release now ships kernel $krel, not the $line line: update tools/vmtest/lines" ;;
	esac
	printf 'LINE=%s\nRELEASE=%s\nROOT=%s\nKDIR=%s\nKERNEL=%s\nKRELEASE=%s\n' \
		"$line" "$release" "$dir" "$kdir" "$kernel" "$krel"
	;;
run) in_root "$dir" "${cmd[@]}" ;;
esac
