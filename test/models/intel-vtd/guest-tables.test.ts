/**
 * The exported VT-d guest-side builder (src/models/intel-vtd/guest-tables.ts)
 * against the VT-d specification's layouts (digest:
 * shared/reference/vtd-facts.md §2 registers, §4 structures, §7
 * descriptors). Every expected word below is worked out by hand from the
 * spec's bit positions and written as a literal; none comes from the model.
 */
import * as root from '../../../src';
import { IOMMUAccessFlags } from '../../../src/core/access';
import { isFault } from '../../../src/core/model';
import { SparseRam } from '../../../src/memory/sparse-ram';
import {
  VtdDescriptor, VtdEntry, VtdGuest, VtdGuestReg, VtdGuestTables, VtdInvalidationQueue, createIntelVtd,
} from '../../../src/models/intel-vtd';
import type { VtdMmioPort } from '../../../src/models/intel-vtd';

const ram = (): SparseRam => new SparseRam([{ base: 0, size: 0x1000_0000 }]);
const u64 = (mem: SparseRam, gpa: number): bigint => mem.readU64(gpa)!;

/** A register port that records writes and answers reads with 0. */
class RecordingPort implements VtdMmioPort {
  writes: Array<[number, number, bigint]> = [];
  mmioWrite(offset: number, size: 4 | 8, value: bigint): void { this.writes.push([offset, size, value]); }
  mmioRead(): bigint { return 0n; }
}

describe('VtdEntry: entry words at the spec bit positions (vtd-facts §4)', () => {
  it('legacy root entry (9.1): P bit 0, CTP 63:12, hi reserved', () => {
    expect(VtdEntry.root({ ctp: 0x1234_5000 })).toEqual([0x1234_5001n, 0n]);
    expect(VtdEntry.root({ ctp: 0x1234_5678, present: false })).toEqual([0x1234_5000n, 0n]); // low bits of the pointer dropped
    expect(VtdEntry.root({ ctp: 0x1000, extraLo: 0x2n, hi: 0x1n })).toEqual([0x1003n, 0x1n]);
  });

  it('scalable root entry (9.2): LP/LCTP in lo for devfn 0..127, UP/UCTP in hi for 128..255', () => {
    expect(VtdEntry.scalableRoot({ lctp: 0x1000, uctp: 0x2000 })).toEqual([0x1001n, 0x2001n]);
    expect(VtdEntry.scalableRoot({ uctp: 0x2000 })).toEqual([0n, 0x2001n]);
  });

  it('legacy context entry (9.3): lo P 0, FPD 1, TT 3:2, SLPTPTR; hi AW 2:0, DID 23:8', () => {
    // lo = 0xabc000 | P 1 | FPD 2 | TT 2 << 2 = 8; hi = AW 2 | DID 0x1234 << 8.
    expect(VtdEntry.legacyContext({ slptptr: 0xabc000, fpd: true, tt: 2, aw: 2, did: 0x1234 })).toEqual([0xabc00bn, 0x12_3402n]);
    // Defaults: present, TT 0, AW 1 (3-level), DID 0.
    expect(VtdEntry.legacyContext({ slptptr: 0x5000 })).toEqual([0x5001n, 0x1n]);
  });

  it('scalable-mode context entry (9.4): val0 P, FPD, PASID directory; val1 RID_PASID 19:0; val2, val3 zero', () => {
    expect(VtdEntry.scalableContext({ pasidDir: 0x5000, ridPasid: 0x1_2345, fpd: true })).toEqual([0x5003n, 0x1_2345n, 0n, 0n]);
  });

  it('PASID directory entry (9.5) and PASID entry (9.6): AW 4:2, PGTT 8:6, DID in val1', () => {
    expect(VtdEntry.pasidDir({ table: 0x7000 })).toBe(0x7001n);
    expect(VtdEntry.pasidDir({ table: 0x7000, present: false, fpd: true })).toBe(0x7002n);
    // val0 = 0x8000 | P 1 | FPD 2 | AW 2 << 2 = 8 | PGTT 4 << 6 = 0x100.
    const e = VtdEntry.pasidEntry({ slptptr: 0x8000, aw: 2, pgtt: 4, did: 0xbeef, fpd: true });
    expect(e).toEqual([0x810bn, 0xbeefn, 0n, 0n, 0n, 0n, 0n, 0n]);
    // Default PGTT 2 (second level): 2 << 6 = 0x80, AW 1 << 2 = 4.
    expect(VtdEntry.pasidEntry({ slptptr: 0x9000 })[0]).toBe(0x9085n);
  });

  it('second-level paging entry (9.8): R 0, W 1, PS 7, address 63:12', () => {
    expect(VtdEntry.slpte({ r: true, w: true, ps: true, addr: 0x4020_0000 })).toBe(0x4020_0083n);
    expect(VtdEntry.slpte({ r: true, addr: 0x1234_5fffn })).toBe(0x1234_5001n);
    expect(VtdEntry.slpte({ w: true, extra: 1n << 62n })).toBe(0x4000_0000_0000_0002n);
  });
});

