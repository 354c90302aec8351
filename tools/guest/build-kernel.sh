#!/usr/bin/env bash
# Builds the guest kernel into $1 (an empty directory): Debian's
# linux-source-6.1, clflush.patch applied, `make ARCH=i386 tinyconfig` plus
# kernel.config, bzImage. Called by build.sh, which caches the result keyed by
# the hash of this file, the fragment, the patch and the source package version.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$1
jobs=${JOBS:-$(nproc)}
log() { echo "[guest] $*" >&2; }

src_tar=/usr/src/linux-source-6.1.tar.xz
work=$out/src
mkdir -p "$work"
log "extracting $src_tar"
tar -xf "$src_tar" -C "$work"
ksrc=$work/linux-source-6.1
log "applying clflush.patch"
patch -d "$ksrc" -p1 --quiet < "$here/clflush.patch"

log "configuring: tinyconfig + kernel.config"
make -C "$ksrc" -s ARCH=i386 tinyconfig >&2
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$here/kernel.config" > /dev/null
make -C "$ksrc" -s ARCH=i386 olddefconfig >&2
# Kconfig drops options whose dependencies are unmet without a word: check
# every line of the fragment made it into the final .config.
bad=0
while IFS= read -r line; do
  [[ $line =~ ^CONFIG_ ]] || continue
  grep -qx "$line" "$ksrc/.config" || { echo "tools/guest/build-kernel.sh: $line from kernel.config did not survive olddefconfig (unmet dependency?)" >&2; bad=1; }
done < "$here/kernel.config"
((bad == 0)) || exit 1

log "building bzImage with make -j$jobs (a few minutes on 2 cores)"
start=$SECONDS
make -C "$ksrc" -s ARCH=i386 -j"$jobs" bzImage >&2
log "kernel built in $((SECONDS - start)) s"
cp "$ksrc/arch/x86/boot/bzImage" "$out/bzImage"
cp "$ksrc/.config" "$out/kernel.config"
rm -rf "$work"
