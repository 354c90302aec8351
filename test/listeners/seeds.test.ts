/**
 * Issue 13's seeds 001, 002 and 004 (issue 4's vfio points): the parts of
 * Linux VFIO type1 the container did not model, with their failure paths.
 * Expected values come from the Linux semantics each test names, not from
 * the implementation.
 */
import {
  VfioContainer, VfioListener, VfioUnwindError, SimHostDomain, X86_MSI_WINDOW,
  VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_DMA_UNMAP_FLAG_ALL,
} from '../../src/listeners';
import { IOMMUNotifierFlag } from '../../src/core/tlb-entry';
import { IOMMUAccessFlags } from '../../src/core/access';
import { errnoOf, FakeSource, FaultyDomain, K4, M2, pageSet } from './helpers';

const rw = { read: true, write: true };


describe('seed 001: IOPF mode, host memory invalidated by vaddr', () => {
  const MEM = 0x40000000n;

  test('every IOVA backed by the memory is unmapped, with the sizes each domain really removed', () => {
    const d4k = new SimHostDomain({ name: '4k', pgsizeBitmap: 1n << 12n });
    const dsp = new SimHostDomain({ name: 'superpages' });
    const c = new VfioContainer({ domains: [d4k, dsp], hostMemory: 'iopf' });
    const seen: unknown[] = [];
    c.events.on('vaddrInvalidated', (e) => seen.push(e));
    c.mapDma({ iova: 0n, size: 2n * M2, vaddr: MEM, ...rw }); // 2 MiB superpages in `superpages`
    c.mapDma({ iova: 8n * M2, size: K4, vaddr: MEM + K4, ...rw }); // the same page at a second IOVA
    const ranges = c.invalidateVaddr(MEM + K4, K4);
    // The 4 KiB-only domain removes the page; the other removes the whole 2 MiB superpage holding it.
    expect(ranges).toEqual([
      { iova: K4, size: K4, unmapped: [K4, M2] },
      { iova: 8n * M2, size: K4, unmapped: [K4, K4] },
    ]);
    expect(seen).toHaveLength(1);
    expect(d4k.translate(K4)).toBeUndefined();
    expect(d4k.translate(2n * K4)).toBeDefined();
    expect(dsp.translate(2n * K4)).toBeUndefined(); // went with the superpage
    expect(dsp.translate(M2)).toBeDefined();
    // The user mappings stay; a device access faults the page in again from the mapping's vaddr.
    expect(c.mappings()).toHaveLength(2);
    const dev = c.openDevice('nic', { domain: 1 });
    expect(dev.dma(2n * K4 + 8n, 8n, true)).toEqual({ ok: true, hostAddr: MEM + 2n * K4 + 8n });
    expect(dsp.translate(2n * K4)).toEqual({ paddr: MEM + 2n * K4, prot: 3 });
    expect(c.stats().iopfFaults).toBe(1);
  });

  test('pinned mode: the IOMMU keeps the pinned pages, nothing is unmapped', () => {
    const dom = new SimHostDomain();
    const c = new VfioContainer({ domains: [dom] });
    c.mapDma({ iova: 0n, size: K4, vaddr: MEM, ...rw });
    expect(c.invalidateVaddr(MEM, K4)).toEqual([]);
    expect(dom.translate(0n)).toEqual({ paddr: MEM, prot: 3 });
  });

  test('a VfioListener check() accepts pages not yet faulted in, but not a missing user mapping', () => {
    const c = new VfioContainer({ hostMemory: 'iopf' });
    const listener = new VfioListener(c);
    const src = new FakeSource();
    listener.attach(src);
    src.send(IOMMUNotifierFlag.MAP, 0x10000n, K4 - 1n, MEM, IOMMUAccessFlags.RW);
    const guest = [{ iova: 0x10000n, addrMask: K4 - 1n, translatedAddr: MEM, perm: IOMMUAccessFlags.RW }];
    c.invalidateVaddr(MEM, K4);
    expect(listener.check(guest).ok).toBe(true);
    c.unmapDma({ iova: 0x10000n, size: K4 });
    expect(listener.check(guest).missing.map((d) => d.where)).toEqual(['container']);
  });

  test('a range that is empty or leaves 64 bits is refused', () => {
    const c = new VfioContainer({ hostMemory: 'iopf' });
    expect(errnoOf(() => c.invalidateVaddr(0n, 0n))).toBe('EINVAL');
    expect(errnoOf(() => c.invalidateVaddr((1n << 64n) - K4, 2n * K4))).toBe('EINVAL');
  });
});

