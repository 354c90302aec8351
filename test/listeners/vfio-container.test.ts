import {
  VfioContainer, VfioError, SimHostDomain, VFIO_DMA_UNMAP_FLAG_ALL, X86_MSI_WINDOW,
} from '../../src/listeners';
import { errnoOf, FaultyDomain, K4, M2, pageSet } from './helpers';


const rw = { read: true, write: true };

describe('VfioContainer: MAP_DMA (type1 v2)', () => {
  test('maps into the host domain and reports it in getInfo', () => {
    const dom = new SimHostDomain({ name: 'd0' });
    const c = new VfioContainer({ domains: [dom] });
    c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x7f0000000000n, ...rw });
    expect(c.mappings()).toEqual([{ iova: 0x10000n, size: 0x2000n, vaddr: 0x7f0000000000n, read: true, write: true }]);
    expect(dom.translate(0x11008n)).toEqual({ paddr: 0x7f0000001008n, prot: 3 });
    const info = c.getInfo();
    expect(info.dma_avail).toBe(65534);
    expect(info.iova_pgsizes).toBe((1n << 12n) | (1n << 21n) | (1n << 30n));
    // Usable IOVA = aperture minus the MSI window.
    expect(info.iova_ranges).toEqual([{ start: 0n, end: 0xfedfffffn }, { start: 0xfef00000n, end: (1n << 48n) - 1n }]);
  });

  test('an aligned 2 MiB map becomes one host superpage', () => {
    const dom = new SimHostDomain();
    const c = new VfioContainer({ domains: [dom] });
    c.mapDma({ iova: M2, size: M2, vaddr: 4n * M2, ...rw });
    expect(dom.mappings()).toEqual([{ iova: M2, size: M2, paddr: 4n * M2, prot: 3 }]);
  });

  test('EEXIST on any overlap, and nothing changes', () => {
    const dom = new SimHostDomain();
    const c = new VfioContainer({ domains: [dom] });
    c.mapDma({ iova: 0x10000n, size: 0x4000n, vaddr: 0x100000n, ...rw });
    const before = { maps: c.mappings(), host: dom.mappings(), avail: c.getInfo().dma_avail };
    for (const [iova, size] of [[0x10000n, 0x4000n], [0xf000n, 0x2000n], [0x13000n, 0x1000n], [0x8000n, 0x10000n], [0x12000n, 0x1000n]] as const) {
      expect(errnoOf(() => c.mapDma({ iova, size, vaddr: 0x900000n, ...rw }))).toBe('EEXIST');
    }
    expect({ maps: c.mappings(), host: dom.mappings(), avail: c.getInfo().dma_avail }).toEqual(before);
    expect(c.stats().errors.EEXIST).toBe(5);
    // The message has QEMU's shape, and the refusal is also an event.
    const seen: string[] = [];
    c.events.on('ioctlError', (e) => seen.push(e.message));
    expect(() => c.mapDma({ iova: 0x10000n, size: 0x1000n, vaddr: 0x900000n, ...rw }))
      .toThrow('vfio_dma_map(0x10000, 0x1000, 0x900000) = -17 (File exists): overlaps an existing mapping');
    expect(seen).toEqual(['vfio_dma_map(0x10000, 0x1000, 0x900000) = -17 (File exists): overlaps an existing mapping']);
    // Adjacent ranges do not overlap.
    c.mapDma({ iova: 0xf000n, size: 0x1000n, vaddr: 0x900000n, ...rw });
    c.mapDma({ iova: 0x14000n, size: 0x1000n, vaddr: 0x901000n, ...rw });
  });

  test('EINVAL: no permission, size 0, misaligned iova/size/vaddr, 64-bit wrap', () => {
    const c = new VfioContainer();
    expect(errnoOf(() => c.mapDma({ iova: 0x1000n, size: 0x1000n, vaddr: 0n, read: false, write: false }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0x1000n, size: 0n, vaddr: 0n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0x1800n, size: 0x1000n, vaddr: 0n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0x1000n, size: 0x800n, vaddr: 0n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0x1000n, size: 0x1000n, vaddr: 0x10n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0x1000n, size: 0x1000n, vaddr: (1n << 64n) - 0x1000n + 0x1000n, ...rw }))).toBe('EINVAL');
    expect(c.mappings()).toEqual([]);
  });

  test('page-size bitmap: the smallest common size sets the alignment', () => {
    const c = new VfioContainer({
      domains: [new SimHostDomain({ pgsizeBitmap: (1n << 12n) | (1n << 16n) }), new SimHostDomain({ pgsizeBitmap: (1n << 16n) | (1n << 21n) })],
    });
    expect(c.getInfo().iova_pgsizes).toBe(1n << 16n);
    expect(errnoOf(() => c.mapDma({ iova: 0x10000n, size: 0x1000n, vaddr: 0x10000n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0x11000n, size: 0x10000n, vaddr: 0x10000n, ...rw }))).toBe('EINVAL');
    c.mapDma({ iova: 0x10000n, size: 0x10000n, vaddr: 0x20000n, ...rw });
    // Sizes below 4 KiB are folded into 4 KiB (vfio_pgsize_bitmap).
    const small = new VfioContainer({ domains: [new SimHostDomain({ pgsizeBitmap: (1n << 9n) | (1n << 12n) | (1n << 21n) })] });
    expect(small.getInfo().iova_pgsizes).toBe((1n << 12n) | (1n << 21n));
  });

  test('reserved MSI window and beyond-aperture IOVA cannot be mapped (EINVAL)', () => {
    const c = new VfioContainer();
    expect(errnoOf(() => c.mapDma({ iova: 0xfee00000n, size: K4, vaddr: 0n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0xfeeff000n, size: K4, vaddr: 0n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0xfed00000n, size: 0x200000n, vaddr: 0n, ...rw }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 1n << 48n, size: K4, vaddr: 0n, ...rw }))).toBe('EINVAL');
    c.mapDma({ iova: 0xfedff000n, size: K4, vaddr: 0n, ...rw });
    c.mapDma({ iova: 0xfef00000n, size: K4, vaddr: K4, ...rw });
    expect(c.mappings()).toHaveLength(2);
  });

  test('ENOSPC once dma_avail is used up; an unmap gives the entry back', () => {
    const c = new VfioContainer({ dmaEntryLimit: 3 });
    for (let i = 0n; i < 3n; i++) c.mapDma({ iova: i * K4, size: K4, vaddr: i * K4, ...rw });
    expect(c.getInfo().dma_avail).toBe(0);
    expect(errnoOf(() => c.mapDma({ iova: 0x10000n, size: K4, vaddr: 0n, ...rw }))).toBe('ENOSPC');
    expect(c.unmapDma({ iova: K4, size: K4 })).toEqual({ unmapped: K4 });
    expect(c.getInfo().dma_avail).toBe(1);
    c.mapDma({ iova: 0x10000n, size: K4, vaddr: 0n, ...rw });
  });

  test('default dma_entry_limit is 65535', () => {
    expect(new VfioContainer().getInfo().dma_avail).toBe(65535);
  });
});

