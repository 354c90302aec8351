/**
 * Figures of the AMD-Vi model: translate() on an IOTLB hit and on a miss
 * that walks four levels (Mode 4), in both profiles, with tables built
 * directly in a SparseRam, the same shape as the VT-d figures
 * (translateHitPerSec / translateWalk4PerSec) they are compared with: the
 * target is at least half of VT-d's in the same run. Standalone, this file
 * also runs the VT-d suite and prints the ratios.
 */
import { IOMMUAccessFlags } from '../src/core/access';
import { SparseRam } from '../src/memory/sparse-ram';
import { createAmdVi } from '../src/models/amd-vi/index';
import type { AmdVi, AmdViProfile } from '../src/models/amd-vi/index';
import type { BenchFigure, BenchSuite } from './harness';
import { gc, opsPerSecond } from './harness';
import { suite as vtdSuite } from './vtd.bench';

const SID = 0x20;
const DEVTAB = 0x1000;
const CMDBUF = 0x4_0000;
const TABLES = 0x10_0000;
const RAM_SIZE = 2 ** 32;

/** A Mode-4 domain built in RAM (directory entries RW, NextLevel = level - 1), with a bump allocator for tables. */
class Domain {
  readonly ram = new SparseRam([{ base: 0n, size: BigInt(RAM_SIZE) }]);
  private next = TABLES;
  readonly root = this.alloc();

  alloc(): number {
    const t = this.next;
    this.next += 4096;
    return t;
  }

  /** Writes a v1 entry: PR, NextLevel, address, IR|IW. */
  private writePte(gpa: number, addr: number, nextLevel: number): void {
    this.ram.writeU32(gpa, ((addr % 2 ** 32) | (nextLevel << 9) | 1) >>> 0);
    this.ram.writeU32(gpa + 4, (Math.floor(addr / 2 ** 32) | 0x6000_0000) >>> 0);
  }

  map4k(pfn: number, xlatPfn: number): void {
    let table = this.root;
    for (let level = 4; level > 1; level--) {
      const slot = table + (Math.floor(pfn / 512 ** (level - 1)) % 512) * 8;
      const lo = this.ram.readU32(slot);
      if ((lo & 1) === 0) {
        const t = this.alloc();
        this.writePte(slot, t, level - 1);
        table = t;
      } else {
        table = ((lo & ~0xfff) >>> 0) + (this.ram.readU32(slot + 4) & 0xfffff) * 2 ** 32;
      }
    }
    this.writePte(table + (pfn % 512) * 8, xlatPfn * 4096, 0);
  }

  bringUp(profile: AmdViProfile): AmdVi {
    const dte = DEVTAB + SID * 32;
    this.ram.writeU32(dte, (this.root | (4 << 9) | 3) >>> 0); // V, TV, Mode 4, root
    this.ram.writeU32(dte + 4, 0x6000_0000); // IR | IW
    this.ram.writeU32(dte + 8, 1); // DomainID 1
    const io = createAmdVi({ profile }, this.ram);
    io.mmioWrite(0x00, 8, BigInt(DEVTAB));
    io.mmioWrite(0x08, 8, BigInt(CMDBUF) | (8n << 56n));
    io.mmioWrite(0x18, 8, 0x1001n); // IommuEn, CmdBufEn
    return io;
  }
}

function translateHit(profile: AmdViProfile): number {
  const d = new Domain();
  for (let i = 0; i < 8; i++) d.map4k(0x10_0000 + i, 0x5_0000 + i);
  const io = d.bringUp(profile);
  const iovas = Array.from({ length: 8 }, (_, i) => BigInt((0x10_0000 + i) * 4096 + 0x10));
  for (const iova of iovas) io.translate(SID, iova, IOMMUAccessFlags.RO);
  gc();
  return opsPerSecond(() => {
    for (let k = 0; k < 1000; k++) io.translate(SID, iovas[k & 7]!, IOMMUAccessFlags.RO);
  }, 1000);
}

function translateWalk4(profile: AmdViProfile): number {
  const d = new Domain();
  // 4096 pages, more than the IOTLB holds (1024, flushed when full): every translate walks four levels.
  const iovas: bigint[] = [];
  for (let i = 0; i < 4096; i++) {
    const pfn = 0xa5_1234_0000 / 4096 + i;
    d.map4k(pfn, 0x6_0000 + i);
    iovas.push(BigInt(pfn) * 4096n);
  }
  const io = d.bringUp(profile);
  let k = 0;
  gc();
  return opsPerSecond(() => {
    for (let j = 0; j < 1000; j++) {
      io.translate(SID, iovas[k]!, IOMMUAccessFlags.RO);
      k = (k + 1) & 4095;
    }
  }, 1000);
}

export const suite: BenchSuite = (): BenchFigure[] => [
  { key: 'amdviTranslateHitPerSec', label: 'amd-vi translate(), IOTLB hit (profile spec)', value: translateHit('spec'), unit: 'ops/s', target: '>= 0.5 x translateHitPerSec' },
  { key: 'amdviWalk4PerSec', label: 'amd-vi translate(), IOTLB miss, 4-level walk (profile spec)', value: translateWalk4('spec'), unit: 'ops/s', target: '>= 0.5 x translateWalk4PerSec' },
  { key: 'amdviQemu72TranslateHitPerSec', label: 'amd-vi translate(), IOTLB hit (profile qemu-7.2)', value: translateHit('qemu-7.2'), unit: 'ops/s' },
  { key: 'amdviQemu72Walk4PerSec', label: 'amd-vi translate(), IOTLB miss, 4-level walk, DTE re-read (profile qemu-7.2)', value: translateWalk4('qemu-7.2'), unit: 'ops/s' },
];

// Standalone: node --expose-gc build/bench/bench/amd-vi.bench.js (also runs the VT-d suite for the ratios).
if (require.main === module) {
  void (async () => {
    // AMD-Vi first: the VT-d suite ends with large syncs that leave a big heap behind.
    const amd = await suite();
    const vtd = await vtdSuite();
    const all = [...amd, ...vtd.filter((f) => f.key === 'translateHitPerSec' || f.key === 'translateWalk4PerSec')];
    for (const f of all) process.stdout.write(`${f.key}\t${f.value.toExponential(3)} ${f.unit}\t${f.label}\n`);
    const v = (key: string): number => all.find((f) => f.key === key)!.value;
    process.stdout.write(`ratio hit\t${(v('amdviTranslateHitPerSec') / v('translateHitPerSec')).toFixed(2)}\n`);
    process.stdout.write(`ratio walk4\t${(v('amdviWalk4PerSec') / v('translateWalk4PerSec')).toFixed(2)}\n`);
  })();
}
