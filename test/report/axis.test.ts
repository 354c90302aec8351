import fc from 'fast-check';
import { compressedAxis } from '../../src/report/axis';

const U64 = (1n << 64n) - 1n;
/** Naturally aligned power-of-two intervals anywhere in 64-bit space (what entries are, by C2). */
const entry = fc.tuple(fc.bigInt({ min: 0n, max: U64 }), fc.integer({ min: 12, max: 40 }))
  .map(([v, order]) => {
    const size = 1n << BigInt(order);
    const start = v & ~(size - 1n);
    return [start, start + size - 1n] as const;
  });

describe('compressed IOVA axis', () => {
  test('positions are monotonic in the IOVA and stay within the width', () => {
    fc.assert(fc.property(fc.array(entry, { minLength: 1, maxLength: 30 }), fc.array(fc.bigInt({ min: 0n, max: U64 }), { maxLength: 40 }), (iv, probes) => {
      const axis = compressedAxis(iv, 800);
      const pts = [...probes, ...iv.flat()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      let prev = -Infinity;
      for (const p of pts) {
        const x = axis.x(p);
        expect(x).toBeGreaterThanOrEqual(prev - 1e-9);
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(800 + 1e-9);
        prev = x;
      }
    }));
  });

  test('every interval that occurs is visible (at least 1 px for up to 30 entries in 800 px), scattered over 48 bits', () => {
    fc.assert(fc.property(fc.array(entry, { minLength: 1, maxLength: 30 }), (iv) => {
      const axis = compressedAxis(iv, 800);
      for (const [a, b] of iv) {
        const w = b === U64 ? 800 - axis.x(a) : axis.x(b + 1n) - axis.x(a);
        expect(w).toBeGreaterThanOrEqual(1);
      }
    }));
  });

  test('disjoint ranges are separated by breaks; touching ones are not', () => {
    const page = (n: bigint) => [n << 12n, (n << 12n) + 0xfffn] as const;
    const scattered = compressedAxis([page(1n), page(0x7_0000_0000n), page(0xf_ffff_fffen)], 600);
    expect(scattered.breaks).toHaveLength(2);
    expect(scattered.ranges.map((r) => r.start)).toEqual([0x1000n, 0x7_0000_0000_000n, 0xf_ffff_fffe_000n]);
    // Three 4 KiB pages share the width with two breaks: no page is squashed by the 48-bit distances.
    const w = scattered.x(0x2000n) - scattered.x(0x1000n);
    expect(w).toBeGreaterThan(600 / 6);
    const touching = compressedAxis([page(1n), page(2n)], 600);
    expect(touching.breaks).toHaveLength(0);
  });
});