describe('VfioContainer: UNMAP_DMA (type1 v2)', () => {
  function threeMaps(): { c: VfioContainer; dom: SimHostDomain } {
    const dom = new SimHostDomain();
    const c = new VfioContainer({ domains: [dom] });
    c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x100000n, ...rw });
    c.mapDma({ iova: 0x12000n, size: 0x1000n, vaddr: 0x200000n, ...rw });
    c.mapDma({ iova: 0x20000n, size: 0x4000n, vaddr: 0x300000n, read: true, write: false });
    return { c, dom };
  }

  test('returns the bytes of the mappings removed; an empty range returns 0', () => {
    const { c, dom } = threeMaps();
    expect(c.unmapDma({ iova: 0x0n, size: 0x10000n })).toEqual({ unmapped: 0n });
    expect(c.unmapDma({ iova: 0x10000n, size: 0x10000n })).toEqual({ unmapped: 0x3000n });
    expect(c.mappings().map((m) => m.iova)).toEqual([0x20000n]);
    expect(dom.translate(0x10000n)).toBeUndefined();
    expect(dom.translate(0x12000n)).toBeUndefined();
    expect(c.getInfo().dma_avail).toBe(65534);
  });

  test('EINVAL when the range bisects a mapping at either end; nothing is unmapped', () => {
    const { c, dom } = threeMaps();
    const before = { maps: c.mappings(), host: dom.mappings() };
    expect(errnoOf(() => c.unmapDma({ iova: 0x11000n, size: 0x1000n }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: 0x10000n, size: 0x1000n }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: 0x8000n, size: 0x9000n }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: 0x12000n, size: 0xf000n }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: 0x21000n, size: 0x1000n }))).toBe('EINVAL');
    expect({ maps: c.mappings(), host: dom.mappings() }).toEqual(before);
  });

  test('EINVAL for size 0, misalignment and wrap; UNMAP_ALL removes everything', () => {
    const { c } = threeMaps();
    expect(errnoOf(() => c.unmapDma({ iova: 0x10000n, size: 0n }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: 0x10800n, size: 0x1000n }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: (1n << 64n) - K4, size: 2n * K4 }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: K4, size: K4, flags: VFIO_DMA_UNMAP_FLAG_ALL }))).toBe('EINVAL');
    expect(errnoOf(() => c.unmapDma({ iova: 0n, size: K4, flags: 1 }))).toBe('EINVAL');
    expect(c.unmapDma({ iova: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL })).toEqual({ unmapped: 0x7000n });
    expect(c.mappings()).toEqual([]);
    expect(c.getInfo().dma_avail).toBe(65535);
  });

  test('with no domain and no reserved region, the last page of the 64-bit space maps and unmaps without wrapping', () => {
    const c = new VfioContainer({ domains: [] , reservedRegions: [] });
    c.mapDma({ iova: (1n << 64n) - K4, size: K4, vaddr: 0n, ...rw });
    expect(c.unmapDma({ iova: (1n << 64n) - K4, size: K4 })).toEqual({ unmapped: K4 });
  });
});

