/**
 * Test builder for VT-d translation structures, written byte by byte (little
 * endian) as the VT-d spec lays them out (root entry 9.1/9.2, context entry
 * 9.3/9.4, PASID directory/table entries 9.5/9.6, second-level paging entries
 * 9.8). Fields are composed as bigints from the spec's bit positions, so the
 * expected values of a test never come from the code under test.
 *
 * Shared with the VT-d device tests (device engineer may reuse it).
 */
import type { GuestMemory } from '../../../../src/memory/guest-memory';

/** Little-endian bytes of 64-bit words. */
export function le64(...words: bigint[]): Uint8Array {
  const out = new Uint8Array(words.length * 8);
  words.forEach((w, i) => {
    let v = BigInt.asUintN(64, w);
    for (let b = 0; b < 8; b++) {
      out[i * 8 + b] = Number(v & 0xffn);
      v >>= 8n;
    }
  });
  return out;
}

/** Writes 64-bit words at `gpa`; throws if the memory refuses (a test bug). */
export function writeWords(mem: GuestMemory, gpa: number, ...words: bigint[]): void {
  if (!mem.write(gpa, le64(...words))) throw new Error(`test tables: write at 0x${gpa.toString(16)} is outside RAM`);
}

const bit = (n: number): bigint => 1n << BigInt(n);
const b = (v: number | bigint): bigint => BigInt(v);

/** Second-level paging entry (spec 9.8): R bit 0, W bit 1, PS bit 7, address bits 63:12, plus raw `extra` bits. */
export interface SlpteFields {
  r?: boolean;
  w?: boolean;
  /** Page size (leaf at level 2/3). */
  ps?: boolean;
  /** Address of the next table or of the page (4 KiB aligned). */
  addr?: number | bigint;
  /** Extra raw bits ORed in (reserved / ignored bits under test). */
  extra?: bigint;
}

export function slpte(f: SlpteFields): bigint {
  return (
    (f.r ? bit(0) : 0n) |
    (f.w ? bit(1) : 0n) |
    (f.ps ? bit(7) : 0n) |
    (b(f.addr ?? 0) & ~0xfffn) |
    (f.extra ?? 0n)
  );
}

/** Legacy root entry (9.1): lo P bit 0, CTP 63:12; hi reserved. */
export function legacyRootEntry(f: { present?: boolean; ctp?: number | bigint; extraLo?: bigint; hi?: bigint }): [bigint, bigint] {
  return [(f.present ?? true ? bit(0) : 0n) | (b(f.ctp ?? 0) & ~0xfffn) | (f.extraLo ?? 0n), f.hi ?? 0n];
}

/** Scalable root entry (9.2): lo LP bit 0 / LCTP 63:12 (devfn 0..127); hi UP bit 0 / UCTP 63:12 (devfn 128..255). */
export function scalableRootEntry(f: { lctp?: number | bigint; uctp?: number | bigint; extraLo?: bigint; extraHi?: bigint }): [bigint, bigint] {
  const lo = f.lctp === undefined ? 0n : bit(0) | (b(f.lctp) & ~0xfffn);
  const hi = f.uctp === undefined ? 0n : bit(0) | (b(f.uctp) & ~0xfffn);
  return [lo | (f.extraLo ?? 0n), hi | (f.extraHi ?? 0n)];
}

/** Legacy context entry (9.3): lo P 0, FPD 1, TT 3:2, SLPTPTR 63:12; hi AW 2:0, DID 23:8. */
export interface LegacyContextFields {
  present?: boolean;
  fpd?: boolean;
  tt?: number;
  slptptr?: number | bigint;
  aw?: number;
  did?: number;
  extraLo?: bigint;
  extraHi?: bigint;
}

export function legacyContextEntry(f: LegacyContextFields): [bigint, bigint] {
  const lo =
    (f.present ?? true ? bit(0) : 0n) |
    (f.fpd ? bit(1) : 0n) |
    (b(f.tt ?? 0) << 2n) |
    (b(f.slptptr ?? 0) & ~0xfffn) |
    (f.extraLo ?? 0n);
  const hi = b(f.aw ?? 1) | (b(f.did ?? 0) << 8n) | (f.extraHi ?? 0n);
  return [lo, hi];
}

/** Scalable-mode context entry (9.4): val0 P 0, FPD 1, PASID dir pointer 63:12; val1 RID_PASID 19:0; val2/val3 reserved. */
export interface ScalableContextFields {
  present?: boolean;
  fpd?: boolean;
  pasidDir?: number | bigint;
  ridPasid?: number;
  extra?: [bigint, bigint, bigint, bigint];
}

