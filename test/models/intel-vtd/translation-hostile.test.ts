/**
 * Hostile guest tables: a valid root/context/PASID skeleton overwritten by
 * random words (biased to point at the other tables, with reserved or ignored
 * bits, outside RAM, or far above 2^53) anywhere in the table pages. The module must answer with a modelled fault reason or a
 * well-formed leaf, never throw (except WalkLimitError from the walker),
 * and the walker's leaves must keep the LeafWalker contract.
 */
import fc from 'fast-check';
import { SparseRam } from '../../../src/memory/sparse-ram';
import { DEFAULT_VTD_CONFIG, type VtdConfig } from '../../../src/models/intel-vtd/config';
import {
  isContextFault,
  refreshPasid,
  resolveContext,
  secondLevelWalker,
  walkSecondLevel,
  type VtdLeaf,
} from '../../../src/models/intel-vtd/translation';
import { WalkLimitError } from '../../../src/core/walk-budget';
import {
  legacyContextEntry,
  legacyRootEntry,
  pasidDirEntry,
  pasidEntryWords,
  scalableContextEntry,
  scalableRootEntry,
  writeWords,
} from './helpers/tables';

/** Eight 4 KiB table pages; page 0 is the root table. */
const PAGES = Array.from({ length: 8 }, (_, i) => 0x10_0000 + i * 0x1000);
const CONTEXT_REASONS = new Set([0x1, 0x2, 0x3, 0x8, 0x9, 0xa, 0xb, 0x58]);
const WALK_REASONS = new Set([0x3, 0x4, 0x5, 0x6, 0x7, 0xc, 0xe, 0x87]);

/** Low bits that make plausible entries: P/R/W, FPD, TT, PS, PASID-entry AW/PGTT. */
const plausibleLow = fc.constantFrom(0x0, 0x1, 0x2, 0x3, 0x3, 0x3, 0x5, 0x9, 0xb, 0x81, 0x83, 0x83, 0x85, 0x45, 0x89, 0x87, 0x803);
const pagePtr = fc.integer({ min: 0, max: 7 }).map((p) => BigInt(PAGES[p]!));

const word = fc.oneof(
  // A pointer to one of the table pages with plausible low bits.
  { arbitrary: fc.tuple(pagePtr, plausibleLow).map(([p, low]) => p | BigInt(low)), weight: 8 },
  // A pointer with any low bits.
  fc.tuple(pagePtr, fc.integer({ min: 0, max: 0xfff })).map(([p, low]) => p | BigInt(low)),
  // A legacy context high word (AW, DID) or a PASID entry val1 (DID).
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff })).map(([aw, did]) => BigInt(aw) | (BigInt(did) << 8n)),
  // Pointers with random high bits (reserved, ignored, TM, beyond HAW, >= 2^53).
  fc.tuple(pagePtr, plausibleLow, fc.bigInt({ min: 0n, max: (1n << 32n) - 1n })).map(([p, low, hi]) => (hi << 32n) | p | BigInt(low)),
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
/** Random words, mostly into the paging-structure pages (2..7), sometimes over the skeleton. */
const page = fc.oneof({ arbitrary: fc.integer({ min: 2, max: 7 }), weight: 6 }, { arbitrary: fc.integer({ min: 0, max: 7 }), weight: 1 });
const tables = fc.array(fc.tuple(page, index, word), { minLength: 1, maxLength: 200 });
/** Frame numbers mostly through the dense first slots (level-2 and level-1 index 0..7). */
const pfn = fc.oneof(
  { arbitrary: fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 7 })).map(([a, b]) => a * 512 + b), weight: 4 },
  { arbitrary: fc.integer({ min: 0, max: 4095 }), weight: 1 },
  { arbitrary: fc.integer({ min: 0, max: 2 ** 36 - 1 }), weight: 1 },
);
/** The first 8 slots of each paging page (2..7), densely filled. */
const dense = fc.array(word, { minLength: 48, maxLength: 48 });
let walked = 0;

describe('hostile tables', () => {
  it('resolveContext, walkSecondLevel and the walker give modelled answers and never throw', () => {
    fc.assert(
      fc.property(
        config,
        dense,
        tables,
        fc.oneof(fc.constantFrom(0x00, 0x01, 0x80, 0x81), fc.integer({ min: 0, max: 0xffff })),
        fc.boolean(),
        fc.array(fc.tuple(pfn, fc.boolean()), { minLength: 1, maxLength: 8 }),
        fc.tuple(pfn, pfn),
        (over, denseWords, entries, sid, scalableRoot, probes, [a, b]) => {
          const cfg: VtdConfig = { ...DEFAULT_VTD_CONFIG, ...over };
          const mem = new SparseRam([{ base: 0, size: 0x20_0000 }]);
          // A valid skeleton (root -> context -> [PASID dir -> PASID entry ->] page 2), then the random words over it.
          const [root, ctxTable, sl, dir, pasidTable] = [PAGES[0]!, PAGES[1]!, PAGES[2]!, PAGES[3]!, PAGES[4]!];
          if (cfg.scalableMode && scalableRoot) {
            writeWords(mem, root, ...scalableRootEntry({ lctp: ctxTable, uctp: ctxTable }));
            writeWords(mem, ctxTable, ...scalableContextEntry({ pasidDir: dir, ridPasid: 0 }));
            writeWords(mem, dir, pasidDirEntry({ table: pasidTable }));
            writeWords(mem, pasidTable, ...pasidEntryWords({ aw: cfg.awBits === 48 ? 2 : 1, pgtt: 2, slptptr: sl }));
          } else {
            writeWords(mem, root, ...legacyRootEntry({ ctp: ctxTable }));
            for (const devfn of [0, 1, 0x80, 0x81]) {
              writeWords(mem, ctxTable + devfn * 16, ...legacyContextEntry({ aw: cfg.awBits === 48 ? 2 : 1, slptptr: sl }));
            }
          }
          denseWords.forEach((w, k) => writeWords(mem, PAGES[2 + (k >> 3)]! + (k & 7) * 8, w));
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
          const found: Array<[number, number, number, number]> = [];
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
              found.push([iovaPfn, pages, xlatPfn, perm]);
            });
          } catch (e) {
            expect(e).toBeInstanceOf(WalkLimitError);
          }
          // Every leaf the walker reports translates the same way through the DMA path
          // (unless its output meets the interrupt range, which only the DMA path checks;
          // a pass-through context translates to the identity, while its walk reads SLPTPTR as QEMU's does).
          for (const [iovaPfn, pages, xlatPfn, perm] of res.passThrough ? [] : found) {
            const r = walkSecondLevel(mem, cfg, res, iovaPfn + pages - 1, (perm & 1) === 0, out);
            if (xlatPfn <= 0xfeeff && xlatPfn + pages - 1 >= 0xfee00) {
              expect(r).toBe(cfg.scalableMode ? 0x87 : 0xe);
              continue;
            }
            expect(r).toBe(0);
            expect([out.iovaPfn, out.pages, out.xlatPfn, out.perm]).toEqual([iovaPfn, pages, xlatPfn, perm]);
          }
        },
      ),
      { numRuns: 150 },
    );
    // The generator must reach the walks, not only the context faults.
    expect(walked).toBeGreaterThan(20);
  });
});
