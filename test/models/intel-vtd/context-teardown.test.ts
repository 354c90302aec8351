/**
 * Contract C8 as clarified (issue 13 item 6): after a context-cache
 * invalidation of any granularity, a MAP+UNMAP listener's view equals the
 * tables; when the tables still give the same translations nothing is sent
 * (no teardown window), when the device's translations cease to exist
 * (context cleared, made pass-through, its PASID entry made invalid) every
 * entry is UNMAPped, and a device moved to other tables gets only the
 * differences. Expected views are written from the tables each test builds.
 */
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import { CONTEXT, GCMD, REG, ROOT, Recorder, SID_A, SID_B, bringUp, desc, makeBench, viewOf } from './helpers/device';
import type { Bench } from './helpers/device';

const ALL = IOMMUNotifierFlag.ALL;
const MAP = IOMMUNotifierFlag.MAP;
const UNMAP = IOMMUNotifierFlag.UNMAP;
const U64 = (1n << 64n) - 1n;

type Entry = [bigint, bigint, bigint, number];

function listen(b: Bench, sid: number, flags: number = ALL): Recorder {
  const r = new Recorder();
  r.handle = b.vtd.addressSpace(sid).registerNotifier({ flags, start: 0n, end: U64, notify: r.notify });
  return r;
}

/** Two devices, each with two 4 KiB mappings and one 2 MiB mapping; listeners registered (replayed). */
function twoDevices() {
  const b = bringUp();
  const a: Entry[] = [[0x1000n, 0xfffn, 0x40_0000n, 3], [0x7000n, 0xfffn, 0x41_0000n, 1], [0x20_0000n, 0x1f_ffffn, 0x60_0000n, 3]];
  const bb: Entry[] = [[0x3000n, 0xfffn, 0x50_0000n, 3]];
  b.map(SID_A, 0x1000n, 0x40_0000n);
  b.map(SID_A, 0x7000n, 0x41_0000n, { w: false });
  b.map(SID_A, 0x20_0000n, 0x60_0000n, { leafLevel: 2 });
  b.map(SID_B, 0x3000n, 0x50_0000n);
  const ra = listen(b, SID_A);
  const rb = listen(b, SID_B);
  expect(viewOf(b, SID_A, ra.handle)).toEqual(a);
  expect(viewOf(b, SID_B, rb.handle)).toEqual(bb);
  ra.take();
  rb.take();
  return { b, ra, rb, a, bb };
}

/** The UNMAPs of `events` cover exactly the entries `gone` (whole entries, C5) and nothing is MAPped. */
function unmapsExactly(events: Recorder['events'], gone: Entry[]): void {
  expect(events.every((e) => e.type === UNMAP && e.perm === 0)).toBe(true);
  for (const [iova, mask] of gone) expect(events.some((e) => e.iova <= iova && e.iova + e.mask >= iova + mask)).toBe(true);
}

const CONTEXT_INVALIDATIONS: Array<[string, () => [bigint, bigint]]> = [
  ['global', () => desc.contextGlobal()],
  ['domain', () => desc.contextDomain(1)],
  ['device', () => desc.contextDevice(1, SID_A)],
];

describe('context-cache invalidation, tables unchanged: nothing is sent', () => {
  it.each(CONTEXT_INVALIDATIONS)('%s granularity', (_n, d) => {
    const { b, ra, rb, a, bb } = twoDevices();
    b.submit(d());
    expect(ra.take()).toEqual([]);
    expect(rb.take()).toEqual([]);
    expect(viewOf(b, SID_A, ra.handle)).toEqual(a);
    expect(viewOf(b, SID_B, rb.handle)).toEqual(bb);
  });

  it('also through the CCMD register (queued invalidation off)', () => {
    const b = makeBench();
    b.device(SID_A, 1);
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.setRoot();
    b.enableTranslation();
    const r = listen(b, SID_A);
    r.take();
    b.write(REG.CCMD, (1n << 63n) | (1n << 61n), 8); // ICC, global
    expect(r.take()).toEqual([]);
    expect(viewOf(b, SID_A, r.handle)).toEqual([[0x1000n, 0xfffn, 0x40_0000n, 3]]);
  });
});

