/**
 * Translation as the AMD IOMMU spec (48882) defines it, on tables built by
 * hand in RAM (expected addresses derived from the entry formats, not from
 * the model): levels 1-6, skip levels, NextLevel=7 and NextLevel=0 large
 * pages, the AND of IR/IW over the levels, DTE V/TV/Mode, the exclusion
 * range, and where the QEMU 7.2 profile differs (the shared findings).
 */
import { IOMMUAccessFlags } from '../../../src/core/access';
import { isFault } from '../../../src/core/model';
import type { IOMMUFault, TranslateResult } from '../../../src/core/model';
import type { IOMMUTLBEntry } from '../../../src/core/tlb-entry';
import { AmdGuest, EVTLOG, invPages, pte } from './guest';

const { RO, WO, RW } = IOMMUAccessFlags;
const SID = 0x20;

function ok(r: TranslateResult): IOMMUTLBEntry {
  if (isFault(r)) throw new Error(`expected a translation, got fault reason ${r.reason}`);
  return r;
}
function fault(r: TranslateResult): IOMMUFault {
  if (!isFault(r)) throw new Error(`expected a fault, got 0x${r.translatedAddr.toString(16)}`);
  return r;
}

/** An iova from its per-level indexes (level 1 first) and page offset. */
function iovaOf(idx: number[], off = 0): bigint {
  let v = BigInt(off);
  idx.forEach((i, k) => { v |= BigInt(i) << BigInt(12 + 9 * k); });
  return v;
}

/** The table the entry at `gpa` points to. */
function tableAt(g: AmdGuest, gpa: number): number {
  return Number(g.read64(gpa) & 0x000f_ffff_ffff_f000n);
}

/**
 * A chain of `levels` tables for `iova`, the leaf at level `leafLevel`
 * (NextLevel 0) pointing at `target`; directory permissions `dirPerm`.
 */
function chain(g: AmdGuest, levels: number, idx: number[], target: number, leafPerm = 3, dirPerm = 3, leafLevel = 1): number {
  const root = g.alloc();
  let table = root;
  for (let l = levels; l > leafLevel; l--) {
    const next = g.alloc();
    g.write64(table + idx[l - 1]! * 8, pte(next, l - 1, dirPerm));
    table = next;
  }
  g.write64(table + idx[leafLevel - 1]! * 8, pte(target, 0, leafPerm));
  return root;
}

