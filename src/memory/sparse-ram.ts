import { endianness } from 'node:os';
import { hex } from '../core/guest-addr';
import type { GuestMemory, RamExtentSource } from './guest-memory';

/** One RAM region as the trace header's `ram` gives it (numbers or bigints; hex strings are the reader's business). */
export interface RamRegion {
  base: number | bigint;
  size: number | bigint;
}

/** Bytes per backing page. */
const PAGE_SHIFT = 12;
const PAGE_SIZE = 1 << PAGE_SHIFT;
/** Entries of pageWords' direct-mapped cache (a power of two). */
const WORDS_CACHE_SIZE = 16;
const WORDS_CACHE_MASK = WORDS_CACHE_SIZE - 1;
/** 1 / PAGE_SIZE, exact (a power of two): a multiply instead of a divide on the hot paths. */
const PAGE_SCALE = 2 ** -PAGE_SHIFT;
/** Pages per second-level directory (4 MiB of RAM per directory slot). */
const DIR_SHIFT = 10;
const DIR_PAGES = 1 << DIR_SHIFT;
const DIR_MASK = DIR_PAGES - 1;
/**
 * Largest region accepted: 16 TiB. Page indexes within a region then fit 32
 * bits (fast `>>>`), and the first-level directory stays at most 4 Mi slots.
 */
const MAX_REGION_SIZE = 2 ** 44;
const LIMIT = 2 ** 53;
/**
 * RAM ends at or below 2^52 (the largest physical address space of x86 and
 * Arm), so `gpa + len` of any access that may hit RAM is an exact sum.
 */
const RAM_LIMIT = 2 ** 52;

/** The aligned-u32 fast path relies on typed arrays being little-endian (as the guest is). */
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** Shared zero page: reads of an unwritten page come from here, and never allocate. */
const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
/** The zero page as words, for `pageWords` of an unwritten page (never written through). */
const ZERO_WORDS = new Uint32Array(ZERO_PAGE.buffer);

/**
 * An optional capability of a GuestMemory: the little-endian u32 words of a
 * whole 4 KiB page, so a page-table walker reads a table through one array
 * instead of one call per word. Walkers feature-detect it (`'pageWords' in
 * mem`) and keep the generic `readU32` path for memories without it.
 */
export interface PageWordsSource {
  /**
   * The 1024 words of the 4 KiB page holding `gpa`, word i at byte offset 4i:
   * a live view (later writes show through) that the caller must only read.
   * Undefined when the page is not wholly RAM of one region, or when the
   * host is big-endian; the caller then reads word by word.
   */
  pageWords(gpa: number): Uint32Array | undefined;
}

interface Page {
  bytes: Uint8Array;
  words: Uint32Array;
}

class Region {
  /** First byte (inclusive) and end (exclusive) as exact numbers. */
  readonly base: number;
  readonly end: number;
  /** Last address a 4-byte access may start at. */
  readonly lastU32: number;
  /** Frame number of the page that holds `base`, and that page's address. */
  readonly firstPfn: number;
  readonly pageBase: number;
  /** Page indexes (relative to firstPfn) of the first and last pages wholly inside the region (first > last: none). */
  readonly wholeFirst: number;
  readonly wholeLast: number;
  /** First level: one slot per DIR_PAGES pages, allocated on first write. */
  readonly dir: Array<Array<Page | undefined> | undefined>;

  constructor(base: number, size: number) {
    this.base = base;
    this.end = base + size;
    this.lastU32 = this.end - 4;
    this.firstPfn = Math.floor(base / PAGE_SIZE);
    this.pageBase = this.firstPfn * PAGE_SIZE;
    const lastPfn = Math.floor((this.end - 1) / PAGE_SIZE);
    this.wholeFirst = base === this.pageBase ? 0 : 1;
    this.wholeLast = lastPfn - this.firstPfn - ((this.end % PAGE_SIZE) === 0 ? 0 : 1);
    const slots = Math.floor((lastPfn - this.firstPfn) / DIR_PAGES) + 1;
    // fill() keeps the array packed (fast elements) instead of holey.
    this.dir = new Array<Array<Page | undefined> | undefined>(slots).fill(undefined);
  }

