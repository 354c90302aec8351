/**
 * The mappings of one virtio-iommu domain: disjoint inclusive byte intervals
 * [virtStart, virtEnd] of the 64-bit IOVA space -> physStart, with MAP flags.
 *
 * A sorted structure of typed arrays: each bound is kept as a 4 KiB frame
 * number (exact as a JS number, < 2^52) and a page offset, so the lookup
 * translate() does on every DMA is a binary search over numbers, O(log n)
 * with no bigint arithmetic and no allocation. Inserts and removals shift
 * the arrays (copyWithin, O(n) memmove): a MAP or UNMAP request also
 * notifies listeners, which costs far more than moving 10^4 slots.
 * (core/interval-map.ts does not fit: it keeps aligned power-of-two frame
 * intervals, and a virtio mapping is any byte interval.)
 *
 * QEMU 7.2 keeps them in a GLib GTree ordered by an interval compare that
 * calls two intervals equal when they overlap; lookups find "some"
 * overlapping node. The differences that makes are handled by the device
 * (see device.ts, UNMAP and translate).
 */
import type { IOMMUAccessFlags } from '../../core/access';
import { PAGE_OFFSET_MASK } from '../../core/guest-addr';
import type { IOMMUTLBEntry } from '../../core/tlb-entry';

/** The 4 KiB offset mask, module-local for translate's hot path (no property load per use). */
const PAGE_MASK = PAGE_OFFSET_MASK;

const U64 = new BigUint64Array(1);
const U32 = new Uint32Array(U64.buffer);
/** Index of the low 32-bit half in U32 (typed arrays use the host's byte order). */
const LO = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HI = LO ^ 1;

/** Slots per block of the lookup's first level (32 start frames: 256 bytes, four cache lines). */
const BLOCK = 32;

/** Lookup cache: slots (a power of two, 128 KiB), and the domain size from which a domain gets one (at most 64 bytes per mapping, so a hostile guest cannot grow memory through it). */
const HINT_SIZE = 8192;
const HINT_MASK = HINT_SIZE - 1;
const HINT_MIN = 2048;

/** Layout of MappingStore.rec: per slot, start offset, end frame and offset, flags, phys - virt congruent mod 4 KiB (1/0), cached frame. */
const STRIDE = 8;
const R_LOW_O = 0;
const R_HIGH_P = 1;
const R_HIGH_O = 2;
const R_FLAGS = 3;
const R_CONGRUENT = 4;
const R_CACHE_PFN = 5;

/** Results of splitU64 (module scope: no allocation). */
export let splitPfn = 0;
export let splitOff = 0;

/** Splits a u64 (taken modulo 2^64) into its 4 KiB frame number and page offset: `splitPfn`, `splitOff`. */
export function splitU64(v: bigint): void {
  U64[0] = v;
  const lo = U32[LO]!;
  splitPfn = U32[HI]! * 0x10_0000 + (lo >>> 12);
  splitOff = lo & 0xfff;
}

/** Frame and offset of two bounds (splitBounds' result: no allocation). */
const BOUNDS = new Float64Array(4);

function splitBounds(low: bigint, high: bigint): void {
  splitU64(low);
  BOUNDS[0] = splitPfn;
  BOUNDS[1] = splitOff;
  splitU64(high);
  BOUNDS[2] = splitPfn;
  BOUNDS[3] = splitOff;
}

/** (p1, o1) < (p2, o2) as u64 addresses. */
function lt(p1: number, o1: number, p2: number, o2: number): boolean {
  return p1 < p2 || (p1 === p2 && o1 < o2);
}

/** One mapping, as the device reports it (listing, replay, tests). */
export interface VirtioMapping {
  virtStart: bigint;
  virtEnd: bigint;
  physStart: bigint;
  flags: number;
}

export class MappingStore {
  /** Number of (well-formed) mappings. */
  size = 0;
  /**
   * MAPs QEMU accepted with virt_end < virt_start. QEMU 7.2 inserts them in
   * its tree, where its overlap compare never matches them (the findings:
   * "such an interval is invisible to later overlap checks"): they
   * translate nothing, are never unmapped by UNMAP, and go with the
   * domain. Kept as a count only.
   */
  inverted = 0;

  /** Start frame of each slot: the search keys, packed for the search. */
  private lowP = new Float64Array(16);
  /**
   * The rest of a slot's numbers, together (STRIDE per slot, one cache line)
   * so that a translation touches few lines: see the R_* offsets.
   */
  private rec = new Float64Array(16 * STRIDE);
  private lows = new BigUint64Array(16);
  private highs = new BigUint64Array(16);
  private phys = new BigUint64Array(16);
  /** Per slot: the last translation handed out (frame R_CACHE_PFN), reused when the same page is translated again. */
  private cache: Array<IOMMUTLBEntry | undefined> = [];
  /** Lookup cache (see lookup): HINT_SIZE x [frame, generation, slot, -]; valid while the generation is `gen`. */
  private hints: Float64Array | undefined;
  private gen = 1;
  /** Start frame of every BLOCK-th slot (see floor), rebuilt on the first lookup after a change. */
  private sample = new Float64Array(4);
  private sampleN = 0;
  private sampleDirty = true;

