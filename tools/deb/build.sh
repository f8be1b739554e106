#!/usr/bin/env bash
# tools/deb/build.sh - `make deb`: the Debian DKMS package of the modules,
# build/aem-dkms_<VERSION>_all.deb.
#
# It installs the module sources (kmod/, with VERSION) as
# /usr/src/aem-<VERSION>; on install DKMS builds and installs the modules
# for every kernel whose headers are present (and again for each kernel
# installed later), on removal it removes them. Needs only dpkg-deb.
#
# Usage: tools/deb/build.sh [OUTDIR]   (default <repo>/build)
# Prints the package's path on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
outdir=${1:-$repo/build}
version=$(cat "$repo/VERSION")
name=aem
pkg=aem-dkms

# shellcheck source=../vmtest/lib.sh
. "$repo/tools/vmtest/lib.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/aem-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
src=$root/usr/src/$name-$version
stage_kmod "$repo/kmod" "$src"
sed -i "s/@VERSION@/$version/" "$src/dkms.conf"
grep -q "PACKAGE_VERSION=\"$version\"" "$src/dkms.conf" || { echo "deb: kmod/dkms.conf has no PACKAGE_VERSION=\"@VERSION@\"" >&2; exit 1; }
mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$pkg"
cp "$repo/docs/KERNEL_MODULE.md" "$root/usr/share/doc/$pkg/"

cat >"$root/DEBIAN/control" <<-CTL
	Package: $pkg
	Version: $version
	Architecture: all
	Section: kernel
	Priority: optional
	Maintainer: AEM developers <aem@localhost>
	Depends: dkms (>= 3.0), make, gcc
	Recommends: linux-headers-amd64 | linux-headers-generic
	Description: AEM kernel modules (/dev/aem), built by DKMS
	 The AEM device and its event sources (timer, generator, process, socket)
	 as DKMS sources: the modules are built for every installed kernel with
	 headers, Linux 6.1 to 7.2. See /usr/share/doc/$pkg/KERNEL_MODULE.md.
CTL

# The scripts: DKMS's own helper where it has one, so the modules build for
# the kernels it would choose (the running one and every one with headers).
cat >"$root/DEBIAN/postinst" <<-SH
	#!/bin/sh
	set -e
	if [ "\$1" = configure ]; then
		dkms add -m $name -v $version >/dev/null 2>&1 || dkms status -m $name -v $version | grep -q .
		built=0
		for k in /lib/modules/*/build; do
			[ -e "\$k/Makefile" ] || continue
			k=\${k%/build}
			k=\${k##*/}
			built=1
			dkms install -m $name -v $version -k "\$k" || echo "aem-dkms: the modules did not build for \$k (see /var/lib/dkms/$name/$version/build/make.log)" >&2
		done
		[ "\$built" = 1 ] || echo "aem-dkms: no kernel headers installed, so nothing was built; install linux-headers-\$(uname -r) and DKMS builds the modules" >&2
	fi
SH
cat >"$root/DEBIAN/prerm" <<-SH
	#!/bin/sh
	set -e
	case "\$1" in
	remove|upgrade|deconfigure)
		if dkms status -m $name -v $version | grep -q .; then
			dkms remove -m $name -v $version --all
		fi ;;
	esac
SH
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"

mkdir -p "$outdir"
deb=$outdir/${pkg}_${version}_all.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