describe('VtdDescriptor: invalidation descriptors (vtd-facts §7)', () => {
  it('context-cache (type 1): G 5:4, DID 31:16, SID 47:32, FM 49:48', () => {
    expect(VtdDescriptor.contextGlobal()).toEqual([0x11n, 0n]);
    expect(VtdDescriptor.contextDomain(5)).toEqual([0x5_0021n, 0n]);
    expect(VtdDescriptor.contextDevice(5, 0x0120, 3)).toEqual([0x0003_0120_0005_0031n, 0n]);
  });

  it('IOTLB (type 2): G 5:4, DID 31:16; hi ADDR 63:12, IH 6, AM 5:0', () => {
    expect(VtdDescriptor.iotlbGlobal()).toEqual([0x12n, 0n]);
    expect(VtdDescriptor.iotlbDomain(7)).toEqual([0x7_0022n, 0n]);
    expect(VtdDescriptor.iotlbPage(7, 0x1234_5000n, 9, true)).toEqual([0x7_0032n, 0x1234_5049n]);
  });

  it('device-TLB (type 3), interrupt entry cache (type 4), wait (type 5)', () => {
    expect(VtdDescriptor.deviceIotlb(0x28, 0x3000n, true)).toEqual([0x28_0000_0003n, 0x3001n]);
    expect(VtdDescriptor.iec()).toEqual([0x4n, 0n]);
    expect(VtdDescriptor.iec(false, 9)).toEqual([0x9_0000_0014n, 0n]);
    // IF 4, SW 5, FN 6, status data 63:32; hi the status address.
    expect(VtdDescriptor.wait({ sw: true, iflag: true, fn: true, data: 0xdead, addr: 0x9000n })).toEqual([0xdead_0000_0075n, 0x9000n]);
  });
});

