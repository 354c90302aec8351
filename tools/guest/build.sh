#!/usr/bin/env bash
# Builds the v86 guest of issue 11 from Debian packages: an i386 Linux 6.1
# kernel (Debian's linux-source-6.1, tinyconfig + kernel.config, with
# clflush.patch) and a busybox initramfs whose /init is tools/guest/init.
# Also copies SeaBIOS from Debian's seabios package, since v86 ships no BIOS.
#
# Output: a directory in the cache (printed as the last line of stdout),
# ${VIOMMU_GUEST_CACHE:-~/.cache/viommu-guest}/<key>/ holding bzImage,
# initramfs.cpio.gz, bios.bin, vgabios.bin and kernel.config (the final
# .config). <key> hashes this script, the fragment, the patch, /init and the
# Debian package versions, so a second run with nothing changed takes seconds.
#
# Needs root (or the packages already installed) and Debian's apt. The kernel
# build takes about 15 minutes on 2 cores (JOBS overrides make -j).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VIOMMU_GUEST_CACHE:-${HOME:-/root}/.cache/viommu-guest}
jobs=${JOBS:-$(nproc)}
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

src_tar=/usr/src/linux-source-6.1.tar.xz
[[ -f $src_tar ]] || { echo "tools/guest/build.sh: $src_tar missing after installing linux-source-6.1" >&2; exit 1; }
versions=$(dpkg-query -W -f='${Package}=${Version}\n' linux-source-6.1 busybox-static:i386 seabios)
key=$( { cat "$here/build.sh" "$here/kernel.config" "$here/clflush.patch" "$here/init"; echo "$versions"; } | sha256sum | cut -c1-16)
out=$cache_root/$key
if [[ -f $out/done ]]; then
  log "cached guest: $out"
  echo "$out"
  exit 0
fi

work=$cache_root/build-$key
rm -rf "$work"
mkdir -p "$work"
log "extracting $src_tar into $work"
tar -xf "$src_tar" -C "$work"
ksrc=$work/linux-source-6.1
log "applying clflush.patch"
patch -d "$ksrc" -p1 --quiet < "$here/clflush.patch"

log "configuring: tinyconfig + kernel.config"
make -C "$ksrc" -s ARCH=i386 tinyconfig >&2
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$here/kernel.config" >&2
make -C "$ksrc" -s ARCH=i386 olddefconfig >&2
# Kconfig drops options whose dependencies are unmet without a word: check
# every line of the fragment made it into the final .config.
bad=0
while IFS= read -r line; do
  [[ $line =~ ^CONFIG_ ]] || continue
  grep -qx "$line" "$ksrc/.config" || { echo "tools/guest/build.sh: $line from kernel.config did not survive olddefconfig" >&2; bad=1; }
done < "$here/kernel.config"
((bad == 0)) || exit 1

log "building bzImage with make -j$jobs (about 15 minutes on 2 cores)"
start=$SECONDS
make -C "$ksrc" -s ARCH=i386 -j"$jobs" bzImage >&2
log "kernel built in $((SECONDS - start)) s"

log "building initramfs"
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,mnt,tmp}
bb=$(dpkg -L busybox-static:i386 | grep -E '/bin/busybox$' | head -n1)
cp "$bb" "$rootfs/bin/busybox"
file_out=$(od -An -tx1 -N5 "$rootfs/bin/busybox" | tr -d ' ')
[[ $file_out == 7f454c4601 ]] || { echo "tools/guest/build.sh: $bb is not a 32-bit ELF" >&2; exit 1; }
install -m 0755 "$here/init" "$rootfs/init"
(cd "$rootfs" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -9 > "$work/initramfs.cpio.gz"

mkdir -p "$out.tmp"
cp "$ksrc/arch/x86/boot/bzImage" "$work/initramfs.cpio.gz" "$out.tmp/"
cp "$ksrc/.config" "$out.tmp/kernel.config"
cp /usr/share/seabios/bios.bin "$out.tmp/bios.bin"
cp /usr/share/seabios/vgabios-stdvga.bin "$out.tmp/vgabios.bin"
echo "$versions" > "$out.tmp/versions"
touch "$out.tmp/done"
rm -rf "$out"
mv "$out.tmp" "$out"
rm -rf "$work"
log "guest ready: $out"
echo "$out"
