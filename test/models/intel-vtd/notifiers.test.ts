/**
 * What a notifier of a device address space sees (contract.md C1, C7, C8, C9;
 * vtd-facts.md §9.3): registration refusals, replay, and the effect of each
 * invalidation and of TE / SRTP / reset on a recording listener.
 */
import * as fc from 'fast-check';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import { CONTEXT, GCMD, REG, SID_A, SID_B, bringUp, desc, makeBench, Recorder, viewOf } from './helpers/device';

const ALL = IOMMUNotifierFlag.ALL;
const MAP = IOMMUNotifierFlag.MAP;
const UNMAP = IOMMUNotifierFlag.UNMAP;
const DEV = IOMMUNotifierFlag.DEVIOTLB_UNMAP;
const U64 = (1n << 64n) - 1n;

/** An event without its translated address (what an UNMAP carries there is the list's business). */
const shape = (e: Recorder['events'][number]) => ({ type: e.type, iova: e.iova, mask: e.mask, perm: e.perm, ...(e.type === MAP ? { translated: e.translated } : {}) });
const unmap = (iova: bigint, mask: bigint) => ({ type: UNMAP, iova, mask, perm: 0 });
const mapped = (iova: bigint, mask: bigint, translated: bigint, perm: number) => ({ type: MAP, iova, mask, perm, translated });

/** True when the UNMAP events are all UNMAPs and together cover [iova, iova + mask]. */
function coveredByUnmaps(ev: Recorder['events'], iova: bigint, mask: bigint): boolean {
  return ev.every((e) => e.type === UNMAP && e.perm === 0) && ev.some((e) => e.iova <= iova && e.iova + e.mask >= iova + mask);
}

function listen(b: ReturnType<typeof bringUp>, sid: number, flags: number, start = 0n, end = U64): Recorder {
  const r = new Recorder();
  r.handle = b.vtd.addressSpace(sid).registerNotifier({ flags, start, end, notify: r.notify });
  return r;
}

describe('registration (C1)', () => {
  it('refuses MAP notifiers without caching mode, saying why', () => {
    const b = bringUp({ cachingMode: false });
    expect(() => listen(b, SID_A, ALL)).toThrow(/caching mode/);
    expect(b.vtd.addressSpace(SID_A).notifiers.handles).toHaveLength(0);
  });

  it('accepts UNMAP-only notifiers without caching mode', () => {
    const b = bringUp({ cachingMode: false });
    expect(() => listen(b, SID_A, UNMAP)).not.toThrow();
  });

  it('refuses DEVIOTLB_UNMAP without device-iotlb, accepts it with', () => {
    expect(() => listen(bringUp({ cachingMode: true }), SID_A, DEV)).toThrow(/device-iotlb/);
    expect(() => listen(bringUp({ cachingMode: true, deviceIotlb: true }), SID_A, DEV)).not.toThrow();
  });
});

describe('replay (C7)', () => {
  it('a new MAP notifier receives every present leaf inside its range as MAPs', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.map(SID_A, 0x20_0000n, 0x60_0000n, { leafLevel: 2, w: false });
    b.map(SID_A, 0x40_0000_0000n, 0x80_0000n);
    const r = listen(b, SID_A, ALL, 0n, 0xffff_ffffn);
    expect(r.take().map(shape)).toEqual([mapped(0x1000n, 0xfffn, 0x40_0000n, 3), mapped(0x20_0000n, 0x1f_ffffn, 0x60_0000n, 1)]);
  });

  it('replays nothing while translation is off or the context does not resolve', () => {
    const off = makeBench();
    off.device(SID_A, 1);
    off.map(SID_A, 0x1000n, 0x40_0000n);
    off.setRoot();
    expect(listen(off as ReturnType<typeof bringUp>, SID_A, ALL).take()).toEqual([]);
    const b = bringUp();
    expect(listen(b, 0x30, ALL).take()).toEqual([]);
  });
});

