/**
 * Issue 13, listener defects 7, 8, 9, 13 and seed 000: each test reproduces
 * the defect as reported and asserts the behaviour the issue asks for.
 */
import fc from 'fast-check';
import {
  VfioContainer, VfioError, VfioListener, VfioUnwindError, VhostListener, SimHostDomain, HostDomainError, X86_MSI_WINDOW,
} from '../../src/listeners';
import type { VfioErrno } from '../../src/listeners';
import { NotifierList } from '../../src/core/notifier-list';
import { IOMMUAccessFlags } from '../../src/core/access';
import { IOMMUNotifierFlag } from '../../src/core/tlb-entry';
import type { IOMMUTLBEntry } from '../../src/core/tlb-entry';
import type { LeafWalker } from '../../src/core/leaf';
import { FakeSource, FaultyDomain, K4, pageSet } from './helpers';

const { RW } = IOMMUAccessFlags;
const G1 = 1n << 30n;
const HVA = 0x7f0000000000n;
const rw = { read: true, write: true };

/** A walker over explicit leaves (frame numbers), as a model's page walk reports them. */
function leaves(list: Array<{ iova: bigint; size: bigint; gpa: bigint }>): LeafWalker {
  return (first, last, sink) => {
    for (const l of list) {
      const f = Number(l.iova >> 12n);
      const n = Number(l.size >> 12n);
      if (f + n - 1 >= first && f <= last) sink(f, n, Number(l.gpa >> 12n), RW);
    }
  };
}

describe('issue 13 #7: a VfioListener registers around reserved regions', () => {
  const leaf = { iova: 3n * G1, size: G1, gpa: G1 }; // 0xc0000000-0xffffffff spans 0xfee00000-0xfeefffff

  test('a 1 GiB leaf over the x86 interrupt window: everything outside the window is mapped and DMA-able', () => {
    const dom = new SimHostDomain({ name: 'host' });
    const container = new VfioContainer({ domains: [dom] });
    const listener = new VfioListener(container, { gpaToVaddr: (gpa) => HVA + gpa });
    const errors: string[] = [];
    listener.events.on('dmaError', (e) => errors.push(e.error.message));
    const list = new NotifierList({ mode: 'strict' });
    const handles = listener.attach(list, leaves([leaf]));
    // One notifier per side of the window (the default aperture is 48 bits).
    expect(handles.map((h) => [h.notifier.start, h.notifier.end])).toEqual([
      [0n, X86_MSI_WINDOW.start - 1n], [X86_MSI_WINDOW.last + 1n, (1n << 48n) - 1n],
    ]);
    expect(errors).toEqual([]);
    // Host pages = the leaf's pages minus the window, each at HVA + gpa + offset.
    const want = new Map<bigint, string>();
    for (let off = 0n; off < G1; off += K4) {
      const iova = leaf.iova + off;
      if (iova < X86_MSI_WINDOW.start || iova > X86_MSI_WINDOW.last) want.set(iova, `${(HVA + leaf.gpa + off).toString(16)}/3`);
    }
    expect(pageSet(container.mappings())).toEqual(want);
    expect(pageSet(dom.mappings())).toEqual(want);
    const dev = container.openDevice('nic');
    for (const iova of [leaf.iova, X86_MSI_WINDOW.start - K4, X86_MSI_WINDOW.last + 1n, 4n * G1 - K4]) {
      expect(dev.dma(iova, K4, true)).toEqual({ ok: true, hostAddr: HVA + leaf.gpa + (iova - leaf.iova) });
    }
    expect(dev.dma(X86_MSI_WINDOW.start, 4n, true)).toMatchObject({ ok: false, reason: 'unmapped' });
    expect(listener.check(leaves([leaf])).ok).toBe(true);
    // The guest removes the leaf: both sides are unmapped.
    list.sync(leaf.iova, leaf.iova + G1 - 1n, leaves([]));
    expect(container.mappings()).toEqual([]);
    expect(listener.check(leaves([])).ok).toBe(true);
    // ... and maps it again: a sync's MAP is split at the window as the replay's was.
    list.sync(leaf.iova, leaf.iova + G1 - 1n, leaves([leaf]));
    expect(pageSet(container.mappings())).toEqual(want);
    expect(errors).toEqual([]);
    listener.detach();
    expect(container.mappings()).toEqual([]);
    expect(list.handles).toHaveLength(0);
  });

  test('a registration the source refuses leaves no notifier behind', () => {
    const container = new VfioContainer();
    const listener = new VfioListener(container);
    const src = new FakeSource();
    let n = 0;
    const refusing = {
      registerNotifier: (notifier: Parameters<FakeSource['registerNotifier']>[0]) => {
        if (++n === 2) throw new RangeError('refused (C1)');
        return src.registerNotifier(notifier);
      },
    };
    expect(() => listener.attach(refusing)).toThrow('refused');
    expect(src.notifiers).toHaveLength(0);
  });

  test('property: host pages = guest leaf pages minus any reserved window, and check() holds', () => {
    fc.assert(fc.property(
      fc.nat(9), fc.nat(63), fc.nat(1023), fc.integer({ min: 1, max: 64 }),
      (order, slot, rs, rn) => {
        const pages = 2 ** order;
        const l = { iova: BigInt(slot * pages) * K4, size: BigInt(pages) * K4, gpa: BigInt(pages * 7) * K4 };
        const region = { start: BigInt(rs) * K4, last: BigInt(rs + rn) * K4 - 1n, type: 'msi' as const };
        const container = new VfioContainer({ reservedRegions: [region] });
        const listener = new VfioListener(container);
        const errors: unknown[] = [];
        listener.events.on('dmaError', (e) => errors.push(e));
        listener.attach(new NotifierList(), leaves([l]));
        const want = new Map<bigint, string>();
        for (let off = 0n; off < l.size; off += K4) {
          const iova = l.iova + off;
          if (iova < region.start || iova > region.last) want.set(iova, `${(l.gpa + off).toString(16)}/3`);
        }
        expect(errors).toEqual([]);
        expect(pageSet(container.mappings())).toEqual(want);
        expect(listener.check(leaves([l])).ok).toBe(true);
      },
    ), { numRuns: 60 });
  });
});

