/**
 * Guest address helpers (src/core/guest-addr.ts): checked offsets as
 * vm-memory's checked_offset (None past 2^64 - 1), inclusive ranges, frames.
 * Expectations come from arithmetic on unbounded integers and from a
 * byte-by-byte definition on small ranges, never from the helpers.
 */
import fc from 'fast-check';
import {
  checkedOffset, hex, isAligned, isRangeAligned, isValidRange, pageBase, pfnOf, pfnToAddr, rangeContains, rangeContainsRange,
  rangeFromStartLen, rangeLength, rangeOverlaps, U64_MAX, X86_MSI_RANGE,
} from '../../src/core';

const TWO64 = 2n ** 64n;
const u64 = fc.bigInt({ min: 0n, max: TWO64 - 1n });
/** Values near the top of the space, where overflow happens. */
const nearTop = fc.bigInt({ min: TWO64 - 0x10000n, max: TWO64 - 1n });
const addr = fc.oneof(u64, nearTop, fc.bigInt({ min: 0n, max: 0x10000n }));

describe('guest address helpers', () => {
  test('U64_MAX is 2^64 - 1 and hex spells lowercase with 0x', () => {
    expect(U64_MAX).toBe(TWO64 - 1n);
    expect(hex(0xABCn)).toBe('0xabc');
    expect(hex(255)).toBe('0xff');
    expect(hex(U64_MAX)).toBe('0xffffffffffffffff');
  });

  test('checkedOffset is base + offset when below 2^64, undefined otherwise', () => {
    fc.assert(fc.property(addr, addr, (b, o) => {
      expect(checkedOffset(b, o)).toBe(b + o < TWO64 ? b + o : undefined);
    }));
    expect(checkedOffset(U64_MAX, 0n)).toBe(U64_MAX);
    expect(checkedOffset(U64_MAX, 1n)).toBeUndefined();
  });

  test('rangeFromStartLen: len bytes from start, ending at most on 2^64 - 1; empty or overflowing ranges are undefined', () => {
    fc.assert(fc.property(addr, fc.oneof(addr, fc.constant(0n), fc.constant(TWO64)), (s, len) => {
      const r = rangeFromStartLen(s, len);
      if (len === 0n || s + len > TWO64) {
        expect(r).toBeUndefined();
      } else {
        expect(r).toEqual({ start: s, end: s + len - 1n });
        expect(rangeLength(r!)).toBe(len);
        expect(isValidRange(r!)).toBe(true);
      }
    }));
    expect(rangeFromStartLen(0n, TWO64)).toEqual({ start: 0n, end: U64_MAX }); // the whole space
  });

  test('contains and overlaps agree with a byte-by-byte definition on small ranges', () => {
    const small = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 40 }))
      .map(([a, b]) => ({ start: BigInt(Math.min(a, b)), end: BigInt(Math.max(a, b)) }));
    fc.assert(fc.property(small, small, fc.integer({ min: 0, max: 41 }), (a, b, x) => {
      const bytes = (r: { start: bigint; end: bigint }) => new Set(Array.from({ length: Number(r.end - r.start) + 1 }, (_, i) => Number(r.start) + i));
      const A = bytes(a);
      const B = bytes(b);
      expect(rangeContains(a, BigInt(x))).toBe(A.has(x));
      expect(rangeOverlaps(a, b)).toBe([...A].some((v) => B.has(v)));
      expect(rangeOverlaps(a, b)).toBe(rangeOverlaps(b, a));
      expect(rangeContainsRange(a, b)).toBe([...B].every((v) => A.has(v)));
    }));
  });

  test('ranges at the top of the space: no wrap', () => {
    const top = { start: U64_MAX - 0xfffn, end: U64_MAX };
    expect(isRangeAligned(top)).toBe(true);
    expect(rangeOverlaps(top, { start: 0n, end: 0xfffn })).toBe(false);
    expect(rangeContains(top, U64_MAX)).toBe(true);
    expect(isValidRange({ start: 1n, end: 0n })).toBe(false);
    expect(isValidRange({ start: 0n, end: TWO64 })).toBe(false);
  });

  test('page alignment: start a multiple of the page, end + 1 a multiple of it', () => {
    fc.assert(fc.property(addr, addr, fc.constantFrom(0x1000n, 0x20_0000n), (a, b, align) => {
      const r = { start: a < b ? a : b, end: a < b ? b : a };
      expect(isRangeAligned(r, align)).toBe(r.start % align === 0n && (r.end + 1n) % align === 0n);
      expect(isAligned(a, align)).toBe(a % align === 0n);
    }));
  });

  test('frames: pfnOf / pfnToAddr / pageBase are division by 4096', () => {
    fc.assert(fc.property(u64, (a) => {
      expect(pfnOf(a)).toBe(Number(a / 4096n));
      expect(Number.isSafeInteger(pfnOf(a))).toBe(true);
      expect(pfnToAddr(pfnOf(a))).toBe(pageBase(a));
      expect(pageBase(a)).toBe(a - (a % 4096n));
    }));
  });

  test('the x86 MSI window is 0xfee00000-0xfeefffff (1 MiB), frozen', () => {
    expect(X86_MSI_RANGE).toEqual({ start: 0xfee0_0000n, end: 0xfeef_ffffn });
    expect(rangeLength(X86_MSI_RANGE)).toBe(1n << 20n);
    expect(Object.isFrozen(X86_MSI_RANGE)).toBe(true);
  });
});