describe('context cleared then invalidated: every entry of that device is UNMAPped, the other device is untouched', () => {
  it.each(CONTEXT_INVALIDATIONS)('%s granularity', (_n, d) => {
    const { b, ra, rb, a, bb } = twoDevices();
    b.tables.legacyContext(CONTEXT, SID_A, { present: false });
    b.submit(d());
    unmapsExactly(ra.take(), a);
    expect(viewOf(b, SID_A, ra.handle)).toEqual([]);
    expect(rb.take()).toEqual([]);
    expect(viewOf(b, SID_B, rb.handle)).toEqual(bb);
    // Restored and invalidated: the device's translations are back (C9).
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: b.slpt.get(SID_A)!, aw: 1, did: 1 });
    b.submit(d());
    expect(viewOf(b, SID_A, ra.handle)).toEqual(a);
  });

  it('an UNMAP-only listener of that device is told its whole range', () => {
    const { b } = twoDevices();
    const u = listen(b, SID_A, UNMAP);
    b.tables.legacyContext(CONTEXT, SID_A, { present: false });
    b.submit(desc.contextDevice(1, SID_A));
    const ev = u.take();
    expect(ev.length).toBeGreaterThan(0);
    expect(ev.every((e) => e.type === UNMAP)).toBe(true);
    // The chunks cover [0, 2^39 - 1] (the AW), as vtd_address_space_unmap does.
    const covered = ev.map((e) => [e.iova, e.iova + e.mask]).sort((x, y) => (x[0]! < y[0]! ? -1 : 1));
    expect(covered[0]![0]).toBe(0n);
    for (let i = 1; i < covered.length; i++) expect(covered[i]![0]).toBe(covered[i - 1]![1]! + 1n);
    expect(covered[covered.length - 1]![1]).toBeGreaterThanOrEqual(2n ** 39n - 1n);
  });
});

describe('the device\'s translations cease to exist in other ways', () => {
  it('context cleared, then only an IOTLB invalidation of its domain (page or domain): UNMAP all of that device', () => {
    for (const d of [desc.iotlbDomain(1), desc.iotlbPage(1, 0x1000n)]) {
      const { b, ra, rb, a, bb } = twoDevices();
      b.tables.legacyContext(CONTEXT, SID_A, { present: false });
      b.submit(d);
      unmapsExactly(ra.take(), a);
      expect(viewOf(b, SID_A, ra.handle)).toEqual([]);
      expect(rb.take()).toEqual([]);
      expect(viewOf(b, SID_B, rb.handle)).toEqual(bb);
    }
  });

  it('an IOTLB invalidation of another domain leaves a cleared device alone until its own', () => {
    const { b, ra, a } = twoDevices();
    b.tables.legacyContext(CONTEXT, SID_A, { present: false });
    b.submit(desc.iotlbDomain(2));
    expect(ra.take()).toEqual([]);
    b.submit(desc.iotlbDomain(1));
    unmapsExactly(ra.take(), a);
  });

  it('context made pass-through (TT=2) and invalidated: UNMAP all (no IOMMU translation to shadow)', () => {
    const { b, ra, a } = twoDevices();
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: b.slpt.get(SID_A)!, aw: 1, did: 1, tt: 2 });
    b.submit(desc.contextDevice(1, SID_A));
    unmapsExactly(ra.take(), a);
    expect(viewOf(b, SID_A, ra.handle)).toEqual([]);
  });

  it('context with an unsupported AW and invalidated: UNMAP all', () => {
    const { b, ra, a } = twoDevices();
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: b.slpt.get(SID_A)!, aw: 3, did: 1 });
    b.submit(desc.contextGlobal());
    unmapsExactly(ra.take(), a);
    expect(viewOf(b, SID_A, ra.handle)).toEqual([]);
  });
});

describe('device moved to other tables: only the differences are sent', () => {
  it.each(CONTEXT_INVALIDATIONS)('%s granularity', (_n, d) => {
    const { b, ra } = twoDevices();
    // New domain 5: 0x1000 identical, 0x7000 now read-write elsewhere, 0x9000 new; the 2 MiB page is gone.
    const other = b.tables.page();
    b.tables.map(other, 3, 0x1000n, 0x40_0000n);
    b.tables.map(other, 3, 0x7000n, 0x42_0000n);
    b.tables.map(other, 3, 0x9000n, 0x43_0000n);
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: other, aw: 1, did: 5 });
    b.submit(d());
    const ev = ra.take();
    // The identical entry is never UNMAPped (no window without it).
    expect(ev.some((e) => e.iova <= 0x1000n && e.iova + e.mask >= 0x1000n)).toBe(false);
    expect(ev.filter((e) => e.type === MAP).map((e) => [e.iova, e.translated]).sort((x, y) => (x[0]! < y[0]! ? -1 : 1)))
      .toEqual([[0x7000n, 0x42_0000n], [0x9000n, 0x43_0000n]]);
    expect(viewOf(b, SID_A, ra.handle)).toEqual([
      [0x1000n, 0xfffn, 0x40_0000n, 3], [0x7000n, 0xfffn, 0x42_0000n, 3], [0x9000n, 0xfffn, 0x43_0000n, 3],
    ]);
  });
});