  /** Index of the last mapping whose start is <= (p, o), or -1. */
  floor(p: number, o: number): number {
    const lp = this.lowP;
    const n = this.size;
    if (n === 0 || lp[0]! > p) return -1;
    if (this.sampleDirty) this.buildSample();
    // Two levels, so that a lookup touches few cache lines: the sample (every
    // BLOCK-th start frame, small enough to stay in L1) gives the block, a
    // halving search inside the block gives the last start frame <= p ...
    const sample = this.sample;
    let base = 0;
    let len = this.sampleN;
    while (len > 1) {
      const half = len >>> 1;
      if (sample[base + half]! <= p) base += half;
      len -= half;
    }
    base *= BLOCK;
    len = Math.min(BLOCK, n - base);
    while (len > 1) {
      const half = len >>> 1;
      if (lp[base + half]! <= p) base += half;
      len -= half;
    }
    // ... then back over mappings starting later in the same frame (only
    // unaligned mappings share a start frame).
    const rec = this.rec;
    while (base >= 0 && lp[base] === p && rec[base * STRIDE + R_LOW_O]! > o) base--;
    return base;
  }

  private buildSample(): void {
    const k = Math.ceil(this.size / BLOCK);
    if (this.sample.length < k) this.sample = new Float64Array(Math.max(k, this.sample.length * 2));
    for (let i = 0; i < k; i++) this.sample[i] = this.lowP[i * BLOCK]!;
    this.sampleN = k;
    this.sampleDirty = false;
  }

  /** Whether mapping i ends at or after (p, o). */
  private endsAtOrAfter(i: number, p: number, o: number): boolean {
    const hp = this.rec[i * STRIDE + R_HIGH_P]!;
    return hp > p || (hp === p && this.rec[i * STRIDE + R_HIGH_O]! >= o);
  }

  /** Index of a mapping that intersects [low, high] (inclusive, low <= high), the lowest one; -1 if none. */
  firstOverlap(low: bigint, high: bigint): number {
    splitBounds(low, high);
    const ap = BOUNDS[0]!;
    const ao = BOUNDS[1]!;
    const bp = BOUNDS[2]!;
    const bo = BOUNDS[3]!;
    const i = this.floor(ap, ao);
    if (i >= 0 && this.endsAtOrAfter(i, ap, ao)) return i;
    const j = i + 1;
    if (j < this.size && !lt(bp, bo, this.lowP[j]!, this.rec[j * STRIDE + R_LOW_O]!)) return j;
    return -1;
  }

  /**
   * The mapping QEMU 7.2's translate finds for a byte address given as
   * (frame, offset): it looks up the interval [addr, addr + 1], so besides
   * the mapping holding addr, one that starts at addr + 1 matches too
   * (the findings' "off-by-one lookup"). -1 if none.
   */
  lookupQemu(p: number, o: number): number {
    const i = this.lookup(p, o);
    if (i >= 0) return i;
    const j = this.floor(p, o) + 1;
    if (j >= this.size) return -1;
    // addr + 1 (no wrap at 2^64 - 1: nothing starts after it).
    const np = o === 0xfff ? p + 1 : p;
    const no = o === 0xfff ? 0 : o + 1;
    return this.lowP[j] === np && this.rec[j * STRIDE + R_LOW_O] === no ? j : -1;
  }

  /**
   * The mapping holding (p, o), or -1. A direct-mapped cache of frame ->
   * slot (an IOTLB of sorts, dropped by any insert or removal) answers
   * repeated lookups of a frame without the search; a miss costs the
   * O(log n) search. Only domains with many mappings get one.
   */
  lookup(p: number, o: number): number {
    const hints = this.hints;
    if (hints !== undefined) {
      const h = ((p >>> 0) & HINT_MASK) * 4;
      if (hints[h] === p && hints[h + 1] === this.gen) {
        const i = hints[h + 2]!;
        if (this.holds(i, p, o)) return i;
      }
      const i = this.floor(p, o);
      if (i < 0 || !this.endsAtOrAfter(i, p, o)) return -1;
      hints[h] = p;
      hints[h + 1] = this.gen;
      hints[h + 2] = i;
      return i;
    }
    if (this.size >= HINT_MIN) this.hints = new Float64Array(HINT_SIZE * 4).fill(-1);
    const i = this.floor(p, o);
    return i >= 0 && this.endsAtOrAfter(i, p, o) ? i : -1;
  }

  /** Whether mapping i holds (p, o). */
  private holds(i: number, p: number, o: number): boolean {
    const sp = this.lowP[i]!;
    return (sp < p || (sp === p && this.rec[i * STRIDE + R_LOW_O]! <= o)) && this.endsAtOrAfter(i, p, o);
  }

