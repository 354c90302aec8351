/**
 * The walking half of a sync or replay (internal to core): the page walker's
 * leaves are merged, as they arrive, against a cursor into each view's
 * B+tree leaves, and only the differences are recorded, as a script of
 * UNMAP/MAP operations in a typed array. The notifier list plays the scripts
 * once the walk has returned, so a walker that throws leaves every view as it
 * was, and a sync that finds nothing to change allocates nothing per leaf.
 *
 * Why not buffer the leaves and merge afterwards: a domain invalidation of a
 * 10^6-page address space reports 10^6 leaves, nearly all identical to the
 * view; comparing each with the view entry under a cursor (a few number
 * comparisons) is far cheaper than storing it and reading the view twice.
 */
import type { LeafSink } from './leaf';
import { IntervalMap, LEAF, POW2 } from './interval-map';
import { floorPow2, isPow2, lowBit } from './pow2';

/** Frames in the 64-bit space. */
const PFN_LIMIT = 2 ** 52;

/** Script operation types (the IOMMUNotifierFlag values). */
export const OP_UNMAP = 1;
export const OP_MAP = 2;

/**
 * One view being brought in line with the walked tables over frames
 * [lo, hi]: a cursor on the first view entry not yet matched, and the script.
 * Follows the minimal legal sequence of the contract (C4, C5): an identical
 * entry is left alone; view entries a leaf replaces, or that no leaf covers,
 * are unmapped whole before the leaf is mapped.
 */
export class ViewMerge {
  map!: IntervalMap;
  lo = 0;
  hi = -1;
  /** The view's version when the cursor was opened (the script is valid for it). */
  version = 0;
  // Cursor: absolute slot of the current entry (-1: no more entries in [lo, hi]),
  // end of its leaf's slots, and its leaf.
  slot = -1;
  slotEnd = 0;
  leaf = -1;
  starts: Float64Array = EMPTY_F64;
  xlats: Float64Array = EMPTY_F64;
  metas: Uint8Array = EMPTY_U8;
  private counts: Uint8Array = EMPTY_U8;
  private nexts: Int32Array = EMPTY_I32;

  /** The script: [start, pages, xlat, type << 2 | perm] per operation. */
  ops: Float64Array = new Float64Array(64);
  nOps = 0;

  /** Opens the cursor on the first entry of `map` ending at or after `lo`. */
  open(map: IntervalMap, lo: number, hi: number): void {
    this.map = map;
    this.lo = lo;
    this.hi = hi;
    this.version = map.version;
    this.nOps = 0;
    this.starts = map.rawStarts;
    this.xlats = map.rawXlats;
    this.metas = map.rawMetas;
    this.counts = map.rawCounts;
    this.nexts = map.rawNexts;
    if (map.seek(lo)) {
      this.leaf = map.cursorLeaf;
      const base = this.leaf * LEAF;
      this.slot = base + map.cursorIndex;
      this.slotEnd = base + this.counts[this.leaf]!;
      if (this.starts[this.slot]! > hi) this.slot = -1;
    } else {
      this.slot = -1;
    }
  }

  /** Moves the cursor to the next entry (the current one is matched or scripted). */
  advance(): void {
    if (++this.slot < this.slotEnd) {
      if (this.starts[this.slot]! > this.hi) this.slot = -1;
      return;
    }
    let lf = this.nexts[this.leaf]!;
    // Only the root leaf can be empty; skip defensively all the same.
    while (lf >= 0 && this.counts[lf] === 0) lf = this.nexts[lf]!;
    if (lf < 0) {
      this.slot = -1;
      return;
    }
    this.leaf = lf;
    this.slot = lf * LEAF;
    this.slotEnd = this.slot + this.counts[lf]!;
    if (this.starts[this.slot]! > this.hi) this.slot = -1;
  }

  /** A validated leaf (ascending, disjoint from the previous ones). */
  leafIn(s: number, n: number, x: number, perm: number): void {
    const e = s + n - 1;
    if (e < this.lo || s > this.hi) return;
    if (s >= this.lo && e <= this.hi) {
      this.target(s, n, x, perm);
      return;
    }
    // A leaf crossing the notifier's range edge: aligned chunks of its part inside.
    const ce = Math.min(e, this.hi);
    let p = Math.max(s, this.lo);
    while (p <= ce) {
      const cx = x + (p - s);
      const size = chunkPages(p, ce, cx);
      this.target(p, size, cx, perm);
      p += size;
    }
  }

  /** The tables hold [s, s + n - 1] -> x with perm (inside [lo, hi]). */
  private target(s: number, n: number, x: number, perm: number): void {
    const e = s + n - 1;
    const starts = this.starts;
    while (this.slot >= 0 && starts[this.slot]! + POW2[this.metas[this.slot]! >> 2]! - 1 < s) this.unmapCurrent();
    if (this.slot >= 0) {
      const slot = this.slot;
      const meta = this.metas[slot]!;
      if (starts[slot] === s && this.xlats[slot] === x && (meta & 3) === perm && POW2[meta >> 2] === n) {
        this.advance();
        return;
      }
    }
    while (this.slot >= 0 && starts[this.slot]! <= e) this.unmapCurrent();
    this.push(s, n, x, (OP_MAP << 2) | perm);
  }

  /** Scripts the UNMAP of the entry under the cursor (whole, with its translation, as delivered) and moves on. */
  private unmapCurrent(): void {
    const slot = this.slot;
    this.push(this.starts[slot]!, POW2[this.metas[slot]! >> 2]!, this.xlats[slot]!, OP_UNMAP << 2);
    this.advance();
  }

  /** After the walk: every entry left in [lo, hi] is gone from the tables. */
  finish(): void {
    while (this.slot >= 0) this.unmapCurrent();
  }

