/**
 * Primary fault logging (VT-d spec 7.2.1, 11.4.9, 11.4.14): each fault reason
 * QEMU 7.2 reports, the fault recording register contents, same-sid
 * compression, overflow (PFO), fault processing disable, and the fault event
 * interrupt with its mask / pending rules (qemu-7.2-findings.md "Fault
 * recording", vtd-facts.md §8).
 */
import { isFault } from '../../../src/core/model';
import type { IOMMUFault } from '../../../src/core/model';
import { CONTEXT, REG, RO, ROOT, SID_A, SID_B, WO, bringUp, desc, makeBench } from './helpers/device';

const F = 1n << 63n;
const T = 1n << 62n;
const hiRecord = (f: { sid: number; reason: number; read: boolean; pv?: number; pp?: boolean }): bigint =>
  F | (f.read ? T : 0n) | (BigInt(f.pv ?? 0xffff) << 40n) | (f.pp ? 1n << 31n : 0n) | (BigInt(f.reason) << 32n) | BigInt(f.sid);

const fsts = (b: ReturnType<typeof makeBench>) => b.read(REG.FSTS);

function faultOf(r: ReturnType<ReturnType<typeof makeBench>['vtd']['translate']>): IOMMUFault {
  if (!isFault(r)) throw new Error('expected a fault');
  return r;
}

describe('fault reasons and the recorded fault', () => {
  it('not-present leaf: write -> 5 (T=0), read -> 6 (T=1); FI is the page address; PV=0xffff, PP=0', () => {
    const b = bringUp();
    const f = faultOf(b.vtd.translate(SID_A, 0x1234_5678n, WO));
    expect(f).toMatchObject({ reason: 5, recorded: true, sid: SID_A, iova: 0x1234_5678n });
    expect(b.read(REG.FRCD_LO, 8)).toBe(0x1234_5000n);
    expect(b.read(REG.FRCD_HI, 8)).toBe(hiRecord({ sid: SID_A, reason: 5, read: false }));
    expect(b.read(REG.FRCD_HI, 8)).toBe(0x80ffff0500000020n); // as captured from QEMU
    expect(fsts(b)).toBe(0x2n); // PPF, FRI 0
    b.write(REG.FRCD_HI + 4, 0x8000_0000n);
    faultOf(b.vtd.translate(SID_A, 0x9000n, RO));
    expect(b.read(REG.FRCD_HI, 8)).toBe(0xc0ffff0600000020n);
  });

  it('permission: read-only leaf -> 5 on write; write-only leaf -> 6 on read; AND over levels', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n, { w: false });
    b.map(SID_A, 0x2000n, 0x41_0000n, { r: false });
    expect(faultOf(b.vtd.translate(SID_A, 0x1000n, WO)).reason).toBe(5);
    b.write(REG.FRCD_HI, F, 8);
    expect(faultOf(b.vtd.translate(SID_A, 0x2000n, RO)).reason).toBe(6);
    expect(b.vtd.translate(SID_A, 0x2000n, WO)).toMatchObject({ translatedAddr: 0x41_0000n, perm: 2 });
  });

  it('IOVA beyond the address width -> 4', () => {
    const b = bringUp();
    expect(faultOf(b.vtd.translate(SID_A, 1n << 39n, RO)).reason).toBe(4);
  });

  it('reserved bits in a leaf -> 0xc; permission is checked before reserved bits', () => {
    const b = bringUp();
    b.map(SID_A, 0x3000n, 0x40_0000n, { extra: 1n << 11n }); // bit 11 reserved in a legacy leaf
    expect(faultOf(b.vtd.translate(SID_A, 0x3000n, RO)).reason).toBe(0xc);
    b.write(REG.FRCD_HI, F, 8);
    b.map(SID_A, 0x4000n, 0x40_0000n, { w: false, extra: 1n << 11n });
    expect(faultOf(b.vtd.translate(SID_A, 0x4000n, WO)).reason).toBe(5);
  });

  it('output in the interrupt range -> 0xe (legacy)', () => {
    const b = bringUp();
    b.map(SID_A, 0x5000n, 0xfee0_0000n);
    expect(faultOf(b.vtd.translate(SID_A, 0x5000n, RO)).reason).toBe(0xe);
  });

  it('context not present -> 2, root not present -> 1 (PV 0, PP 0)', () => {
    const b = bringUp();
    expect(faultOf(b.vtd.translate(0x30, 0x1000n, WO)).reason).toBe(2);
    expect(b.read(REG.FRCD_HI, 8)).toBe(hiRecord({ sid: 0x30, reason: 2, read: false, pv: 0 }));
    b.write(REG.FRCD_HI, F, 8);
    expect(faultOf(b.vtd.translate(0x0130, 0x1000n, RO)).reason).toBe(1);
    expect(b.read(REG.FRCD_HI, 8)).toBe(hiRecord({ sid: 0x130, reason: 1, read: true, pv: 0 }));
  });

  it.each([
    ['AW=0 (2-level)', { aw: 0 }, 3],
    ['AW=2 (4-level) with aw-bits=39', { aw: 2 }, 3],
    ['TT=3', { tt: 3 }, 3],
    ['TT=1 without device-iotlb', { tt: 1 }, 3],
  ])('invalid context (%s) -> %s', (_n, extra, reason) => {
    const b = makeBench({});
    b.device(SID_A, 1, extra);
    b.setRoot();
    b.enableTranslation();
    expect(faultOf(b.vtd.translate(SID_A, 0x1000n, RO)).reason).toBe(reason);
  });

  it('reserved bits: root entry -> 0xa, context entry -> 0xb', () => {
    const b = makeBench({});
    b.device(SID_A, 1);
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: b.slpt.get(SID_A)!, aw: 1, did: 1, extraHi: 1n << 7n });
    b.setRoot();
    b.enableTranslation();
    expect(faultOf(b.vtd.translate(SID_A, 0x1000n, RO)).reason).toBe(0xb);
    b.write(REG.FRCD_HI, F, 8);
    b.tables.root(ROOT, 1, [BigInt(CONTEXT) | 1n | (1n << 5n), 0n]);
    expect(faultOf(b.vtd.translate(0x100, 0x1000n, RO)).reason).toBe(0xa);
  });

  it('tables outside RAM: root table -> 8, second-level table -> 3 at the top level', () => {
    const b = makeBench({}, 0x100_0000);
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: 0xf_0000_0000, aw: 1, did: 1 });
    b.setRoot();
    b.enableTranslation();
    expect(faultOf(b.vtd.translate(SID_A, 0x1000n, RO)).reason).toBe(3);
    b.write(REG.FRCD_HI, F, 8);
    b.write(REG.RTADDR, 0x40_0000_0000n, 8);
    b.write(REG.GCMD, 0xc000_0000n);
    expect(faultOf(b.vtd.translate(SID_A, 0x1000n, RO)).reason).toBe(8);
  });
});

