/**
 * The second-level walks read tables through SparseRam.pageWords when the
 * memory has it, and word by word (GuestMemory.readU32) otherwise. Property:
 * over arbitrary table contents (hostile ones included: pointers outside RAM,
 * into a page that is only partly RAM, reserved bits, all-ones entries,
 * tables aliasing each other) both paths give the same leaves, faults,
 * costs and budget errors.
 */
import fc from 'fast-check';
import type { GuestMemory } from '../../../src/memory/guest-memory';
import { SparseRam } from '../../../src/memory/sparse-ram';
import { DEFAULT_VTD_CONFIG, type VtdConfig } from '../../../src/models/intel-vtd/config';
import {
  secondLevelWalker,
  walkSecondLevel,
  type VtdContext,
  type VtdLeaf,
} from '../../../src/models/intel-vtd/translation';

/** RAM [0, 0x8800): pages 0x0..0x7000 are RAM, page 0x8000 only half, 0x9000 and up none. */
const RAM_END = 0x8800;
/** Entries point at table pages 0x0..0xf000: in RAM, half in RAM, or outside. */
const PAGES = 16;

/** The same RAM without the pageWords capability: every walk takes the word-by-word path. */
function wordByWord(mem: SparseRam): GuestMemory {
  return {
    read: (gpa, dst) => mem.read(gpa, dst),
    write: (gpa, src) => mem.write(gpa, src),
    readU32: (gpa) => mem.readU32(gpa),
    readU64: (gpa) => mem.readU64(gpa),
    writeU32: (gpa, v) => mem.writeU32(gpa, v),
    writeU64: (gpa, v) => mem.writeU64(gpa, v),
  };
}

type Outcome = { leaves: number[][]; visited: number; error?: string };

function walkAll(mem: GuestMemory, cfg: VtdConfig, ctx: VtdContext, first: number, last: number, budget: number): Outcome {
  const leaves: number[][] = [];
  const w = secondLevelWalker(mem, cfg, ctx, budget);
  try {
    w(first, last, (a, n, x, p) => leaves.push([a, n, x, p]));
  } catch (e) {
    return { leaves, visited: w.visited, error: (e as Error).message };
  }
  return { leaves, visited: w.visited };
}

/** A slot word pair biased towards entries that matter: present, pointing at one of the table pages, sometimes PS or reserved bits. */
const entry = fc.oneof(
  fc.record({
    page: fc.integer({ min: 0, max: PAGES - 1 }),
    low: fc.constantFrom(0, 1, 2, 3, 3, 3, 0x83, 0x803, 0x883),
    hi: fc.constantFrom(0, 0, 0, 0x000f_0000, 0x4000_0000, 0xffff_ffff),
  }).map(({ page, low, hi }) => [((page << 12) | low) >>> 0, hi]),
  fc.tuple(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 0xffff_ffff })),
);

const layout = fc.array(
  fc.record({ page: fc.integer({ min: 0, max: 8 }), slot: fc.integer({ min: 0, max: 511 }), e: entry }),
  { maxLength: 60 },
);

describe('second-level walks: pageWords path and word-by-word path agree', () => {
  it('property: same leaves, visited count and budget errors; same walkSecondLevel results', () => {
    fc.assert(
      fc.property(
        layout,
        fc.record({
          top: fc.constantFrom(0x1000, 0x2000, 0x8000, 0x1008, 0x9000),
          levels: fc.constantFrom(3 as const, 4 as const),
          scalableMode: fc.boolean(),
          deviceIotlb: fc.boolean(),
        }),
        fc.integer({ min: 0, max: 2 ** 36 - 1 }),
        fc.integer({ min: 0, max: 2 ** 36 - 1 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.array(fc.integer({ min: 0, max: 2 ** 36 - 1 }), { minLength: 1, maxLength: 8 }),
        (writes, c, a, b, budget, probes) => {
          const ram = new SparseRam([{ base: 0, size: RAM_END }]);
          for (const { page, slot, e } of writes) {
            const gpa = page * 4096 + slot * 8;
            ram.writeU32(gpa, e[0]!);
            ram.writeU32(gpa + 4, e[1]!);
          }
          const plain = wordByWord(ram);
          const cfg: VtdConfig = { ...DEFAULT_VTD_CONFIG, awBits: 48, scalableMode: c.scalableMode, deviceIotlb: c.deviceIotlb };
          const ctx: VtdContext = { did: 7, passThrough: false, slptptr: c.top, levels: c.levels, fpd: false, pasid: undefined };
          const [first, last] = a <= b ? [a, b] : [b, a];
          expect(walkAll(ram, cfg, ctx, first, last, budget)).toEqual(walkAll(plain, cfg, ctx, first, last, budget));
          for (const pfn of probes) {
            for (const write of [false, true]) {
              const fast: VtdLeaf = { iovaPfn: 0, pages: 0, xlatPfn: 0, perm: 0, level: 0 };
              const slow: VtdLeaf = { ...fast };
              expect(walkSecondLevel(ram, cfg, ctx, pfn, write, fast)).toBe(walkSecondLevel(plain, cfg, ctx, pfn, write, slow));
              expect(fast).toEqual(slow);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a walk that passes the budget throws before reading the table that would pass it', () => {
    // One level-3 table whose 512 entries all point at itself: 512 + 512 * 512 entries in a full walk.
    const ram = new SparseRam([{ base: 0, size: 0x10_0000 }]);
    for (let i = 0; i < 512; i++) ram.writeU32(0x1000 + i * 8, 0x1003);
    const cfg: VtdConfig = { ...DEFAULT_VTD_CONFIG };
    const ctx: VtdContext = { did: 3, passThrough: false, slptptr: 0x1000, levels: 3, fpd: false, pasid: undefined };
    let leaves = 0;
    const w = secondLevelWalker(ram, cfg, ctx, 512 + 512 + 100);
    // The top table (512) and the first level-2 table (512) fit; the first level-1 table (512) does not.
    expect(() => w(0, 2 ** 27 - 1, () => { leaves++; })).toThrow(/domain 3 .* read more than 1124 table entries/);
    expect(leaves).toBe(0);
  });
});