describe('seed 001: VFIO_DMA_UNMAP_FLAG_VADDR / VFIO_DMA_MAP_FLAG_VADDR (Linux live update)', () => {
  function setup() {
    const dom = new SimHostDomain();
    const c = new VfioContainer({ domains: [dom] });
    c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x100000n, ...rw });
    c.mapDma({ iova: 0x20000n, size: K4, vaddr: 0x200000n, ...rw });
    return { dom, c };
  }

  test('UNMAP|VADDR keeps the IOMMU mappings; pinning fails until MAP|VADDR gives the same iova/size a new vaddr', () => {
    const { dom, c } = setup();
    expect(c.unmapDma({ iova: 0n, size: 0x100000n, flags: VFIO_DMA_UNMAP_FLAG_VADDR })).toEqual({ unmapped: 0x3000n });
    expect(c.mappings()).toHaveLength(2);
    expect(dom.translate(0x10000n)).toEqual({ paddr: 0x100000n, prot: 3 });
    const dev = c.openDevice('mdev');
    expect(errnoOf(() => dev.pinPages([0x10000n], false))).toBe('EAGAIN');
    // No mapping there: ENOENT; a different size: EINVAL; a mapping whose vaddr is valid: EINVAL.
    expect(errnoOf(() => c.mapDma({ iova: 0x30000n, size: K4, vaddr: 0x900000n, read: false, write: false, flags: VFIO_DMA_MAP_FLAG_VADDR }))).toBe('ENOENT');
    expect(errnoOf(() => c.mapDma({ iova: 0x10000n, size: K4, vaddr: 0x900000n, read: false, write: false, flags: VFIO_DMA_MAP_FLAG_VADDR }))).toBe('EINVAL');
    c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x900000n, read: false, write: false, flags: VFIO_DMA_MAP_FLAG_VADDR });
    expect(errnoOf(() => c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0x900000n, read: false, write: false, flags: VFIO_DMA_MAP_FLAG_VADDR }))).toBe('EINVAL');
    expect(dev.pinPages([0x11000n], false)).toEqual([0x901000n]);
    expect(errnoOf(() => dev.pinPages([0x20000n], false))).toBe('EAGAIN');
    expect(c.mappings().map((m) => m.vaddr)).toEqual([0x900000n, 0x200000n]);
  });

  test('an already invalid vaddr in the range: EINVAL, unmapped 0, the ones marked in this call restored', () => {
    const { c } = setup();
    c.unmapDma({ iova: 0x20000n, size: K4, flags: VFIO_DMA_UNMAP_FLAG_VADDR });
    expect(errnoOf(() => c.unmapDma({ iova: 0x10000n, size: 0x11000n, flags: VFIO_DMA_UNMAP_FLAG_VADDR }))).toBe('EINVAL');
    // 0x10000 was not left invalid: pinning works and MAP|VADDR on it is refused.
    expect(c.openDevice('mdev').pinPages([0x10000n], false)).toEqual([0x100000n]);
    expect(errnoOf(() => c.mapDma({ iova: 0x10000n, size: 0x2000n, vaddr: 0n, read: false, write: false, flags: VFIO_DMA_MAP_FLAG_VADDR }))).toBe('EINVAL');
  });

  test('UNMAP|VADDR with UNMAP_ALL covers everything; v2 bisect rules still apply; unknown flags refused', () => {
    const { c } = setup();
    expect(errnoOf(() => c.unmapDma({ iova: 0x11000n, size: K4, flags: VFIO_DMA_UNMAP_FLAG_VADDR }))).toBe('EINVAL');
    expect(c.unmapDma({ iova: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR })).toEqual({ unmapped: 0x3000n });
    expect(errnoOf(() => c.unmapDma({ iova: 0n, size: K4, flags: 8 }))).toBe('EINVAL');
    expect(errnoOf(() => c.mapDma({ iova: 0n, size: K4, vaddr: 0n, ...rw, flags: 8 }))).toBe('EINVAL');
  });
});

