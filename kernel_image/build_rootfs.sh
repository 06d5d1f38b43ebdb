#!/bin/sh
# Build the air-gapped base of the kernel image: a Debian minbase rootfs with
# Python 3 and ipykernel, written as a tarball that `docker import` turns into
# an image. Needs root and debootstrap; reaches only the Debian mirror.
#
# usage: build_rootfs.sh OUT.tar [SUITE] [MIRROR]
set -eu
out=$1
suite=${2:-bookworm}
mirror=${3:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/rlm-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "debootstrap: $suite minbase from $mirror" >&2
debootstrap --variant=minbase --include=python3 "$suite" "$root" "$mirror" >&2

# debootstrap's --include does not resolve virtual packages, so ipykernel is
# installed from inside the new root with apt, which does.
echo "deb $mirror $suite main" > "$root/etc/apt/sources.list"
chroot "$root" apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive chroot "$root" \
    apt-get install -y -qq --no-install-recommends python3-ipykernel >&2
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc \
       "$root"/usr/share/man "$root"/usr/share/locale
tar -C "$root" -cf "$out" .
echo "rootfs: $(du -h "$out" | cut -f1) in $out" >&2