describe('VfioContainer: several host domains, all or none', () => {
  test('a map reaches every domain', () => {
    const a = new SimHostDomain({ name: 'a' });
    const b = new SimHostDomain({ name: 'b' });
    const c = new VfioContainer({ domains: [a, b] });
    c.mapDma({ iova: 0x40000n, size: 0x3000n, vaddr: 0x80000n, ...rw });
    expect(pageSet(a.mappings())).toEqual(pageSet(b.mappings()));
    expect(pageSet(a.mappings()).size).toBe(3);
  });

  test('a failure in the second domain unwinds the first; the mapping does not exist anywhere', () => {
    const a = new FaultyDomain('a');
    const b = new FaultyDomain('b');
    const c = new VfioContainer({ domains: [a, b] });
    c.mapDma({ iova: 0x1000n, size: K4, vaddr: 0x1000n, ...rw });
    const events: string[] = [];
    c.events.on('hostError', (e) => events.push(`${e.domain} ${e.op} ${e.errno}`));
    b.failMaps = 1;
    expect(errnoOf(() => c.mapDma({ iova: 0x40000n, size: 0x3000n, vaddr: 0x80000n, ...rw }))).toBe('ENOMEM');
    expect(events).toEqual(['b map ENOMEM']);
    expect(a.calls.slice(-2)).toEqual(['map 40000+3000', 'unmap 40000+3000']);
    expect(pageSet(a.sim.mappings())).toEqual(pageSet([{ iova: 0x1000n, size: K4, paddr: 0x1000n, prot: 3 }]));
    expect(pageSet(b.sim.mappings())).toEqual(pageSet(a.sim.mappings()));
    expect(c.mappings()).toHaveLength(1);
    expect(c.hostMappings(0)).toEqual(c.hostMappings(1));
    expect(c.getInfo().dma_avail).toBe(65534);
    // The same map succeeds once the domain recovers.
    c.mapDma({ iova: 0x40000n, size: 0x3000n, vaddr: 0x80000n, ...rw });
    expect(pageSet(b.sim.mappings()).size).toBe(4);
  });

  test('a failure in the first domain touches no other', () => {
    const a = new FaultyDomain('a');
    const b = new FaultyDomain('b');
    const c = new VfioContainer({ domains: [a, b] });
    a.failMaps = 1;
    expect(errnoOf(() => c.mapDma({ iova: 0x40000n, size: K4, vaddr: 0n, ...rw }))).toBe('ENOMEM');
    expect(b.calls).toEqual([]);
    expect(c.stats().hostErrors).toBe(1);
  });

  test('a reserved region goes into every domain or none', () => {
    const a = new FaultyDomain('a');
    const b = new FaultyDomain('b');
    const c = new VfioContainer({ domains: [a, b], reservedRegions: [] });
    const rangesBefore = c.getInfo().iova_ranges;
    b.failReserve = true;
    expect(errnoOf(() => c.addReservedRegion(X86_MSI_WINDOW))).toBe('EBUSY');
    expect(a.sim.reservedRegions()).toEqual([]);
    expect(b.sim.reservedRegions()).toEqual([]);
    expect(c.getInfo().iova_ranges).toEqual(rangesBefore);
    // Still mappable, since the region was not added.
    c.mapDma({ iova: 0xfee00000n, size: K4, vaddr: 0n, ...rw });
    b.failReserve = false;
    // Conflicts with a live mapping: EINVAL (vfio_iommu_resv_conflict).
    expect(errnoOf(() => c.addReservedRegion(X86_MSI_WINDOW))).toBe('EINVAL');
    c.unmapDma({ iova: 0xfee00000n, size: K4 });
    c.addReservedRegion(X86_MSI_WINDOW);
    expect(a.sim.reservedRegions()).toEqual([[0xfee00000n, 0xfeefffffn]]);
    expect(b.sim.reservedRegions()).toEqual([[0xfee00000n, 0xfeefffffn]]);
    expect(errnoOf(() => c.mapDma({ iova: 0xfee00000n, size: K4, vaddr: 0n, ...rw }))).toBe('EINVAL');
  });
});

