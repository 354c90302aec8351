/**
 * Notifiers: without NpCache a MAP notifier is refused (C1) and UNMAP
 * notifiers get the invalidated ranges; with NpCache, MAP|UNMAP views follow
 * the tables after INVALIDATE_IOMMU_PAGES / DEVTAB_ENTRY / ALL (C9), one
 * entry per leaf, are torn down when translation goes off (C8), and equal an
 * independent reference model after random map/unmap/invalidate sequences.
 */
import fc from 'fast-check';
import { IOMMUAccessFlags } from '../../../src/core/access';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import type { IOMMUTLBEvent } from '../../../src/core/tlb-entry';
import type { AmdViProfile } from '../../../src/models/amd-vi';
import { AmdGuest, RadixTable, invAll, invDevtab, invPages, pte } from './guest';

const SID = 0x20;
const ALL_END = (1n << 64n) - 1n;

function listen(g: AmdGuest, flags: number, start = 0n, end = ALL_END): { events: IOMMUTLBEvent[]; view: () => Array<[bigint, bigint, bigint, number]> } {
  const events: IOMMUTLBEvent[] = [];
  const as = g.iommu.addressSpace(SID);
  const h = as.registerNotifier({ flags, start, end, notify: (e) => events.push({ type: e.type, entry: { ...e.entry } }) });
  return { events, view: () => as.notifiers.view(h).map((e) => [e.iova, e.addrMask, e.translatedAddr, e.perm]) };
}

test('without NpCache: MAP is refused (C1); an UNMAP notifier gets the invalidated range', () => {
  const g = new AmdGuest();
  const t = new RadixTable(g, 4);
  g.setDte(SID, { mode: 4, root: t.root, domid: 3 });
  g.bringUp();
  expect(() => g.iommu.addressSpace(SID).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: ALL_END, notify: () => undefined })).toThrow(/NpCache/);
  const { events } = listen(g, IOMMUNotifierFlag.UNMAP);
  expect(g.run(invPages(3, 0x12_3450_0000n, 0x1_0000n))).toBe(true);
  expect(events).toEqual([{ type: IOMMUNotifierFlag.UNMAP, entry: expect.objectContaining({ iova: 0x12_3450_0000n, addrMask: 0xffffn, perm: 0 }) }]);
  // Another domain: nothing.
  expect(g.run(invPages(4, 0n, 0x1000n))).toBe(true);
  expect(events).toHaveLength(1);
});

