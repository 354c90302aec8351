/**
 * Stage 2 and nested translation (config.stage "2" / "nested"), which QEMU
 * 7.2 does not have: every expectation is derived from the architecture
 * (IHI 0070 5.2 STE.S2*, 4.4 TLBI_S2_IPA / TLBI_S12_VMALL, 7.3 event
 * records with S2/CLASS/ADDR2; Arm ARM D8 stage-2 descriptors, SL0 start
 * levels and concatenated start tables) with tables built in env.ts.
 */
import { IOMMUAccessFlags, isFault } from '../../../src/core';
import type { IOMMUFault, TranslateResult } from '../../../src/core';
import type { GuestMemory } from '../../../src/memory';
import { AF, Alloc, S2AP_R, S2AP_W, SmmuEnv, Tables } from './env';

const RO = IOMMUAccessFlags.RO;
const WO = IOMMUAccessFlags.WO;
const RW_S2 = S2AP_R | S2AP_W;

function ok(r: TranslateResult): { iova: bigint; translatedAddr: bigint; addrMask: bigint; perm: number } {
  if (isFault(r)) throw new Error(`unexpected fault 0x${r.reason.toString(16)}`);
  return r;
}

function fault(r: TranslateResult): IOMMUFault {
  if (!isFault(r)) throw new Error(`expected a fault, got 0x${r.translatedAddr.toString(16)}`);
  return r;
}

/** S2T0SZ 24 (40-bit IPA), SL0 1: start at level 1 with two concatenated tables (Arm ARM D8.2.7). */
function s2Env(stage: '2' | 'nested' = '2', o: { affd?: boolean; vmid?: number } = {}) {
  const env = new SmmuEnv(stage);
  const s2 = env.tables(12, 40, 1);
  return { env, s2, ste: { vmid: o.vmid ?? 5, s2t0sz: 24, s2sl0: 1, s2tg: 0, s2ps: 4, s2ttb: s2.root, s2affd: o.affd } };
}

