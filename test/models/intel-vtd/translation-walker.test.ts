/**
 * secondLevelWalker: the notifier-sync page walk (QEMU 7.2 vtd_page_walk /
 * vtd_page_walk_level semantics), checked against mappings the test placed
 * with the spec-layout builder.
 */
import fc from 'fast-check';
import { SparseRam } from '../../../src/memory/sparse-ram';
import { DEFAULT_VTD_CONFIG, type VtdConfig } from '../../../src/models/intel-vtd/config';
import {
  secondLevelWalker,
  walkSecondLevel,
  type VtdContext,
  type VtdLeaf,
} from '../../../src/models/intel-vtd/translation';
import { WalkLimitError } from '../../../src/core/walk-budget';
import { VtdTables, slpte } from './helpers/tables';

const SL = 0x30_0000;
const OUTSIDE = 0x4000_0000;
const cfg39: VtdConfig = { ...DEFAULT_VTD_CONFIG };
const cfg48: VtdConfig = { ...DEFAULT_VTD_CONFIG, awBits: 48 };
const LIMIT39 = 2 ** 27; // frames below 2^39
const LIMIT48 = 2 ** 36;

type Leaf = [iovaPfn: number, pages: number, xlatPfn: number, perm: number];

function setup(): { mem: SparseRam; t: VtdTables } {
  const mem = new SparseRam([{ base: 0, size: 0x400_0000 }]);
  const t = new VtdTables(mem, 0x40_0000);
  t.pte(SL, 0, 0n);
  return { mem, t };
}

function ctxOf(levels: 3 | 4, over: Partial<VtdContext> = {}): VtdContext {
  return { did: 1, passThrough: false, slptptr: SL, levels, fpd: false, pasid: undefined, ...over };
}

function collect(mem: SparseRam, cfg: VtdConfig, ctx: VtdContext, first: number, last: number, budget = 1e7): Leaf[] {
  const out: Leaf[] = [];
  secondLevelWalker(mem, cfg, ctx, budget)(first, last, (iovaPfn, pages, xlatPfn, perm) => {
    out.push([iovaPfn, pages, xlatPfn, perm]);
  });
  return out;
}

