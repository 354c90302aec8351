import fc from 'fast-check';
import { SparseRam, dmaRead, dmaWrite } from '../../src/memory';
import type { DmaTranslate, GuestMemory, RamExtentSource } from '../../src/memory';
import type { TranslateResult } from '../../src/core';

/** A fake IOMMU: 4 KiB pages `iova >> 12` -> gpa page, with perm; anything else faults. */
function pageTable(map: Record<number, { gpa: number; perm: 1 | 2 | 3; mask?: bigint }>): { translate: DmaTranslate; calls: Array<[bigint, boolean]> } {
  const calls: Array<[bigint, boolean]> = [];
  const translate = (iova: bigint, write: boolean): TranslateResult => {
    calls.push([iova, write]);
    const e = map[Number(iova >> 12n)];
    const access = write ? 2 : 1;
    if (!e || (e.perm & access) === 0) return { fault: true, reason: 6, recorded: true, sid: 0, iova, access };
    const mask = e.mask ?? 0xfffn;
    return { iova: iova & ~mask, translatedAddr: BigInt(e.gpa) & ~mask, addrMask: mask, perm: e.perm };
  };
  return { translate, calls };
}

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe('dmaRead / dmaWrite (trace-v1 partial semantics)', () => {
  test('a DMA inside one translated page reads and writes guest memory at the translated address', () => {
    const ram = new SparseRam([{ base: 0, size: 0x100000 }]);
    const { translate } = pageTable({ 0x120: { gpa: 0x5000, perm: 3 } });
    const data = bytes(100);
    const w = dmaWrite(ram, translate, 0x120010n, data);
    expect(w).toEqual({ faulted: false, faultIovas: [], unassigned: false });
    const back = new Uint8Array(100);
    ram.read(0x5010, back);
    expect(back).toEqual(data);
    const r = dmaRead(ram, translate, 0x120010n, 100);
    expect(r.faulted).toBe(false);
    expect(r.data).toEqual(data);
  });

  test('chunks are cut at 4 KiB IOVA boundaries and translated in ascending order', () => {
    const ram = new SparseRam([{ base: 0, size: 0x100000 }]);
    const { translate, calls } = pageTable({ 1: { gpa: 0x9000, perm: 3 }, 2: { gpa: 0x3000, perm: 3 }, 3: { gpa: 0x7000, perm: 3 } });
    const data = bytes(0x2080, 3);
    expect(dmaWrite(ram, translate, 0x1f80n, data).faulted).toBe(false);
    expect(calls).toEqual([[0x1f80n, true], [0x2000n, true], [0x3000n, true]]);
    const a = new Uint8Array(0x80); ram.read(0x9f80, a);
    expect(a).toEqual(data.subarray(0, 0x80));
    const b = new Uint8Array(0x1000); ram.read(0x3000, b);
    expect(b).toEqual(data.subarray(0x80, 0x1080));
    const c = new Uint8Array(0x1000); ram.read(0x7000, c);
    expect(c).toEqual(data.subarray(0x1080, 0x2080));
  });

  test('a faulting page reads as zeros, later pages are still read; result says which page faulted', () => {
    const ram = new SparseRam([{ base: 0, size: 0x100000 }]);
    ram.write(0x9f00, new Uint8Array(0x100).fill(0xaa));
    ram.write(0x3000, new Uint8Array(0x100).fill(0xbb));
    const { translate } = pageTable({ 1: { gpa: 0x9000, perm: 3 }, 3: { gpa: 0x3000, perm: 3 } });
    const r = dmaRead(ram, translate, 0x1f00n, 0x1200);
    expect(r.faulted).toBe(true);
    expect(r.faultIovas).toEqual([0x2000n]);
    expect(r.data.subarray(0, 0x100).every((x) => x === 0xaa)).toBe(true);
    expect(r.data.subarray(0x100, 0x1100).every((x) => x === 0)).toBe(true);
    expect(r.data.subarray(0x1100, 0x1200).every((x) => x === 0xbb)).toBe(true);
  });

  test('bytes of a faulting page are dropped on write, later pages are still written (QEMU probe)', () => {
    const ram = new SparseRam([{ base: 0, size: 0x100000 }]);
    // qemu-7.2-findings: a 0x200-byte write starting 0x100 bytes before a mapped page wrote its last 0x100 bytes.
    const { translate } = pageTable({ 5: { gpa: 0x8000, perm: 3 } });
    const data = bytes(0x200, 9);
    const w = dmaWrite(ram, translate, 0x4f00n, data);
    expect(w.faulted).toBe(true);
    expect(w.faultIovas).toEqual([0x4f00n]);
    const got = new Uint8Array(0x100); ram.read(0x8000, got);
    expect(got).toEqual(data.subarray(0x100));
    expect(ram.pagesAllocated).toBe(1);
  });

  test('permission: write through a read-only page faults, read through it works', () => {
    const ram = new SparseRam([{ base: 0, size: 0x100000 }]);
    const { translate } = pageTable({ 1: { gpa: 0x2000, perm: 1 } });
    expect(dmaWrite(ram, translate, 0x1000n, bytes(8)).faulted).toBe(true);
    expect(ram.pagesAllocated).toBe(0);
    expect(dmaRead(ram, translate, 0x1000n, 8).faulted).toBe(false);
  });

  test('a large translation (2 MiB addrMask): offset within it is kept', () => {
    const ram = new SparseRam([{ base: 0, size: 0x1000000 }]);
    const map: Record<number, { gpa: number; perm: 3; mask: bigint }> = {};
    for (let p = 0x200; p < 0x400; p++) map[p] = { gpa: 0x600000, perm: 3, mask: 0x1fffffn };
    const { translate } = pageTable(map);
    const data = bytes(0x20, 5);
    expect(dmaWrite(ram, translate, 0x3ff000n + 0x10n, data).faulted).toBe(false);
    const got = new Uint8Array(0x20); ram.read(0x600000 + 0x1ff010, got);
    expect(got).toEqual(data);
  });

  test('translated addresses outside RAM: reads zero, writes dropped, not a fault; RAM part of the chunk is accessed', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10000 }]);
    ram.write(0xff00, new Uint8Array(0x100).fill(0xcc));
    const { translate } = pageTable({ 1: { gpa: 0xf000, perm: 3 }, 2: { gpa: 0x40000000, perm: 3 } });
    // 0x1f00..0x20ff: last 0x100 bytes of RAM, then 0x100 bytes of nothing.
    const r = dmaRead(ram, translate, 0x1f00n, 0x200);
    expect(r.faulted).toBe(false);
    expect(r.unassigned).toBe(true);
    expect(r.data.subarray(0, 0x100).every((x) => x === 0xcc)).toBe(true);
    expect(r.data.subarray(0x100).every((x) => x === 0)).toBe(true);
    const w = dmaWrite(ram, translate, 0x1ff0n, new Uint8Array(0x20).fill(0x11));
    expect(w).toEqual({ faulted: false, faultIovas: [], unassigned: true });
    const got = new Uint8Array(0x10); ram.read(0xfff0, got);
    expect(got.every((x) => x === 0x11)).toBe(true);
  });

  test('a DMA that crosses the top of the 64-bit IOVA space wraps to IOVA 0 (64-bit address arithmetic)', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10000 }]);
    ram.write(0x1ff0, new Uint8Array(0x10).fill(0xaa));
    ram.write(0x3000, new Uint8Array(0x10).fill(0xbb));
    const top = (1n << 64n) - 0x1000n;
    const mapped = pageTable({ [Number(top >> 12n)]: { gpa: 0x1000, perm: 3 }, 0: { gpa: 0x3000, perm: 3 } });
    const r = dmaRead(ram, mapped.translate, top + 0xff0n, 0x20);
    expect(r.faulted).toBe(false);
    expect([...r.data]).toEqual([...new Array(0x10).fill(0xaa), ...new Array(0x10).fill(0xbb)]);
    const unmapped = pageTable({ [Number(top >> 12n)]: { gpa: 0x1000, perm: 3 } });
    expect(dmaRead(ram, unmapped.translate, top + 0xff0n, 0x20).faultIovas).toEqual([0n]);
  });

  test('zero-length DMA translates nothing', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10000 }]);
    const { translate, calls } = pageTable({});
    expect(dmaRead(ram, translate, 0x1000n, 0)).toEqual({ data: new Uint8Array(0), faulted: false, faultIovas: [], unassigned: false });
    expect(calls).toEqual([]);
  });

  test('property: read after write returns the data where pages translate, zeros elsewhere', () => {
    fc.assert(fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { maxLength: 16 }),
      fc.integer({ min: 0, max: 0x10000 - 1 }),
      fc.integer({ min: 0, max: 0x3000 }),
      (mapped, start, len) => {
        const ram = new SparseRam([{ base: 0, size: 0x100000 }]);
        const map: Record<number, { gpa: number; perm: 3 }> = {};
        mapped.forEach((p, i) => { map[p] = { gpa: 0x20000 + i * 0x1000, perm: 3 }; });
        const { translate } = pageTable(map);
        const data = bytes(len, 11).map((x) => x | 1);
        const w = dmaWrite(ram, translate, BigInt(start), data);
        const r = dmaRead(ram, translate, BigInt(start), len);
        expect(r.faulted).toBe(w.faulted);
        expect(r.faultIovas).toEqual(w.faultIovas);
        const want = data.map((x, i) => (map[(start + i) >> 12] ? x : 0));
        expect(Buffer.from(r.data).equals(Buffer.from(want))).toBe(true);
        const expectedFaults = new Set<number>();
        for (let i = 0; i < len; i++) if (!map[(start + i) >> 12]) expectedFaults.add((start + i) >> 12);
        expect(r.faultIovas.map((x) => Number(x >> 12n))).toEqual([...expectedFaults]);
      },
    ), { numRuns: 100 });
  });
});

