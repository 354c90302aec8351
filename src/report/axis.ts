/**
 * A compressed IOVA axis for the report's pictures. A 64-bit IOVA space
 * with a few scattered mappings is unreadable on a linear scale, so the axis
 * shows only the ranges that occur, cut at every boundary of an interval
 * that occurs, each piece as wide as the logarithm of its size (a 4 KiB page
 * stays visible next to a 1 GiB one), with a fixed-width break between
 * ranges that do not touch. Positions are monotonic in the IOVA.
 */

/** A piece of the axis: IOVAs [start, end) drawn linearly over [x0, x1]. */
export interface AxisPiece {
  start: bigint;
  /** Exclusive (may be 2^64). */
  end: bigint;
  x0: number;
  x1: number;
}

/** A break: the IOVAs between two ranges that occur, not drawn. */
export interface AxisBreak {
  /** The last IOVA before the break (exclusive end of the range before) and the first after. */
  after: bigint;
  before: bigint;
  x0: number;
  x1: number;
}

export interface IovaAxis {
  width: number;
  pieces: AxisPiece[];
  breaks: AxisBreak[];
  /** The first IOVA of each range that occurs (ends of a break), with its x, for labels. */
  ranges: Array<{ start: bigint; end: bigint; x0: number; x1: number }>;
  /** x of an IOVA: linear within a piece, the middle of a break between ranges, clamped at the ends. */
  x(iova: bigint): number;
}

const PAGE = 4096;
const BREAK_WEIGHT = 2;

function pieceWeight(size: bigint): number {
  const pages = Number(size) / PAGE;
  return 1 + 0.6 * Math.log2(Math.max(1, pages));
}

/**
 * The axis over `intervals` (inclusive [first, last] IOVA pairs), `width`
 * pixels wide. An empty list gives a one-piece axis over the first 4 KiB.
 */
export function compressedAxis(intervals: ReadonlyArray<readonly [bigint, bigint]>, width: number): IovaAxis {
  const iv = intervals.length > 0 ? intervals.map(([a, b]) => [a, b + 1n] as const) : [[0n, 4096n] as const];
  const sorted = iv.slice().sort((p, q) => (p[0] < q[0] ? -1 : p[0] > q[0] ? 1 : 0));
  // Ranges that occur: the union, adjacent intervals joined.
  const ranges: Array<[bigint, bigint]> = [];
  for (const [s, e] of sorted) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && s <= last[1]) { if (e > last[1]) last[1] = e; } else ranges.push([s, e]);
  }
  const cuts = [...new Set(iv.flatMap(([s, e]) => [s, e]))].sort((p, q) => (p < q ? -1 : p > q ? 1 : 0));
  // Pieces: each range cut at every boundary inside it.
  const raw: Array<{ start: bigint; end: bigint; w: number; breakBefore: boolean }> = [];
  let c = 0;
  for (const [s, e] of ranges) {
    while (c < cuts.length && cuts[c]! <= s) c++;
    let from = s;
    let first = true;
    while (c < cuts.length && cuts[c]! < e) {
      raw.push({ start: from, end: cuts[c]!, w: pieceWeight(cuts[c]! - from), breakBefore: first && raw.length > 0 });
      first = false;
      from = cuts[c]!;
      c++;
    }
    raw.push({ start: from, end: e, w: pieceWeight(e - from), breakBefore: first && raw.length > 0 });
  }
  const total = raw.reduce((a, p) => a + p.w + (p.breakBefore ? BREAK_WEIGHT : 0), 0);
  const scale = width / total;
  const pieces: AxisPiece[] = [];
  const breaks: AxisBreak[] = [];
  let x = 0;
  for (const p of raw) {
    if (p.breakBefore) {
      const prev = pieces[pieces.length - 1]!;
      breaks.push({ after: prev.end, before: p.start, x0: x, x1: x + BREAK_WEIGHT * scale });
      x += BREAK_WEIGHT * scale;
    }
    pieces.push({ start: p.start, end: p.end, x0: x, x1: x + p.w * scale });
    x += p.w * scale;
  }
  const rangeXs = ranges.map(([s, e]) => {
    const a = pieces.find((p) => p.start === s)!;
    let b = a;
    for (const p of pieces) if (p.end === e) { b = p; break; }
    return { start: s, end: e, x0: a.x0, x1: b.x1 };
  });
  const xOf = (v: bigint): number => {
    // The last piece starting at or before v.
    let lo = 0;
    let hi = pieces.length - 1;
    if (v < pieces[0]!.start) return 0;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (pieces[mid]!.start <= v) lo = mid; else hi = mid - 1;
    }
    const p = pieces[lo]!;
    if (v < p.end) {
      const size = p.end - p.start;
      // Fraction with 2^-20 resolution, exact in bigint before the division.
      const frac = Number(((v - p.start) << 20n) / size) / 2 ** 20;
      return p.x0 + frac * (p.x1 - p.x0);
    }
    const next = pieces[lo + 1];
    if (next === undefined) return width;
    if (v >= p.end && next.x0 > p.x1) return (p.x1 + next.x0) / 2; // in a break
    return next.x0;
  };
  return { width, pieces, breaks, ranges: rangeXs, x: xOf };
}