describe('VtdGuestTables: entries at the spec offsets', () => {
  it('places root, context, PASID directory and PASID entries where the hardware reads them', () => {
    const mem = ram();
    const t = new VtdGuestTables(mem, 0x10_0000);
    t.root(0x1000, 3, VtdEntry.root({ ctp: 0x2000 }));
    expect(u64(mem, 0x1000 + 3 * 16)).toBe(0x2001n); // bus * 16
    t.legacyContext(0x2000, 0x21, { slptptr: 0x3000, did: 2 });
    expect([u64(mem, 0x2000 + 0x21 * 16), u64(mem, 0x2000 + 0x21 * 16 + 8)]).toEqual([0x3001n, 0x201n]);
    t.scalableContext(0x4000, 0x85, { pasidDir: 0x5000 });
    expect(u64(mem, 0x4000 + 5 * 32)).toBe(0x5001n); // (devfn & 0x7f) * 32
    t.pasidDir(0x5000, 0x1c5, { table: 0x6000 });
    expect(u64(mem, 0x5000 + 7 * 8)).toBe(0x6001n); // (pasid >> 6) * 8
    t.pasidEntry(0x6000, 0x1c5, { slptptr: 0x7000, did: 3 });
    expect([u64(mem, 0x6000 + 5 * 64), u64(mem, 0x6000 + 5 * 64 + 8)]).toEqual([0x7085n, 3n]); // (pasid & 0x3f) * 64
  });

  it('hands out zeroed pages and refuses pages outside RAM', () => {
    const mem = ram();
    mem.writeU64(0x10_0008, 0xffn);
    const t = new VtdGuestTables(mem, 0x10_0000);
    expect(t.page()).toBe(0x10_0000);
    expect(u64(mem, 0x10_0008)).toBe(0n);
    expect(t.page()).toBe(0x10_1000);
    expect(() => new VtdGuestTables(mem, 0x1000_0000).page()).toThrow(/outside RAM/);
    const bounded = new VtdGuestTables(mem, 0x20_0000, 0x20_2000);
    expect(bounded.pagesLeft).toBe(2);
    bounded.page();
    bounded.page();
    expect(bounded.pagesLeft).toBe(0);
    expect(() => bounded.page()).toThrow(/no table page left/);
  });

  it('maps through one table per level, indexed by iova bits 12 + 9 (L - 1) up (4-level)', () => {
    const mem = ram();
    const t = new VtdGuestTables(mem, 0x10_0000);
    const top = t.page();
    // Slot 3 at level 4, 5 at level 3, 7 at level 2, 9 at level 1.
    const iova = (3n << 39n) | (5n << 30n) | (7n << 21n) | (9n << 12n);
    t.map(top, 4, iova, 0xabc_d000n, { w: false });
    const next = (table: number, slot: number): number => {
      const e = u64(mem, table + slot * 8);
      expect(e & 0xfffn).toBe(3n); // directories: R and W, no PS
      return Number(e & ~0xfffn);
    };
    const l1 = next(next(next(top, 3), 5), 7);
    expect(u64(mem, l1 + 9 * 8)).toBe(0xabc_d001n); // R only
    // Every other slot of the leaf table is empty.
    for (let i = 0; i < 512; i++) if (i !== 9) expect(u64(mem, l1 + i * 8)).toBe(0n);
  });

  it('writes large leaves with PS and replaces them with a table when a smaller leaf goes inside', () => {
    const mem = ram();
    const t = new VtdGuestTables(mem, 0x10_0000);
    const top = t.page();
    t.map(top, 3, 0x4000_0000n + 0x20_0000n, 0x80_0000n, { leafLevel: 2 });
    const l2 = Number(u64(mem, top + 1 * 8) & ~0xfffn);
    expect(u64(mem, l2 + 1 * 8)).toBe(0x80_0083n); // 2 MiB: R W PS
    t.map(top, 3, 0x4000_0000n + 0x20_0000n + 0x3000n, 0x9000n);
    const e = u64(mem, l2 + 1 * 8);
    expect(e & 0x83n).toBe(3n); // now a directory
    const l1 = Number(e & ~0xfffn);
    expect(u64(mem, l1 + 3 * 8)).toBe(0x9003n);
    expect(u64(mem, l1)).toBe(0n); // the old 2 MiB leaf is gone
    t.map(top, 3, 0x8000_0000n, 0x4000_0000n, { leafLevel: 3, r: true, w: false });
    expect(u64(mem, top + 2 * 8)).toBe(0x4000_0081n); // 1 GiB: R PS
  });

  it('unmaps a leaf, says when there is no path, refuses to cut inside a larger leaf', () => {
    const mem = ram();
    const t = new VtdGuestTables(mem, 0x10_0000);
    const top = t.page();
    t.map(top, 3, 0x5000n, 0x6000n);
    expect(t.unmap(top, 3, 0x5000n)).toBe(true);
    const l2 = Number(u64(mem, top) & ~0xfffn);
    const l1 = Number(u64(mem, l2) & ~0xfffn);
    expect(u64(mem, l1 + 5 * 8)).toBe(0n);
    expect(t.unmap(top, 3, 0x40_0000_0000n)).toBe(false);
    t.map(top, 3, 0x20_0000n, 0x20_0000n, { leafLevel: 2 });
    expect(() => t.unmap(top, 3, 0x20_1000n)).toThrow(/inside a larger leaf/);
  });
});

