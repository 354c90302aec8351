/**
 * The register file: reset values, writable / read-only / write-1-to-clear /
 * write-only bits, 64-bit registers written as two halves, GCMD commands and
 * their GSTS bits, and configuration validation. Expected values come from
 * the VT-d specification chapter 11 and QEMU 7.2's observed values
 * (qemu-7.2-findings.md "Identification registers").
 */
import * as fc from 'fast-check';
import { createIntelVtd, VtdConfigError } from '../../../src/models/intel-vtd';
import { SparseRam } from '../../../src/memory/sparse-ram';
import { GCMD, REG, ROOT, makeBench } from './helpers/device';

const ram = (): SparseRam => new SparseRam([{ base: 0n, size: 0x100_0000n }]);

describe('identification registers', () => {
  it('VER reads 0x10 (version 1.0)', () => {
    expect(makeBench().read(REG.VER)).toBe(0x10n);
  });

  it.each([
    [{ awBits: 39 as const, cachingMode: true }, 0xd2008c22260286n],
    [{ awBits: 39 as const, cachingMode: false }, 0xd2008c22260206n],
    [{ awBits: 48 as const, cachingMode: true }, 0xd2008c222f0686n],
    [{ awBits: 48 as const, cachingMode: false }, 0xd2008c222f0606n],
    [{ awBits: 39 as const, scalableMode: true }, 0xd2008c22260206n],
  ])('CAP for %j is %s', (cfg, cap) => {
    const b = makeBench(cfg);
    expect(b.read(REG.CAP, 8)).toBe(cap);
    // 32-bit halves of the same register.
    expect(b.read(REG.CAP, 4)).toBe(cap & 0xffff_ffffn);
    expect(b.read(REG.CAP + 4, 4)).toBe(cap >> 32n);
  });

  it.each([
    [{}, 0xf42n],
    [{ scalableMode: true }, 0x4800_8000_0f42n],
    [{ deviceIotlb: true }, 0xf46n],
    [{ interruptRemapping: true }, 0xf0_0f4an],
    [{ passThrough: false }, 0xf02n],
  ])('ECAP for %j is %s', (cfg, ecap) => {
    expect(makeBench(cfg).read(REG.ECAP, 8)).toBe(ecap);
  });

  it('CAP and ECAP are read-only', () => {
    const b = makeBench();
    const cap = b.read(REG.CAP, 8);
    b.write(REG.CAP, 0n, 8);
    b.write(REG.ECAP, 0xffff_ffffn);
    expect(b.read(REG.CAP, 8)).toBe(cap);
    expect(b.read(REG.ECAP, 8)).toBe(0xf42n);
  });
});

describe('reset values', () => {
  it.each([
    [REG.GCMD, 0n], [REG.GSTS, 0n], [REG.FSTS, 0n], [REG.FECTL, 0x8000_0000n], [REG.FEDATA, 0n],
    [REG.FEADDR, 0n], [REG.FEUADDR, 0n], [REG.ICS, 0n], [REG.IECTL, 0x8000_0000n], [REG.IEDATA, 0n],
    [REG.IEADDR, 0n], [REG.IEUADDR, 0n], [REG.PMEN, 0n],
  ])('32-bit register 0x%s resets to %s', (off, v) => {
    expect(makeBench().read(off)).toBe(v);
  });

  it.each([REG.RTADDR, REG.CCMD, REG.IQH, REG.IQT, REG.IQA, REG.IQERCD, REG.IRTA, REG.IVA, REG.IOTLB, REG.FRCD_LO, REG.FRCD_HI])(
    '64-bit register 0x%s resets to 0',
    (off) => {
      expect(makeBench().read(off, 8)).toBe(0n);
    },
  );

  it('reset() brings written registers back to their reset values', () => {
    const b = makeBench();
    b.write(REG.FEDATA, 0x1234n);
    b.write(REG.FECTL, 0n);
    b.setRoot();
    b.vtd.reset();
    expect(b.read(REG.FEDATA)).toBe(0n);
    expect(b.read(REG.FECTL)).toBe(0x8000_0000n);
    expect(b.read(REG.GSTS)).toBe(0n);
    expect(b.read(REG.RTADDR, 8)).toBe(0n);
  });
});