describe('stage 2 only', () => {
  test('IPA -> PA through a concatenated start table: page and 2 MiB block', () => {
    const { env, s2, ste } = s2Env();
    // IPA bit 39 selects the second concatenated level-1 table.
    s2.map(0x80_0000_1000n, 0x0300_0000n, 12, AF | RW_S2);
    s2.map(0x0020_0000n, 0x0a00_0000n, 21, AF | S2AP_R);
    env.writeSte(8, { config: 0b110, ...ste });
    env.cfgiAll();
    expect(ok(env.smmu.translate(8, 0x80_0000_1abcn, WO))).toMatchObject({ iova: 0x80_0000_1000n, translatedAddr: 0x0300_0000n, addrMask: 0xfffn, perm: 3 });
    expect(ok(env.smmu.translate(8, 0x0021_2345n, RO))).toMatchObject({ iova: 0x0020_0000n, translatedAddr: 0x0a00_0000n, addrMask: 0x1f_ffffn, perm: RO });
  });

  test('S2AP without write: F_PERMISSION with S2=1, CLASS=IN, ADDR2 = IPA', () => {
    const { env, s2, ste } = s2Env();
    s2.map(0x5000n, 0x0300_0000n, 12, AF | S2AP_R);
    env.writeSte(8, { config: 0b110, ...ste });
    env.cfgiAll();
    expect(fault(env.smmu.translate(8, 0x5010n, WO)).reason).toBe(0x13);
    expect(env.events()).toEqual([[0x13, 8, 0, (1 << 7) | (2 << 8), 0x5010, 0, 0x5010, 0]]);
    // A read-only cached entry also refuses a later write.
    ok(env.smmu.translate(8, 0x5000n, RO));
    expect(fault(env.smmu.translate(8, 0x5000n, WO)).reason).toBe(0x13);
  });

  test('AF=0: F_ACCESS unless S2AFFD; IPA beyond S2T0SZ: F_TRANSLATION; output beyond S2PS: F_ADDR_SIZE', () => {
    for (const affd of [false, true]) {
      const { env, s2, ste } = s2Env('2', { affd });
      s2.map(0x6000n, 0x0300_0000n, 12, RW_S2);
      s2.map(0x7000n, 1n << 44n, 12, AF | RW_S2);
      env.writeSte(8, { config: 0b110, ...ste });
      env.cfgiAll();
      const r = env.smmu.translate(8, 0x6000n, RO);
      if (affd) expect(ok(r).translatedAddr).toBe(0x0300_0000n);
      else expect(fault(r).reason).toBe(0x12);
      expect(fault(env.smmu.translate(8, 1n << 40n, RO)).reason).toBe(0x10);
      expect(fault(env.smmu.translate(8, 0x7000n, RO)).reason).toBe(0x11);
    }
  });

  test('S2R=0 suppresses the records', () => {
    const { env, ste } = s2Env();
    env.writeSte(8, { config: 0b110, ...ste, s2r: false });
    env.cfgiAll();
    expect(fault(env.smmu.translate(8, 0x9000n, RO)).recorded).toBe(false);
    expect(env.events()).toEqual([]);
  });

  test('VMID scoping: TLBI_S12_VMALL and TLBI_S2_IPA drop only that VMID', () => {
    const { env, s2, ste } = s2Env();
    s2.map(0x1000n, 0x0300_0000n, 12, AF | RW_S2);
    s2.map(0x2000n, 0x0301_0000n, 12, AF | RW_S2);
    env.writeSte(8, { config: 0b110, ...ste, vmid: 5 });
    env.writeSte(9, { config: 0b110, ...ste, vmid: 6 });
    env.cfgiAll();
    for (const sid of [8, 9]) for (const ipa of [0x1000n, 0x2000n]) ok(env.smmu.translate(sid, ipa, RO));
    s2.map(0x1000n, 0x0400_0000n, 12, AF | RW_S2);
    s2.map(0x2000n, 0x0401_0000n, 12, AF | RW_S2);
    env.commands([0x28, 6, 0, 0]); // TLBI_S12_VMALL VMID 6
    expect(ok(env.smmu.translate(8, 0x1000n, RO)).translatedAddr).toBe(0x0300_0000n);
    expect(ok(env.smmu.translate(9, 0x1000n, RO)).translatedAddr).toBe(0x0400_0000n);
    env.commands([0x2a, 5, 0x2000, 0]); // TLBI_S2_IPA VMID 5, IPA 0x2000
    expect(ok(env.smmu.translate(8, 0x2000n, RO)).translatedAddr).toBe(0x0401_0000n);
    expect(ok(env.smmu.translate(8, 0x1000n, RO)).translatedAddr).toBe(0x0300_0000n);
  });

  test('stage-1 STE config and NH TLBIs are refused on a stage-2-only SMMU', () => {
    const { env, ste } = s2Env();
    env.writeSte(8, { config: 0b101, ...ste, ctxPtr: 0x4_0000 });
    env.cfgiAll();
    expect(fault(env.smmu.translate(8, 0x1000n, RO)).reason).toBe(0x04);
    // TLBI_NH_ASID: CERROR_ILL at the command's index (CONS.ERR = 1).
    const cons = env.commands([0x11, 1 << 16, 0, 0]);
    expect(cons >>> 24).toBe(1);
  });

  test('bad S2 configurations are C_BAD_STE (S2TG reserved, SL0 3, S2T0SZ too small, >16 concatenated tables)', () => {
    for (const bad of [{ s2tg: 3 }, { s2sl0: 3 }, { s2t0sz: 16 }, { s2t0sz: 20, s2sl0: 0 }]) {
      const { env, ste } = s2Env();
      env.writeSte(8, { config: 0b110, ...ste, ...bad });
      env.cfgiAll();
      expect(fault(env.smmu.translate(8, 0x1000n, RO)).reason).toBe(0x04);
    }
  });
});

/** Guest memory seen at IPAs: IPA x is PA x + offset (the S2 mapping the test sets up). */
class IpaView implements GuestMemory {
  constructor(private readonly pa: GuestMemory, private readonly offset: number) {}
  read(gpa: number, dst: Uint8Array): boolean { return this.pa.read(gpa + this.offset, dst); }
  write(gpa: number, src: Uint8Array): boolean { return this.pa.write(gpa + this.offset, src); }
  readU32(gpa: number): number { return this.pa.readU32(gpa + this.offset); }
  readU64(gpa: number): bigint | undefined { return this.pa.readU64(gpa + this.offset); }
  writeU32(gpa: number, v: number): boolean { return this.pa.writeU32(gpa + this.offset, v); }
  writeU64(gpa: number, v: bigint): boolean { return this.pa.writeU64(gpa + this.offset, v); }
}