/**
 * Issue 13 item 12: a DMA to guest-physical addresses with no RAM behind
 * them is handled by extent (SparseRam says where RAM stops), not byte by
 * byte; the partial semantics stay those of trace-v1 / QEMU (RAM bytes of a
 * chunk are accessed, the rest reads as zero and is dropped on write).
 */
describe('DMA to unassigned guest-physical addresses', () => {
  /** SparseRam behind a wrapper that counts read/write calls; `extents` keeps or hides the RamExtentSource capability. */
  function counted(ram: SparseRam, extents: boolean): { mem: GuestMemory; calls: { read: number; write: number } } {
    const calls = { read: 0, write: 0 };
    const mem: GuestMemory & Partial<RamExtentSource> = {
      read: (gpa, dst) => { calls.read++; return ram.read(gpa, dst); },
      write: (gpa, src) => { calls.write++; return ram.write(gpa, src); },
      readU32: (gpa) => ram.readU32(gpa),
      readU64: (gpa) => ram.readU64(gpa),
      writeU32: (gpa, v) => ram.writeU32(gpa, v),
      writeU64: (gpa, v) => ram.writeU64(gpa, v),
    };
    if (extents) mem.ramExtent = (gpa, end) => ram.ramExtent(gpa, end);
    return { mem, calls };
  }

  /** Identity-shifted IOMMU: every IOVA page translates to gpa = iova + `shift`. */
  const shifted = (shift: bigint): DmaTranslate => (iova) =>
    ({ iova: iova & ~0xfffn, translatedAddr: (iova & ~0xfffn) + shift, addrMask: 0xfffn, perm: 3 });

  test('16 MiB read and write wholly outside RAM: zeros, dropped, a bounded number of memory calls per page', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10000 }]);
    const { mem, calls } = counted(ram, true);
    const len = 16 << 20;
    const translate = shifted(0x1_0000_0000n); // 4 GiB up: no RAM there
    const r = dmaRead(mem, translate, 0n, len);
    expect(r.unassigned).toBe(true);
    expect(r.faulted).toBe(false);
    expect(r.data.every((x) => x === 0)).toBe(true);
    // One failed whole-chunk read per 4 KiB page, and no per-byte probe.
    expect(calls.read).toBeLessThanOrEqual(len / 4096);
    const w = dmaWrite(mem, translate, 0n, new Uint8Array(len).fill(0x5a));
    expect(w.unassigned).toBe(true);
    expect(calls.write).toBeLessThanOrEqual(len / 4096);
    expect(ram.pagesAllocated).toBe(0);
  });

  test('a page that is half RAM: the RAM half is accessed, the other half reads zero and is dropped', () => {
    // RAM [0, 0x1800) and [0x1c00, 0x3000): a hole [0x1800, 0x1c00) inside page 0x1000.
    const ram = new SparseRam([{ base: 0, size: 0x1800 }, { base: 0x1c00, size: 0x1400 }]);
    ram.write(0x1000, new Uint8Array(0x800).fill(0xaa));
    ram.write(0x1c00, new Uint8Array(0x400).fill(0xbb));
    const { mem, calls } = counted(ram, true);
    const translate = shifted(0n);
    const r = dmaRead(mem, translate, 0x1000n, 0x1000);
    expect(r.unassigned).toBe(true);
    expect([...r.data.subarray(0, 0x800)].every((x) => x === 0xaa)).toBe(true);
    expect([...r.data.subarray(0x800, 0xc00)].every((x) => x === 0)).toBe(true);
    expect([...r.data.subarray(0xc00)].every((x) => x === 0xbb)).toBe(true);
    expect(calls.read).toBeLessThanOrEqual(3); // the whole chunk, then its two RAM runs
    const w = dmaWrite(mem, translate, 0x1000n, new Uint8Array(0x1000).fill(0x11));
    expect(w.unassigned).toBe(true);
    const back = new Uint8Array(0x800);
    ram.read(0x1000, back);
    expect(back.every((x) => x === 0x11)).toBe(true);
    ram.read(0x1c00, back.subarray(0, 0x400));
    expect(back.subarray(0, 0x400).every((x) => x === 0x11)).toBe(true);
  });

  test('without the extent capability, a chunk with a hole costs O(log n) memory calls, not one per byte', () => {
    const ram = new SparseRam([{ base: 0, size: 0x1234 }, { base: 0x1e00, size: 0x1200 }]);
    const { mem, calls } = counted(ram, false);
    const r = dmaRead(mem, shifted(0n), 0x1000n, 0x1000);
    expect(r.unassigned).toBe(true);
    expect(calls.read).toBeLessThanOrEqual(1 + 2 * 13 + 2);
    calls.read = 0;
    const wholly = dmaRead(mem, shifted(0x1_0000_0000n), 0n, 16 << 20);
    expect(wholly.data.every((x) => x === 0)).toBe(true);
    // A page with no RAM at either end: the whole-page read and one probe per end.
    expect(calls.read).toBeLessThanOrEqual(4096 * 3);
  });

  /** DMA write then read over `regions` agree with byte-wise RAM membership, for each memory flavour in `extents`. */
  function agreesWithBytewise(raw: Array<{ base: number; size: number }>, start: number, len: number, extents: boolean[]): void {
    // Make the regions disjoint by dropping any that overlaps an earlier one.
    const regions: Array<{ base: number; size: number }> = [];
    for (const r of raw) if (regions.every((q) => r.base + r.size <= q.base || q.base + q.size <= r.base)) regions.push(r);
    const isRam = (a: number) => regions.some((q) => a >= q.base && a < q.base + q.size);
    const data = bytes(len, 7).map((x) => x | 1);
    for (const withExtents of extents) {
      const ram = new SparseRam(regions);
      const { mem } = counted(ram, withExtents);
      const w = dmaWrite(mem, shifted(0n), BigInt(start), data);
      const r = dmaRead(mem, shifted(0n), BigInt(start), len);
      const want = data.map((x, i) => (isRam(start + i) ? x : 0));
      expect(Buffer.from(r.data).equals(Buffer.from(want))).toBe(true);
      const anyHole = want.some((_x, i) => !isRam(start + i));
      expect(r.unassigned).toBe(anyHole);
      expect(w.unassigned).toBe(anyHole);
    }
  }

  test('property: with the extent capability, any layout (RAM islands inside a page too) matches byte-wise RAM membership', () => {
    const region = fc.record({ base: fc.integer({ min: 0, max: 0x7000 }), size: fc.integer({ min: 1, max: 0x1800 }) });
    fc.assert(fc.property(fc.array(region, { maxLength: 6 }), fc.integer({ min: 0, max: 0x8000 }), fc.integer({ min: 0, max: 0x3000 }),
      (raw, start, len) => agreesWithBytewise(raw, start, len, [true])), { numRuns: 200 });
  });

  test('property: without it, the same bytes land and read back when no RAM island lies inside a page', () => {
    // Each region starts and ends in different pages, and regions lie 0x3000 apart.
    const region = fc.record({ slot: fc.integer({ min: 0, max: 3 }), start: fc.integer({ min: 0, max: 0xfff }), size: fc.integer({ min: 0x1001, max: 0x2000 }) })
      .map(({ slot, start, size }) => ({ base: slot * 0x3000 + start, size }));
    fc.assert(fc.property(fc.array(region, { maxLength: 4 }), fc.integer({ min: 0, max: 0xc000 }), fc.integer({ min: 0, max: 0x3000 }),
      (raw, start, len) => agreesWithBytewise(raw, start, len, [true, false])), { numRuns: 200 });
  });
});

describe('SparseRam.ramExtent', () => {
  test('runs of RAM (across adjacent regions) and of holes, capped at end', () => {
    const ram = new SparseRam([{ base: 0x1000, size: 0x800 }, { base: 0x1800, size: 0x800 }, { base: 0x4000, size: 0x10 }]);
    expect(ram.ramExtent(0, 0x10000)).toEqual({ ram: false, end: 0x1000 });
    expect(ram.ramExtent(0x1100, 0x10000)).toEqual({ ram: true, end: 0x2000 });
    expect(ram.ramExtent(0x1100, 0x1200)).toEqual({ ram: true, end: 0x1200 });
    expect(ram.ramExtent(0x2000, 0x10000)).toEqual({ ram: false, end: 0x4000 });
    expect(ram.ramExtent(0x4010, 0x10000)).toEqual({ ram: false, end: 0x10000 });
    expect(ram.ramExtent(-1, 5)).toEqual({ ram: false, end: 5 });
  });
});