describe('writable masks', () => {
  it('FEDATA keeps bits 15:0 only, FEADDR bits 31:2, IEDATA all, IEADDR bits 31:2', () => {
    const b = makeBench();
    b.write(REG.FEDATA, 0xffff_ffffn);
    b.write(REG.FEADDR, 0xffff_ffffn);
    b.write(REG.IEDATA, 0xffff_ffffn);
    b.write(REG.IEADDR, 0xffff_ffffn);
    expect(b.read(REG.FEDATA)).toBe(0xffffn);
    expect(b.read(REG.FEADDR)).toBe(0xffff_fffcn);
    expect(b.read(REG.IEDATA)).toBe(0xffff_ffffn);
    expect(b.read(REG.IEADDR)).toBe(0xffff_fffcn);
  });

  it('FEUADDR, IEUADDR and PMEN are read-only zero (no EIM, no PLMR/PHMR)', () => {
    const b = makeBench();
    for (const r of [REG.FEUADDR, REG.IEUADDR, REG.PMEN]) {
      b.write(r, 0xffff_ffffn);
      expect(b.read(r)).toBe(0n);
    }
  });

  it('FECTL and IECTL: only IM is writable, IP is read-only', () => {
    const b = makeBench();
    b.write(REG.FECTL, 0x4000_0000n);
    expect(b.read(REG.FECTL)).toBe(0n);
    b.write(REG.IECTL, 0xffff_ffffn);
    expect(b.read(REG.IECTL)).toBe(0x8000_0000n);
  });

  it('RTADDR keeps bits 63:10 (TTM included)', () => {
    const b = makeBench();
    b.write(REG.RTADDR, 0xffff_ffff_ffff_ffffn, 8);
    expect(b.read(REG.RTADDR, 8)).toBe(0xffff_ffff_ffff_fc00n);
  });

  it('IQT keeps QT (bits 18:4) and IQA bits 63:12, 11 and 2:0', () => {
    const b = makeBench();
    b.write(REG.IQT, 0xffff_ffffn, 4);
    expect(b.read(REG.IQT, 8)).toBe(0x7fff0n);
    b.write(REG.IRTA, 0xffff_ffff_ffff_ffffn, 8);
    expect(b.read(REG.IRTA, 8)).toBe(0xffff_ffff_ffff_f80fn);
  });

  it('GSTS, IQH and FRCD are read-only to the guest', () => {
    const b = makeBench();
    b.write(REG.GSTS, 0xffff_ffffn);
    b.write(REG.IQH, 0x7fff0n, 8);
    b.write(REG.FRCD_LO, 0xffff_f000n, 8);
    b.write(REG.FRCD_HI, 0x7fff_ffff_ffff_ffffn, 8);
    expect(b.read(REG.GSTS)).toBe(0n);
    expect(b.read(REG.IQH, 8)).toBe(0n);
    expect(b.read(REG.FRCD_LO, 8)).toBe(0n);
    expect(b.read(REG.FRCD_HI, 8)).toBe(0n);
  });
});

describe('write-only bits', () => {
  it('GCMD always reads 0', () => {
    const b = makeBench();
    b.write(REG.GCMD, GCMD.SRTP);
    expect(b.read(REG.GCMD)).toBe(0n);
  });

  it('CCMD SID and FM (bits 33:16) read as 0; DID stays', () => {
    const b = makeBench();
    b.write(REG.CCMD, (3n << 32n) | (0xabcdn << 16n) | 0x5n, 8); // ICC clear: only stored
    expect(b.read(REG.CCMD, 8)).toBe(0x5n);
  });

  it('IVA reads as 0', () => {
    const b = makeBench();
    b.write(REG.IVA, 0x1234_5000n | 0x45n, 8);
    expect(b.read(REG.IVA, 8)).toBe(0n);
  });
});

describe('64-bit registers as two 32-bit halves', () => {
  it('RTADDR written low then high is latched whole by SRTP', () => {
    const b = makeBench();
    b.write(REG.RTADDR, BigInt(ROOT), 4);
    b.write(REG.RTADDR + 4, 0n, 4);
    expect(b.read(REG.RTADDR, 8)).toBe(BigInt(ROOT));
    b.write(REG.RTADDR + 4, 0x1n, 4);
    expect(b.read(REG.RTADDR, 8)).toBe((1n << 32n) | BigInt(ROOT));
    expect(b.read(REG.RTADDR + 4, 4)).toBe(1n);
  });

  it('IQA reads the base latched at QIE enable plus the live QS (QEMU 7.2)', () => {
    const b = makeBench();
    b.write(REG.IQA, 0x20_0000n | 0x1n, 8);
    expect(b.read(REG.IQA, 8)).toBe(0x1n);
    b.write(REG.GCMD, GCMD.QIE);
    expect(b.read(REG.IQA, 8)).toBe(0x20_0001n);
    b.write(REG.IQA, 0x30_0000n, 4);
    expect(b.read(REG.IQA, 8)).toBe(0x20_0000n);
  });

  it('a CCMD low-dword write is only stored; the high-dword write acts', () => {
    const b = makeBench();
    b.write(REG.CCMD, 0x1n, 4);
    b.write(REG.CCMD + 4, 0xa000_0000n, 4); // ICC | CIRG=1 (global)
    // ICC cleared, CIRG kept, CAIG = 1 (global).
    expect(b.read(REG.CCMD, 8)).toBe(0x2800_0000_0000_0001n);
  });

  it('an 8-byte write to a 32-bit-only register acts as two 32-bit writes (QEMU would abort)', () => {
    const b = makeBench();
    b.write(REG.FEDATA, 0x1234n | (0xfee0_0000n << 32n), 8); // FEDATA and FEADDR
    expect(b.read(REG.FEDATA)).toBe(0x1234n);
    expect(b.read(REG.FEADDR)).toBe(0xfee0_0000n);
  });

  it('accesses past the register block (0x230 bytes) read 0, as unassigned memory in QEMU, and are reported, never thrown', () => {
    const b = makeBench();
    expect(b.read(0x230)).toBe(0n);
    expect(b.read(0xffc)).toBe(0n);
    expect(b.read(0x22c, 8)).toBe(0n);
    expect(() => b.write(0x1000, 1n)).not.toThrow();
    expect(b.guestErrors.length).toBe(4);
  });
});