describe('recording rules', () => {
  it('same-sid compression: a second fault from a sid with a pending record is dropped silently', () => {
    const b = bringUp();
    faultOf(b.vtd.translate(SID_A, 0x1000n, WO));
    const second = faultOf(b.vtd.translate(SID_A, 0x7000n, RO));
    expect(second.recorded).toBe(false);
    expect(fsts(b)).toBe(0x2n);
    expect(b.read(REG.FRCD_LO, 8)).toBe(0x1000n);
  });

  it('a fault from another sid while the only record is full sets PFO; later faults are dropped', () => {
    const b = bringUp();
    b.write(REG.FECTL, 0n);
    faultOf(b.vtd.translate(SID_A, 0x1000n, WO));
    expect(faultOf(b.vtd.translate(SID_B, 0x2000n, WO)).recorded).toBe(false);
    expect(fsts(b)).toBe(0x3n);
    expect(b.msis).toHaveLength(1); // PFO raises no second event
    b.write(REG.FRCD_HI + 4, 0x8000_0000n); // clear F (32-bit write of the top dword)
    expect(fsts(b)).toBe(0x1n);
    expect(faultOf(b.vtd.translate(SID_B, 0x2000n, WO)).recorded).toBe(false); // PFO still set
    b.write(REG.FSTS, 0x1n);
    expect(fsts(b)).toBe(0n);
    expect(faultOf(b.vtd.translate(SID_B, 0x2000n, WO)).recorded).toBe(true);
    expect(b.read(REG.FRCD_HI, 8) & 0xffffn).toBe(BigInt(SID_B));
  });

  it('FPD suppresses qualified faults: the access fails, nothing is recorded', () => {
    const b = makeBench({});
    b.device(SID_A, 1, { fpd: true });
    b.setRoot();
    b.enableTranslation();
    const f = faultOf(b.vtd.translate(SID_A, 0x1000n, WO));
    expect(f).toMatchObject({ reason: 5, recorded: false });
    expect(fsts(b)).toBe(0n);
    expect(b.read(REG.FRCD_HI, 8)).toBe(0n);
  });

  it('FPD does not suppress context reserved-bit faults (0xb, not qualified)', () => {
    const b = makeBench({});
    b.device(SID_A, 1);
    b.tables.legacyContext(CONTEXT, SID_A, { slptptr: b.slpt.get(SID_A)!, aw: 1, did: 1, fpd: true, extraLo: 1n << 4n });
    b.setRoot();
    b.enableTranslation();
    expect(faultOf(b.vtd.translate(SID_A, 0x1000n, RO))).toMatchObject({ reason: 0xb, recorded: true });
  });

  it('fault events are emitted for every failed translation, recorded or not', () => {
    const b = bringUp();
    b.vtd.translate(SID_A, 0x1000n, WO);
    b.vtd.translate(SID_A, 0x2000n, WO);
    expect(b.faults.map((f) => f.recorded)).toEqual([true, false]);
  });

  it('FSTS.FRI names record 0, the only one (CAP.NFR = 0), also after TE was cycled', () => {
    const b = bringUp();
    faultOf(b.vtd.translate(SID_A, 0x1000n, WO));
    expect((fsts(b) >> 8n) & 0xffn).toBe(0n);
    b.write(REG.FRCD_HI, F, 8);
    b.write(REG.GCMD, 0x0400_0000n);
    b.write(REG.GCMD, 0x8400_0000n);
    faultOf(b.vtd.translate(SID_B, 0x1000n, WO));
    expect(fsts(b)).toBe(0x2n);
    expect(b.read(REG.FRCD_HI, 8) & 0xffffn).toBe(BigInt(SID_B));
  });
});