describe('secondLevelWalker', () => {
  it('reports valid leaves intersecting the range, whole, in ascending order', () => {
    const { mem, t } = setup();
    t.map(SL, 3, 0x5000n, 0x9_5000n);
    t.map(SL, 3, 0x10000n, 0xa_0000n, { w: false });
    t.map(SL, 3, 0x20_0000n, 0x40_0000n, { leafLevel: 2 }); // frames 0x200..0x3ff
    t.map(SL, 3, 0x8000_0000n, 0x8000_0000n, { leafLevel: 3 }); // frames 0x80000..0xbffff
    t.map(SL, 3, 0x7f_ffff_f000n, 0x1000n, { r: false }); // last frame below 2^39
    expect(collect(mem, cfg39, ctxOf(3), 0x6, 0x300)).toEqual([
      [0x10, 1, 0xa0, 1],
      [0x200, 512, 0x400, 3],
    ]);
    expect(collect(mem, cfg39, ctxOf(3), 0, LIMIT39 - 1)).toEqual([
      [0x5, 1, 0x95, 3],
      [0x10, 1, 0xa0, 1],
      [0x200, 512, 0x400, 3],
      [0x80000, 0x40000, 0x80000, 3],
      [LIMIT39 - 1, 1, 0x1, 2],
    ]);
    // A range touching one frame of a large leaf reports the leaf whole.
    expect(collect(mem, cfg39, ctxOf(3), 0xbffff, 0xbffff)).toEqual([[0x80000, 0x40000, 0x80000, 3]]);
    expect(collect(mem, cfg39, ctxOf(3), 0x3ff, 0x80000)).toEqual([
      [0x200, 512, 0x400, 3],
      [0x80000, 0x40000, 0x80000, 3],
    ]);
  });

  it('clips to 2^min(AGAW, aw-bits): the end is clipped, a start beyond the limit walks nothing', () => {
    const { mem, t } = setup();
    t.map(SL, 3, 0x7f_ffff_f000n, 0x1000n);
    expect(collect(mem, cfg39, ctxOf(3), LIMIT39 - 1, Number.MAX_SAFE_INTEGER)).toEqual([[LIMIT39 - 1, 1, 1, 3]]);
    expect(collect(mem, cfg39, ctxOf(3), LIMIT39, LIMIT39 + 100)).toEqual([]);
    expect(collect(mem, cfg48, ctxOf(3), LIMIT39, LIMIT48 - 1)).toEqual([]); // 3-level context at aw 48: AGAW 39
    expect(collect(mem, cfg39, ctxOf(3), 10, 9)).toEqual([]);
  });

  it('4-level tables at aw 48 with a 1 GiB leaf at the top of the space', () => {
    const { mem, t } = setup();
    t.map(SL, 4, 0xffff_c000_0000n, 0x4000_0000n, { leafLevel: 3 });
    t.map(SL, 4, 0x1_0000_0000n, 0x2000n);
    expect(collect(mem, cfg48, ctxOf(4), 0, LIMIT48 - 1)).toEqual([
      [0x100000, 1, 2, 3],
      [LIMIT48 - 0x40000, 0x40000, 0x40000, 3],
    ]);
    expect(collect(mem, cfg48, ctxOf(4), LIMIT48 - 1, 2 ** 50)).toEqual([[LIMIT48 - 0x40000, 0x40000, 0x40000, 3]]);
  });

  it('skips unreadable, reserved, not-present and permission-less entries silently', () => {
    const { mem, t } = setup();
    t.map(SL, 3, 0x1000n, 0x1_1000n);
    t.map(SL, 3, 0x2000n, 0x1_2000n, { extra: 1n << 11n }); // SNP reserved in a legacy 4K leaf
    t.map(SL, 3, 0x3000n, 0x1_3000n, { r: false, w: false });
    t.map(SL, 3, 0x4000n, 0x1_4000n);
    t.pte(SL, 1, slpte({ r: true, w: true, addr: OUTSIDE })); // level-2 table outside RAM
    t.pte(SL, 2, slpte({ r: true, w: true, addr: 0x50_0000, extra: 1n << 40n })); // reserved non-leaf
    t.pte(SL, 3, 0xffff_ffff_ffff_ffffn); // QEMU's read-error marker
    // Read-only directory over a write-only leaf: the AND is empty, nothing reported.
    t.map(SL, 3, 0x1_0000_0000n, 0x5000n, { r: false, dirPerm: { r: true, w: false } });
    // Read-only directory over an RW leaf: reported read-only.
    t.map(SL, 3, 0x1_4000_0000n, 0x6000n, { dirPerm: { r: true, w: false } });
    expect(collect(mem, cfg39, ctxOf(3), 0, LIMIT39 - 1)).toEqual([
      [0x1, 1, 0x11, 3],
      [0x4, 1, 0x14, 3],
      [0x140000, 1, 0x6, 1],
    ]);
    // SNP is allowed in leaves with x-scalable-mode.
    expect(collect(mem, { ...cfg39, scalableMode: true }, ctxOf(3), 0, 0x10)).toEqual([
      [0x1, 1, 0x11, 3],
      [0x2, 1, 0x12, 3],
      [0x4, 1, 0x14, 3],
    ]);
  });

  it('a PS entry at level 4 is reserved and skipped', () => {
    const { mem, t } = setup();
    t.pte(SL, 0, slpte({ r: true, w: true, ps: true, addr: 0 }));
    t.map(SL, 4, 0x80_0000_0000n, 0x3000n);
    expect(collect(mem, cfg48, ctxOf(4), 0, LIMIT48 - 1)).toEqual([[2 ** 27, 1, 3, 3]]);
  });

  it('output addresses keep bits up to HAW only', () => {
    const { mem, t } = setup();
    t.map(SL, 3, 0x1000n, 0x12_3456_7000n, { extra: 0xbff0_0000_0000_0000n });
    expect(collect(mem, cfg39, ctxOf(3), 0, 10)).toEqual([[1, 1, 0x1234567, 3]]);
  });

  it('top table outside RAM walks nothing', () => {
    const { mem } = setup();
    expect(collect(mem, cfg39, ctxOf(3, { slptptr: OUTSIDE }), 0, LIMIT39 - 1)).toEqual([]);
    expect(collect(mem, cfg39, ctxOf(3, { slptptr: 2 ** 62 }), 0, LIMIT39 - 1)).toEqual([]);
  });

  it('cost is the entries of the descended tables in range, not the range size', () => {
    const { mem, t } = setup();
    t.map(SL, 3, 0x1234_5000n, 0x9000n);
    const walker = secondLevelWalker(mem, cfg39, ctxOf(3), 1e6);
    const sink = (): void => {};
    walker(0, LIMIT39 - 1, sink);
    expect(walker.visited).toBe(3 * 512); // one table per level
    walker(0x12345, 0x12345, sink);
    expect(walker.visited).toBe(3);
    walker(0x12200, 0x123ff, sink); // one 2 MiB directory slot: 1 + 1 + 512
    expect(walker.visited).toBe(514);
  });

  it('throws WalkLimitError on a table aliased everywhere (512^3 leaves), within budget otherwise', () => {
    const { mem, t } = setup();
    for (let i = 0; i < 512; i++) t.pte(SL, i, slpte({ r: true, w: true, addr: SL }));
    const walker = secondLevelWalker(mem, cfg39, ctxOf(3), 100_000);
    let reported = 0;
    expect(() => walker(0, LIMIT39 - 1, () => { reported++; })).toThrow(WalkLimitError);
    expect(reported).toBeLessThan(100_000);
    // A small range of the same tables is fine and reports every frame.
    const leaves: Leaf[] = [];
    walker(0x200, 0x205, (a, b, c, d) => leaves.push([a, b, c, d]));
    expect(leaves).toEqual([0x200, 0x201, 0x202, 0x203, 0x204, 0x205].map((p) => [p, 1, SL / 4096, 3]));
    expect(walker.visited).toBe(8);
  });

  it('the error names the domain and the budget', () => {
    const { mem, t } = setup();
    for (let i = 0; i < 512; i++) t.pte(SL, i, slpte({ r: true, w: true, addr: SL }));
    expect(() => secondLevelWalker(mem, cfg39, ctxOf(3, { did: 0x2a }), 10)(0, LIMIT39 - 1, () => {})).toThrow(
      /domain 42.*10 table entries/,
    );
  });

  it('property: reports exactly the mapped 4K/2M leaves intersecting the range, and agrees with walkSecondLevel', () => {
    // Mappings chosen in distinct 2 MiB slots so 4K and 2M leaves never overlap.
    const slot = fc.integer({ min: 0, max: 2 ** 18 - 1 }); // 2 MiB slot index below 2^39
    const mapping = fc.record({
      slot,
      large: fc.boolean(),
      sub: fc.integer({ min: 0, max: 511 }),
      r: fc.boolean(),
      w: fc.boolean(),
      target: fc.integer({ min: 0, max: 2000 }), // frames below 0xfee00 (interrupt range)
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(mapping, { selector: (m) => m.slot, maxLength: 12 }),
        fc.integer({ min: 0, max: LIMIT39 - 1 }),
        fc.integer({ min: 0, max: LIMIT39 - 1 }),
        (maps, a, b) => {
          const { mem, t } = setup();
          const expected: Leaf[] = [];
          for (const m of maps) {
            const pages = m.large ? 512 : 1;
            const iovaPfn = m.slot * 512 + (m.large ? 0 : m.sub);
            const xlatPfn = m.target * 512 + (m.large ? 0 : m.sub); // below the interrupt range
            t.map(SL, 3, BigInt(iovaPfn) << 12n, BigInt(xlatPfn) << 12n, { leafLevel: m.large ? 2 : 1, r: m.r, w: m.w });
            const perm = (m.r ? 1 : 0) | (m.w ? 2 : 0);
            if (perm !== 0) expected.push([iovaPfn, pages, xlatPfn, perm]);
          }
          const [first, last] = a <= b ? [a, b] : [b, a];
          const inRange = expected
            .filter(([p, n]) => p + n - 1 >= first && p <= last)
            .sort((x, y) => x[0] - y[0]);
          expect(collect(mem, cfg39, ctxOf(3), first, last)).toEqual(inRange);
          const out: VtdLeaf = { iovaPfn: 0, pages: 0, xlatPfn: 0, perm: 0, level: 0 };
          for (const [p, n, x, perm] of expected) {
            const probe = p + (n - 1);
            const r = walkSecondLevel(mem, cfg39, ctxOf(3), probe, (perm & 1) === 0, out);
            expect(r).toBe(0);
            expect([out.iovaPfn, out.pages, out.xlatPfn, out.perm]).toEqual([p, n, x, perm]);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
