import { VfioContainer, VfioListener, SimHostDomain } from '../../src/listeners';
import type { VfioListenerError } from '../../src/listeners';
import { NotifierList } from '../../src/core/notifier-list';
import { ContractViolation } from '../../src/core/errors';
import { IOMMUNotifierFlag } from '../../src/core/tlb-entry';
import { IOMMUAccessFlags } from '../../src/core/access';
import type { IOMMUTLBEntry } from '../../src/core/tlb-entry';
import type { LeafWalker } from '../../src/core/leaf';
import { FakeSource, K4, M2 } from './helpers';

const { MAP, UNMAP } = IOMMUNotifierFlag;
const { NONE, RO, RW } = IOMMUAccessFlags;
const RAM_HVA = 0x7f0000000000n;
const gpaToVaddr = (gpa: bigint): bigint => RAM_HVA + gpa;

function setup(options: { start?: bigint; end?: bigint } = {}) {
  const dom = new SimHostDomain({ name: 'host' });
  const container = new VfioContainer({ domains: [dom] });
  const listener = new VfioListener(container, { gpaToVaddr, ...options });
  const errors: VfioListenerError[] = [];
  listener.events.on('dmaError', (e) => errors.push(e));
  const src = new FakeSource();
  listener.attach(src);
  return { dom, container, listener, errors, src };
}

const entry = (iova: bigint, size: bigint, gpa: bigint, perm: IOMMUAccessFlags): IOMMUTLBEntry =>
  ({ iova, addrMask: size - 1n, translatedAddr: gpa, perm });

describe('VfioListener', () => {
  test('registers one MAP|UNMAP notifier over its range', () => {
    const { src } = setup({ start: 0x1000n, end: 0xffffn });
    expect(src.notifiers).toHaveLength(1);
    const n = src.notifiers[0]!.notifier;
    expect(n.flags).toBe(MAP | UNMAP);
    expect([n.start, n.end]).toEqual([0x1000n, 0xffffn]);
  });

  test('MAP becomes MAP_DMA of the entry at its HVA, UNMAP becomes UNMAP_DMA of the entry', () => {
    const { container, dom, listener, src, errors } = setup();
    src.send(MAP, 0x10000n, 0xfffn, 0x5000n, RO);
    src.send(MAP, M2, M2 - 1n, 0x40000000n, RW);
    expect(container.mappings()).toEqual([
      { iova: 0x10000n, size: K4, vaddr: RAM_HVA + 0x5000n, read: true, write: false },
      { iova: M2, size: M2, vaddr: RAM_HVA + 0x40000000n, read: true, write: true },
    ]);
    expect(dom.translate(M2 + 0x123n)).toEqual({ paddr: RAM_HVA + 0x40000123n, prot: 3 });
    src.send(UNMAP, M2, M2 - 1n, 0n, NONE);
    expect(container.mappings().map((m) => m.iova)).toEqual([0x10000n]);
    expect(listener.stats()).toMatchObject({ maps: 2, unmaps: 1, unmappedBytes: M2, mapErrors: 0, unmapErrors: 0 });
    expect(errors).toEqual([]);
    expect(listener.check([entry(0x10000n, K4, 0x5000n, RO)]).ok).toBe(true);
  });

  test('a duplicate MAP fails with EEXIST and the old mapping stays: check() shows the guest/host mismatch', () => {
    const { container, listener, src, errors } = setup();
    src.send(MAP, 0x10000n, 0xfffn, 0x5000n, RW);
    // The guest moved the page without an UNMAP first (contract C4 broken, no enforcement here).
    src.send(MAP, 0x10000n, 0xfffn, 0x9000n, RW);
    expect(errors.map((e) => [e.op, e.error.errno, e.entry.translatedAddr])).toEqual([['map', 'EEXIST', 0x9000n]]);
    expect(container.mappings()[0]!.vaddr).toBe(RAM_HVA + 0x5000n);
    const report = listener.check([entry(0x10000n, K4, 0x9000n, RW)]);
    expect(report.ok).toBe(false);
    expect(report.mismatched.map((d) => [d.where, d.start, d.last, d.host?.vaddr, d.guest?.vaddr])).toEqual([
      ['container', 0x10000n, 0x10fffn, RAM_HVA + 0x5000n, RAM_HVA + 0x9000n],
      ['host', 0x10000n, 0x10fffn, RAM_HVA + 0x5000n, RAM_HVA + 0x9000n],
    ]);
    expect(listener.stats().errors).toEqual({ EEXIST: 1 });
  });

  test('an UNMAP that cuts a mapping is refused (EINVAL): the stale mapping stays reachable by the device', () => {
    const { container, listener, src, errors } = setup();
    src.send(MAP, M2, M2 - 1n, 0x40000000n, RW);
    src.send(UNMAP, M2 + 0x1000n, 0xfffn, 0n, NONE);
    expect(errors.map((e) => [e.op, e.error.errno])).toEqual([['unmap', 'EINVAL']]);
    // The guest now has only the rest of the 2 MiB... but the host still maps all of it.
    const guest: IOMMUTLBEntry[] = [entry(M2, K4, 0x40000000n, RW)];
    for (let off = 2n * K4; off < M2; off += K4) guest.push(entry(M2 + off, K4, 0x40000000n + off, RW));
    const report = listener.check(guest);
    expect(report.stale.map((d) => [d.where, d.start, d.last])).toEqual([['container', M2 + K4, M2 + 2n * K4 - 1n], ['host', M2 + K4, M2 + 2n * K4 - 1n]]);
    expect(report.missing).toEqual([]);
    const dev = container.openDevice('nic');
    expect(dev.dma(M2 + 0x1000n, 8n, true)).toEqual({ ok: true, hostAddr: RAM_HVA + 0x40001000n });
  });

  test('check(): equivalent splits agree; missing host mappings and other permissions are reported', () => {
    const { listener, src } = setup();
    src.send(MAP, M2, M2 - 1n, 0x40000000n, RW);
    // 512 guest leaves of 4 KiB equal one host 2 MiB mapping.
    const leaves: IOMMUTLBEntry[] = [];
    for (let off = 0n; off < M2; off += K4) leaves.push(entry(M2 + off, K4, 0x40000000n + off, RW));
    expect(listener.check(leaves).ok).toBe(true);
    const report = listener.check([
      ...leaves.slice(0, 511), entry(M2 + M2 - K4, K4, 0x40000000n + M2 - K4, RO), entry(0x100000n, K4, 0n, RW),
    ]);
    expect(report.missing.map((d) => [d.where, d.start])).toEqual([['container', 0x100000n], ['host', 0x100000n]]);
    expect(report.mismatched.map((d) => [d.where, d.start, d.host?.perm, d.guest?.perm])).toEqual([
      ['container', 2n * M2 - K4, RW, RO], ['host', 2n * M2 - K4, RW, RO],
    ]);
    expect(report.stale).toEqual([]);
  });

  test('check() takes a page-table walker and only looks inside the listener range', () => {
    const { listener, src } = setup({ start: 0n, end: 0xfffffn });
    src.send(MAP, 0x3000n, 0xfffn, 0x8000n, RW);
    const walk: LeafWalker = (first, last, sink) => {
      expect([first, last]).toEqual([0, 0xff]);
      sink(3, 1, 8, RW);
      sink(0x200, 1, 9, RW); // outside the range: ignored
    };
    expect(listener.check(walk).ok).toBe(true);
  });

  test('a MAP to memory that is not RAM is refused (EFAULT), as QEMU refuses to map MMIO', () => {
    const dom = new SimHostDomain();
    const container = new VfioContainer({ domains: [dom] });
    const listener = new VfioListener(container, { gpaToVaddr: (gpa) => (gpa < 0x80000000n ? gpa : undefined) });
    const errors: string[] = [];
    listener.events.on('dmaError', (e) => errors.push(e.error.errno));
    const src = new FakeSource();
    listener.attach(src);
    src.send(MAP, 0x1000n, 0xfffn, 0xfed00000n, RW);
    expect(errors).toEqual(['EFAULT']);
    expect(container.mappings()).toEqual([]);
    // Not RAM is not expected on the host either.
    expect(listener.check([entry(0x1000n, K4, 0xfed00000n, RW)]).ok).toBe(true);
  });

  test('detach unregisters and unmaps the whole range (UNMAP_ALL for the whole space)', () => {
    const { container, listener, src } = setup();
    src.send(MAP, 0x1000n, 0xfffn, 0n, RW);
    src.send(MAP, 0x7000000n, 0xfffn, 0n, RW);
    listener.detach();
    expect(src.notifiers).toHaveLength(0);
    expect(container.mappings()).toEqual([]);
  });
});

