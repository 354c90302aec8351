/**
 * Hostile guest tables: random words (biased to point at the other tables,
 * outside RAM, or far above 2^53) in the root, context, PASID and paging
 * structures. The module must answer with a modelled fault reason or a
 * well-formed leaf, never throw (except VtdWalkLimitError from the walker),
 * and the walker's leaves must keep the LeafWalker contract.
 */
import fc from 'fast-check';
import { SparseRam } from '../../../src/memory/sparse-ram';
import { DEFAULT_VTD_CONFIG, type VtdConfig } from '../../../src/models/intel-vtd/config';
import {
  VtdWalkLimitError,
  isContextFault,
  refreshPasid,
  resolveContext,
  secondLevelWalker,
  walkSecondLevel,
  type VtdLeaf,
} from '../../../src/models/intel-vtd/translation';
import { writeWords } from './helpers/tables';

/** Eight 4 KiB table pages; page 0 is the root table. */
const PAGES = Array.from({ length: 8 }, (_, i) => 0x10_0000 + i * 0x1000);
const CONTEXT_REASONS = new Set([0x1, 0x2, 0x3, 0x8, 0x9, 0xa, 0xb, 0x58]);
const WALK_REASONS = new Set([0x3, 0x4, 0x5, 0x6, 0x7, 0xc, 0xe, 0x87]);

const word = fc.oneof(
  // A pointer to one of the table pages with random low bits (P, R/W, PS, FPD, TT, AW...).
  fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 0xfff })).map(([p, low]) => BigInt(PAGES[p]!) | BigInt(low)),
  // The same with random high bits (reserved, ignored, TM, beyond HAW, >= 2^53).
  fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 0xfff }), fc.bigInt({ min: 0n, max: (1n << 32n) - 1n })).map(
    ([p, low, hi]) => (hi << 32n) | BigInt(PAGES[p]!) | BigInt(low),
  ),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.constant(0xffff_ffff_ffff_ffffn),
);

const config = fc.record({
  awBits: fc.constantFrom(39 as const, 48 as const),
  scalableMode: fc.boolean(),
  deviceIotlb: fc.boolean(),
  passThrough: fc.boolean(),
});

/** Entry indexes biased to the first slots, where small sids and iovas look. */
const index = fc.oneof(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 511 }));
const tables = fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), index, word), { minLength: 1, maxLength: 200 });
const pfn = fc.oneof(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 2 ** 36 - 1 }));
let walked = 0;

describe('hostile tables', () => {
  it('resolveContext, walkSecondLevel and the walker give modelled answers and never throw', () => {
    fc.assert(
      fc.property(
        config,
        tables,
        fc.oneof(fc.constantFrom(0x00, 0x01, 0x80, 0x81), fc.integer({ min: 0, max: 0xffff })),
        fc.boolean(),
        fc.array(fc.tuple(pfn, fc.boolean()), { minLength: 1, maxLength: 8 }),
        fc.tuple(pfn, pfn),
        (over, entries, sid, scalableRoot, probes, [a, b]) => {
          const cfg: VtdConfig = { ...DEFAULT_VTD_CONFIG, ...over };
          const mem = new SparseRam([{ base: 0, size: 0x20_0000 }]);
          for (const [p, i, w] of entries) writeWords(mem, PAGES[p]! + i * 8, w);
          const res = resolveContext(mem, cfg, PAGES[0]!, scalableRoot, sid);
          if (isContextFault(res)) {
            expect(CONTEXT_REASONS.has(res.reason)).toBe(true);
            return;
          }
          expect([3, 4]).toContain(res.levels);
          walked++;
          const again = refreshPasid(mem, cfg, res);
          if (!isContextFault(again)) expect(again.slptptr).toBe(res.slptptr);
          const out: VtdLeaf = { iovaPfn: 0, pages: 0, xlatPfn: 0, perm: 0, level: 0 };
          for (const [pfn, write] of probes) {
            const r = walkSecondLevel(mem, cfg, res, pfn, write, out);
            if (r !== 0) {
              expect(WALK_REASONS.has(r)).toBe(true);
              continue;
            }
            expect([1, 512, 512 * 512]).toContain(out.pages);
            expect(out.iovaPfn % out.pages).toBe(0);
            expect(pfn - out.iovaPfn).toBeLessThan(out.pages);
            expect(out.perm & (write ? 2 : 1)).not.toBe(0);
            expect(out.xlatPfn).toBeLessThan(2 ** (cfg.awBits - 12));
          }
          const [first, last] = a <= b ? [a, b] : [b, a];
          let prevEnd = -1;
          try {
            secondLevelWalker(mem, cfg, res, 20_000)(first, last, (iovaPfn, pages, xlatPfn, perm) => {
              expect([1, 512, 512 * 512]).toContain(pages);
              expect(iovaPfn % pages).toBe(0);
              expect(iovaPfn).toBeGreaterThan(prevEnd); // ascending, no overlap
              expect(iovaPfn + pages - 1).toBeGreaterThanOrEqual(first);
              expect(iovaPfn).toBeLessThanOrEqual(last);
              expect(perm === 1 || perm === 2 || perm === 3).toBe(true);
              expect(xlatPfn).toBeLessThan(2 ** (cfg.awBits - 12));
              prevEnd = iovaPfn + pages - 1;
            });
          } catch (e) {
            expect(e).toBeInstanceOf(VtdWalkLimitError);
          }
        },
      ),
      { numRuns: 300 },
    );
    // The generator must reach the walks, not only the context faults.
    expect(walked).toBeGreaterThan(10);
  });
});