describe('seed 002: a group attached to a container that already has mappings', () => {
  const MSI_ARM = { start: 0x8000000n, last: 0x80fffffn, type: 'msi' as const };

  function populated() {
    const a = new FaultyDomain('a');
    const c = new VfioContainer({ domains: [a] });
    c.mapDma({ iova: 0x10000n, size: 0x3000n, vaddr: 0x500000n, ...rw });
    c.mapDma({ iova: M2, size: M2, vaddr: 2n * M2, read: true, write: false });
    return { a, c };
  }

  test('replays every mapping into the new domain and installs the reserved regions everywhere', () => {
    const { a, c } = populated();
    const b = new SimHostDomain({ name: 'b' });
    const k = c.attachGroup(b, [MSI_ARM]);
    expect(k).toBe(1);
    expect(pageSet(b.mappings())).toEqual(pageSet(c.mappings()));
    expect(c.hostMappings(1)).toEqual(c.mappings());
    expect(b.reservedRegions()).toEqual([[X86_MSI_WINDOW.start, X86_MSI_WINDOW.last], [MSI_ARM.start, MSI_ARM.last]]);
    expect(a.sim.reservedRegions()).toEqual([[X86_MSI_WINDOW.start, X86_MSI_WINDOW.last], [MSI_ARM.start, MSI_ARM.last]]);
    expect(c.getInfo().iova_ranges.some((r) => r.start <= MSI_ARM.start && MSI_ARM.start <= r.end)).toBe(false);
    expect(errnoOf(() => c.mapDma({ iova: MSI_ARM.start, size: K4, vaddr: 0n, ...rw }))).toBe('EINVAL');
    // A device of the new group reaches the replayed mappings; later maps go into both domains.
    const dev = c.openDevice('nic', { domain: k });
    expect(dev.dma(0x11008n, 8n, true)).toEqual({ ok: true, hostAddr: 0x501008n });
    c.mapDma({ iova: 0x40000n, size: K4, vaddr: 0x700000n, ...rw });
    expect(b.translate(0x40000n)).toEqual({ paddr: 0x700000n, prot: 3 });
    expect(c.stats().groupsAttached).toBe(1);
  });

  test('a reserved region over an existing mapping, an aperture too small, or no common page size: EINVAL, nothing touched', () => {
    const { c } = populated();
    const b = new FaultyDomain('b');
    expect(errnoOf(() => c.attachGroup(b, [{ start: 0x11000n, last: 0x11fffn, type: 'msi' }]))).toBe('EINVAL');
    expect(errnoOf(() => c.attachGroup({ ...b.sim, name: 'small', pgsizeBitmap: b.pgsizeBitmap, apertureEnd: 0xfffffn, map: () => undefined, unmap: () => 0n }))).toBe('EINVAL');
    expect(errnoOf(() => c.attachGroup({ name: 'odd', pgsizeBitmap: 1n << 13n, apertureEnd: (1n << 48n) - 1n, map: () => undefined, unmap: () => 0n }))).toBe('EINVAL');
    expect(b.calls).toEqual([]);
    expect(c.domains).toHaveLength(1);
  });

  test('a domain already in the container is refused before anything is replayed', () => {
    const { a, c } = populated();
    const calls = a.calls.length;
    expect(errnoOf(() => c.attachGroup(a))).toBe('EINVAL');
    expect(a.calls).toHaveLength(calls);
    expect(c.hostMappings(0)).toEqual(c.mappings());
  });

  test('a replay that fails part way is unwound: the new domain holds nothing of it', () => {
    const { c } = populated();
    const b = new SimHostDomain({ name: 'b' });
    b.map(M2 + K4, 0x9000000n, K4, 3); // something already there: the second replayed map fails (EEXIST)
    const hostErrors: string[] = [];
    c.events.on('hostError', (e) => hostErrors.push(`${e.domain}:${e.op}:${e.errno}`));
    expect(errnoOf(() => c.attachGroup(b))).toBe('EEXIST');
    expect(b.mappings()).toEqual([{ iova: M2 + K4, size: K4, paddr: 0x9000000n, prot: 3 }]);
    expect(hostErrors).toEqual(['b:map:EEXIST']);
    expect(c.domains).toHaveLength(1);
  });

  test('a reservation that fails after the replay unwinds the replay and the other reservations', () => {
    const { a, c } = populated();
    const b = new FaultyDomain('b');
    b.failReserve = true;
    expect(errnoOf(() => c.attachGroup(b, [MSI_ARM]))).toBe('EBUSY');
    expect(b.sim.mappings()).toEqual([]);
    expect(a.sim.reservedRegions()).toEqual([[X86_MSI_WINDOW.start, X86_MSI_WINDOW.last]]);
    expect(c.getInfo().iova_ranges.some((r) => r.start <= MSI_ARM.start && MSI_ARM.start <= r.end)).toBe(true);
    expect(c.domains).toHaveLength(1);
  });

  test('an unwind that fails too: a VfioUnwindError with both failures, the container unchanged', () => {
    const a = new FaultyDomain('a');
    const c = new VfioContainer({ domains: [a], reservedRegions: [] });
    c.mapDma({ iova: 0x10000n, size: K4, vaddr: 0n, ...rw });
    const b = new FaultyDomain('b');
    b.failReserve = true;
    a.failUnreserve = true;
    let caught: unknown;
    try { c.attachGroup(b, [MSI_ARM]); } catch (e) { caught = e; }
    expect(caught).toBeInstanceOf(VfioUnwindError);
    expect((caught as VfioUnwindError).unwindFailures.map((f) => f.domain)).toEqual(['a']);
    expect(b.sim.mappings()).toEqual([]);
    expect(c.domains).toHaveLength(1);
    expect(c.stats().unwindFailures).toBe(1);
  });

  test('a user-registered MSI window: a listener attached afterwards registers around it', () => {
    const c = new VfioContainer({ reservedRegions: [] });
    c.addReservedRegion(MSI_ARM);
    const src = new FakeSource();
    new VfioListener(c).attach(src);
    expect(src.notifiers.map((n) => [n.notifier.start, n.notifier.end])).toEqual([
      [0n, MSI_ARM.start - 1n], [MSI_ARM.last + 1n, (1n << 48n) - 1n],
    ]);
  });
});