describe('VtdInvalidationQueue: descriptors at base + tail * 16, IQT = tail << 4 (vtd-facts §6)', () => {
  it('writes descriptors in order and moves the tail in one IQT write, wrapping at 256', () => {
    const mem = ram();
    const port = new RecordingPort();
    const q = new VtdInvalidationQueue(mem, port, 0x2_0000);
    q.submit(VtdDescriptor.iotlbGlobal(), VtdDescriptor.contextGlobal());
    expect([u64(mem, 0x2_0000), u64(mem, 0x2_0008), u64(mem, 0x2_0010)]).toEqual([0x12n, 0n, 0x11n]);
    expect(port.writes).toEqual([[0x88, 8, 0x20n]]);
    q.tail = 255;
    q.submit(VtdDescriptor.iec(), VtdDescriptor.iec());
    expect(u64(mem, 0x2_0000 + 255 * 16)).toBe(0x4n);
    expect(u64(mem, 0x2_0000)).toBe(0x4n);
    expect(port.writes[1]).toEqual([0x88, 8, 0x10n]);
  });

  it('enable() writes IQA then GCMD.QIE, keeping TE as GSTS reports it', () => {
    const port = new RecordingPort();
    port.mmioRead = (): bigint => 0x8000_0000n; // GSTS.TES
    new VtdInvalidationQueue(ram(), port, 0x2_0000).enable();
    expect(port.writes).toEqual([[0x90, 8, 0x2_0000n], [0x18, 4, 0x8400_0000n]]);
  });

  it('submitAndWait() appends a status-writing wait and throws when the unit did not complete it', () => {
    const mem = ram();
    const port = new RecordingPort();
    const q = new VtdInvalidationQueue(mem, port, 0x2_0000, 0x3_0000);
    expect(() => q.submitAndWait(VtdDescriptor.iotlbGlobal())).toThrow(/did not complete/);
    expect([u64(mem, 0x2_0010), u64(mem, 0x2_0018)]).toEqual([0x1_0000_0025n, 0x3_0000n]); // SW, data 1, status address
    // A real unit processes the queue and writes the status.
    const vtd = createIntelVtd({}, mem);
    const live = new VtdInvalidationQueue(mem, vtd, 0x2_0000, 0x3_0000);
    live.enable();
    live.submitAndWait(VtdDescriptor.iotlbGlobal());
    expect(mem.readU32(0x3_0000)).toBe(1);
    expect(vtd.mmioRead(VtdGuestReg.IQH, 8)).toBe(0x20n);
  });
});

describe('VtdGuest: a device domain the model translates', () => {
  for (const awBits of [39, 48] as const) {
    it(`aw ${awBits}: 4 KiB, 2 MiB and 1 GiB leaves translate; unmap + invalidate faults`, () => {
      const mem = ram();
      const vtd = createIntelVtd({ awBits, cachingMode: true }, mem);
      const guest = new VtdGuest(mem, vtd, { awBits, sid: 0x0108, did: 3 });
      guest.setup();
      expect(vtd.mmioRead(VtdGuestReg.GSTS, 4) & 0xc400_0000n).toBe(0xc400_0000n); // TES, RTPS, QIES
      guest.map(0x1000n, 0x7000n, 0x1000n, IOMMUAccessFlags.RW);
      guest.map(0x40_0000n, 0x80_0000n, 0x20_0000n, IOMMUAccessFlags.RO);
      guest.map(0x4000_0000n, 0x4000_0000n, 0x4000_0000n, IOMMUAccessFlags.WO);
      guest.invalidate(0n, 'domain');
      expect(vtd.translate(0x0108, 0x1234n, IOMMUAccessFlags.RW)).toMatchObject({ translatedAddr: 0x7000n, addrMask: 0xfffn, perm: 3 });
      expect(vtd.translate(0x0108, 0x45_6789n, IOMMUAccessFlags.RO)).toMatchObject({ translatedAddr: 0x80_0000n, addrMask: 0x1f_ffffn, perm: 1 });
      expect(vtd.translate(0x0108, 0x4000_1000n, IOMMUAccessFlags.WO)).toMatchObject({ translatedAddr: 0x4000_0000n, addrMask: 0x3fff_ffffn, perm: 2 });
      guest.unmap(0x1000n, 0x1000n);
      guest.invalidate(0x1000n, 0x1000n);
      expect(isFault(vtd.translate(0x0108, 0x1234n, IOMMUAccessFlags.RO))).toBe(true);
      guest.disableTranslation();
      expect(vtd.translate(0x0108, 0x1234n, IOMMUAccessFlags.RO)).toMatchObject({ translatedAddr: 0x1000n });
    });
  }

  it('is exported from the package root (conformance adapters of users import it from viommu)', () => {
    expect(root.VtdGuest).toBe(VtdGuest);
    expect(root.VtdGuestTables).toBe(VtdGuestTables);
    expect(root.VtdEntry).toBe(VtdEntry);
    expect(root.VtdDescriptor).toBe(VtdDescriptor);
    expect(root.VtdInvalidationQueue).toBe(VtdInvalidationQueue);
  });
});
