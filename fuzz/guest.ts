/**
 * The fuzzer's VT-d guest: a driver that keeps plausible legacy-mode tables
 * (VT-d spec 9.1 root, 9.3 context, 9.8 second-level entries) in guest RAM
 * and its own record of every leaf it wrote (the reference for C9), and
 * talks to the IOMMU through registers (10.4) and the invalidation queue
 * (6.5.2). Everything is composed from the spec's bit positions, never from
 * the model. Hostile writes go around it (engine.ts).
 */
import type { SparseRam } from '../src/index';
import type { ShadowEntry } from './shadow';

export const REG = {
  GCMD: 0x18, GSTS: 0x1c, RTADDR: 0x20, CCMD: 0x28, FSTS: 0x34, FECTL: 0x38, FEDATA: 0x3c, FEADDR: 0x40, FEUADDR: 0x44,
  AFLOG: 0x58, PMEN: 0x64, PLMBASE: 0x68, PLMLIMIT: 0x6c, IQH: 0x80, IQT: 0x88, IQA: 0x90, ICS: 0x9c, IECTL: 0xa0,
  IEDATA: 0xa4, IEADDR: 0xa8, IRTA: 0xb8,
} as const;
export const TE = 1n << 31n;
export const SRTP = 1n << 30n;
export const QIE = 1n << 26n;

/** Guest RAM layout (64 MiB): fixed structures, then tables, then data pages that leaves point to. */
export const RAM_SIZE = 64 << 20;
export const ROOT = 0x10_0000;
export const CTX = 0x10_1000;
export const IQ = 0x11_0000;
export const STATUS = 0x11_8000;
export const TABLES = 0x20_0000;
export const TABLES_END = 0x100_0000;
export const DATA = 0x100_0000;

const ADDR_MASK = 0x000f_ffff_ffff_f000n;
const PS = 1n << 7n;
const PAGES_2M = 512;

/** A leaf the guest wrote, in frames. */
export interface Leaf { pfn: number; pages: number; xlPfn: number; perm: number }

export class VtdGuest {
  readonly levels: number;
  /** Domain id -> top-level table. */
  readonly tops = new Map<number, number>();
  /** Domain id -> its leaves by first frame. */
  readonly leaves = new Map<number, Map<number, Leaf>>();
  /** sid -> domain id for the sids whose context entry is present. */
  readonly present = new Map<number, number>();
  translationOn = false;
  private nextTable = TABLES;
  private tail = 0;
  private waits = 0;
  readonly tables: number[] = [];

  constructor(readonly ram: SparseRam, readonly mmioWrite: (reg: number, size: 4 | 8, v: bigint) => void, awBits: 39 | 48) {
    this.levels = awBits === 48 ? 4 : 3;
  }

  w64(gpa: number, v: bigint): void { this.ram.writeU64(gpa, v); }
  r64(gpa: number): bigint { return this.ram.readU64(gpa) ?? 0n; }

  /** A zeroed table page, or undefined when the table area is used up (the epoch then stops mapping). */
  table(): number | undefined {
    if (this.nextTable >= TABLES_END) return undefined;
    const t = this.nextTable;
    this.nextTable += 0x1000;
    this.ram.write(t, new Uint8Array(0x1000));
    this.tables.push(t);
    return t;
  }

  get tableSpaceLeft(): boolean { return this.nextTable < TABLES_END - 0x10000; }

  /** Context entry of `sid` (bus 0) -> domain `did`: 9.3 lo P | SLPTPTR, hi AW | DID. */
  setContext(sid: number, did: number): void {
    let top = this.tops.get(did);
    if (top === undefined) {
      top = this.table();
      if (top === undefined) return;
      this.tops.set(did, top);
      this.leaves.set(did, new Map());
    }
    this.w64(CTX + (sid & 0xff) * 16, BigInt(top) | 1n);
    this.w64(CTX + (sid & 0xff) * 16 + 8, BigInt(this.levels - 2) | (BigInt(did) << 8n));
    this.present.set(sid, did);
  }

  clearContext(sid: number): void {
    this.w64(CTX + (sid & 0xff) * 16, 0n);
    this.w64(CTX + (sid & 0xff) * 16 + 8, 0n);
    this.present.delete(sid);
  }

  /** Root entry for bus 0, root table, queued invalidation, global invalidations, translation on. */
  setup(): void {
    this.w64(ROOT, BigInt(CTX) | 1n);
    this.mmioWrite(REG.RTADDR, 8, BigInt(ROOT));
    this.mmioWrite(REG.GCMD, 4, SRTP);
    this.mmioWrite(REG.IQA, 8, BigInt(IQ)); // QS=0: 256 descriptors
    this.mmioWrite(REG.IQT, 8, 0n);
    this.tail = 0;
    this.mmioWrite(REG.GCMD, 4, QIE);
    this.submit([0x1n | (1n << 4n), 0n], [0x2n | (1n << 4n), 0n]);
    this.setTranslation(true);
  }

  setTranslation(on: boolean): void {
    this.translationOn = on;
    this.mmioWrite(REG.GCMD, 4, on ? TE | QIE : QIE);
  }