describe('spec profile', () => {
  test('a 3-level walk: each level indexed by its 9 iova bits', () => {
    const g = new AmdGuest();
    const idx = [0x77, 0x1a3, 5];
    g.setDte(SID, { mode: 3, root: chain(g, 3, idx, 0x345_6000), domid: 1 });
    g.bringUp();
    const e = ok(g.iommu.translate(SID, iovaOf(idx, 0x123), RO));
    expect(e.translatedAddr).toBe(0x345_6000n);
    expect(e.addrMask).toBe(0xfffn);
    expect(e.perm).toBe(RW);
    const w = g.iommu.dmaWrite(SID, iovaOf(idx, 0x123), Uint8Array.of(0xde, 0xad));
    expect(w.faulted).toBe(false);
    const landed = new Uint8Array(2);
    g.ram.read(0x345_6123, landed);
    expect([...landed]).toEqual([0xde, 0xad]);
  });

  test.each([1, 2, 3, 4, 5, 6])('Mode %i: a 4 KiB leaf at the bottom of the walk', (mode) => {
    const g = new AmdGuest();
    const idx = [0x1ff, 0x101, 0x0aa, 0x055, 0x1c3, 0x07f].slice(0, mode);
    g.setDte(SID, { mode, root: chain(g, mode, idx, 0x77_7000), domid: 2 });
    g.bringUp();
    expect(ok(g.iommu.translate(SID, iovaOf(idx, 0xfff), WO)).translatedAddr).toBe(0x77_7000n);
    // An iova bit above the Mode's 12 + 9 Mode bits: IO_PAGE_FAULT (spec), no translation.
    if (mode < 6) expect(fault(g.iommu.translate(SID, iovaOf(idx) | (1n << BigInt(12 + 9 * mode)), RO)).reason).toBe(2);
  });

  test('NextLevel 0 above level 1 maps 2 MiB and 1 GiB pages', () => {
    const g = new AmdGuest();
    const root = g.alloc();
    const l3 = g.alloc();
    g.write64(root + 1 * 8, pte(l3, 3));
    g.write64(l3 + 2 * 8, pte(0x4000_0000, 0)); // level-3 leaf: 1 GiB at iova 2 GiB of the 512 GiB slot 1
    const l2 = g.alloc();
    g.write64(l3 + 3 * 8, pte(l2, 2));
    g.write64(l2 + 7 * 8, pte(0x60_0000, 0)); // level-2 leaf: 2 MiB
    g.setDte(SID, { mode: 4, root, domid: 3 });
    g.bringUp();
    const slot1 = 1n << 39n;
    const big = ok(g.iommu.translate(SID, slot1 | (2n << 30n) | 0x1234_5678n, RO));
    expect([big.translatedAddr, big.addrMask]).toEqual([0x4000_0000n, (1n << 30n) - 1n]);
    const mid = ok(g.iommu.translate(SID, slot1 | (3n << 30n) | (7n << 21n) | 0x1_2345n, RO));
    expect([mid.translatedAddr, mid.addrMask]).toEqual([0x60_0000n, 0x1f_ffffn]);
  });

  test('NextLevel 7 encodes the page size by the first zero address bit from bit 12 (replicated entries)', () => {
    const g = new AmdGuest();
    const idx = [0, 0, 0];
    const root = chain(g, 3, idx, 0);
    const l1 = tableAt(g, tableAt(g, root));
    // 16 KiB page at iova 0x4000 -> 0x88_0000: address bits 12 = 1, 13 = 0; four replicated entries.
    for (let i = 4; i < 8; i++) g.write64(l1 + i * 8, pte(0x88_0000 | 0x1000, 7));
    // 8 KiB page at iova 0x8000 -> 0x99_0000: address bit 12 = 0; two entries.
    for (let i = 8; i < 10; i++) g.write64(l1 + i * 8, pte(0x99_0000, 7));
    g.setDte(SID, { mode: 3, root, domid: 4 });
    g.bringUp();
    const a = ok(g.iommu.translate(SID, 0x6abcn, RO));
    expect([a.translatedAddr, a.addrMask]).toEqual([0x88_0000n, 0x3fffn]);
    const b = ok(g.iommu.translate(SID, 0x9010n, RO));
    expect([b.translatedAddr, b.addrMask]).toEqual([0x99_0000n, 0x1fffn]);
    // A NextLevel 7 size that is not above the level's own page (a 4 KiB "large" page at level 2 would be 2^13 < 2 MiB): fault.
    const l2 = tableAt(g, root);
    g.write64(l2 + 1 * 8, pte(0xa0_0000, 7));
    expect(fault(g.iommu.translate(SID, 1n << 21n, RO)).reason).toBe(2);
  });

  test('skip levels: a directory entry whose NextLevel skips levels; the skipped iova bits must be zero', () => {
    const g = new AmdGuest();
    const root = g.alloc();
    const l1 = g.alloc();
    g.write64(root + 3 * 8, pte(l1, 1)); // level 4 -> level 1: levels 3 and 2 skipped
    g.write64(l1 + 9 * 8, pte(0x12_3000, 0));
    g.setDte(SID, { mode: 4, root, domid: 5 });
    g.bringUp();
    const iova = (3n << 39n) | (9n << 12n);
    expect(ok(g.iommu.translate(SID, iova, RO)).translatedAddr).toBe(0x12_3000n);
    // A level-2 index bit set: the spec faults (QEMU 7.2 ignores it, see below).
    expect(fault(g.iommu.translate(SID, iova | (1n << 21n), RO)).reason).toBe(2);
    // A NextLevel that does not go down (level 4 entry naming level 4): fault, no loop.
    g.write64(root + 4 * 8, pte(root, 4));
    expect(fault(g.iommu.translate(SID, 4n << 39n, RO)).reason).toBe(2);
  });

  test('permissions are the AND of IR/IW over the DTE and every level', () => {
    const g = new AmdGuest();
    const idx = [1, 2, 3];
    // Directory entries read-only, leaf read-write.
    g.setDte(SID, { mode: 3, root: chain(g, 3, idx, 0x50_0000, 3, 1), domid: 6 });
    // DTE write-only over a read-write chain.
    g.setDte(0x28, { mode: 3, root: chain(g, 3, idx, 0x51_0000), perm: 2, domid: 6 });
    g.bringUp();
    const iova = iovaOf(idx);
    expect(ok(g.iommu.translate(SID, iova, RO)).perm).toBe(RO);
    const f = fault(g.iommu.translate(SID, iova, WO));
    expect([f.reason, f.recorded]).toEqual([2, true]);
    expect(ok(g.iommu.translate(0x28, iova, WO)).perm).toBe(WO);
    expect(fault(g.iommu.translate(0x28, iova, RO)).reason).toBe(2);
    // A cached translation still enforces the AND: the write after a read fill faults again.
    expect(fault(g.iommu.translate(SID, iova, WO)).reason).toBe(2);
  });

  test('an IO_PAGE_FAULT entry in the event log (DeviceID, DomainID, flags, code, address)', () => {
    const g = new AmdGuest();
    g.setDte(SID, { mode: 3, root: g.alloc(), domid: 0x1234 });
    g.bringUp();
    const iova = 0x7_6543_2000n;
    expect(g.iommu.dmaWrite(SID, iova | 0x10n, Uint8Array.of(1)).faulted).toBe(true);
    // Spec "IO_PAGE_FAULT Event": code 2 in bits 63:60, RW (write, flag bit 5 -> bit 53), PR = 0 (not present),
    // DomainID in bits 47:32, DeviceID in 15:0; the iova in the second quadword.
    expect(g.read64(EVTLOG)).toBe((2n << 60n) | (1n << 53n) | (0x1234n << 32n) | 0x20n);
    expect(g.read64(EVTLOG + 8)).toBe(iova | 0x10n);
    expect(g.iommu.mmioRead(0x2018, 8)).toBe(0x10n); // EVT_TAIL moved one entry
  });

  test('DTE: V=0 untranslated RW; TV=0 and Mode 0 untranslated with IR/IW; Mode 7 and reserved bits: ILLEGAL_DEV_TABLE_ENTRY', () => {
    const g = new AmdGuest();
    g.setDte(1, { v: false, perm: 0 });
    g.setDte(2, { tv: false, perm: 1 });
    g.setDte(3, { mode: 0, perm: 2 });
    g.setDte(4, { mode: 7 });
    g.setDte(5, { mode: 0, q0: 1n << 63n }); // reserved bit 63
    g.bringUp();
    const a = 0x123_4567n;
    expect(ok(g.iommu.translate(1, a, RW))).toMatchObject({ translatedAddr: 0x123_4000n, perm: RW });
    expect(ok(g.iommu.translate(2, a, RO)).perm).toBe(RO);
    expect(fault(g.iommu.translate(2, a, WO)).reason).toBe(2);
    expect(ok(g.iommu.translate(3, a, WO)).translatedAddr).toBe(0x123_4000n);
    expect(fault(g.iommu.translate(4, a, RO)).reason).toBe(1);
    expect(fault(g.iommu.translate(5, a, RO)).reason).toBe(1);
    // The second logged event (after the TV=0 write fault) is the Mode 7 one: code 1, RZ (flag bit 7 -> bit 55).
    expect(g.read64(EVTLOG + 16) >> 60n).toBe(1n);
    expect((g.read64(EVTLOG + 16) >> 55n) & 1n).toBe(1n);
  });

  test('IommuEn clear: everything untranslated; the interrupt window is never translated (write-only)', () => {
    const g = new AmdGuest();
    g.setDte(SID, { mode: 3, root: g.alloc(), domid: 1 });
    expect(ok(g.iommu.translate(SID, 0x5000n, RW)).translatedAddr).toBe(0x5000n);
    g.bringUp();
    expect(isFault(g.iommu.translate(SID, 0x5000n, RO))).toBe(true);
    expect(ok(g.iommu.translate(SID, 0xfee0_0010n, WO))).toMatchObject({ translatedAddr: 0xfee0_0000n, perm: WO });
  });

  test('exclusion range: with ExEn and Allow, [base, limit] is untranslated for every device', () => {
    const g = new AmdGuest();
    g.setDte(SID, { mode: 3, root: g.alloc(), domid: 1 });
    g.bringUp();
    g.iommu.mmioWrite(0x20, 8, 0x40_0000n | 3n);
    g.iommu.mmioWrite(0x28, 8, 0x40_f000n);
    expect(ok(g.iommu.translate(SID, 0x40_fff8n, WO)).translatedAddr).toBe(0x40_f000n);
    expect(isFault(g.iommu.translate(SID, 0x41_0000n, WO))).toBe(true);
    // ExEn without Allow: only devices whose DTE has EX.
    g.iommu.mmioWrite(0x20, 8, 0x40_0000n | 1n);
    expect(isFault(g.iommu.translate(SID, 0x40_1000n, WO))).toBe(true);
  });

  test('INVALIDATE_IOMMU_PAGES drops the cached pages of its DomainID inside the S-encoded range only', () => {
    const g = new AmdGuest();
    const idx = [0x10, 0, 0];
    const root = chain(g, 3, idx, 0x30_0000);
    g.setDte(SID, { mode: 3, root, domid: 9 });
    g.bringUp();
    const iova = iovaOf(idx);
    expect(ok(g.iommu.translate(SID, iova, RO)).translatedAddr).toBe(0x30_0000n);
    const l1 = tableAt(g, tableAt(g, root));
    g.write64(l1 + 0x10 * 8, pte(0x31_0000, 0));
    // Another domain, then a 64 KiB range next to the page: the cached translation stays.
    expect(g.run(invPages(8, iova, 0x1_0000n))).toBe(true);
    expect(g.run(invPages(9, iova + 0x1_0000n, 0x1_0000n))).toBe(true);
    expect(ok(g.iommu.translate(SID, iova, RO)).translatedAddr).toBe(0x30_0000n);
    // A 64 KiB range containing it (S=1, address bits 12..14 one): the new translation.
    expect(g.run(invPages(9, iova, 0x1_0000n))).toBe(true);
    expect(ok(g.iommu.translate(SID, iova, RO)).translatedAddr).toBe(0x31_0000n);
  });
});

