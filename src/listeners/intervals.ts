/**
 * Internal: disjoint half-open IOVA intervals kept in order, the bookkeeping
 * shape of both the container's DMA list and each host domain's record.
 *
 * Why chunks: a VFIO container holds up to 65535 mappings and a guest maps
 * and unmaps them in any order; one flat sorted array would memmove the whole
 * list on every insert or delete at its front. Chunks of at most CHUNK spans
 * keep every update to a short splice plus a binary search over the chunks.
 */

/** A half-open interval [start, end) of IOVA that translates linearly from `addr`. */
export interface Span {
  start: bigint;
  /** Exclusive end. */
  end: bigint;
  /** Address `start` translates to. */
  addr: bigint;
  /** Bit 0 read, bit 1 write. */
  prot: number;
}

/** Spans per chunk before it splits. */
const CHUNK = 128;

export class SpanList<T extends Span> {
  /** Non-empty chunks, in order; spans are disjoint, so ends are ordered too. */
  private chunks: T[][] = [];
  private count = 0;
  // Position found by locate().
  private c = 0;
  private i = 0;

  get length(): number {
    return this.count;
  }

  /** Sets (c, i) to the first span whose end is above `x` (c = chunks.length if none). */
  private locate(x: bigint): void {
    const chunks = this.chunks;
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const ch = chunks[mid]!;
      if (ch[ch.length - 1]!.end > x) hi = mid;
      else lo = mid + 1;
    }
    this.c = lo;
    this.i = 0;
    const ch = chunks[lo];
    if (ch === undefined) return;
    let a = 0;
    let b = ch.length;
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (ch[mid]!.end > x) b = mid;
      else a = mid + 1;
    }
    this.i = a;
  }

  /** The span that contains `x`, if any. */
  find(x: bigint): T | undefined {
    this.locate(x);
    const s = this.chunks[this.c]?.[this.i];
    return s !== undefined && s.start <= x ? s : undefined;
  }

  /** The spans that intersect [start, end), ascending. */
  overlapping(start: bigint, end: bigint): T[] {
    const out: T[] = [];
    this.locate(start);
    for (let c = this.c, i = this.i; c < this.chunks.length; c++, i = 0) {
      const ch = this.chunks[c]!;
      for (; i < ch.length; i++) {
        const s = ch[i]!;
        if (s.start >= end) return out;
        out.push(s);
      }
    }
    return out;
  }

  /** The first span intersecting [start, end), if any. */
  firstOverlapping(start: bigint, end: bigint): T | undefined {
    this.locate(start);
    const s = this.chunks[this.c]?.[this.i];
    return s !== undefined && s.start < end ? s : undefined;
  }

  /** Inserts a span that overlaps no other (callers check first). */
  insert(span: T): void {
    this.count++;
    if (this.chunks.length === 0) {
      this.chunks.push([span]);
      return;
    }
    this.locate(span.start);
    let c = this.c;
    let i = this.i;
    if (c === this.chunks.length) {
      // After every span: append to the last chunk (ascending inserts fill chunks completely).
      c--;
      i = this.chunks[c]!.length;
      if (i >= CHUNK) {
        this.chunks.push([span]);
        return;
      }
    }
    const ch = this.chunks[c]!;
    ch.splice(i, 0, span);
    if (ch.length > CHUNK) this.chunks.splice(c + 1, 0, ch.splice(ch.length >>> 1));
  }

  /** Removes exactly this span object. */
  delete(span: T): boolean {
    this.locate(span.start);
    const ch = this.chunks[this.c];
    if (ch === undefined || ch[this.i] !== span) return false;
    ch.splice(this.i, 1);
    if (ch.length === 0) this.chunks.splice(this.c, 1);
    this.count--;
    return true;
  }

  /**
   * Removes [start, end) from the list, cutting spans that cross its edges;
   * `clone(s, start, end)` makes the kept piece of a cut span. Returns the
   * number of bytes that were present (and are now gone).
   */
  cut(start: bigint, end: bigint, clone: (s: T, start: bigint, end: bigint) => T): bigint {
    let removed = 0n;
    for (const s of this.overlapping(start, end)) {
      this.delete(s);
      if (s.start < start) this.insert(clone(s, s.start, start));
      if (s.end > end) this.insert(clone(s, end, s.end));
      removed += (s.end < end ? s.end : end) - (s.start > start ? s.start : start);
    }
    return removed;
  }

  clear(): void {
    this.chunks = [];
    this.count = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (const ch of this.chunks) yield* ch;
  }

  /** A copy of the spans, ascending. */
  toArray(): T[] {
    const out: T[] = [];
    for (const ch of this.chunks) for (const s of ch) out.push(s);
    return out;
  }
}

/** One difference found by `diffSpans`. */
export interface SpanDiff {
  /** First IOVA (inclusive). */
  start: bigint;
  /** Last IOVA (inclusive). */
  last: bigint;
  /** What the host side has there (undefined: nothing). */
  host: { addr: bigint; prot: number } | undefined;
  /** What the guest side says (undefined: nothing). */
  guest: { addr: bigint; prot: number } | undefined;
}

/**
 * Compares two translation maps (each a list of disjoint spans, ascending)
 * inside [lo, hi), as functions iova -> (address, prot): adjacent spans that
 * continue each other are equivalent to one, so a host that holds a 2 MiB
 * mapping and a guest that reports it as 512 4 KiB leaves agree. Returns the
 * maximal runs where they differ, classified by the caller from host/guest.
 * Cost: O(host spans + guest spans).
 */
export function diffSpans(host: readonly Span[], guest: readonly Span[], lo: bigint, hi: bigint): SpanDiff[] {
  const out: SpanDiff[] = [];
  let i = 0;
  let j = 0;
  let x = lo;
  while (i < host.length && host[i]!.end <= x) i++;
  while (j < guest.length && guest[j]!.end <= x) j++;
  while (x < hi) {
    const h = host[i];
    const g = guest[j];
    const hIn = h !== undefined && h.start <= x;
    const gIn = g !== undefined && g.start <= x;
    // Next breakpoint: an edge of either side, or hi.
    let next = hi;
    if (h !== undefined) { const e = hIn ? h.end : h.start; if (e < next) next = e; }
    if (g !== undefined) { const e = gIn ? g.end : g.start; if (e < next) next = e; }
    const hv = hIn ? { addr: h!.addr + (x - h!.start), prot: h!.prot } : undefined;
    const gv = gIn ? { addr: g!.addr + (x - g!.start), prot: g!.prot } : undefined;
    const same = hv === undefined ? gv === undefined : gv !== undefined && hv.addr === gv.addr && hv.prot === gv.prot;
    if (!same) {
      const prev = out[out.length - 1];
      if (prev !== undefined && prev.last + 1n === x && sameKind(prev, hv, gv, x)) prev.last = next - 1n;
      else out.push({ start: x, last: next - 1n, host: hv, guest: gv });
    }
    x = next;
    if (h !== undefined && h.end <= x) i++;
    if (g !== undefined && g.end <= x) j++;
  }
  return out;
}

/** Whether a difference at `x` continues `prev` (same sides present, addresses continuing). */
function sameKind(
  prev: SpanDiff, hv: SpanDiff['host'], gv: SpanDiff['guest'], x: bigint,
): boolean {
  const off = x - prev.start;
  const cont = (a: SpanDiff['host'], b: SpanDiff['host']): boolean =>
    a === undefined ? b === undefined : b !== undefined && a.prot === b.prot && a.addr + off === b.addr;
  return cont(prev.host, hv) && cont(prev.guest, gv);
}