describe('seed 004: peer-to-peer mappings of a device BAR', () => {
  const BAR = 0x7e0000000000n;

  function setup() {
    const dom = new SimHostDomain();
    const c = new VfioContainer({ domains: [dom] });
    const gpu = c.openDevice('gpu');
    gpu.mmapBar(BAR, 0x100000n);
    const nic = c.openDevice('nic');
    const listener = new VfioListener(c);
    const src = new FakeSource();
    listener.attach(src);
    const stopped: unknown[] = [];
    listener.events.on('dmaStopped', (e) => stopped.push(e));
    c.mapDma({ iova: 0x100000n, size: 0x10000n, vaddr: BAR, ...rw }); // the NIC's DMA into the GPU's BAR
    c.mapDma({ iova: 0x200000n, size: 0x2000n, vaddr: BAR + 0xff000n, ...rw }); // half in the BAR
    c.mapDma({ iova: 0x300000n, size: K4, vaddr: 0x100000n, ...rw }); // RAM
    return { dom, c, gpu, nic, listener, stopped };
  }

  test('a reset invalidates every mapping backed by the BAR; listeners see DMA stopped', () => {
    const { dom, c, gpu, nic, stopped } = setup();
    expect(nic.dma(0x100008n, 8n, true).ok).toBe(true);
    gpu.reset();
    const invalidated = [{ iova: 0x100000n, size: 0x10000n }, { iova: 0x200000n, size: 0x2000n }];
    expect(stopped).toEqual([{ device: 'gpu', reason: 'reset', invalidated }]);
    expect(c.mappings().map((m) => m.iova)).toEqual([0x300000n]);
    expect(dom.mappings().map((m) => m.iova)).toEqual([0x300000n]);
    expect(nic.dma(0x100008n, 8n, true)).toMatchObject({ ok: false, reason: 'unmapped' });
    expect(c.stats().p2pInvalidated).toBe(2);
    // Still open after a reset: a new mapping of the BAR is again peer-to-peer.
    c.mapDma({ iova: 0x100000n, size: K4, vaddr: BAR, ...rw });
    gpu.close();
    expect(c.mappings().map((m) => m.iova)).toEqual([0x300000n]);
  });

  test('after the BAR device closed, its memory is no longer a BAR; another device stopping takes nothing', () => {
    const { c, gpu, nic, stopped } = setup();
    gpu.close();
    c.mapDma({ iova: 0x100000n, size: K4, vaddr: BAR, ...rw });
    nic.reset();
    expect(c.mappings().map((m) => m.iova)).toEqual([0x100000n, 0x300000n]);
    expect(stopped).toHaveLength(2);
  });

  test('a detached listener no longer hears stops; a bad BAR range is refused', () => {
    const { gpu, listener, stopped } = setup();
    listener.detach();
    gpu.reset();
    expect(stopped).toEqual([]);
    expect(errnoOf(() => gpu.mmapBar(BAR + 1n, K4))).toBe('EINVAL');
    expect(errnoOf(() => gpu.mmapBar(BAR, 0n))).toBe('EINVAL');
  });
});