describe('VfioContainer: a host IOMMU that unmaps less or more than asked', () => {
  test('over-unmap (a superpage removed whole): bookkeeping follows the host, the neighbour becomes missing', () => {
    const d = new FaultyDomain('d');
    const c = new VfioContainer({ domains: [d] });
    c.mapDma({ iova: 0x200000n, size: K4, vaddr: 0x1000000n, ...rw });
    c.mapDma({ iova: 0x201000n, size: K4, vaddr: 0x2000000n, ...rw });
    const over: unknown[] = [];
    c.events.on('hostOverUnmap', (e) => over.push(e));
    // The host removes a 2 MiB page when asked for 4 KiB.
    d.unmapOverride = () => M2;
    expect(c.unmapDma({ iova: 0x200000n, size: K4 })).toEqual({ unmapped: K4 });
    expect(over).toEqual([{ domain: 'd', iova: 0x200000n, asked: K4, unmapped: M2 }]);
    // The record equals the host's page table: nothing mapped.
    expect(pageSet(c.hostMappings(0))).toEqual(pageSet(d.sim.mappings()));
    expect(c.hostMappings(0)).toEqual([]);
    // The user mapping of 0x201000 still exists, but a device cannot reach it.
    expect(c.mappings().map((m) => m.iova)).toEqual([0x201000n]);
    const dev = c.openDevice('dev');
    expect(dev.dma(0x201000n, 4n, false)).toEqual({ ok: false, iova: 0x201000n, reason: 'unmapped' });
    // Unmapping it later asks the host for nothing (the record has nothing there).
    d.unmapOverride = undefined;
    const calls = d.calls.length;
    expect(c.unmapDma({ iova: 0x201000n, size: K4 })).toEqual({ unmapped: K4 });
    expect(d.calls.length).toBe(calls);
  });

  test('partial unmap: the container asks again for the rest', () => {
    const d = new FaultyDomain('d');
    const c = new VfioContainer({ domains: [d] });
    c.mapDma({ iova: 0x10000n, size: 0x4000n, vaddr: 0x10000n, ...rw });
    d.unmapOverride = () => K4;
    expect(c.unmapDma({ iova: 0x10000n, size: 0x4000n })).toEqual({ unmapped: 0x4000n });
    expect(d.calls.filter((x) => x.startsWith('unmap'))).toEqual(['unmap 10000+4000', 'unmap 11000+3000', 'unmap 12000+2000', 'unmap 13000+1000']);
    expect(d.sim.mappings()).toEqual([]);
    expect(c.hostMappings(0)).toEqual([]);
  });

  test('an unmap that makes no progress leaves a stale host mapping, reported and reachable', () => {
    const d = new FaultyDomain('d');
    const c = new VfioContainer({ domains: [d] });
    c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x50000n, ...rw });
    const errors: string[] = [];
    c.events.on('hostError', (e) => errors.push(`${e.op} ${e.iova.toString(16)}+${e.size.toString(16)}`));
    let first = true;
    d.unmapOverride = () => { if (first) { first = false; return K4; } return 0n; };
    expect(c.unmapDma({ iova: 0x10000n, size: 0x2000n })).toEqual({ unmapped: 0x2000n });
    expect(errors).toEqual(['unmap 11000+1000']);
    expect(c.mappings()).toEqual([]);
    // Bookkeeping equals the host: 0x11000 is still mapped there.
    expect(pageSet(c.hostMappings(0))).toEqual(pageSet(d.sim.mappings()));
    expect(pageSet(c.hostMappings(0))).toEqual(new Map([[0x11000n, '51000/3']]));
    // The damage: a device still reaches memory the user unmapped.
    expect(c.openDevice('dev').dma(0x11000n, 8n, true)).toEqual({ ok: true, hostAddr: 0x51000n });
    expect(c.stats().hostErrors).toBe(1);
    // And the next map of that IOVA fails in the host domain with File exists, as in QEMU bug 36d2d52bdb.
    d.unmapOverride = undefined;
    expect(errnoOf(() => c.mapDma({ iova: 0x11000n, size: K4, vaddr: 0x90000n, ...rw }))).toBe('EEXIST');
    expect(c.mappings()).toEqual([]);
    expect(pageSet(c.hostMappings(0))).toEqual(new Map([[0x11000n, '51000/3']]));
  });
});