describe('nested (stage 1 then stage 2)', () => {
  const OFFSET = 0x0800_0000; // IPA [0, 128 MiB) -> PA [128 MiB, 256 MiB)

  function nestedEnv() {
    const { env, s2, ste } = s2Env('nested');
    for (let ipa = 0n; ipa < 0x0400_0000n; ipa += 0x20_0000n) s2.map(ipa, ipa + BigInt(OFFSET), 21, AF | RW_S2);
    // S1 tables and CD at IPAs (written through the S2 view of RAM).
    const view = new IpaView(env.ram, OFFSET);
    const s1 = new Tables(view, new Alloc(0x10_0000), 12, 39, 1);
    const cdIpa = 0x8_0000;
    const cdEnv = { ram: view } as unknown as SmmuEnv;
    SmmuEnv.prototype.writeCd.call(cdEnv, cdIpa, { asid: 3, t0sz: 25, ttb0: s1.root });
    env.writeSte(8, { config: 0b111, ctxPtr: cdIpa, ...ste });
    env.cfgiAll();
    return { env, s1, s2 };
  }

  test('VA -> IPA -> PA, table fetches through stage 2; the leaf is the smaller of the two', () => {
    const { env, s1, s2 } = nestedEnv();
    s1.map(0x1000n, 0x0030_0000n, 12, AF);
    s1.map(0x4000_0000n, 0x0060_0000n, 21, AF);
    s1.map(0x4020_0000n, 0x0100_0000n, 21, AF);
    // IPA 0x0100_0000 is covered by 4K stage-2 pages instead of a block (the block becomes a table).
    s2.map(0x0100_0000n, 0x0c00_0000n, 12, AF | RW_S2);
    env.commands([0x28, 5, 0, 0]);
    expect(ok(env.smmu.translate(8, 0x1234n, RO))).toMatchObject({ iova: 0x1000n, translatedAddr: 0x0830_0000n, addrMask: 0xfffn });
    expect(ok(env.smmu.translate(8, 0x4012_3456n, RO))).toMatchObject({ iova: 0x4000_0000n, translatedAddr: 0x0860_0000n, addrMask: 0x1f_ffffn });
    expect(ok(env.smmu.translate(8, 0x4020_0010n, RO))).toMatchObject({ iova: 0x4020_0000n, translatedAddr: 0x0c00_0000n, addrMask: 0xfffn });
  });

  test('stage-2 fault on a stage-1 table fetch: S2=1, CLASS=TT, ADDR2 = the descriptor IPA', () => {
    const { env, s1 } = nestedEnv();
    s1.map(0x1000n, 0x0030_0000n, 12, AF);
    // Point the level-2 table descriptor at an IPA stage 2 does not map (>= 64 MiB).
    const l1 = s1.descAt(0x1000n, 1);
    const view = new IpaView(env.ram, OFFSET);
    view.writeU64(l1, 0x0500_0000n | 3n);
    expect(fault(env.smmu.translate(8, 0x1000n, RO)).reason).toBe(0x10);
    // Level-2 index of IOVA 0x1000 is 0: the descriptor IPA is the table base.
    expect(env.events()).toEqual([[0x10, 8, 0, (1 << 3) | (1 << 7) | (1 << 8), 0x1000, 0, 0x0500_0000, 0]]);
  });

  test('a stage-1 permission fault is reported as stage 1 (S2=0)', () => {
    const { env, s1 } = nestedEnv();
    s1.map(0x2000n, 0x0030_0000n, 12, AF | (1n << 7n));
    expect(fault(env.smmu.translate(8, 0x2000n, WO)).reason).toBe(0x13);
    expect(env.events()).toEqual([[0x13, 8, 0, 0, 0x2000, 0, 0, 0]]);
  });
});
