/**
 * A guest's radix page tables of 512-entry levels (AMD-Vi v1 tables, Arm
 * VMSAv8-64 4 KiB-granule tables; fuzz/guest.ts keeps VT-d's own), with the
 * guest's record of every leaf it wrote (the reference for C9 and for vhost
 * caches) and of the ranges it changed and has not invalidated yet. Entry
 * formats come from the model driver, written from its specification.
 */
import type { SparseRam } from '../src/index';
import type { Leaf } from './guest';
import type { Rng } from './host';
import type { ShadowEntry } from './shadow';

/** A model's page-table entry encodings. Levels count from 1 (4 KiB leaves); 2 holds 2 MiB leaves. */
export interface PteFormat {
  /** A non-leaf entry at `level` pointing to the table at `addr`. */
  table(addr: number, level: number): bigint;
  /** A leaf at `level` (1: 4 KiB, 2: 2 MiB) translating to frame `xlPfn` with `perm` (1 R, 2 W, 3 RW). */
  leaf(xlPfn: number, level: number, perm: number): bigint;
  /** The table a well-formed non-leaf entry at `level` points to, else undefined. */
  next(pte: bigint, level: number): number | undefined;
}

export const PAGES_2M = 512;

/** IOVA windows of a clean guest, in frames: 16 MiB at 0 and 4 MiB at 1 GiB (clear of the x86 MSI window). */
const WINDOWS = [{ base: 0, pages: 4096 }, { base: 0x40000, pages: 1024 }];

export function randomPfn(rng: Rng): number {
  const w = rng.pick(WINDOWS);
  return w.base + rng.int(w.pages);
}

export const leafEntry = (l: Leaf): ShadowEntry => ({ s: BigInt(l.pfn) << 12n, e: (BigInt(l.pfn + l.pages) << 12n) - 1n, xl: BigInt(l.xlPfn) << 12n, perm: l.perm });

export class RadixTables {
  /** Table pages handed out, in order (hostile writes aim at them). */
  readonly tables: number[] = [];
  /** Key (domain, ASID, VMID) -> top-level table. */
  readonly tops = new Map<number, number>();
  /** Key -> its leaves by first frame. */
  readonly leaves = new Map<number, Map<number, Leaf>>();
  /** Key -> frame ranges [first, last] changed since an invalidation covered them. */
  private readonly dirty = new Map<number, Array<[number, number]>>();
  private nextTable: number;

  constructor(readonly ram: SparseRam, readonly fmt: PteFormat, readonly levels: number, readonly tablesStart: number, readonly tablesEnd: number) {
    this.nextTable = tablesStart;
  }

  get tableSpaceLeft(): boolean { return this.nextTable < this.tablesEnd; }

  /** A zeroed table page, or undefined when the table area is used up. */
  table(): number | undefined {
    if (this.nextTable >= this.tablesEnd) return undefined;
    const t = this.nextTable;
    this.nextTable += 4096;
    this.ram.write(t, new Uint8Array(4096));
    this.tables.push(t);
    return t;
  }

  /** The top table of `key`, made on first use. */
  top(key: number): number | undefined {
    let t = this.tops.get(key);
    if (t === undefined) {
      t = this.table();
      if (t === undefined) return undefined;
      this.tops.set(key, t);
      this.leaves.set(key, new Map());
    }
    return t;
  }

  r64(gpa: number): bigint { return this.ram.readU64(gpa) ?? 0n; }
  w64(gpa: number, v: bigint): void { this.ram.writeU64(gpa, v); }

  private slot(table: number, level: number, pfn: number): number {
    return table + (Math.floor(pfn / 2 ** (9 * (level - 1))) % 512) * 8;
  }

  /** Writes a 4 KiB (pages 1) or 2 MiB (pages 512) leaf, replacing what covered the slot; records it and marks it changed. */
  map(key: number, pfn: number, pages: 1 | 512, xlPfn: number, perm: number): boolean {
    const top = this.top(key);
    const mine = this.leaves.get(key);
    if (top === undefined || mine === undefined) return false;
    const leafLevel = pages === 1 ? 1 : 2;
    let table = top;
    for (let level = this.levels; level > leafLevel; level--) {
      const s = this.slot(table, level, pfn);
      const t = this.fmt.next(this.r64(s), level);
      if (t !== undefined) { table = t; continue; }
      const fresh = this.table();
      if (fresh === undefined) return false;
      // A 2 MiB leaf replaced by a table: it is gone.
      if (level === 2) mine.delete(pfn - (pfn % PAGES_2M));
      this.w64(s, this.fmt.table(fresh, level));
      table = fresh;
    }
    if (pages === PAGES_2M) {
      // A table under the slot is dropped with its 4 KiB leaves.
      for (const k of [...mine.keys()]) if (k >= pfn && k < pfn + PAGES_2M) mine.delete(k);
    }
    this.w64(this.slot(table, leafLevel, pfn), this.fmt.leaf(xlPfn, leafLevel, perm));
    mine.set(pfn, { pfn, pages, xlPfn, perm });
    this.markDirty(key, pfn - (pfn % PAGES_2M), pfn - (pfn % PAGES_2M) + PAGES_2M - 1);
    return true;
  }