describe('VfioContainer: pinned pages (mediated devices)', () => {
  test('the vendor driver is told {iova, size} of the mapping and unpins; the unmap then proceeds', () => {
    const c = new VfioContainer({ domains: [] });
    c.mapDma({ iova: 0x100000n, size: 0x10000n, vaddr: 0x800000n, ...rw });
    const told: Array<[bigint, bigint]> = [];
    const dev = c.openDevice('mdev', {
      dmaUnmap: (iova, size) => { told.push([iova, size]); dev.unpinPages([0x102000n, 0x103000n]); },
    });
    expect(dev.pinPages([0x102000n, 0x103000n], true)).toEqual([0x802000n, 0x803000n]);
    expect(c.stats().pinnedPages).toBe(2);
    expect(c.unmapDma({ iova: 0x100000n, size: 0x10000n })).toEqual({ unmapped: 0x10000n });
    expect(told).toEqual([[0x100000n, 0x10000n]]);
    expect(c.stats().pinnedPages).toBe(0);
  });

  test('a driver that unpins one page per round is asked until none is left', () => {
    const c = new VfioContainer({ domains: [] });
    c.mapDma({ iova: 0n, size: 0x10000n, vaddr: 0n, ...rw });
    const pinned = [0x1000n, 0x2000n, 0x3000n, 0x4000n];
    let rounds = 0;
    const dev = c.openDevice('mdev', { dmaUnmap: () => { rounds++; const p = pinned.shift(); if (p !== undefined) dev.unpinPages([p]); } });
    dev.pinPages(pinned, false);
    expect(c.unmapDma({ iova: 0n, size: 0x10000n })).toEqual({ unmapped: 0x10000n });
    expect(rounds).toBe(4);
  });

  test('a driver that never unpins: EBUSY, pages reported, earlier mappings stay removed (as Linux)', () => {
    const c = new VfioContainer({ domains: [] });
    c.mapDma({ iova: 0x0n, size: 0x1000n, vaddr: 0n, ...rw });
    c.mapDma({ iova: 0x10000n, size: 0x4000n, vaddr: 0x10000n, ...rw });
    c.mapDma({ iova: 0x20000n, size: 0x1000n, vaddr: 0x20000n, ...rw });
    let calls = 0;
    const dev = c.openDevice('stubborn', { dmaUnmap: () => { calls++; } });
    dev.pinPages([0x13000n, 0x11000n], false);
    const stuck: unknown[] = [];
    c.events.on('unpinStuck', (e) => stuck.push(e));
    let err: unknown;
    try {
      c.unmapDma({ iova: 0n, size: 0x30000n });
    } catch (e) { err = e; }
    expect(err).toBeInstanceOf(VfioError);
    const ve = err as VfioError;
    expect(ve.errno).toBe('EBUSY');
    expect(ve.detail).toEqual({ unmapped: 0x1000n, pinned: [0x11000n, 0x13000n], rounds: 1 });
    expect(stuck).toEqual([{ iova: 0x10000n, size: 0x4000n, pinned: [0x11000n, 0x13000n], rounds: 1 }]);
    expect(calls).toBe(1);
    expect(c.mappings().map((m) => m.iova)).toEqual([0x10000n, 0x20000n]);
    // Once the device stops, its pins go and the unmap succeeds.
    dev.close();
    expect(c.unmapDma({ iova: 0n, size: 0x30000n })).toEqual({ unmapped: 0x5000n });
  });

  test('pinning: EINVAL outside a mapping, EPERM for a write to a read-only mapping, all or nothing', () => {
    const c = new VfioContainer({ domains: [] });
    c.mapDma({ iova: 0x1000n, size: 0x1000n, vaddr: 0n, read: true, write: false });
    const dev = c.openDevice('m');
    expect(errnoOf(() => dev.pinPages([0x1000n, 0x5000n], false))).toBe('EINVAL');
    expect(errnoOf(() => dev.pinPages([0x1000n], true))).toBe('EPERM');
    expect(errnoOf(() => dev.pinPages([0x1800n], false))).toBe('EINVAL');
    expect(c.stats().pinnedPages).toBe(0);
    dev.pinPages([0x1000n], false);
    expect(c.stats().pinnedPages).toBe(1);
  });
});

