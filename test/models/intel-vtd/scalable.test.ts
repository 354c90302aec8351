/**
 * Scalable mode (x-scalable-mode=on, RTADDR.TTM = 01b): translation through
 * the RID_PASID's PASID entry, the fault record PASID fields, and what QEMU
 * 7.2 caches (the context entry; the PASID entry is read on every
 * translation that misses the IOTLB), per qemu-7.2-findings.md and
 * vtd-facts.md §4.3-4.4.
 */
import { isFault } from '../../../src/core/model';
import { CONTEXT, GCMD, REG, RO, ROOT, SID_A, WO, desc, makeBench } from './helpers/device';

function scalableBench() {
  const b = makeBench({ scalableMode: true, cachingMode: true });
  const dir = b.tables.page();
  const pasidTable = b.tables.page();
  const slpt = b.tables.page();
  b.slpt.set(SID_A, slpt);
  b.tables.root(ROOT, 0, [BigInt(CONTEXT) | 1n, 0n]);
  b.tables.scalableContext(CONTEXT, SID_A, { pasidDir: dir, ridPasid: 0 });
  b.tables.pasidDir(dir, 0, { table: pasidTable });
  b.tables.pasidEntry(pasidTable, 0, { aw: 1, pgtt: 2, slptptr: slpt, did: 3 });
  b.write(REG.RTADDR, BigInt(ROOT) | (1n << 10n), 8);
  b.write(REG.GCMD, GCMD.SRTP);
  b.enableQueue();
  b.enableTranslation();
  return { b, dir, pasidTable };
}

describe('scalable mode', () => {
  it('translates through the RID_PASID entry', () => {
    const { b } = scalableBench();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ iova: 0x1000n, translatedAddr: 0x40_0000n, perm: 3 });
  });

  it('a walk fault records PP=1 and PV = the RID_PASID (0)', () => {
    const { b } = scalableBench();
    expect(b.vtd.translate(SID_A, 0x9000n, WO)).toMatchObject({ fault: true, reason: 5 });
    expect(b.read(REG.FRCD_HI, 8)).toBe(0x8000_0005_8000_0020n);
  });

  it('an invalid PASID entry gives 0x58, recorded without PASID (PP=0, PV=0)', () => {
    const { b, pasidTable } = scalableBench();
    b.tables.pasidEntry(pasidTable, 0, { present: false });
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ fault: true, reason: 0x58 });
    expect(b.read(REG.FRCD_HI, 8)).toBe(0xc000_0058_0000_0020n);
  });

  it('a PASID entry change is seen after an IOTLB flush alone (QEMU re-reads the PASID entry)', () => {
    const { b, pasidTable } = scalableBench();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.vtd.translate(SID_A, 0x1000n, RO);
    const other = b.tables.page();
    b.tables.map(other, 3, 0x1000n, 0x50_0000n);
    b.tables.pasidEntry(pasidTable, 0, { aw: 1, pgtt: 2, slptptr: other, did: 3 });
    b.submit([0x7n, 0n], desc.iotlbGlobal()); // PASID-cache invalidation (a no-op in 7.2), then the IOTLB
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x50_0000n });
  });

  it('the context entry itself stays cached until a context-cache invalidation', () => {
    const { b } = scalableBench();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.vtd.translate(SID_A, 0x1000n, RO);
    b.tables.scalableContext(CONTEXT, SID_A, { present: false });
    b.submit(desc.iotlbGlobal());
    expect(isFault(b.vtd.translate(SID_A, 0x1000n, RO))).toBe(false);
    b.submit(desc.contextGlobal());
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ fault: true, reason: 2 });
  });

  it('RTADDR.TTM is ignored without scalable mode (legacy root table)', () => {
    const b = makeBench({ cachingMode: true });
    b.device(SID_A, 1);
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.write(REG.RTADDR, BigInt(ROOT) | (1n << 10n), 8);
    b.write(REG.GCMD, GCMD.SRTP);
    b.enableTranslation();
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x40_0000n });
  });
});
