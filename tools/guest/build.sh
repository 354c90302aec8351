#!/usr/bin/env bash
# Builds the v86 guest of issue 11 from Debian packages: an i386 Linux 6.1
# kernel (build-kernel.sh: Debian's linux-source-6.1, tinyconfig +
# kernel.config, with clflush.patch) and a busybox initramfs whose /init is
# tools/guest/init; copies SeaBIOS from Debian's seabios package, since v86
# ships no BIOS.
#
# Output: a directory in the cache, printed as the only line on stdout
# (progress goes to stderr):
#   ${VIOMMU_GUEST_CACHE:-~/.cache/viommu-guest}/guest-<key>/
#     bzImage  initramfs.cpio.gz  bios.bin  vgabios.bin  kernel.config  versions
# The kernel is cached on its own (kernel-<key>/), keyed by build-kernel.sh,
# kernel.config, clflush.patch and the linux-source-6.1 version, so changing
# /init or this script rebuilds only the initramfs. A second run with nothing
# changed takes a second or two.
#
# Needs root to install missing packages (apt-get); JOBS overrides make -j.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VIOMMU_GUEST_CACHE:-${HOME:-/root}/.cache/viommu-guest}
log() { echo "[guest] $*" >&2; }

need_pkgs=(linux-source-6.1 flex bison bc build-essential libelf-dev libssl-dev busybox-static:i386 seabios cpio xz-utils)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then
    echo "tools/guest/build.sh: packages missing (${missing[*]}) and not root; install them with apt-get" >&2
    exit 1
  fi
  # busybox-static:i386 is the 32-bit userland the i386 guest kernel runs.
  dpkg --print-foreign-architectures | grep -qx i386 || dpkg --add-architecture i386
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
[[ -f /usr/src/linux-source-6.1.tar.xz ]] || { echo "tools/guest/build.sh: /usr/src/linux-source-6.1.tar.xz missing after installing linux-source-6.1" >&2; exit 1; }

versions=$(dpkg-query -W -f='${Package}=${Version}\n' linux-source-6.1 busybox-static:i386 seabios)
kernel_key=$( { cat "$here/build-kernel.sh" "$here/kernel.config" "$here/clflush.patch"; dpkg-query -W -f='${Version}' linux-source-6.1; } | sha256sum | cut -c1-16)
guest_key=$( { echo "$kernel_key"; cat "$here/build.sh" "$here/init"; echo "$versions"; } | sha256sum | cut -c1-16)
out=$cache_root/guest-$guest_key
if [[ -f $out/done ]]; then
  log "cached guest: $out"
  echo "$out"
  exit 0
fi

kdir=$cache_root/kernel-$kernel_key
if [[ ! -f $kdir/done ]]; then
  rm -rf "$kdir" "$kdir.tmp"
  mkdir -p "$kdir.tmp"
  bash "$here/build-kernel.sh" "$kdir.tmp"
  touch "$kdir.tmp/done"
  mv "$kdir.tmp" "$kdir"
else
  log "cached kernel: $kdir"
fi

log "building the initramfs (busybox-static:i386, tools/guest/init)"
rm -rf "$out.tmp"
rootfs=$out.tmp/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,mnt,tmp}
bb=$(dpkg -L busybox-static:i386 | grep -E '/bin/busybox$' | head -n1)
cp "$bb" "$rootfs/bin/busybox"
# ELF magic + EI_CLASS 1: a 32-bit binary, or the i386 kernel cannot run it.
[[ $(od -An -tx1 -N5 "$rootfs/bin/busybox" | tr -d ' \n') == 7f454c4601 ]] || { echo "tools/guest/build.sh: $bb is not a 32-bit ELF" >&2; exit 1; }
install -m 0755 "$here/init" "$rootfs/init"
(cd "$rootfs" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -9 > "$out.tmp/initramfs.cpio.gz"
rm -rf "$rootfs"

cp "$kdir/bzImage" "$kdir/kernel.config" "$out.tmp/"
cp /usr/share/seabios/bios.bin "$out.tmp/bios.bin"
cp /usr/share/seabios/vgabios-stdvga.bin "$out.tmp/vgabios.bin"
echo "$versions" > "$out.tmp/versions"
touch "$out.tmp/done"
rm -rf "$out"
mv "$out.tmp" "$out"
log "guest ready: $out"
echo "$out"
