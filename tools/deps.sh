#!/usr/bin/env bash
# Install the Debian packages a make target needs, when running as root.
# Usage: tools/deps.sh GROUP...   (groups: build, bench, fuzz, vm)
# The kernels, their headers and compilers are not host packages: each
# kernel line's come from its release's chroot (tools/vmtest/chroot.sh).
# Without root, prints what is missing and exits 0; the caller decides
# whether to skip (and says so) or fail.
set -euo pipefail

declare -A groups=(
	[build]="gcc make pkg-config"
	[bench]="liburing-dev"
	[fuzz]="clang libclang-rt-14-dev"
	[vm]="qemu-system-x86 busybox-static cpio kmod debootstrap xz-utils"
)

want=()
for g in "$@"; do
	[[ -n "${groups[$g]+x}" ]] || { echo "deps.sh: unknown group '$g'" >&2; exit 2; }
	for p in ${groups[$g]}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || want+=("$p")
	done
done
((${#want[@]})) || exit 0

if [[ $(id -u) -ne 0 ]]; then
	echo "deps.sh: not root; missing Debian packages not installed: ${want[*]}" >&2
	exit 0
fi
echo "deps.sh: installing ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
# A stale package index is the usual cause of a failed install on a fresh machine.
apt-get install -y -qq "${want[@]}" >/dev/null 2>&1 || {
	apt-get update -qq >/dev/null
	apt-get install -y -qq "${want[@]}" >/dev/null
}