describe('GCMD commands and GSTS', () => {
  it('SRTP sets RTPS and it stays set; QIE and TE follow their command bits', () => {
    const b = makeBench();
    b.write(REG.RTADDR, BigInt(ROOT), 8);
    b.write(REG.GCMD, GCMD.SRTP);
    expect(b.read(REG.GSTS)).toBe(0x4000_0000n);
    b.write(REG.IQA, 0x20_0000n, 8);
    b.write(REG.GCMD, GCMD.QIE);
    expect(b.read(REG.GSTS)).toBe(0x4400_0000n);
    b.write(REG.GCMD, GCMD.QIE | GCMD.TE);
    expect(b.read(REG.GSTS)).toBe(0xc400_0000n);
    b.write(REG.GCMD, GCMD.QIE);
    expect(b.read(REG.GSTS)).toBe(0x4400_0000n);
  });

  it('WBF, SFL, EAFL and CFI are ignored: no status bit', () => {
    const b = makeBench({ interruptRemapping: true });
    b.write(REG.GCMD, GCMD.WBF | GCMD.SFL | GCMD.EAFL | GCMD.CFI);
    expect(b.read(REG.GSTS)).toBe(0n);
  });

  it('SIRTP sets IRTPS; IRE sets IRES only with interrupt remapping', () => {
    const ir = makeBench({ interruptRemapping: true });
    ir.write(REG.IRTA, 0x12_0000fn, 8);
    ir.write(REG.GCMD, GCMD.SIRTP);
    expect(ir.read(REG.GSTS)).toBe(0x0100_0000n);
    ir.write(REG.GCMD, GCMD.IRE);
    expect(ir.read(REG.GSTS)).toBe(0x0300_0000n);
    ir.write(REG.GCMD, 0n);
    expect(ir.read(REG.GSTS)).toBe(0x0100_0000n);
    const noIr = makeBench({});
    noIr.write(REG.GCMD, GCMD.IRE);
    expect(noIr.read(REG.GSTS)).toBe(0n);
  });

  it('QIE cannot be disabled before a wait descriptor ends an empty queue', () => {
    const b = makeBench();
    b.write(REG.IQA, 0x20_0000n, 8);
    b.write(REG.GCMD, GCMD.QIE);
    b.write(REG.GCMD, 0n);
    expect(b.read(REG.GSTS)).toBe(0x0400_0000n); // refused: nothing processed yet
  });
});

describe('configuration', () => {
  it('defaults: aw 39, caching mode off, pass-through on', () => {
    const vtd = createIntelVtd({}, ram());
    expect(vtd.config).toEqual({ awBits: 39, cachingMode: false, scalableMode: false, deviceIotlb: false, interruptRemapping: false, passThrough: true });
    expect(vtd.kind).toBe('intel-vtd');
  });

  it.each([
    [{ awBits: 40 }, /awBits must be 39 or 48/],
    [{ awBits: 57 }, /awBits must be 39 or 48/],
    [{ cachingMode: 'yes' }, /cachingMode must be a boolean/],
    [{ snoopControl: true }, /unknown option 'snoopControl'/],
  ])('refuses %j', (cfg, message) => {
    expect(() => createIntelVtd(cfg as never, ram())).toThrow(VtdConfigError);
    expect(() => createIntelVtd(cfg as never, ram())).toThrow(message);
  });
});

describe('property: a 64-bit write equals its two 32-bit halves', () => {
  it.each([REG.RTADDR, REG.IRTA, REG.IQA, REG.CCMD, REG.FEDATA])('register 0x%s', (off) => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => {
      // CCMD: keep ICC clear so the write is only stored.
      const value = off === REG.CCMD ? v & ~(1n << 63n) : v;
      const whole = makeBench();
      const halves = makeBench();
      whole.write(off, value, 8);
      halves.write(off, value & 0xffff_ffffn, 4);
      halves.write(off + 4, value >> 32n, 4);
      return whole.read(off, 8) === halves.read(off, 8) && whole.read(off + 4, 4) === halves.read(off + 4, 4);
    }), { numRuns: 30 });
  });
});
