/**
 * SparseRam.pageWords: the whole-page word view a page-table walker scans
 * (an optional capability beside the GuestMemory contract). Properties: it
 * agrees with readU32 word for word, is live, and exists only for pages that
 * are wholly RAM of one region.
 */
import fc from 'fast-check';
import { SparseRam } from '../../src/memory';

describe('SparseRam.pageWords', () => {
  test('an unwritten page reads as zeros and allocates nothing', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10_0000 }]);
    const w = ram.pageWords(0x5000);
    expect(w).toBeDefined();
    expect(w!.length).toBe(1024);
    expect(w!.every((x) => x === 0)).toBe(true);
    expect(ram.pagesAllocated).toBe(0);
  });

  test('is a live view of the page holding the address', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10_0000 }]);
    ram.writeU32(0x3008, 0xdeadbeef);
    const w = ram.pageWords(0x3ffc)!; // any address in the page
    expect(w[2]).toBe(0xdeadbeef);
    ram.writeU64(0x3ff8, 0x1122334455667788n);
    expect(w[1022]).toBe(0x55667788);
    expect(w[1023]).toBe(0x11223344);
  });

  test('undefined outside RAM and for pages only partly in one region', () => {
    // Regions [0x1800, 0x5000) and [0x5000, 0x8800): pages 0x1000 and 0x8000 are partly RAM;
    // page 0x5000 is wholly in the second region; 0x4000 wholly in the first.
    const ram = new SparseRam([{ base: 0x1800, size: 0x3800 }, { base: 0x5000, size: 0x3800 }]);
    expect(ram.pageWords(0x0)).toBeUndefined();
    expect(ram.pageWords(0x1800)).toBeUndefined();
    expect(ram.pageWords(0x2000)).toBeDefined();
    expect(ram.pageWords(0x4fff)).toBeDefined();
    expect(ram.pageWords(0x5000)).toBeDefined();
    expect(ram.pageWords(0x8000)).toBeUndefined();
    expect(ram.pageWords(0x9000)).toBeUndefined();
    expect(ram.pageWords(-4096)).toBeUndefined();
    expect(ram.pageWords(NaN)).toBeUndefined();
    expect(ram.pageWords(2 ** 60)).toBeUndefined();
  });

  test('property: word i of pageWords(gpa) equals readU32(page + 4i)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gpa: fc.integer({ min: 0, max: 0x7ffc }), v: fc.integer({ min: 0, max: 0xffff_ffff }) }), { maxLength: 30 }),
        fc.integer({ min: 0, max: 0x7fff }),
        fc.integer({ min: 0, max: 1023 }),
        (writes, gpa, i) => {
          const ram = new SparseRam([{ base: 0, size: 0x8000 }]);
          for (const { gpa: a, v } of writes) ram.writeU32(a, v);
          const page = gpa - (gpa % 4096);
          expect(ram.pageWords(gpa)![i]).toBe(ram.readU32(page + 4 * i));
        },
      ),
    );
  });
});