describe('qemu-7.2 profile (shared findings "Page walk", "IOTLB")', () => {
  test('skipped-level and above-Mode iova bits are ignored; a leaf with PR=0 translates', () => {
    const g = new AmdGuest({ profile: 'qemu-7.2' });
    const root = g.alloc();
    const l1 = g.alloc();
    g.write64(root + 3 * 8, pte(l1, 1));
    g.write64(l1 + 9 * 8, pte(0x12_3000, 0, 3, false));
    g.setDte(SID, { mode: 4, root, domid: 5 });
    g.bringUp();
    const iova = (3n << 39n) | (9n << 12n);
    expect(ok(g.iommu.translate(SID, iova, RO)).translatedAddr).toBe(0x12_3000n);
    expect(ok(g.iommu.translate(SID, iova | (1n << 21n), RO)).translatedAddr).toBe(0x12_3000n);
    expect(ok(g.iommu.translate(SID, iova | (1n << 49n), RO)).translatedAddr).toBe(0x12_3000n);
  });

  test('the leaf IR/IW is the result; a hit grants it even where a directory entry denied the access', () => {
    const g = new AmdGuest({ profile: 'qemu-7.2' });
    const idx = [1, 2, 3];
    g.setDte(SID, { mode: 3, root: chain(g, 3, idx, 0x50_0000, 3, 1), domid: 6 });
    g.bringUp();
    const iova = iovaOf(idx);
    expect(isFault(g.iommu.translate(SID, iova, WO))).toBe(true); // directory entry without IW: walk fault
    expect(ok(g.iommu.translate(SID, iova, RO)).perm).toBe(RW); // read walks and caches the leaf's RW
    expect(ok(g.iommu.translate(SID, iova, WO)).perm).toBe(RW); // IOTLB hit: the write passes
    expect(g.read64(EVTLOG)).toBe(0n); // no event log in 7.2
  });
});
