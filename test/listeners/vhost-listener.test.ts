import fc from 'fast-check';
import { VhostListener, VhostError, VHOST_MAX_IOTLB_ENTRIES } from '../../src/listeners';
import { NotifierList } from '../../src/core/notifier-list';
import { IOMMUNotifierFlag } from '../../src/core/tlb-entry';
import { IOMMUAccessFlags } from '../../src/core/access';
import type { IOMMUTLBEntry } from '../../src/core/tlb-entry';
import { FakeSource, K4, M2 } from './helpers';

const { UNMAP, DEVIOTLB_UNMAP, MAP } = IOMMUNotifierFlag;
const { NONE, RO, WO, RW } = IOMMUAccessFlags;

/** A guest page table of 4 KiB pages (page iova -> [gpa, perm]) and an IOMMU answering misses from it. */
function guestIommu() {
  const table = new Map<bigint, [bigint, IOMMUAccessFlags]>();
  const asked: bigint[] = [];
  const miss = (iova: bigint, _perm: IOMMUAccessFlags): IOMMUTLBEntry | undefined => {
    asked.push(iova);
    const page = iova & ~(K4 - 1n);
    const t = table.get(page);
    return t && { iova: page, addrMask: K4 - 1n, translatedAddr: t[0], perm: t[1] };
  };
  return { table, asked, miss };
}