describe('issue 13 #8: a reserved-region unwind that fails is reported whole', () => {
  test('a typed error with the original failure and the unwind failure; every other domain unwound; check() accepts', () => {
    const a = new FaultyDomain('a');
    const b = new FaultyDomain('b');
    const c = new FaultyDomain('c');
    const container = new VfioContainer({ domains: [a, b, c], reservedRegions: [] });
    const listener = new VfioListener(container);
    listener.attach(new NotifierList(), leaves([{ iova: 0x10000n, size: K4, gpa: 0x5000n }]));
    const before = container.getInfo().iova_ranges;
    const hostErrors: string[] = [];
    container.events.on('hostError', (e) => hostErrors.push(`${e.domain}:${e.op}`));
    c.failReserve = true;
    b.failUnreserve = true;
    let caught: unknown;
    try {
      container.addReservedRegion(X86_MSI_WINDOW);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(VfioUnwindError);
    const err = caught as VfioUnwindError;
    expect(err).toBeInstanceOf(VfioError);
    expect(err.errno).toBe('EBUSY'); // c's original failure
    expect(err.cause).toBeInstanceOf(HostDomainError);
    expect(err.unwindFailures.map((f) => f.domain)).toEqual(['b']);
    expect(err.unwindFailures[0]!.error).toBeInstanceOf(HostDomainError);
    // b refused to unwind, a was unwound anyway (b came first in reverse order).
    expect(a.sim.reservedRegions()).toEqual([]);
    expect(a.calls).toContain('unreserve fee00000-feefffff');
    expect(hostErrors).toEqual(['c:reserve', 'b:unreserve']);
    expect(container.getInfo().iova_ranges).toEqual(before);
    expect(container.stats()).toMatchObject({ unwindFailures: 1, errors: { EBUSY: 1 } });
    expect(listener.check(leaves([{ iova: 0x10000n, size: K4, gpa: 0x5000n }])).ok).toBe(true);
  });

  test('a domain whose unreserve throws a non-Error still yields the typed error', () => {
    const a = new FaultyDomain('a');
    const odd = {
      name: 'odd', pgsizeBitmap: a.pgsizeBitmap, apertureEnd: a.apertureEnd,
      map: () => undefined, unmap: () => 0n,
      reserve: () => undefined, unreserve: () => { throw 'not an Error'; },
    };
    const container = new VfioContainer({ domains: [odd, a], reservedRegions: [] });
    a.failReserve = true;
    expect(() => container.addReservedRegion(X86_MSI_WINDOW)).toThrow(VfioUnwindError);
  });
});

describe('issue 13 #9: VhostListener caches only what its UNMAP notifier covers', () => {
  const answer2m = (iova: bigint): IOMMUTLBEntry => ({ iova: iova & ~0x1fffffn, addrMask: 0x1fffffn, translatedAddr: 0x4000000n, perm: RW });

  test('an answer larger than the range is cropped to it; outside the range nothing is cached', () => {
    const asked: bigint[] = [];
    const v = new VhostListener({ miss: (iova) => { asked.push(iova); return answer2m(iova); }, start: 0x10000n, end: 0x1ffffn });
    const src = new FakeSource();
    v.attach(src);
    expect(v.translate(0x10008n, RW)?.uaddr).toBe(0x4010008n);
    expect(v.entries()).toEqual([{ iova: 0x10000n, size: 0x10000n, uaddr: 0x4010000n, perm: RW }]);
    expect(v.translate(0x30000n, RW)?.uaddr).toBe(0x4030000n);
    expect(v.translate(0x30000n, RW)?.uaddr).toBe(0x4030000n);
    expect(asked).toEqual([0x10008n, 0x30000n, 0x30000n]);
    expect(v.entries()).toHaveLength(1);
    expect(v.stats().uncached).toBe(2);
    // An invalidation inside the range still reaches the cached part.
    src.send(IOMMUNotifierFlag.UNMAP, 0x10000n, 0xffffn, 0n, IOMMUAccessFlags.NONE);
    expect(v.entries()).toEqual([]);
  });

  test('after detach (and before attach) translations are served but never cached', () => {
    let gpa = 0x5000n;
    const v = new VhostListener({ miss: (iova) => ({ iova: iova & ~0xfffn, addrMask: 0xfffn, translatedAddr: gpa, perm: RW }) });
    expect(v.translate(0x1000n, RW)?.uaddr).toBe(0x5000n);
    expect(v.entries()).toEqual([]);
    v.attach(new FakeSource());
    v.translate(0x1000n, RW);
    expect(v.entries()).toHaveLength(1);
    v.detach();
    expect(v.translate(0x1000n, RW)?.uaddr).toBe(0x5000n);
    expect(v.entries()).toEqual([]);
    // Nothing will tell a detached listener about this change; it must not serve the old page.
    gpa = 0x9000n;
    expect(v.translate(0x1000n, RW)?.uaddr).toBe(0x9000n);
  });
});

describe('issue 13 #13: refusals past dma_entry_limit are cheap and reported once', () => {
  test('a replay of 20,000 leaves into a container limited to 100 entries', () => {
    const container = new VfioContainer({ dmaEntryLimit: 100 });
    const listener = new VfioListener(container);
    const ioctlErrors: VfioError[] = [];
    const dmaErrors: unknown[] = [];
    const limits: Array<{ entry: IOMMUTLBEntry; mappings: number }> = [];
    container.events.on('ioctlError', (e) => ioctlErrors.push(e));
    listener.events.on('dmaError', (e) => dmaErrors.push(e));
    listener.events.on('dmaLimit', (e) => limits.push(e));
    const n = 20_000;
    const walker: LeafWalker = (first, last, sink) => {
      for (let i = Math.max(first, 0x100); i < 0x100 + n && i <= last; i++) sink(i, 1, i, RW);
    };
    const list = new NotifierList();
    listener.attach(list, walker);
    expect(container.stats()).toMatchObject({ mappings: 100, dmaAvail: 0, refusedMaps: n - 100, errors: { ENOSPC: n - 100 } });
    // No error object per refusal: none thrown to the listener, none emitted.
    expect(ioctlErrors).toEqual([]);
    expect(dmaErrors).toEqual([]);
    // Reported once: the first refused entry (the 101st leaf), with the mapping count.
    expect(limits).toEqual([{ entry: { iova: BigInt(0x100 + 100) * K4, translatedAddr: BigInt(0x100 + 100) * K4, addrMask: K4 - 1n, perm: RW }, mappings: 100 }]);
    expect(listener.stats()).toMatchObject({
      mapErrors: n - 100, limitRefusals: n - 100, limitRefusedBytes: BigInt(n - 100) * K4, limitEpisodes: 1, errors: { ENOSPC: n - 100 },
    });
    // check() names what the device cannot reach.
    expect(listener.check(walker).missing.filter((d) => d.where === 'container').map((d) => [d.start, d.last]))
      .toEqual([[BigInt(0x100 + 100) * K4, BigInt(0x100 + n) * K4 - 1n]]);
    // An unmap frees entries and ends the episode; hitting the limit again reports again.
    list.sync(0x100000n, 0x100fffn, (f, l, sink) => walker(f, l, (i, p, x, perm) => { if (i !== 0x100) sink(i, p, x, perm); }));
    expect(container.stats().mappings).toBe(99);
    container.mapDma({ iova: 0x1000n, size: K4, vaddr: 0n, ...rw });
    list.sync(0x100000n, 0x100fffn, walker);
    expect(limits).toHaveLength(2);
  });

  test('other refusals still arrive one by one with their errno', () => {
    const container = new VfioContainer();
    const listener = new VfioListener(container);
    const errnos: VfioErrno[] = [];
    listener.events.on('dmaError', (e) => errnos.push(e.error.errno));
    const src = new FakeSource();
    listener.attach(src);
    container.mapDma({ iova: 0x1000n, size: K4, vaddr: 0n, ...rw });
    src.send(IOMMUNotifierFlag.MAP, 0x1000n, 0xfffn, 0x2000n, RW);
    expect(errnos).toEqual(['EEXIST']);
    expect(container.stats().refusedMaps).toBe(1);
  });
});

describe('seed 000: the number of unpin rounds is an option and is reported', () => {
  function stuckContainer(unpinRetries: number | undefined, unpinEvery: number) {
    const c = new VfioContainer({ domains: [], ...(unpinRetries !== undefined ? { unpinRetries } : {}) });
    c.mapDma({ iova: 0n, size: 0x10000n, vaddr: 0n, ...rw });
    const pinned = [0x1000n, 0x2000n, 0x3000n];
    let rounds = 0;
    const dev = c.openDevice('mdev', {
      dmaUnmap: () => { rounds++; if (unpinEvery > 0 && rounds % unpinEvery === 0) { const p = pinned.shift(); if (p !== undefined) dev.unpinPages([p]); } },
    });
    dev.pinPages([...pinned], false);
    return { c, rounds: () => rounds };
  }

  test('a driver that never unpins is asked unpinRetries times, then EBUSY with the rounds', () => {
    const { c, rounds } = stuckContainer(10, 0);
    let err: VfioError | undefined;
    try { c.unmapDma({ iova: 0n, size: 0x10000n }); } catch (e) { err = e as VfioError; }
    expect(err?.errno).toBe('EBUSY');
    expect(err?.detail?.rounds).toBe(10);
    expect(rounds()).toBe(10);
    expect(c.stats()).toMatchObject({ unpinRounds: 10, unpinStuck: 1 });
  });

  test('a slow driver that unpins every other round succeeds with 2 retries, fails with 1', () => {
    const slow = stuckContainer(2, 2);
    expect(slow.c.unmapDma({ iova: 0n, size: 0x10000n })).toEqual({ unmapped: 0x10000n });
    expect(slow.rounds()).toBe(6);
    const strict = stuckContainer(undefined, 2);
    expect(() => strict.c.unmapDma({ iova: 0n, size: 0x10000n })).toThrow(/EBUSY|busy/);
    expect(strict.rounds()).toBe(1);
  });

  test('an unusable retry count is refused', () => {
    expect(() => new VfioContainer({ unpinRetries: 0 })).toThrow(RangeError);
    expect(() => new VfioContainer({ unpinRetries: 1.5 })).toThrow(RangeError);
  });
});