describe('IOTLB invalidations (C9)', () => {
  it('PSI: a new mapping is MAPped, a removed one UNMAPped, a changed one UNMAPped then MAPped', () => {
    const b = bringUp();
    const r = listen(b, SID_A, ALL);
    b.map(SID_A, 0x5000n, 0x40_0000n);
    b.submit(desc.iotlbPage(1, 0x5000n));
    expect(r.take().map(shape)).toEqual([mapped(0x5000n, 0xfffn, 0x40_0000n, 3)]);
    b.map(SID_A, 0x5000n, 0x41_0000n, { w: false });
    b.submit(desc.iotlbPage(1, 0x5000n));
    expect(r.take().map(shape)).toEqual([unmap(0x5000n, 0xfffn), mapped(0x5000n, 0xfffn, 0x41_0000n, 1)]);
    b.unmap(SID_A, 0x5000n);
    b.submit(desc.iotlbPage(1, 0x5000n));
    expect(r.take().map(shape)).toEqual([unmap(0x5000n, 0xfffn)]);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
  });

  it('PSI covers [ADDR, ADDR + 4K * 2^AM - 1] only, and only for the matching domain', () => {
    const b = bringUp();
    const ra = listen(b, SID_A, ALL);
    const rb = listen(b, SID_B, ALL);
    b.map(SID_A, 0x4000n, 0x40_0000n);
    b.map(SID_A, 0x8000n, 0x41_0000n);
    b.map(SID_B, 0x4000n, 0x50_0000n);
    b.submit(desc.iotlbPage(1, 0x4000n, 2)); // 0x4000-0x7fff of DID 1
    expect(viewOf(b, SID_A, ra.handle)).toEqual([[0x4000n, 0xfffn, 0x40_0000n, 3]]);
    expect(viewOf(b, SID_B, rb.handle)).toEqual([]);
  });

  it('an UNMAP-only notifier receives the invalidated range of a PSI', () => {
    const b = bringUp();
    const r = listen(b, SID_A, UNMAP);
    b.submit(desc.iotlbPage(1, 0x10_0000n, 3));
    const ev = r.take();
    expect(ev.every((e) => e.type === UNMAP)).toBe(true);
    // Together the UNMAPs cover exactly [0x100000, 0x107fff].
    expect(ev.map((e) => [e.iova, e.iova + e.mask])).toEqual([[0x10_0000n, 0x10_7fffn]]);
  });

  it('DSI syncs the whole space of the spaces in that domain', () => {
    const b = bringUp();
    const ra = listen(b, SID_A, ALL);
    const rb = listen(b, SID_B, ALL);
    b.map(SID_A, 0x3_0000_0000n, 0x40_0000n);
    b.map(SID_B, 0x1000n, 0x50_0000n);
    b.submit(desc.iotlbDomain(1));
    expect(viewOf(b, SID_A, ra.handle)).toEqual([[0x3_0000_0000n, 0xfffn, 0x40_0000n, 3]]);
    expect(viewOf(b, SID_B, rb.handle)).toEqual([]);
    b.submit(desc.iotlbDomain(2));
    expect(viewOf(b, SID_B, rb.handle)).toEqual([[0x1000n, 0xfffn, 0x50_0000n, 3]]);
  });

  it('global IOTLB invalidation syncs every space; a space whose context vanished is unmapped', () => {
    const b = bringUp();
    const ra = listen(b, SID_A, ALL);
    const rb = listen(b, SID_B, ALL);
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.map(SID_B, 0x2000n, 0x50_0000n);
    b.submit(desc.iotlbGlobal());
    expect(viewOf(b, SID_A, ra.handle)).toHaveLength(1);
    expect(viewOf(b, SID_B, rb.handle)).toHaveLength(1);
    b.tables.legacyContext(CONTEXT, SID_B, { present: false });
    b.submit(desc.iotlbGlobal());
    expect(viewOf(b, SID_A, ra.handle)).toHaveLength(1);
    expect(viewOf(b, SID_B, rb.handle)).toEqual([]);
  });

  it('a sync that finds nothing changed sends nothing', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    const r = listen(b, SID_A, ALL);
    r.take();
    b.submit(desc.iotlbGlobal(), desc.iotlbDomain(1), desc.iotlbPage(1, 0x1000n));
    expect(r.take()).toEqual([]);
  });

  it('a 2 MiB leaf split into 4 KiB leaves: the big entry is unmapped whole, the small ones mapped', () => {
    const b = bringUp();
    b.map(SID_A, 0x20_0000n, 0x60_0000n, { leafLevel: 2 });
    const r = listen(b, SID_A, ALL);
    r.take();
    // Replace the 2 MiB leaf by a level-1 table holding two pages.
    const l1 = b.tables.page();
    b.tables.pte(l1, 0, 0x60_0000n | 3n);
    b.tables.pte(l1, 5, 0x70_0000n | 1n);
    // Level-2 slot for iova 0x200000 is index 1 of the level-2 table under level-3 index 0.
    const l3 = b.slpt.get(SID_A)!;
    const l2 = (b.ram.readU32(l3) & ~0xfff) >>> 0;
    b.tables.pte(l2, 1, BigInt(l1) | 3n);
    b.submit(desc.iotlbPage(1, 0x20_0000n, 9));
    const ev = r.take();
    expect(shape(ev[0]!)).toEqual(unmap(0x20_0000n, 0x1f_ffffn));
    expect(viewOf(b, SID_A, r.handle)).toEqual([
      [0x20_0000n, 0xfffn, 0x60_0000n, 3],
      [0x20_5000n, 0xfffn, 0x70_0000n, 1],
    ]);
  });
});