describe('scalable mode: the PASID entry', () => {
  function scalable() {
    const b = makeBench({ scalableMode: true, cachingMode: true });
    const dir = b.tables.page();
    const pasidTable = b.tables.page();
    const slpt = b.tables.page();
    b.slpt.set(SID_A, slpt);
    b.tables.scalableContext(CONTEXT, SID_A, { pasidDir: dir, ridPasid: 0 });
    b.tables.pasidDir(dir, 0, { table: pasidTable });
    b.tables.pasidEntry(pasidTable, 0, { aw: 1, pgtt: 2, slptptr: slpt, did: 3 });
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.map(SID_A, 0x5000n, 0x41_0000n);
    b.write(REG.RTADDR, BigInt(ROOT) | (1n << 10n), 8);
    b.write(REG.GCMD, GCMD.SRTP);
    b.enableQueue();
    b.enableTranslation();
    const r = listen(b, SID_A);
    const entries: Entry[] = [[0x1000n, 0xfffn, 0x40_0000n, 3], [0x5000n, 0xfffn, 0x41_0000n, 3]];
    expect(viewOf(b, SID_A, r.handle)).toEqual(entries);
    r.take();
    return { b, r, pasidTable, entries };
  }

  it.each(CONTEXT_INVALIDATIONS)('made not present, then a %s context invalidation: UNMAP all; restored: mapped again', (_n, d) => {
    const { b, r, pasidTable, entries } = scalable();
    b.tables.pasidEntry(pasidTable, 0, { present: false, aw: 1, pgtt: 2, slptptr: b.slpt.get(SID_A)!, did: 3 });
    b.submit(d());
    unmapsExactly(r.take(), entries);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
    b.tables.pasidEntry(pasidTable, 0, { aw: 1, pgtt: 2, slptptr: b.slpt.get(SID_A)!, did: 3 });
    b.submit(d());
    expect(viewOf(b, SID_A, r.handle)).toEqual(entries);
  });

  it('made not present, then the PASID-cache and domain IOTLB invalidations Linux sends (no context invalidation): UNMAP all', () => {
    const { b, r, pasidTable, entries } = scalable();
    b.tables.pasidEntry(pasidTable, 0, { present: false, aw: 1, pgtt: 2, slptptr: b.slpt.get(SID_A)!, did: 3 });
    // PASID-cache invalidation, PASID-selective, DID 3, PASID 0 (type 7, G=1), then IOTLB DSI of DID 3.
    b.submit([0x7n | (1n << 4n) | (3n << 16n), 0n]);
    unmapsExactly(r.take(), entries);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
    b.submit(desc.iotlbDomain(3));
    expect(r.take()).toEqual([]);
    // The same with only the DSI.
    const again = scalable();
    again.b.tables.pasidEntry(again.pasidTable, 0, { present: false, aw: 1, pgtt: 2, slptptr: again.b.slpt.get(SID_A)!, did: 3 });
    again.b.submit(desc.iotlbDomain(3));
    unmapsExactly(again.r.take(), again.entries);
    expect(viewOf(again.b, SID_A, again.r.handle)).toEqual([]);
  });

  it('a PASID-cache invalidation with nothing changed sends nothing', () => {
    const { b, r, entries } = scalable();
    b.submit([0x7n | (3n << 4n), 0n], [0x7n | (3n << 16n), 0n]); // global, then domain 3
    expect(r.take()).toEqual([]);
    expect(viewOf(b, SID_A, r.handle)).toEqual(entries);
  });

  it('given a bad PGTT, then a global IOTLB invalidation: UNMAP all', () => {
    const { b, r, pasidTable, entries } = scalable();
    b.tables.pasidEntry(pasidTable, 0, { aw: 1, pgtt: 0, slptptr: b.slpt.get(SID_A)!, did: 3 });
    b.submit(desc.iotlbGlobal());
    unmapsExactly(r.take(), entries);
    expect(viewOf(b, SID_A, r.handle)).toEqual([]);
  });

  it('pointed at other tables, then a context invalidation: the view follows the new tables', () => {
    const { b, r, pasidTable } = scalable();
    const other = b.tables.page();
    b.tables.map(other, 3, 0x5000n, 0x41_0000n);
    b.tables.map(other, 3, 0x8000n, 0x48_0000n);
    b.tables.pasidEntry(pasidTable, 0, { aw: 1, pgtt: 2, slptptr: other, did: 3 });
    b.submit(desc.contextDevice(3, SID_A));
    expect(r.take().some((e) => e.iova === 0x5000n)).toBe(false);
    expect(viewOf(b, SID_A, r.handle)).toEqual([[0x5000n, 0xfffn, 0x41_0000n, 3], [0x8000n, 0xfffn, 0x48_0000n, 3]]);
  });
});