describe('VhostListener', () => {
  test('registers UNMAP only, or DEVIOTLB_UNMAP with a device IOTLB', () => {
    const src = new FakeSource();
    new VhostListener({ miss: () => undefined }).attach(src);
    new VhostListener({ miss: () => undefined, deviceIotlb: true }).attach(src);
    expect(src.notifiers.map((n) => n.notifier.flags)).toEqual([UNMAP, DEVIOTLB_UNMAP]);
  });

  test('a miss asks the IOMMU once and fills the IOTLB; later accesses hit', () => {
    const g = guestIommu();
    g.table.set(0x10000n, [0x5000n, RW]);
    const v = new VhostListener({ miss: g.miss, gpaToUaddr: (gpa) => 0x7f00000000n + gpa });
    v.attach(new FakeSource());
    expect(v.translate(0x10010n, RO)).toMatchObject({ uaddr: 0x7f00005010n });
    expect(v.translate(0x10ff0n, WO)).toMatchObject({ uaddr: 0x7f00005ff0n });
    expect(g.asked).toEqual([0x10010n]);
    expect(v.entries()).toEqual([{ iova: 0x10000n, size: K4, uaddr: 0x7f00005000n, perm: RW }]);
    expect(v.stats()).toMatchObject({ hits: 1, misses: 1, updates: 1, entries: 1 });
  });

  test('access failures: IOMMU fault, missing permission (-EPERM, no new miss), malformed answer', () => {
    const g = guestIommu();
    g.table.set(0x1000n, [0x5000n, RO]);
    const v = new VhostListener({ miss: g.miss });
    v.attach(new FakeSource());
    const fails: string[] = [];
    v.events.on('accessFail', (e) => fails.push(e.reason));
    expect(v.translate(0x9000n, RO)).toBeUndefined();
    expect(v.translate(0x1000n, RO)).toBeDefined();
    expect(v.translate(0x1000n, WO)).toBeUndefined();
    const bad = new VhostListener({ miss: () => ({ iova: 0x2000n, addrMask: 0xfffn, translatedAddr: 0n, perm: RW }) });
    bad.attach(new FakeSource());
    bad.events.on('accessFail', (e) => fails.push(e.reason));
    expect(bad.translate(0x5000n, RO)).toBeUndefined();
    expect(fails).toEqual(['fault', 'permission', 'bad-translation']);
    expect(g.asked).toEqual([0x9000n, 0x1000n]);
  });

  test('an UNMAP notification invalidates every intersecting entry whole', () => {
    const src = new FakeSource();
    const v = new VhostListener({ miss: () => undefined });
    v.attach(src);
    v.update({ iova: 0x0n, size: M2, uaddr: 0x100000000n, perm: RW });
    v.update({ iova: M2, size: K4, uaddr: 0x5000n, perm: RW });
    v.update({ iova: M2 + K4, size: K4, uaddr: 0x6000n, perm: RW });
    src.send(UNMAP, 0x1ff000n, 0xfffn, 0n, NONE);
    expect(v.entries().map((e) => e.iova)).toEqual([M2, M2 + K4]);
    // An over-sized invalidation is fine.
    src.send(UNMAP, 0n, (1n << 64n) - 1n, 0n, NONE);
    expect(v.entries()).toEqual([]);
    expect(v.stats()).toMatchObject({ invalidations: 2, dropped: 3 });
  });

  test('DEVIOTLB_UNMAP notifications invalidate too', () => {
    const src = new FakeSource();
    const v = new VhostListener({ miss: () => undefined, deviceIotlb: true });
    v.attach(src);
    v.update({ iova: 0x3000n, size: K4, uaddr: 0n, perm: RO });
    src.send(DEVIOTLB_UNMAP, 0x3000n, 0xfffn, 0n, NONE);
    expect(v.entries()).toEqual([]);
  });

  test('UPDATE: size 0 and perm NONE are EINVAL; the whole space is stored as two halves', () => {
    const v = new VhostListener({ miss: () => undefined });
    expect(() => v.update({ iova: 0n, size: 0n })).toThrow(VhostError);
    expect(() => v.update({ iova: 0n, size: K4, perm: NONE })).toThrow(VhostError);
    v.update({ iova: 0n, size: 1n << 64n, uaddr: 0n, perm: RW });
    expect(v.entries()).toEqual([
      { iova: 0n, size: 1n << 63n, uaddr: 0n, perm: RW },
      { iova: 1n << 63n, size: 1n << 63n, uaddr: 1n << 63n, perm: RW },
    ]);
    expect(v.lookup((1n << 64n) - 1n)?.iova).toBe(1n << 63n);
  });

  test('overlapping entries: the lowest-starting one that contains the address serves it', () => {
    const v = new VhostListener({ miss: () => undefined });
    v.update({ iova: M2 + K4, size: K4, uaddr: 0xaa000n, perm: RW });
    v.update({ iova: M2, size: M2, uaddr: 0x400000n, perm: RW });
    expect(v.lookup(M2 + K4 + 8n)?.uaddr).toBe(0x400000n);
    expect(v.lookup(M2 - 1n)).toBeUndefined();
  });

  test('max_iotlb_entries: 2048 by default, the oldest entry retires', () => {
    const v = new VhostListener({ miss: () => undefined });
    expect(v.maxIotlbEntries).toBe(VHOST_MAX_IOTLB_ENTRIES);
    expect(VHOST_MAX_IOTLB_ENTRIES).toBe(2048);
    const retired: bigint[] = [];
    v.events.on('retired', (e) => retired.push(e.iova));
    // Inserted in descending IOVA order, so "oldest" is not "lowest".
    for (let i = 2048n; i >= 0n; i--) v.update({ iova: i * K4, size: K4, uaddr: 0n, perm: RW });
    expect(v.stats().entries).toBe(2048);
    expect(retired).toEqual([2048n * K4]);
    expect(v.lookup(2048n * K4)).toBeUndefined();
    expect(v.lookup(0n)).toBeDefined();
  });

  test('an invalidation that races with a miss makes the listener ask again, never caching the stale answer', () => {
    const g = guestIommu();
    g.table.set(0x1000n, [0x5000n, RW]);
    let v!: VhostListener;
    let first = true;
    v = new VhostListener({
      miss: (iova, perm) => {
        const answer = g.miss(iova, perm);
        if (first) {
          // The guest changes the mapping and invalidates while the IOMMU answer is in flight.
          first = false;
          g.table.set(0x1000n, [0x9000n, RW]);
          v.invalidate({ iova: 0x1000n, size: K4 });
        }
        return answer;
      },
    });
    v.attach(new FakeSource());
    expect(v.translate(0x1000n, RO)?.uaddr).toBe(0x9000n);
    expect(v.entries()).toEqual([{ iova: 0x1000n, size: K4, uaddr: 0x9000n, perm: RW }]);
  });

  test('attached to a NotifierList, it gets UNMAPs but no MAPs', () => {
    const list = new NotifierList({ name: 'vhost test' });
    const g = guestIommu();
    g.table.set(0x1000n, [0x5000n, RW]);
    const v = new VhostListener({ miss: g.miss });
    v.attach(list);
    v.translate(0x1000n, RO);
    list.notify({ type: MAP, entry: { iova: 0x2000n, addrMask: 0xfffn, translatedAddr: 0n, perm: RW } });
    expect(v.entries().map((e) => e.iova)).toEqual([0x1000n]);
    list.notify({ type: UNMAP, entry: { iova: 0x1000n, addrMask: 0xfffn, translatedAddr: 0n, perm: NONE } });
    expect(v.entries()).toEqual([]);
  });

  test('never serves a translation the guest has invalidated (property)', () => {
    type Op = { kind: 'access'; page: number; write: boolean } | { kind: 'change'; page: number; gpa: number; perm: IOMMUAccessFlags }
      | { kind: 'unmapPage'; page: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('access' as const), page: fc.nat(5), write: fc.boolean() }),
      fc.record({ kind: fc.constant('change' as const), page: fc.nat(5), gpa: fc.nat(255), perm: fc.constantFrom(RO, WO, RW) }),
      fc.record({ kind: fc.constant('unmapPage' as const), page: fc.nat(5) }),
    );
    fc.assert(fc.property(fc.array(opArb, { minLength: 30, maxLength: 100 }), fc.integer({ min: 2, max: 8 }), (ops, max) => {
      const g = guestIommu();
      const src = new FakeSource();
      const v = new VhostListener({ miss: g.miss, maxIotlbEntries: max });
      v.attach(src);
      for (const op of ops) {
        const iova = BigInt(op.page) * K4;
        if (op.kind === 'access') {
          const need = op.write ? WO : RO;
          const r = v.translate(iova + 4n, need);
          const t = g.table.get(iova);
          // The answer is exactly what the guest table says now.
          if (t === undefined || (t[1] & need) !== need) expect(r).toBeUndefined();
          else expect(r?.uaddr).toBe(t[0] + 4n);
          expect(v.stats().entries).toBeLessThanOrEqual(max);
        } else {
          // A guest with caching mode invalidates after each change; the IOMMU notifies UNMAP.
          if (op.kind === 'change') g.table.set(iova, [BigInt(op.gpa) * K4, op.perm]);
          else g.table.delete(iova);
          src.send(UNMAP, iova, K4 - 1n, 0n, NONE);
        }
      }
    }), { numRuns: 200 });
  });
});