  /** The page holding `gpa` (must be inside the region), or undefined when never written. */
  page(gpa: number): Page | undefined {
    const idx = (Math.floor(gpa / PAGE_SIZE) - this.firstPfn) >>> 0;
    const slot = this.dir[idx >>> DIR_SHIFT];
    return slot === undefined ? undefined : slot[idx & DIR_MASK];
  }

  /** The page holding `gpa`, allocated zero-filled on first use. */
  pageForWrite(gpa: number, ram: SparseRam): Page {
    const idx = (Math.floor(gpa / PAGE_SIZE) - this.firstPfn) >>> 0;
    const hi = idx >>> DIR_SHIFT;
    let slot = this.dir[hi];
    if (slot === undefined) {
      slot = new Array<Page | undefined>(DIR_PAGES).fill(undefined);
      this.dir[hi] = slot;
    }
    let page = slot[idx & DIR_MASK];
    if (page === undefined) {
      const buffer = new ArrayBuffer(PAGE_SIZE);
      page = { bytes: new Uint8Array(buffer), words: new Uint32Array(buffer) };
      slot[idx & DIR_MASK] = page;
      ram.countPage();
    }
    return page;
  }
}

function toExactNumber(v: number | bigint, what: string): number {
  if (typeof v === 'bigint') {
    if (v < 0n || v >= BigInt(LIMIT)) throw new RangeError(`SparseRam: ${what} ${'0x' + v.toString(16)} is not in [0, 2^53)`);
    return Number(v);
  }
  if (!Number.isInteger(v) || v < 0 || v >= LIMIT) throw new RangeError(`SparseRam: ${what} ${String(v)} is not an integer in [0, 2^53)`);
  return v;
}


/**
 * Guest RAM made of the given regions, zero-filled at the start (trace-v1
 * header `ram`). Pages are 4 KiB and allocated on first write, so a region of
 * several GiB costs a few directory slots until written; reading a page never
 * written returns zeros without allocating.
 *
 * Hot path: `readU32`, called twice per page-table entry in a VT-d walk. It
 * checks the region of the previous access first, then reads an aligned word
 * through a Uint32Array view of the page (the host is little-endian, as the
 * guest is; on a big-endian host every access assembles bytes instead).
 * Page-table walkers that scan whole tables use `pageWords` (PageWordsSource)
 * instead: one lookup per table.
 */
export class SparseRam implements GuestMemory, PageWordsSource, RamExtentSource {
  private readonly regions: Region[];
  private last: Region;
  private pages = 0;

  /**
   * @param regions RAM regions; any order, but they must not overlap, must be
   *   non-empty, must end at or below 2^52 and be at most 16 TiB each.
   * @throws RangeError naming the offending region otherwise.
   */
  constructor(regions: readonly RamRegion[]) {
    const parsed = regions.map((r, i) => {
      const base = toExactNumber(r.base, `region ${i} base`);
      const size = toExactNumber(r.size, `region ${i} size`);
      if (size === 0) throw new RangeError(`SparseRam: region ${i} at ${hex(base)} is empty`);
      if (size > MAX_REGION_SIZE) throw new RangeError(`SparseRam: region ${i} at ${hex(base)} is larger than 16 TiB`);
      if (base + size > RAM_LIMIT) throw new RangeError(`SparseRam: region ${i} at ${hex(base)} (size ${hex(size)}) ends above 2^52, the largest physical address space`);
      return { base, size, i };
    });
    parsed.sort((a, b) => a.base - b.base);
    for (let k = 1; k < parsed.length; k++) {
      const prev = parsed[k - 1]!;
      const cur = parsed[k]!;
      if (cur.base < prev.base + prev.size) {
        throw new RangeError(
          `SparseRam: region ${cur.i} at ${hex(cur.base)} overlaps region ${prev.i} [${hex(prev.base)}, ${hex(prev.base + prev.size)})`,
        );
      }
    }
    this.regions = parsed.map((p) => new Region(p.base, p.size));
    // With no RAM, an empty region makes the cache check fail without a special case.
    this.last = this.regions[0] ?? new Region(0, 0);
  }

