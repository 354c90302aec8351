/**
 * Figures of the AMD-Vi model: translate() on an IOTLB hit and on a miss
 * that walks four levels (Mode 4), in both profiles, with tables built
 * directly in a SparseRam, the same shape as the VT-d figures
 * (translateHitPerSec / translateWalk4PerSec) they are compared with: the
 * target is at least half of VT-d's, measured in the same run.
 */
import { IOMMUAccessFlags } from '../src/core/access';
import { createAmdVi } from '../src/models/amd-vi/index';
import type { AmdVi, AmdViProfile } from '../src/models/amd-vi/index';
import type { BenchFigure, BenchSuite } from './harness';
import { TableRam, gc, opsPerSecond } from './harness';
import { translateHit as vtdTranslateHit, translateWalk4 as vtdTranslateWalk4 } from './vtd.bench';

const SID = 0x20;
const DEVTAB = 0x1000;
const CMDBUF = 0x4_0000;
const TABLES = 0x10_0000;
const RAM_SIZE = 2 ** 32;

/** A Mode-4 domain built in RAM (directory entries RW, NextLevel = level - 1), with a bump allocator for tables. */
class Domain extends TableRam {
  constructor() {
    super(RAM_SIZE, TABLES);
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

export const suite: BenchSuite = (): BenchFigure[] => {
  gc();
  const hit = translateHit('spec');
  gc();
  const walk4 = translateWalk4('spec');
  // VT-d in the same run: the targets are half its figures (issue 10).
  gc();
  const vtdHit = vtdTranslateHit();
  gc();
  const vtdWalk = vtdTranslateWalk4();
  return [
    { key: 'amdviTranslateHitPerSec', label: 'amd-vi translate(), IOTLB hit (profile spec)', value: hit, unit: 'ops/s', target: `>= ${(vtdHit / 2).toExponential(2)}` },
    { key: 'amdviWalk4PerSec', label: 'amd-vi translate(), IOTLB miss, 4-level walk (profile spec)', value: walk4, unit: 'ops/s', target: `>= ${(vtdWalk / 2).toExponential(2)}` },
    { key: 'amdviQemu72TranslateHitPerSec', label: 'amd-vi translate(), IOTLB hit (profile qemu-7.2)', value: translateHit('qemu-7.2'), unit: 'ops/s' },
    { key: 'amdviQemu72Walk4PerSec', label: 'amd-vi translate(), IOTLB miss, 4-level walk, DTE re-read (profile qemu-7.2)', value: translateWalk4('qemu-7.2'), unit: 'ops/s' },
  ];
};

// Standalone: node --expose-gc build/bench/bench/amd-vi.bench.js
if (require.main === module) {
  for (const f of suite() as BenchFigure[]) process.stdout.write(`${f.key}\t${f.value.toExponential(3)}\t${f.unit}\t${f.target ?? ''}\n`);
}