describe('VfioListener on a contract-enforcing NotifierList', () => {
  function onList(mode: 'strict' | 'repair') {
    const list = new NotifierList({ mode, name: `test ${mode}` });
    const container = new VfioContainer();
    const listener = new VfioListener(container);
    const errors: VfioListenerError[] = [];
    listener.events.on('dmaError', (e) => errors.push(e));
    // The guest's page table of this test, as a walker.
    const table = new Map<number, [number, number]>([[0x10, [0x80, RW]], [0x11, [0x81, RO]]]);
    const walk: LeafWalker = (first, last, sink) => {
      for (const [pfn, [x, p]] of [...table].sort((a, b) => a[0] - b[0])) if (pfn >= first && pfn <= last) sink(pfn, 1, x, p);
    };
    listener.attach(list, walk);
    return { list, container, listener, errors, table, walk };
  }

  test('attach on a bare list replays the walker as MAPs', () => {
    const { container, listener, walk } = onList('strict');
    expect(container.mappings().map((m) => m.iova)).toEqual([0x10000n, 0x11000n]);
    expect(listener.check(walk).ok).toBe(true);
  });

  test('strict: an in-place change sent as a bare MAP is refused before it reaches the container', () => {
    const { list, container, errors } = onList('strict');
    const before = container.mappings();
    expect(() => list.notify({ type: MAP, entry: entry(0x10000n, K4, 0x90000n, RW) })).toThrow(ContractViolation);
    expect(container.mappings()).toEqual(before);
    expect(errors).toEqual([]);
  });

  test('repair: the same change arrives as UNMAP + MAP and the host follows the guest', () => {
    const { list, container, listener, errors, table, walk } = onList('repair');
    const repaired: string[] = [];
    list.events.on('repaired', (r) => repaired.push(r.rule));
    table.set(0x10, [0x90, RW]);
    list.notify({ type: MAP, entry: entry(0x10000n, K4, 0x90000n, RW) });
    expect(repaired).toEqual(['C4']);
    expect(errors).toEqual([]);
    expect(container.mappings()[0]!.vaddr).toBe(0x90000n);
    expect(listener.check(walk).ok).toBe(true);
  });
});