  /** Number of 4 KiB pages allocated so far. */
  get pagesAllocated(): number {
    return this.pages;
  }

  /** Bytes of page storage allocated so far. */
  get bytesAllocated(): number {
    return this.pages * PAGE_SIZE;
  }

  /** @internal */
  countPage(): void {
    this.pages++;
  }

  /** The region holding [gpa, gpa + len), or undefined (not in one region, or not an integer address). */
  private regionOf(gpa: number, len: number): Region | undefined {
    const last = this.last;
    if (gpa >= last.base && gpa + len <= last.end && Number.isInteger(gpa)) return last;
    if (!Number.isInteger(gpa) || gpa < 0) return undefined;
    // Binary search: last region whose base <= gpa.
    const rs = this.regions;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (rs[mid]!.base <= gpa) lo = mid;
      else hi = mid - 1;
    }
    const r = rs[lo];
    if (r === undefined || gpa < r.base || gpa + len > r.end) return undefined;
    this.last = r;
    return r;
  }

  ramExtent(gpa: number, end: number): { ram: boolean; end: number } {
    if (!Number.isInteger(gpa) || gpa < 0 || gpa >= LIMIT) return { ram: false, end };
    let r = this.regionOf(gpa, 1);
    if (r === undefined) {
      // Not RAM up to the next region's base.
      const rs = this.regions;
      let lo = 0;
      let hi = rs.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (rs[mid]!.base <= gpa) lo = mid + 1;
        else hi = mid;
      }
      const next = rs[lo];
      return { ram: false, end: next === undefined ? end : Math.min(next.base, end) };
    }
    // RAM through adjacent regions.
    let a = r.end;
    while (a < end && (r = this.regionOf(a, 1)) !== undefined) a = r.end;
    return { ram: true, end: Math.min(a, end) };
  }

  /** Whether every byte of [gpa, gpa + len) is RAM; regions may be adjacent, so an access can span two. */
  private covered(gpa: number, len: number): boolean {
    if (!Number.isInteger(gpa) || gpa < 0 || gpa > RAM_LIMIT - len) return false;
    let a = gpa;
    const end = gpa + len;
    while (a < end) {
      const r = this.regionOf(a, 1);
      if (r === undefined) return false;
      a = Math.min(r.end, end);
    }
    return true;
  }

  read(gpa: number, dst: Uint8Array): boolean {
    const len = dst.length;
    if (len === 0) return Number.isInteger(gpa) && gpa >= 0 && gpa < LIMIT;
    if (this.regionOf(gpa, len) === undefined && !this.covered(gpa, len)) return false;
    let a = gpa;
    let done = 0;
    while (done < len) {
      const r = this.regionOf(a, 1)!;
      const off = a % PAGE_SIZE;
      const n = Math.min(len - done, PAGE_SIZE - off, r.end - a);
      const page = r.page(a);
      const src = page === undefined ? ZERO_PAGE : page.bytes;
      dst.set(src.subarray(off, off + n), done);
      done += n;
      a += n;
    }
    return true;
  }

  write(gpa: number, src: Uint8Array): boolean {
    const len = src.length;
    if (len === 0) return Number.isInteger(gpa) && gpa >= 0 && gpa < LIMIT;
    if (this.regionOf(gpa, len) === undefined && !this.covered(gpa, len)) return false;
    let a = gpa;
    let done = 0;
    while (done < len) {
      const r = this.regionOf(a, 1)!;
      const off = a % PAGE_SIZE;
      const n = Math.min(len - done, PAGE_SIZE - off, r.end - a);
      r.pageForWrite(a, this).bytes.set(src.subarray(done, done + n), off);
      done += n;
      a += n;
    }
    return true;
  }

  readU32(gpa: number): number {
    let r = this.last;
    if (!(gpa >= r.base && gpa <= r.lastU32)) {
      const found = this.regionOf(gpa, 4);
      if (found === undefined) return this.covered(gpa, 4) ? this.readU32Slow(gpa) : -1;
      r = found;
    }
    // Page index and offset without Math.floor or %: a region is at most
    // 2^44 bytes, so the quotient fits 32 bits and `>>> 0` floors it.
    const rel = gpa - r.pageBase;
    const idx = (rel / PAGE_SIZE) >>> 0;
    const off = rel - idx * PAGE_SIZE;
    // Integer and 4-aligned: `off & 0xffc` equals `off` only then (fractional offsets differ).
    if (LITTLE_ENDIAN_HOST && (off & 0xffc) === off) {
      const slot = r.dir[idx >>> DIR_SHIFT];
      if (slot === undefined) return 0;
      const page = slot[idx & DIR_MASK];
      return page === undefined ? 0 : page.words[off >>> 2]!;
    }
    if (!Number.isInteger(gpa)) return -1;
    return this.readU32Slow(gpa);
  }

  pageWords(gpa: number): Uint32Array | undefined {
    // A walk reads one table per level, the same few tables walk after walk:
    // a small direct-mapped cache of allocated pages skips the region and
    // directory lookups (+17% 4-level translate misses, measured). Sound
    // because regions never change and an allocated page keeps its storage
    // for the life of the RAM; unwritten pages (ZERO_WORDS) are not cached.
    const pfn = Math.floor(gpa * PAGE_SCALE);
    const c = pfn & WORDS_CACHE_MASK;
    if (this.wordsCachePfn[c] === pfn) return this.wordsCache[c];
    let r = this.last;
    if (!(gpa >= r.base && gpa < r.end)) {
      const found = this.regionOf(gpa, 1);
      if (found === undefined) return undefined;
      r = found;
    }
    // Page index as in readU32 (times 2^-12 is exact); the page must lie wholly inside the region.
    const idx = ((gpa - r.pageBase) * PAGE_SCALE) >>> 0;
    if (!LITTLE_ENDIAN_HOST || idx < r.wholeFirst || idx > r.wholeLast) return undefined;
    const slot = r.dir[idx >>> DIR_SHIFT];
    if (slot === undefined) return ZERO_WORDS;
    const page = slot[idx & DIR_MASK];
    if (page === undefined) return ZERO_WORDS;
    this.wordsCachePfn[c] = pfn;
    this.wordsCache[c] = page.words;
    return page.words;
  }

  /** pageWords' cache: frame number (NaN: empty) and words of up to WORDS_CACHE_SIZE allocated pages. */
  private readonly wordsCachePfn = new Float64Array(WORDS_CACHE_SIZE).fill(NaN);
  private readonly wordsCache: Array<Uint32Array | undefined> = new Array<Uint32Array | undefined>(WORDS_CACHE_SIZE).fill(undefined);

  /** Byte assembly for unaligned or page-straddling words (the range is known to be RAM). */
  private readU32Slow(gpa: number): number {
    const b = this.scratch4;
    this.read(gpa, b);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  }

  private readonly scratch4 = new Uint8Array(4);
  private readonly scratch8 = new Uint8Array(8);

  readU64(gpa: number): bigint | undefined {
    const lo = this.readU32(gpa);
    if (lo < 0) return undefined;
    const hi = this.readU32(gpa + 4);
    if (hi < 0) return undefined;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  writeU32(gpa: number, value: number): boolean {
    const b = this.scratch4;
    const v = value >>> 0;
    b[0] = v & 0xff; b[1] = (v >>> 8) & 0xff; b[2] = (v >>> 16) & 0xff; b[3] = v >>> 24;
    return this.write(gpa, b);
  }

  writeU64(gpa: number, value: bigint): boolean {
    const b = this.scratch8;
    const lo = Number(value & 0xffffffffn);
    const hi = Number((value >> 32n) & 0xffffffffn);
    b[0] = lo & 0xff; b[1] = (lo >>> 8) & 0xff; b[2] = (lo >>> 16) & 0xff; b[3] = lo >>> 24;
    b[4] = hi & 0xff; b[5] = (hi >>> 8) & 0xff; b[6] = (hi >>> 16) & 0xff; b[7] = hi >>> 24;
    return this.write(gpa, b);
  }
}