describe.each(['spec', 'qemu-7.2'] as AmdViProfile[])('NpCache, profile %s', (profile) => {
  test('one MAP per leaf after the invalidation: 4 KiB, 2 MiB, a NextLevel=7 16 KiB page, a skip-level leaf', () => {
    const g = new AmdGuest({ profile, npCache: true });
    const root = g.alloc();
    g.setDte(SID, { mode: 4, root, domid: 3 });
    g.bringUp();
    const { events, view } = listen(g, IOMMUNotifierFlag.ALL);
    expect(events).toEqual([]);
    const l3 = g.alloc();
    const l2 = g.alloc();
    const l1 = g.alloc();
    g.write64(root, pte(l3, 3));
    g.write64(l3, pte(l2, 2));
    g.write64(l2, pte(l1, 1));
    g.write64(l1 + 1 * 8, pte(0x50_1000, 0, 1)); // 4K at 0x1000, read-only
    for (let i = 4; i < 8; i++) g.write64(l1 + i * 8, pte(0x60_4000 | 0x1000, 7)); // 16K at 0x4000
    g.write64(l2 + 1 * 8, pte(0x80_0000, 0)); // 2M at 0x20_0000
    const skip = g.alloc();
    g.write64(root + 1 * 8, pte(skip, 1)); // level 4 -> level 1 at 512 GiB
    g.write64(skip + 2 * 8, pte(0x70_0000, 0, 2));
    expect(g.run(invPages(3, 'all'))).toBe(true);
    expect(view()).toEqual([
      [0x1000n, 0xfffn, 0x50_1000n, 1],
      [0x4000n, 0x3fffn, 0x60_4000n, 3],
      [0x20_0000n, 0x1f_ffffn, 0x80_0000n, 3],
      [(1n << 39n) | 0x2000n, 0xfffn, 0x70_0000n, 2],
    ]);
    // A domain switch of the device: INVALIDATE_DEVTAB_ENTRY re-syncs the view to the new (empty) tables.
    g.setDte(SID, { mode: 4, root: g.alloc(), domid: 4 });
    expect(g.run(invDevtab(SID))).toBe(true);
    expect(view()).toEqual([]);
    g.setDte(SID, { mode: 4, root, domid: 3 });
    expect(g.run(invAll())).toBe(true);
    expect(view()).toHaveLength(4);
    // Translation off: everything unmapped (C8).
    g.iommu.mmioWrite(0x18, 8, 0x1004n);
    expect(view()).toEqual([]);
  });

  test('property: after each domain invalidation the view equals a reference model of the mappings', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('map4k' as const), slot: fc.nat(3), page: fc.nat(511), frame: fc.nat(0xfff), perm: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ k: fc.constant('map2m' as const), slot: fc.nat(3), frame: fc.nat(0x3f), perm: fc.integer({ min: 1, max: 3 }) }),
      fc.record({ k: fc.constant('unmap4k' as const), slot: fc.nat(3), page: fc.nat(511) }),
      fc.record({ k: fc.constant('unmap2m' as const), slot: fc.nat(3) }),
      fc.record({ k: fc.constant('inval' as const), slot: fc.nat(3) }),
    );
    fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops) => {
      const g = new AmdGuest({ profile, npCache: true });
      const t = new RadixTable(g, 4);
      g.setDte(SID, { mode: 4, root: t.root, domid: 3 });
      g.bringUp();
      const { view } = listen(g, IOMMUNotifierFlag.ALL);
      // Reference: per 2 MiB slot (IOVA base 1 GiB), nothing, one 2 MiB leaf, or a table of 4 KiB leaves.
      type Slot = { big?: { gpa: bigint; perm: number }; pages: Map<number, { gpa: bigint; perm: number }> };
      const ref: Slot[] = [0, 1, 2, 3].map(() => ({ pages: new Map() }));
      const base = (slot: number): bigint => (1n << 30n) + BigInt(slot) * 0x20_0000n;
      for (const o of ops) {
        const s = ref[o.slot]!;
        if (o.k === 'map4k') {
          const gpa = 0x100_0000n + BigInt(o.frame) * 0x1000n;
          t.map(base(o.slot) + BigInt(o.page) * 0x1000n, gpa, 0x1000n, o.perm);
          if (s.big) { s.big = undefined; s.pages.clear(); }
          s.pages.set(o.page, { gpa, perm: o.perm });
        } else if (o.k === 'map2m') {
          const gpa = 0x200_0000n + BigInt(o.frame) * 0x20_0000n;
          t.map(base(o.slot), gpa, 0x20_0000n, o.perm);
          s.big = { gpa, perm: o.perm };
          s.pages.clear();
        } else if (o.k === 'unmap4k') {
          t.unmap(base(o.slot) + BigInt(o.page) * 0x1000n, 0x1000n);
          if (!s.big) s.pages.delete(o.page);
        } else if (o.k === 'unmap2m') {
          t.unmap(base(o.slot), 0x20_0000n);
          s.big = undefined;
          s.pages.clear();
        } else {
          expect(g.run(invPages(3, 'all'))).toBe(true);
          const want: Array<[bigint, bigint, bigint, number]> = [];
          ref.forEach((r, i) => {
            if (r.big) want.push([base(i), 0x1f_ffffn, r.big.gpa, r.big.perm]);
            for (const p of [...r.pages.keys()].sort((a, b) => a - b)) {
              const e = r.pages.get(p)!;
              want.push([base(i) + BigInt(p) * 0x1000n, 0xfffn, e.gpa, e.perm]);
            }
          });
          expect(view()).toEqual(want);
          // And the device translates as the view says.
          for (const [iova, , gpa, perm] of want) {
            expect(g.iommu.translate(SID, iova, perm as IOMMUAccessFlags)).toMatchObject({ translatedAddr: gpa });
          }
        }
      }
    }), { numRuns: 60 });
  });
});

test('device-iotlb: INVALIDATE_IOTLB_PAGES reaches DEVIOTLB_UNMAP notifiers (S-encoded range); without it they are refused', () => {
  const g = new AmdGuest({ deviceIotlb: true });
  g.setDte(SID, { mode: 3, root: g.alloc(), domid: 1 });
  g.bringUp();
  const { events } = listen(g, IOMMUNotifierFlag.DEVIOTLB_UNMAP);
  // S=1, address bits 12..13 one, bit 14 zero: a 32 KiB block.
  expect(g.run([(4n << 60n) | BigInt(SID), 0x40_0000n | 0x3000n | 1n])).toBe(true);
  expect(events).toEqual([{ type: IOMMUNotifierFlag.DEVIOTLB_UNMAP, entry: expect.objectContaining({ iova: 0x40_0000n, addrMask: 0x7fffn }) }]);
  const plain = new AmdGuest();
  expect(() => plain.iommu.addressSpace(SID).registerNotifier({ flags: IOMMUNotifierFlag.DEVIOTLB_UNMAP, start: 0n, end: ALL_END, notify: () => undefined })).toThrow(/device-iotlb/);
});