  virtStart(i: number): bigint { return this.lows[i]!; }
  virtEnd(i: number): bigint { return this.highs[i]!; }
  physStart(i: number): bigint { return this.phys[i]!; }
  flags(i: number): number { return this.rec[i * STRIDE + R_FLAGS]!; }
  startPfn(i: number): number { return this.lowP[i]!; }
  endPfn(i: number): number { return this.rec[i * STRIDE + R_HIGH_P]!; }

  /**
   * The translation of byte (p, o) through mapping i as a 4 KiB entry (QEMU
   * 7.2: addr_mask 0xfff, translated = addr - virt_start + phys_start, of
   * which the memory core keeps the page: so a sub-page offset of phys_start
   * is lost). Reused for the next access to the same page when it can be.
   */
  entry(i: number, iova: bigint, p: number, perm: IOMMUAccessFlags): IOMMUTLBEntry {
    const r = i * STRIDE;
    const congruent = this.rec[r + R_CONGRUENT] === 1;
    if (congruent && this.rec[r + R_CACHE_PFN] === p) {
      const e = this.cache[i];
      if (e !== undefined && e.perm === perm) return e;
    }
    const page = iova & ~PAGE_MASK;
    const translated = BigInt.asUintN(64, iova - this.lows[i]! + this.phys[i]!) & ~PAGE_MASK;
    const e: IOMMUTLBEntry = { iova: page, translatedAddr: translated, addrMask: PAGE_MASK, perm };
    if (congruent) {
      this.cache[i] = e;
      this.rec[r + R_CACHE_PFN] = p;
    }
    return e;
  }

  /** Inserts [low, high] -> phys (low <= high; the caller checked there is no overlap). Returns its index. */
  insert(low: bigint, high: bigint, phys: bigint, flags: number): number {
    splitBounds(low, high);
    const ap = BOUNDS[0]!;
    const ao = BOUNDS[1]!;
    const bp = BOUNDS[2]!;
    const bo = BOUNDS[3]!;
    if (this.size === this.lows.length) this.grow();
    const at = this.floor(ap, ao) + 1;
    const n = this.size;
    if (at < n) {
      this.lowP.copyWithin(at + 1, at, n);
      this.rec.copyWithin((at + 1) * STRIDE, at * STRIDE, n * STRIDE);
      this.lows.copyWithin(at + 1, at, n);
      this.highs.copyWithin(at + 1, at, n);
      this.phys.copyWithin(at + 1, at, n);
    }
    this.cache.splice(at, 0, undefined);
    this.lowP[at] = ap;
    const r = at * STRIDE;
    this.rec[r + R_LOW_O] = ao;
    this.rec[r + R_HIGH_P] = bp;
    this.rec[r + R_HIGH_O] = bo;
    this.rec[r + R_FLAGS] = flags;
    this.rec[r + R_CONGRUENT] = ((phys - low) & PAGE_MASK) === 0n ? 1 : 0;
    this.rec[r + R_CACHE_PFN] = -1;
    this.lows[at] = low;
    this.highs[at] = high;
    this.phys[at] = phys;
    this.size = n + 1;
    this.sampleDirty = true;
    this.gen = (this.gen + 1) >>> 0 || 1;
    return at;
  }

  /** Removes mapping i. */
  removeAt(i: number): void {
    const n = this.size;
    if (i < 0 || i >= n) return;
    this.lowP.copyWithin(i, i + 1, n);
    this.rec.copyWithin(i * STRIDE, (i + 1) * STRIDE, n * STRIDE);
    this.lows.copyWithin(i, i + 1, n);
    this.highs.copyWithin(i, i + 1, n);
    this.phys.copyWithin(i, i + 1, n);
    this.cache.splice(i, 1);
    this.size = n - 1;
    this.sampleDirty = true;
    this.gen = (this.gen + 1) >>> 0 || 1;
  }

  /** Every mapping, ascending (tests, listings). */
  list(): VirtioMapping[] {
    const out: VirtioMapping[] = [];
    for (let i = 0; i < this.size; i++) {
      out.push({ virtStart: this.lows[i]!, virtEnd: this.highs[i]!, physStart: this.phys[i]!, flags: this.flags(i) });
    }
    return out;
  }

  private grow(): void {
    const cap = this.lows.length * 2;
    const lowP = new Float64Array(cap);
    lowP.set(this.lowP);
    this.lowP = lowP;
    const rec = new Float64Array(cap * STRIDE);
    rec.set(this.rec);
    this.rec = rec;
    const u64 = (a: BigUint64Array) => { const b = new BigUint64Array(cap); b.set(a); return b; };
    this.lows = u64(this.lows);
    this.highs = u64(this.highs);
    this.phys = u64(this.phys);
  }
}