describe('VfioContainer: devices', () => {
  test('device DMA goes through its host domain: unmapped, permission, ok', () => {
    const c = new VfioContainer();
    c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x90000n, read: true, write: false });
    c.mapDma({ iova: 0x12000n, size: 0x1000n, vaddr: 0xa0000n, ...rw });
    const dev = c.openDevice('nic');
    expect(dev.dma(0x10010n, 0x10n, false)).toEqual({ ok: true, hostAddr: 0x90010n });
    expect(dev.dma(0x11ff0n, 0x20n, false)).toEqual({ ok: true, hostAddr: 0x91ff0n });
    expect(dev.dma(0x10010n, 0x10n, true)).toEqual({ ok: false, iova: 0x10010n, reason: 'permission' });
    expect(dev.dma(0x12ff0n, 0x20n, false)).toEqual({ ok: false, iova: 0x13000n, reason: 'unmapped' });
  });

  test('shared handles are reference counted; the last close stops the device and refuses later access', () => {
    const c = new VfioContainer();
    c.mapDma({ iova: 0x10000n, size: K4, vaddr: 0n, ...rw });
    const stops: unknown[] = [];
    c.events.on('deviceStopped', (e) => stops.push(e));
    const h1 = c.openDevice('gpu', { dmaUnmap: () => undefined });
    const h2 = c.openDevice('gpu');
    expect(h1.refs).toBe(2);
    h1.pinPages([0x10000n], true);
    h1.close();
    h1.close();
    expect(h2.refs).toBe(1);
    expect(stops).toEqual([]);
    expect(errnoOf(() => h1.dma(0x10000n, 1n, false))).toBe('EBADF');
    expect(h2.dma(0x10000n, 1n, false).ok).toBe(true);
    expect(c.stats().pinnedPages).toBe(1);
    h2.close();
    expect(stops).toEqual([{ device: 'gpu', reason: 'close', invalidated: [] }]);
    expect(c.stats().pinnedPages).toBe(0);
    expect(c.stats().devices).toBe(0);
    expect(errnoOf(() => h2.dma(0x10000n, 1n, false))).toBe('EBADF');
    expect(errnoOf(() => h2.pinPages([0x10000n], false))).toBe('EBADF');
    // A new open is a new device.
    const h3 = c.openDevice('gpu');
    expect(h3.refs).toBe(1);
  });

  test('reset stops in-flight DMA (pins dropped, listeners told) and the device stays usable', () => {
    const c = new VfioContainer();
    c.mapDma({ iova: 0x10000n, size: K4, vaddr: 0n, ...rw });
    const stops: unknown[] = [];
    c.events.on('deviceStopped', (e) => stops.push(e));
    const h = c.openDevice('nvme');
    h.pinPages([0x10000n], false);
    h.reset();
    expect(stops).toEqual([{ device: 'nvme', reason: 'reset', invalidated: [] }]);
    expect(c.stats().pinnedPages).toBe(0);
    expect(h.dma(0x10000n, 1n, true).ok).toBe(true);
    expect(c.stats().deviceStops).toBe(1);
  });

  test('without an IOMMU-backed domain a device reaches only pages its driver pinned', () => {
    const c = new VfioContainer({ domains: [] });
    c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x70000n, ...rw });
    const h = c.openDevice('mdev');
    expect(h.dma(0x10000n, 1n, false)).toEqual({ ok: false, iova: 0x10000n, reason: 'unmapped' });
    h.pinPages([0x10000n], false);
    expect(h.dma(0x10004n, 4n, false)).toEqual({ ok: true, hostAddr: 0x70004n });
    expect(h.dma(0x10ffcn, 8n, false)).toEqual({ ok: false, iova: 0x11000n, reason: 'unmapped' });
  });
});