export function scalableContextEntry(f: ScalableContextFields): [bigint, bigint, bigint, bigint] {
  const x = f.extra ?? [0n, 0n, 0n, 0n];
  return [
    (f.present ?? true ? bit(0) : 0n) | (f.fpd ? bit(1) : 0n) | (b(f.pasidDir ?? 0) & ~0xfffn) | x[0],
    b(f.ridPasid ?? 0) | x[1],
    x[2],
    x[3],
  ];
}

/** PASID directory entry (9.5): P 0, FPD 1, PASID table pointer 63:12. */
export function pasidDirEntry(f: { present?: boolean; fpd?: boolean; table?: number | bigint }): bigint {
  return (f.present ?? true ? bit(0) : 0n) | (f.fpd ? bit(1) : 0n) | (b(f.table ?? 0) & ~0xfffn);
}

/** PASID table entry (9.6), first two words: val0 P 0, FPD 1, AW 4:2, PGTT 8:6, SLPTPTR 63:12; val1 DID 15:0. */
export interface PasidEntryFields {
  present?: boolean;
  fpd?: boolean;
  aw?: number;
  pgtt?: number;
  slptptr?: number | bigint;
  did?: number;
}

export function pasidEntryWords(f: PasidEntryFields): bigint[] {
  const val0 =
    (f.present ?? true ? bit(0) : 0n) |
    (f.fpd ? bit(1) : 0n) |
    (b(f.aw ?? 1) << 2n) |
    (b(f.pgtt ?? 2) << 6n) |
    (b(f.slptptr ?? 0) & ~0xfffn);
  return [val0, b(f.did ?? 0), 0n, 0n, 0n, 0n, 0n, 0n];
}

/**
 * Bump allocator of 4 KiB table pages plus helpers that place entries at the
 * spec's offsets (root: bus * 16; legacy context: devfn * 16; scalable
 * context: (devfn & 0x7f) * 32; PASID dir: (pasid >> 6) * 8; PASID entry:
 * (pasid & 0x3f) * 64; paging entry: index * 8).
 */
export class VtdTables {
  private next: number;

  constructor(readonly mem: GuestMemory, firstPage = 0x10_0000) {
    this.next = firstPage;
  }

  /** A fresh zeroed 4 KiB page. */
  page(): number {
    const p = this.next;
    this.next += 0x1000;
    writeWords(this.mem, p, ...new Array<bigint>(512).fill(0n));
    return p;
  }

  root(root: number, bus: number, words: [bigint, bigint]): void {
    writeWords(this.mem, root + bus * 16, ...words);
  }

  legacyContext(table: number, devfn: number, f: LegacyContextFields): void {
    writeWords(this.mem, table + devfn * 16, ...legacyContextEntry(f));
  }

  scalableContext(table: number, devfn: number, f: ScalableContextFields): void {
    writeWords(this.mem, table + (devfn & 0x7f) * 32, ...scalableContextEntry(f));
  }

  pasidDir(dir: number, pasid: number, f: { present?: boolean; fpd?: boolean; table?: number | bigint }): void {
    writeWords(this.mem, dir + (pasid >> 6) * 8, pasidDirEntry(f));
  }

  pasidEntry(table: number, pasid: number, f: PasidEntryFields): void {
    writeWords(this.mem, table + (pasid & 0x3f) * 64, ...pasidEntryWords(f));
  }

  pte(table: number, index: number, value: bigint): void {
    writeWords(this.mem, table + index * 8, value);
  }

  /**
   * Maps `iova` to `addr` with a leaf at `leafLevel` (1 = 4K, 2 = 2M with PS,
   * 3 = 1G with PS) in the tree rooted at `top` with `levels` levels, creating
   * missing directory entries as R+W (or `dirPerm`). Index at level L =
   * (iova >> (12 + 9 * (L - 1))) & 0x1ff.
   */
  map(
    top: number,
    levels: number,
    iova: bigint,
    addr: bigint,
    opts: { leafLevel?: number; r?: boolean; w?: boolean; extra?: bigint; dirPerm?: { r: boolean; w: boolean } } = {},
  ): void {
    const leafLevel = opts.leafLevel ?? 1;
    let table = top;
    for (let level = levels; level > leafLevel; level--) {
      const idx = Number((iova >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
      const gpa = table + idx * 8;
      const lo = this.mem.readU32(gpa);
      const hi = this.mem.readU32(gpa + 4);
      let next = Number(((BigInt(hi) << 32n) | BigInt(lo)) & 0x000f_ffff_ffff_f000n);
      if ((lo & 3) === 0) {
        next = this.page();
        const perm = opts.dirPerm ?? { r: true, w: true };
        this.pte(table, idx, slpte({ ...perm, addr: next }));
      }
      table = next;
    }
    const idx = Number((iova >> BigInt(12 + 9 * (leafLevel - 1))) & 0x1ffn);
    this.pte(table, idx, slpte({ r: opts.r ?? true, w: opts.w ?? true, ps: leafLevel > 1, addr, extra: opts.extra }));
  }
}