describe('fault event interrupt', () => {
  const armed = () => {
    const b = bringUp();
    b.write(REG.FEDATA, 0x4041n);
    b.write(REG.FEADDR, 0xfee0_0000n);
    return b;
  };

  it('unmasked: the first fault sends FEADDR/FEDATA and leaves IP clear', () => {
    const b = armed();
    b.write(REG.FECTL, 0n);
    b.vtd.translate(SID_A, 0x1000n, WO);
    expect(b.msis).toEqual([{ address: 0xfee0_0000n, data: 0x4041 }]);
    expect(b.read(REG.FECTL)).toBe(0n);
  });

  it('masked: IP is set and the message goes out when IM is cleared', () => {
    const b = armed();
    b.vtd.translate(SID_A, 0x1000n, WO);
    expect(b.msis).toEqual([]);
    expect(b.read(REG.FECTL)).toBe(0xc000_0000n);
    b.write(REG.FECTL, 0n);
    expect(b.msis).toEqual([{ address: 0xfee0_0000n, data: 0x4041 }]);
    expect(b.read(REG.FECTL)).toBe(0n);
  });

  it('no new event while PPF is still set', () => {
    const b = armed();
    b.write(REG.FECTL, 0n);
    b.vtd.translate(SID_A, 0x1000n, WO);
    b.vtd.translate(SID_B, 0x1000n, WO);
    expect(b.msis).toHaveLength(1);
  });

  it('a cleared record allows the next fault to interrupt again', () => {
    const b = armed();
    b.write(REG.FECTL, 0n);
    b.vtd.translate(SID_A, 0x1000n, WO);
    b.write(REG.FRCD_HI, F, 8);
    expect(fsts(b)).toBe(0n);
    b.vtd.translate(SID_A, 0x1000n, WO);
    expect(b.msis).toHaveLength(2);
  });

  it('clearing the status (PPF via F, then FSTS) while masked clears IP', () => {
    const b = armed();
    b.vtd.translate(SID_A, 0x1000n, WO);
    expect(b.read(REG.FECTL)).toBe(0xc000_0000n);
    b.write(REG.FRCD_HI, F, 8);
    b.write(REG.FSTS, 0n);
    expect(b.read(REG.FECTL)).toBe(0x8000_0000n);
    b.write(REG.FECTL, 0n);
    expect(b.msis).toEqual([]);
  });

  it('an invalidation queue error raises the fault event unless a fault is pending', () => {
    const b = armed();
    b.write(REG.FECTL, 0n);
    b.vtd.translate(SID_A, 0x1000n, WO);
    b.submit([0n, 0n]);
    expect(fsts(b)).toBe(0x12n);
    expect(b.msis).toHaveLength(1);
  });

  it('a wait descriptor interrupt does not use the fault event registers', () => {
    const b = armed();
    b.write(REG.FECTL, 0n);
    b.write(REG.IECTL, 0n);
    b.write(REG.IEADDR, 0xfee0_2000n);
    b.submit(desc.wait({ iflag: true }));
    expect(b.msis).toEqual([{ address: 0xfee0_2000n, data: 0 }]);
  });
});
