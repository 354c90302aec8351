/**
 * Splitting ranges into naturally aligned power-of-two chunks, the only shape
 * an IOMMUTLBEntry may have (contract rule C2). Same semantics as QEMU's
 * `dma_aligned_pow2_mask()` (used by intel-iommu and smmu to turn a range
 * invalidation into notifications): from `start`, take the largest block that
 * is aligned at `start` and does not pass `end`.
 *
 * Two forms: bigint (byte addresses, for models) and number (4 KiB page frame
 * numbers, for the notifier list's hot paths; exact up to 2^53).
 */

import { U64_MAX } from './guest-addr';

/**
 * The mask (size - 1) of the largest naturally aligned power-of-two block that
 * starts at `start` and ends at or before `end` (inclusive), within an address
 * space of `maxAddrBits` bits (QEMU `dma_aligned_pow2_mask` semantics; start 0
 * is aligned to everything).
 */
export function dmaAlignedPow2Mask(start: bigint, end: bigint, maxAddrBits = 64): bigint {
  if (start > end) throw new RangeError(`dmaAlignedPow2Mask: empty range [0x${start.toString(16)}, 0x${end.toString(16)}]`);
  const maxMask = maxAddrBits >= 64 ? U64_MAX : (1n << BigInt(maxAddrBits)) - 1n;
  let alignMask = start === 0n ? maxMask : (start & -start) - 1n;
  if (alignMask > maxMask) alignMask = maxMask;
  let sizeMask = end - start;
  if (sizeMask > maxMask) sizeMask = maxMask;
  if (alignMask <= sizeMask) return alignMask;
  if (sizeMask === U64_MAX) return sizeMask;
  // Largest power of two <= sizeMask + 1.
  return (1n << BigInt((sizeMask + 1n).toString(2).length - 1)) - 1n;
}

/** One chunk of `alignedPow2Chunks`: covers [iova, iova + addrMask]. */
export interface Pow2Chunk {
  iova: bigint;
  addrMask: bigint;
}

/**
 * Splits the inclusive range [start, end] (bytes, 0 <= start <= end < 2^64)
 * into naturally aligned power-of-two chunks, in ascending order: what a model
 * sends when it notifies a range invalidation (QEMU 7.2 PSI / unmap loops).
 * At most 2 * 64 chunks. An aligned power-of-two block lying inside the range
 * is never cut by the chunk boundaries.
 */
export function alignedPow2Chunks(start: bigint, end: bigint): Pow2Chunk[] {
  if (start < 0n || end > U64_MAX || start > end) {
    throw new RangeError(`alignedPow2Chunks: bad range [0x${start.toString(16)}, 0x${end.toString(16)}]`);
  }
  const out: Pow2Chunk[] = [];
  let p = start;
  for (;;) {
    const mask = dmaAlignedPow2Mask(p, end);
    out.push({ iova: p, addrMask: mask });
    if (end - p === mask) return out;
    p += mask + 1n;
  }
}

/** 2^32, for splitting frame numbers (up to 2^53) into 32-bit halves. */
const TWO32 = 4294967296;

/** Lowest set bit of a non-negative integer < 2^53 (0 for 0). */
export function lowBit(x: number): number {
  if (x < TWO32) {
    const lo = x >>> 0;
    return (lo & -lo) >>> 0;
  }
  const lo = x % TWO32 >>> 0;
  if (lo !== 0) return (lo & -lo) >>> 0;
  const hi = Math.floor(x / TWO32) >>> 0;
  return ((hi & -hi) >>> 0) * TWO32;
}

/** Largest power of two <= n, for an integer 1 <= n <= 2^53. */
export function floorPow2(n: number): number {
  if (n < TWO32) return 2 ** (31 - Math.clz32(n));
  // Math.log2 may round up just below a power of two: correct by one step.
  let p = 2 ** Math.floor(Math.log2(n));
  if (p > n) p /= 2;
  else if (p * 2 <= n) p *= 2;
  return p;
}

/** True for a power of two 1 <= x <= 2^53. */
export function isPow2(x: number): boolean {
  if (x < 1 || !Number.isInteger(x)) return false;
  if (x <= 0x40000000) return (x & (x - 1)) === 0;
  return floorPow2(x) === x;
}

/**
 * Visits the aligned power-of-two chunks of the frame range [first, last]
 * (frame numbers, integers < 2^52). With `xlat` (the frame `first`
 * translates to) the chunks are also aligned on the translated side, as a MAP
 * needs; pass -1 for no translation. `fn(first, pages, xlat)`.
 */
export function forEachPfnChunk(first: number, last: number, xlat: number, fn: (first: number, pages: number, xlat: number) => void): void {
  let p = first;
  while (p <= last) {
    let size = floorPow2(last - p + 1);
    if (p !== 0) size = Math.min(size, lowBit(p));
    const x = xlat < 0 ? -1 : xlat + (p - first);
    if (x > 0) size = Math.min(size, lowBit(x));
    fn(p, size, x);
    p += size;
  }
}