  private push(s: number, n: number, x: number, tp: number): void {
    let ops = this.ops;
    const i = this.nOps * 4;
    if (i === ops.length) {
      const grown = new Float64Array(ops.length * 2);
      grown.set(ops);
      this.ops = ops = grown;
    }
    ops[i] = s;
    ops[i + 1] = n;
    ops[i + 2] = x;
    ops[i + 3] = tp;
    this.nOps++;
  }

  /** Drops the cursor's hold on the view and a large script (the list keeps only views in memory). */
  release(): void {
    this.nOps = 0;
    this.starts = this.xlats = EMPTY_F64;
    this.metas = this.counts = EMPTY_U8;
    this.nexts = EMPTY_I32;
    if (this.ops.length > 4096) this.ops = new Float64Array(64);
  }
}

const EMPTY_F64 = new Float64Array(0);
const EMPTY_U8 = new Uint8Array(0);
const EMPTY_I32 = new Int32Array(0);

/**
 * The sink handed to the page walker: validates each leaf (the walker is a
 * model's code, but a misshapen leaf must not corrupt a view) and feeds it to
 * the views' merges. Also answers point probes (the leaf containing one
 * frame, for widening a sync to whole leaves).
 */
export class LeafMerger {
  /** Between the start of a walk and `end()`: a nested sync needs its own merger. */
  busy = false;
  /** The merges of this walk (empty: probe mode). */
  merges: ViewMerge[] = [];
  private nMerges = 0;
  /** The merge of the fast path: the only one (null when there are none or several). */
  private only: ViewMerge | null = null;
  /** Probe mode: the first leaf reported (start, pages), or pages 0. */
  probeStart = 0;
  probePages = 0;
  /** Last frame of the previous leaf, for the ordering check. */
  private prevEnd = -1;
  private qLo = 0;
  private qHi = 0;
  private listName = '';

  /**
   * Fast path: a leaf identical to the view entry under the cursor needs no
   * shape check (view entries are well formed) and no operation. Anything
   * else takes `leaf()`, which checks everything.
   */
  readonly sink: LeafSink = (s, n, x, perm) => {
    const m = this.only;
    if (m !== null) {
      const slot = m.slot;
      if (slot >= 0 && m.starts[slot] === s && m.xlats[slot] === x && s > this.prevEnd) {
        const meta = m.metas[slot]!;
        const e = s + n - 1;
        // [lo, hi] lies in the walked frames: an entry inside it passes the range check too.
        if ((meta & 3) === perm && POW2[meta >> 2] === n && s >= m.lo && e <= m.hi) {
          this.prevEnd = e;
          m.advance();
          return;
        }
      }
    }
    this.leaf(s, n, x, perm);
  };

  /** Starts a walk of frames [lo, hi] feeding the first `count` merges (opened by the caller). */
  begin(lo: number, hi: number, count: number, listName: string): void {
    this.prevEnd = -1;
    this.qLo = lo;
    this.qHi = hi;
    this.listName = listName;
    this.nMerges = count;
    this.only = count === 1 ? this.merges[0]! : null;
    this.probePages = 0;
  }

  /** The merge i (created on first use; reused across walks). */
  merge(i: number): ViewMerge {
    while (this.merges.length <= i) this.merges.push(new ViewMerge());
    return this.merges[i]!;
  }

  /** Ends a walk: lets go of the views and of large scripts. */
  end(): void {
    this.busy = false;
    for (let i = 0; i < this.nMerges; i++) this.merges[i]!.release();
    this.nMerges = 0;
    this.only = null;
  }

  private leaf(iovaPfn: number, pages: number, xlatPfn: number, perm: number): void {
    if (
      !Number.isInteger(iovaPfn) || iovaPfn < 0 || !isPow2(pages) || iovaPfn % pages !== 0 || iovaPfn + pages > PFN_LIMIT ||
      !Number.isInteger(xlatPfn) || xlatPfn < 0 || xlatPfn % pages !== 0 || xlatPfn + pages > PFN_LIMIT ||
      (perm !== 1 && perm !== 2 && perm !== 3)
    ) {
      throw new Error(`${this.listName}: page walker reported a misshapen leaf (iovaPfn ${iovaPfn}, pages ${pages}, xlatPfn ${xlatPfn}, perm ${perm}); leaves are aligned power-of-two frame ranges with perm r, w or rw`);
    }
    if (iovaPfn <= this.prevEnd) {
      throw new Error(`${this.listName}: page walker reported leaf at frame 0x${iovaPfn.toString(16)} out of order or overlapping the previous one`);
    }
    if (iovaPfn > this.qHi || iovaPfn + pages - 1 < this.qLo) {
      throw new Error(`${this.listName}: page walker reported leaf at frame 0x${iovaPfn.toString(16)} outside the walked frames [0x${this.qLo.toString(16)}, 0x${this.qHi.toString(16)}]`);
    }
    this.prevEnd = iovaPfn + pages - 1;
    if (this.nMerges === 0) {
      if (this.probePages === 0) {
        this.probeStart = iovaPfn;
        this.probePages = pages;
      }
      return;
    }
    for (let i = 0; i < this.nMerges; i++) this.merges[i]!.leafIn(iovaPfn, pages, xlatPfn, perm);
  }
}

/** Size in frames of the aligned power-of-two chunk starting at p, ending by `last`, aligned on xlat too (xlat < 0: none). */
export function chunkPages(p: number, last: number, xlat: number): number {
  let size = floorPow2(last - p + 1);
  if (p !== 0) size = Math.min(size, lowBit(p));
  if (xlat > 0) size = Math.min(size, lowBit(xlat));
  return size;
}
