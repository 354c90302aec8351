/**
 * Issue 13 item 5, contract C9 (last sentence): a page-selective IOTLB
 * invalidation covers the whole naturally aligned block of 2^AM pages that
 * contains ADDR, whatever the low bits of ADDR say (VT-d spec 6.5.2.3). The
 * listeners' views of that block equal the tables afterwards, and the
 * IOTLB (which QEMU 7.2 over-invalidates) answers the same translations.
 * Expectations come from the mappings the test writes.
 */
import * as fc from 'fast-check';
import { isFault } from '../../../src/core/model';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import { RO, Recorder, SID_A, bringUp, desc, viewOf } from './helpers/device';

const ALL = IOMMUNotifierFlag.ALL;
const UNMAP = IOMMUNotifierFlag.UNMAP;
const U64 = (1n << 64n) - 1n;

function listen(b: ReturnType<typeof bringUp>, flags: number, start = 0n, end = U64): Recorder {
  const r = new Recorder();
  r.handle = b.vtd.addressSpace(SID_A).registerNotifier({ flags, start, end, notify: r.notify });
  return r;
}

describe('PSI with ADDR not aligned to 2^AM pages', () => {
  it('syncs the aligned block containing ADDR, including the pages below ADDR', () => {
    const b = bringUp();
    const r = listen(b, ALL);
    for (let p = 0x4n; p <= 0x7n; p++) b.map(SID_A, p << 12n, (0x400n + p) << 12n);
    b.submit(desc.iotlbPage(1, 0x6000n, 2)); // block 0x4000-0x7fff
    expect(viewOf(b, SID_A, r.handle)).toEqual([0x4n, 0x5n, 0x6n, 0x7n].map((p) => [p << 12n, 0xfffn, (0x400n + p) << 12n, 3]));
  });

  it('an UNMAP-only listener is told exactly the aligned block', () => {
    const b = bringUp();
    const u = listen(b, UNMAP);
    b.submit(desc.iotlbPage(1, 0x13_5000n, 4)); // 16 pages: block 0x130000-0x13ffff
    const ev = u.take();
    expect(ev.every((e) => e.type === UNMAP && e.perm === 0)).toBe(true);
    expect(ev.map((e) => [e.iova, e.iova + e.mask])).toEqual([[0x13_0000n, 0x13_ffffn]]);
  });

  it('AM 9 at an address inside a 2 MiB block: the whole 2 MiB is synced', () => {
    const b = bringUp();
    const r = listen(b, ALL);
    b.map(SID_A, 0x20_0000n, 0x80_0000n);
    b.map(SID_A, 0x3f_f000n, 0x81_0000n);
    b.submit(desc.iotlbPage(1, 0x3f_f000n, 9));
    expect(viewOf(b, SID_A, r.handle)).toEqual([[0x20_0000n, 0xfffn, 0x80_0000n, 3], [0x3f_f000n, 0xfffn, 0x81_0000n, 3]]);
  });

  it('property: after a PSI the view and translate() agree with the tables on every page of the aligned block', () => {
    // 64 pages at IOVA 0x1000000.. in one level-1 table; the guest changes some, then issues one PSI.
    const BASE = 0x100_0000n;
    const change = fc.record({ page: fc.integer({ min: 0, max: 63 }), target: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }) });
    fc.assert(fc.property(
      fc.array(change, { maxLength: 12 }),
      fc.array(change, { maxLength: 12 }),
      fc.integer({ min: 0, max: 63 }),
      fc.integer({ min: 0, max: 6 }),
      (initial, changes, addrPage, am) => {
        const b = bringUp();
        const tables = new Map<number, bigint>(); // page -> translated address, what the tables say
        const apply = (cs: typeof initial) => {
          for (const c of cs) {
            const iova = BASE + (BigInt(c.page) << 12n);
            if (c.target === undefined) {
              if (tables.has(c.page)) b.unmap(SID_A, iova);
              tables.delete(c.page);
            } else {
              const addr = 0x200_0000n + (BigInt(c.target) << 12n);
              b.map(SID_A, iova, addr);
              tables.set(c.page, addr);
            }
          }
        };
        apply(initial);
        const r = listen(b, ALL);
        // Fill the IOTLB with the current translations.
        for (const p of tables.keys()) b.vtd.translate(SID_A, BASE + (BigInt(p) << 12n), RO);
        apply(changes);
        b.submit(desc.iotlbPage(1, BASE + (BigInt(addrPage) << 12n), am));
        const first = addrPage - (addrPage % 2 ** am);
        const last = first + 2 ** am - 1;
        const inBlock = (iova: bigint) => iova >= BASE + (BigInt(first) << 12n) && iova <= BASE + (BigInt(last) << 12n);
        const want = [...tables].filter(([p]) => p >= first && p <= last).sort((x, y) => x[0] - y[0])
          .map(([p, addr]): [bigint, bigint, bigint, number] => [BASE + (BigInt(p) << 12n), 0xfffn, addr, 3]);
        expect(viewOf(b, SID_A, r.handle).filter(([iova]) => inBlock(iova))).toEqual(want);
        for (let p = first; p <= last; p++) {
          const t = b.vtd.translate(SID_A, BASE + (BigInt(p) << 12n), RO);
          const addr = tables.get(p);
          if (addr === undefined) expect(isFault(t)).toBe(true);
          else expect(t).toMatchObject({ translatedAddr: addr });
        }
      },
    ), { numRuns: 150 });
  });
});