  private slot(table: number, level: number, pfn: number): number {
    return table + (Math.floor(pfn / 2 ** (9 * (level - 1))) % 512) * 8;
  }

  /** Table pointer of a non-leaf entry, when it points into the table area (hostile writes may have put anything there). */
  private next(pte: bigint): number | undefined {
    if ((pte & 3n) === 0n || (pte & PS) !== 0n) return undefined;
    const t = Number(pte & ADDR_MASK);
    return t >= TABLES && t < TABLES_END ? t : undefined;
  }

  /** Writes a 4 KiB (pages 1) or 2 MiB (pages 512) leaf, replacing what covered the slot, and records it. */
  map(did: number, pfn: number, pages: 1 | 512, xlPfn: number, perm: number): boolean {
    const top = this.tops.get(did);
    const mine = this.leaves.get(did);
    if (top === undefined || mine === undefined) return false;
    const leafLevel = pages === 1 ? 1 : 2;
    let table = top;
    for (let level = this.levels; level > leafLevel; level--) {
      const s = this.slot(table, level, pfn);
      const t = this.next(this.r64(s));
      if (t !== undefined) { table = t; continue; }
      const fresh = this.table();
      if (fresh === undefined) return false;
      // A 2 MiB leaf replaced by a table: it is gone.
      if (level === 2) mine.delete(pfn - (pfn % PAGES_2M));
      this.w64(s, BigInt(fresh) | 3n);
      table = fresh;
    }
    const s = this.slot(table, leafLevel, pfn);
    if (pages === PAGES_2M) {
      // A table under the slot is dropped with its 4 KiB leaves.
      for (const k of [...mine.keys()]) if (k >= pfn && k < pfn + PAGES_2M) mine.delete(k);
    }
    this.w64(s, (BigInt(xlPfn) << 12n) | BigInt(perm) | (pages === 1 ? 0n : PS));
    mine.set(pfn, { pfn, pages, xlPfn, perm });
    return true;
  }

  /** Clears the slot of the leaf starting at `pfn`. */
  unmap(did: number, leaf: Leaf): void {
    const top = this.tops.get(did);
    if (top === undefined) return;
    const leafLevel = leaf.pages === 1 ? 1 : 2;
    let table = top;
    for (let level = this.levels; level > leafLevel; level--) {
      const t = this.next(this.r64(this.slot(table, level, leaf.pfn)));
      if (t === undefined) return;
      table = t;
    }
    this.w64(this.slot(table, leafLevel, leaf.pfn), 0n);
    this.leaves.get(did)?.delete(leaf.pfn);
  }

  /** What the tables translate for `sid`, as entries (the reference of C9): nothing when translation is off or the context absent. */
  expected(sid: number): ShadowEntry[] {
    const did = this.present.get(sid);
    if (!this.translationOn || did === undefined) return [];
    return [...(this.leaves.get(did)?.values() ?? [])].map((l) => ({
      s: BigInt(l.pfn) << 12n, e: (BigInt(l.pfn + l.pages) << 12n) - 1n, xl: BigInt(l.xlPfn) << 12n, perm: l.perm,
    }));
  }

  /** What the tables translate for `sid` in frames [pfn, pfn + pages), pages <= 512: a lookup per frame, not a scan. */
  expectedIn(sid: number, pfn: number, pages: number): ShadowEntry[] {
    const did = this.present.get(sid);
    const mine = did === undefined ? undefined : this.leaves.get(did);
    if (!this.translationOn || mine === undefined) return [];
    const out: ShadowEntry[] = [];
    const push = (l: Leaf | undefined) => {
      if (l) out.push({ s: BigInt(l.pfn) << 12n, e: (BigInt(l.pfn + l.pages) << 12n) - 1n, xl: BigInt(l.xlPfn) << 12n, perm: l.perm });
    };
    const big = mine.get(pfn - (pfn % PAGES_2M));
    if (big?.pages === PAGES_2M) push(big);
    for (let p = pfn; p < pfn + pages; p++) { const l = mine.get(p); if (l?.pages === 1) push(l); }
    return out;
  }

  /**
   * Queues descriptors and a wait descriptor with status write (6.5.2.8: SW,
   * status data in 63:32), moves the tail; true when the status was written,
   * i.e. every descriptor before it completed.
   */
  submit(...descs: Array<[bigint, bigint]>): boolean {
    const status = (++this.waits) >>> 0;
    descs.push([0x5n | 0x20n | (BigInt(status) << 32n), BigInt(STATUS)]);
    for (const [lo, hi] of descs) {
      this.w64(IQ + this.tail * 16, lo);
      this.w64(IQ + this.tail * 16 + 8, hi);
      this.tail = (this.tail + 1) % 256;
    }
    this.mmioWrite(REG.IQT, 8, BigInt(this.tail) << 4n);
    return this.ram.readU32(STATUS) === status;
  }

  /** Where the driver's tail is (hostile descriptors go there too). */
  get queueTail(): number { return this.tail; }
  set queueTail(t: number) { this.tail = t % 256; }
}