describe('context-cache invalidations and teardown (C8)', () => {
  it('device-selective: a cleared context unmaps everything; a restored one maps it again', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    const r = listen(b, SID_A, ALL);
    r.take();
    b.tables.legacyContext(CONTEXT, SID_A, { present: false });
    b.submit(desc.contextDevice(1, SID_A));
    expect(coveredByUnmaps(r.take(), 0x1000n, 0xfffn)).toBe(true);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: b.slpt.get(SID_A)!, aw: 1, did: 1 });
    b.submit(desc.contextDevice(1, SID_A));
    expect(viewOf(b, SID_A, r.handle)).toEqual([[0x1000n, 0xfffn, 0x40_0000n, 3]]);
  });

  it('global / domain context invalidation re-resolves every space: a device moved to new tables is resynced', () => {
    for (const d of [desc.contextGlobal(), desc.contextDomain(1)]) {
      const b = bringUp();
      b.map(SID_A, 0x1000n, 0x40_0000n);
      const r = listen(b, SID_A, ALL);
      const other = b.tables.page();
      b.tables.map(other, 3, 0x9000n, 0x90_0000n);
      b.tables.legacyContext(CONTEXT, SID_A, { slptptr: other, aw: 1, did: 5 });
      b.submit(d);
      expect(viewOf(b, SID_A, r.handle)).toEqual([[0x9000n, 0xfffn, 0x90_0000n, 3]]);
    }
  });

  it('TE off unmaps every view; TE on maps nothing until the guest invalidates', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    const r = listen(b, SID_A, ALL);
    const u = listen(b, SID_A, UNMAP, 0n, 0x7f_ffff_ffffn);
    r.take();
    u.take();
    b.write(REG.GCMD, GCMD.QIE);
    expect(coveredByUnmaps(r.take(), 0x1000n, 0xfffn)).toBe(true);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
    // The UNMAP-only listener is told its whole range (2^39 bytes) went away.
    expect(coveredByUnmaps(u.take(), 0n, 0x7f_ffff_ffffn)).toBe(true);
    b.submit(desc.iotlbGlobal()); // while TE is off: nothing is shadowed
    expect(r.take()).toEqual([]);
    b.write(REG.GCMD, GCMD.QIE | GCMD.TE);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
    b.submit(desc.iotlbGlobal());
    expect(viewOf(b, SID_A, r.handle)).toEqual([[0x1000n, 0xfffn, 0x40_0000n, 3]]);
  });

  it('SRTP and reset() unmap every view', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    const r = listen(b, SID_A, ALL);
    b.write(REG.GCMD, GCMD.QIE | GCMD.TE | GCMD.SRTP);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
    b.submit(desc.iotlbGlobal());
    expect(viewOf(b, SID_A, r.handle)).toHaveLength(1);
    b.vtd.reset();
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
  });
});

