import fc from 'fast-check';
import { alignedPow2Chunks, dmaAlignedPow2Mask } from '../../src/core';
import { floorPow2, forEachPfnChunk, isPow2, lowBit } from '../../src/core/pow2';

const U64_MAX = (1n << 64n) - 1n;

describe('dmaAlignedPow2Mask (QEMU dma_aligned_pow2_mask semantics)', () => {
  it('takes the alignment of start when it is the limit', () => {
    // start 0x1000 is 4 KiB aligned: the first chunk is 4 KiB even if the range is larger.
    expect(dmaAlignedPow2Mask(0x1000n, 0xffffn)).toBe(0xfffn);
    expect(dmaAlignedPow2Mask(0x200000n, 0x3fffffn)).toBe(0x1fffffn);
  });
  it('takes the largest power of two that fits when the size is the limit', () => {
    expect(dmaAlignedPow2Mask(0n, 0x2fffn)).toBe(0x1fffn);
    expect(dmaAlignedPow2Mask(0x10000n, 0x12fffn)).toBe(0x1fffn);
  });
  it('covers the whole 64-bit space from 0', () => {
    expect(dmaAlignedPow2Mask(0n, U64_MAX)).toBe(U64_MAX);
    expect(dmaAlignedPow2Mask(1n << 63n, U64_MAX)).toBe((1n << 63n) - 1n);
  });
  it('honours max_addr_bits', () => {
    expect(dmaAlignedPow2Mask(0n, U64_MAX, 39)).toBe((1n << 39n) - 1n);
  });
});

describe('alignedPow2Chunks', () => {
  it('splits a range at its alignment', () => {
    expect(alignedPow2Chunks(0x1000n, 0x4fffn)).toEqual([
      { iova: 0x1000n, addrMask: 0xfffn },
      { iova: 0x2000n, addrMask: 0x1fffn },
      { iova: 0x4000n, addrMask: 0xfffn },
    ]);
  });
  it('handles the last page of the space', () => {
    expect(alignedPow2Chunks(U64_MAX - 0xfffn, U64_MAX)).toEqual([{ iova: U64_MAX - 0xfffn, addrMask: 0xfffn }]);
  });
  it('refuses an empty range', () => {
    expect(() => alignedPow2Chunks(2n, 1n)).toThrow(RangeError);
  });
  it('property: chunks tile the range, are aligned powers of two and never cut an aligned block inside it', () => {
    const addr = fc.oneof(fc.bigInt({ min: 0n, max: U64_MAX }), fc.bigInt({ min: 0n, max: 0x100000n }), fc.bigInt({ min: U64_MAX - 0x100000n, max: U64_MAX }));
    fc.assert(fc.property(addr, addr, fc.integer({ min: 0, max: 63 }), (x, y, k) => {
      const [s, e] = x <= y ? [x, y] : [y, x];
      const chunks = alignedPow2Chunks(s, e);
      expect(chunks.length).toBeLessThanOrEqual(128);
      let p = s;
      for (const c of chunks) {
        expect(c.iova).toBe(p);
        expect((c.addrMask + 1n) & c.addrMask).toBe(0n);
        expect(c.iova & c.addrMask).toBe(0n);
        p = c.iova + c.addrMask + 1n;
      }
      expect(p).toBe(e + 1n);
      // An aligned block of size 2^k inside [s, e] lies inside one chunk.
      const size = 1n << BigInt(k);
      const b = ((s + size - 1n) / size) * size;
      if (b + size - 1n <= e) {
        expect(chunks.some((c) => c.iova <= b && b + size - 1n <= c.iova + c.addrMask)).toBe(true);
      }
    }));
  });
});

describe('frame helpers', () => {
  it('lowBit, floorPow2 and isPow2 are exact up to 2^53', () => {
    expect(lowBit(0)).toBe(0);
    expect(lowBit(12)).toBe(4);
    expect(lowBit(2 ** 51 + 2 ** 40)).toBe(2 ** 40);
    expect(lowBit(2 ** 52)).toBe(2 ** 52);
    expect(floorPow2(2 ** 52 - 1)).toBe(2 ** 51);
    expect(floorPow2(2 ** 53)).toBe(2 ** 53);
    expect(floorPow2(3)).toBe(2);
    expect(isPow2(2 ** 52)).toBe(true);
    expect(isPow2(2 ** 52 + 2 ** 30)).toBe(false);
    expect(isPow2(0)).toBe(false);
    expect(isPow2(0.5)).toBe(false);
  });
  it('forEachPfnChunk agrees with the bigint split and aligns the translation too', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: 0, max: 2 ** 20 }), (x, y) => {
      const [s, e] = x <= y ? [x, y] : [y, x];
      const got: bigint[] = [];
      forEachPfnChunk(s, e, -1, (p, n) => got.push(BigInt(p), BigInt(n)));
      const want = alignedPow2Chunks(BigInt(s) << 12n, (BigInt(e) << 12n) + 0xfffn).flatMap((c) => [c.iova >> 12n, (c.addrMask + 1n) >> 12n]);
      expect(got).toEqual(want);
    }));
    const seen: number[][] = [];
    forEachPfnChunk(0, 7, 2, (p, n, xl) => seen.push([p, n, xl]));
    // Frames 0..7 mapped to 2..9: the translated side is only 2-frame aligned.
    expect(seen).toEqual([[0, 2, 2], [2, 2, 4], [4, 2, 6], [6, 2, 8]]);
  });
});