  /**
   * A clean guest's map: a 4 KiB or (15%) 2 MiB leaf of key 1..3 in a
   * window, to a data page at frame `dataPfn` onwards, with a perm from
   * `perms`; false when the table area is used up.
   */
  randomMap(rng: Rng, dataPfn: number, perms: readonly number[]): boolean {
    if (!this.tableSpaceLeft) return false;
    const key = 1 + rng.int(3);
    const big = rng.chance(0.15);
    let pfn = randomPfn(rng);
    if (big) pfn -= pfn % PAGES_2M;
    const xl = dataPfn + (big ? PAGES_2M * rng.int(24) : rng.int(0x3000));
    return this.map(key, pfn, big ? PAGES_2M : 1, xl, rng.pick(perms));
  }

  /** A clean guest's unmap of one leaf of key 1..3; false when it has none. */
  randomUnmap(rng: Rng): boolean {
    const key = 1 + rng.int(3);
    const mine = this.leaves.get(key);
    if (!mine || mine.size === 0) return false;
    this.unmap(key, rng.pick([...mine.values()]));
    return true;
  }

  /** Tables hostile writes aim at: those handed out, or the first table page before any. */
  hostileTargets(): number[] {
    return this.tables.length ? this.tables : [this.tablesStart];
  }

  /** One slot of a random table gets `entry()`. */
  corruptSlot(rng: Rng, entry: () => bigint): void {
    const targets = this.hostileTargets();
    this.ram.writeU64(rng.pick(targets) + rng.int(512) * 8, entry());
  }

  /**
   * Aliasing and loops: a random table whose slots all point (`pointer`, in
   * the model's format) at one table, itself half the time (see `alias`).
   */
  aliasRandom(rng: Rng, pointer: (table: number) => bigint, other: () => bigint): void {
    const targets = this.hostileTargets();
    const t = rng.pick(targets);
    this.alias(t, pointer(rng.chance(0.5) ? t : rng.pick(targets)), rng, other);
  }

  /** A hostile table: every slot `entry` (90%) or `other()`; `entry` pointing at the table itself or another makes loops and aliasing. */
  alias(table: number, entry: bigint, rng: Rng, other: () => bigint): void {
    const page = new Uint8Array(4096);
    const dv = new DataView(page.buffer);
    for (let i = 0; i < 512; i++) dv.setBigUint64(i * 8, rng.chance(0.9) ? entry : other(), true);
    this.ram.write(table, page);
  }

  /** Clears the slot of the leaf starting at `pfn`. */
  unmap(key: number, leaf: Leaf): void {
    const top = this.tops.get(key);
    if (top === undefined) return;
    const leafLevel = leaf.pages === 1 ? 1 : 2;
    let table = top;
    for (let level = this.levels; level > leafLevel; level--) {
      const t = this.fmt.next(this.r64(this.slot(table, level, leaf.pfn)), level);
      if (t === undefined) return;
      table = t;
    }
    this.w64(this.slot(table, leafLevel, leaf.pfn), 0n);
    this.leaves.get(key)?.delete(leaf.pfn);
    this.markDirty(key, leaf.pfn, leaf.pfn + leaf.pages - 1);
  }

  /** Every leaf of `key` as entries. */
  expected(key: number): ShadowEntry[] {
    return [...(this.leaves.get(key)?.values() ?? [])].map(leafEntry);
  }

  /** The leaves of `key` in frames [pfn, pfn + pages), pages <= 512: a lookup per frame, not a scan. */
  expectedIn(key: number, pfn: number, pages: number): ShadowEntry[] {
    const mine = this.leaves.get(key);
    if (!mine) return [];
    const out: ShadowEntry[] = [];
    const big = mine.get(pfn - (pfn % PAGES_2M));
    if (big?.pages === PAGES_2M) out.push(leafEntry(big));
    for (let p = pfn; p < pfn + pages; p++) { const l = mine.get(p); if (l?.pages === 1) out.push(leafEntry(l)); }
    return out;
  }

  /** The leaf of `key` holding frame `pfn`. */
  leafAt(key: number, pfn: number): Leaf | undefined {
    const mine = this.leaves.get(key);
    const small = mine?.get(pfn);
    if (small?.pages === 1) return small;
    const big = mine?.get(pfn - (pfn % PAGES_2M));
    return big?.pages === PAGES_2M ? big : undefined;
  }

  markDirty(key: number, first: number, last: number): void {
    const d = this.dirty.get(key) ?? [];
    d.push([first, last]);
    this.dirty.set(key, d);
  }

  /** An invalidation of frames [first, last] of `key` (undefined: every key) completed: changes wholly inside it are now visible. */
  clean(key: number | undefined, first = 0, last = Number.MAX_SAFE_INTEGER): void {
    for (const [k, d] of this.dirty) {
      if (key !== undefined && k !== key) continue;
      this.dirty.set(k, d.filter(([a, b]) => a < first || b > last));
    }
  }

  /** Whether frames [first, last] of `key` hold a change no invalidation covered yet. */
  isDirty(key: number, first: number, last: number): boolean {
    return (this.dirty.get(key) ?? []).some(([a, b]) => a <= last && b >= first);
  }
}