describe('device-IOTLB invalidation', () => {
  it.each([
    ['S=0: one 4 KiB page at ADDR', 0x5000n, false, 0x5000n, 0xfffn],
    ['S=1, ADDR bit 12 clear: 8 KiB', 0x4000n, true, 0x4000n, 0x1fffn],
    ['S=1, bits 12 set and 13 clear: 16 KiB, ADDR aligned down', 0x5000n, true, 0x4000n, 0x3fffn],
    ['S=1, bits 14:12 set, 15 clear: 64 KiB', 0x7000n, true, 0x0n, 0xffffn],
  ])('%s', (_n, addr, s, iova, mask) => {
    const b = bringUp({ cachingMode: true, deviceIotlb: true });
    const r = listen(b, SID_A, DEV);
    const u = listen(b, SID_A, UNMAP);
    b.submit(desc.deviceIotlb(SID_A, addr, s));
    expect(r.take().map((e) => ({ type: e.type, iova: e.iova, mask: e.mask, perm: e.perm }))).toEqual([{ type: DEV, iova, mask, perm: 0 }]);
    expect(u.take()).toEqual([]);
  });

  it('goes to the addressed device only', () => {
    const b = bringUp({ cachingMode: true, deviceIotlb: true });
    const r = listen(b, SID_B, DEV);
    b.submit(desc.deviceIotlb(SID_A, 0x1000n));
    expect(r.take()).toEqual([]);
  });
});

describe('property: after each invalidation the view equals the tables (C9)', () => {
  it('random map / unmap / retarget with PSI, DSI or global invalidation', () => {
    const op = fc.record({
      page: fc.integer({ min: 0, max: 15 }),
      kind: fc.constantFrom('map', 'unmap'),
      target: fc.integer({ min: 0, max: 63 }),
      perm: fc.constantFrom(1, 2, 3),
      inv: fc.constantFrom('psi', 'dsi', 'global'),
    });
    fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: 25 }), (ops) => {
      const b = bringUp();
      const r = listen(b, SID_A, ALL);
      const model = new Map<number, [bigint, number]>();
      // Pages 0..7 in one level-1 table, 8..15 in another 2 MiB region.
      const iovaOf = (p: number) => (p < 8 ? 0x10_0000n : 0x4060_0000n) + (BigInt(p % 8) << 12n);
      for (const o of ops) {
        const iova = iovaOf(o.page);
        if (o.kind === 'map') {
          const addr = 0x100_0000n + (BigInt(o.target) << 12n);
          b.map(SID_A, iova, addr, { r: (o.perm & 1) !== 0, w: (o.perm & 2) !== 0 });
          model.set(o.page, [addr, o.perm]);
        } else if (model.has(o.page)) {
          b.unmap(SID_A, iova);
          model.delete(o.page);
        }
        b.submit(o.inv === 'psi' ? desc.iotlbPage(1, iova) : o.inv === 'dsi' ? desc.iotlbDomain(1) : desc.iotlbGlobal());
        const want = [...model].map(([p, [addr, perm]]): [bigint, bigint, bigint, number] => [iovaOf(p), 0xfffn, addr, perm])
          .sort((x, y) => (x[0] < y[0] ? -1 : 1));
        if (JSON.stringify(viewOf(b, SID_A, r.handle), (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v)) !==
          JSON.stringify(want, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))) return false;
      }
      return true;
    }), { numRuns: 40 });
  });
});
