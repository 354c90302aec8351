/**
 * Stage-1 SMMUv3 behaviour against tables built from the architecture text
 * (env.ts) and the QEMU 7.2 findings: identification registers, walks for
 * every start level, blocks, AP/APTable, the IOTLB keyed by ASID, event
 * records and overflow, command errors. Expected values are derived by hand
 * from IHI 0070 / the Arm ARM, or from the findings where QEMU chooses.
 */
import fc from 'fast-check';
import { IOMMUAccessFlags, isFault } from '../../../src/core';
import type { IOMMUFault, TranslateResult } from '../../../src/core';
import { createSmmuV3, SmmuV3ConfigError } from '../../../src/models/smmuv3';
import type { SmmuIrq } from '../../../src/models/smmuv3';
import { SparseRam } from '../../../src/memory';
import { AF, AP_RO, APTABLE_RO, EVTQ, EVTQ_LOG2, SmmuEnv } from './env';

const RO = IOMMUAccessFlags.RO;
const WO = IOMMUAccessFlags.WO;
const SID = 0x08;
const CD = 0x4_0000;

function ok(r: TranslateResult): { iova: bigint; translatedAddr: bigint; addrMask: bigint; perm: number } {
  if (isFault(r)) throw new Error(`unexpected fault ${r.reason.toString(16)}`);
  return r;
}

function fault(r: TranslateResult): IOMMUFault {
  if (!isFault(r)) throw new Error(`expected a fault, got 0x${r.translatedAddr.toString(16)}`);
  return r;
}

/** A stream with stage-1 tables of T0SZ `t0sz`, 4K granule. */
function s1Env(t0sz: number, o: { asid?: number; r?: boolean; had0?: boolean } = {}) {
  const env = new SmmuEnv();
  const start = SmmuEnv.s1Start(t0sz, 12);
  const t = env.tables(12, 64 - t0sz, start);
  env.writeCd(CD, { asid: o.asid ?? 1, t0sz, ttb0: t.root, r: o.r, had0: o.had0 });
  env.writeSte(SID, { config: 0b101, ctxPtr: CD });
  env.cfgiAll();
  return { env, t, start };
}

describe('registers (QEMU 7.2 values, IHI 0070 6.3)', () => {
  const smmu = createSmmuV3({}, new SparseRam([{ base: 0n, size: 0x1000n }]));
  test('ID registers', () => {
    expect(smmu.mmioRead(0x0, 4)).toBe(0x0d40101an);
    expect(smmu.mmioRead(0x4, 4)).toBe(0x02730010n);
    expect(smmu.mmioRead(0xc, 4)).toBe(0x1404n);
    expect(smmu.mmioRead(0x14, 4)).toBe(0x74n);
    expect(smmu.mmioRead(0x1c, 4)).toBe(1n);
    // PIDR4 at 0xfd0, PIDR0..3 at 0xfe0..0xfec, CIDR3 at 0xffc.
    expect([0xfd0, 0xfe0, 0xfe4, 0xfec, 0xffc].map((o) => smmu.mmioRead(o, 4))).toEqual([0x04n, 0x84n, 0xb4n, 0x10n, 0xb1n]);
  });
  test('stage 2 and nested advertise S2P (and VMID16, as QEMU 8.1+)', () => {
    const ram = new SparseRam([{ base: 0n, size: 0x1000n }]);
    expect(createSmmuV3({ stage: '2' }, ram).mmioRead(0, 4) & 3n).toBe(1n);
    expect(createSmmuV3({ stage: 'nested' }, ram).mmioRead(0, 4) & 3n).toBe(3n);
    expect(createSmmuV3({ stage: 'nested' }, ram).mmioRead(0, 4) & (1n << 18n)).toBe(1n << 18n);
    expect(() => createSmmuV3({ stage: '3' } as never, ram)).toThrow(SmmuV3ConfigError);
  });
  test('queue bases reset with LOG2SIZE 19; CR0ACK drops reserved bits; page 1 aliases page 0', () => {
    const s = createSmmuV3({}, new SparseRam([{ base: 0n, size: 0x1000n }]));
    expect(s.mmioRead(0x90, 8)).toBe(0x13n);
    expect(s.mmioRead(0xa0, 8)).toBe(0x13n);
    s.mmioWrite(0x20, 4, 0xffff_ffffn);
    expect(s.mmioRead(0x24, 4)).toBe(0x3dfn);
    s.mmioWrite(0x100a8, 4, 7n);
    expect(s.mmioRead(0xa8, 4)).toBe(7n);
    s.mmioWrite(0x50, 4, 5n);
    expect(s.mmioRead(0x54, 4)).toBe(5n);
  });
  test('8-byte accesses only at the 64-bit registers (elsewhere: read 0, write ignored)', () => {
    const s = createSmmuV3({}, new SparseRam([{ base: 0n, size: 0x1000n }]));
    s.mmioWrite(0x98, 4, 3n);
    expect(s.mmioRead(0x98, 8)).toBe(0n);
    s.mmioWrite(0x20, 4, 0x4n);
    s.mmioWrite(0x20, 8, 0n);
    expect(s.mmioRead(0x20, 4)).toBe(4n);
    s.mmioWrite(0x80, 8, 0x4000_0000_4010_0000n);
    expect(s.mmioRead(0x84, 4)).toBe(0x4000_0000n);
    expect(s.mmioRead(0x80, 8)).toBe(0x4000_0000_4010_0000n);
    // Misaligned or odd sizes are refused, not thrown.
    expect(s.mmioRead(0x22, 4)).toBe(0n);
    expect(() => s.mmioWrite(0x1fffc, 8, 1n)).not.toThrow();
  });
  test('GBPA is not implemented in 7.2: reads 0, SMMUEN=0 bypasses', () => {
    const ram = new SparseRam([{ base: 0n, size: 0x1000n }]);
    const s = createSmmuV3({}, ram);
    s.mmioWrite(0x44, 4, 0x8010_0000n);
    expect(s.mmioRead(0x44, 4)).toBe(0n);
    expect(ok(s.translate(3, 0x1234_5678n, RO)).translatedAddr).toBe(0x1234_5000n);
  });
});

describe('stage-1 walks (Arm ARM D8.2, 4K granule)', () => {
  test.each([16, 20, 25, 30, 33, 34, 39])('T0SZ %i: a 4K page at the top of the input range', (t0sz) => {
    const { env, t } = s1Env(t0sz);
    const iova = (1n << BigInt(64 - t0sz)) - 0x1000n;
    t.map(iova, 0x0500_0000n, 12, AF);
    const r = ok(env.smmu.translate(SID, iova + 0x123n, RO));
    expect(r).toMatchObject({ iova, translatedAddr: 0x0500_0000n, addrMask: 0xfffn, perm: IOMMUAccessFlags.RW });
    // One past the range is beyond T0SZ: F_TRANSLATION (TTB1 disabled).
    if (t0sz > 16) {
      expect(fault(env.smmu.translate(SID, iova + 0x1000n, RO)).reason).toBe(0x10);
      expect(env.events()[0]?.[0]).toBe(0x10);
    }
  });

  test.each([
    // [TG0 encoding, granule log2, T0SZ, leaf size log2]: Arm ARM D8.2 (16K: 11 bits per level, 64K: 13).
    [2, 14, 16, 14], [2, 14, 17, 25], [1, 16, 16, 16], [1, 16, 22, 29],
  ])('TG0 %i (granule 2^%i), T0SZ %i: a leaf of 2^%i bytes', (tg0, g, t0sz, leaf) => {
    const env = new SmmuEnv();
    const t = env.tables(g, 64 - t0sz, SmmuEnv.s1Start(t0sz, g));
    env.writeCd(CD, { asid: 1, t0sz, ttb0: t.root, tg0 });
    env.writeSte(SID, { config: 0b101, ctxPtr: CD });
    env.cfgiAll();
    const size = 1n << BigInt(leaf);
    const iova = ((1n << BigInt(64 - t0sz)) / size / 3n) * size; // somewhere inside the range, leaf-aligned
    t.map(iova, 0x2_0000_0000n, leaf, AF);
    const r = ok(env.smmu.translate(SID, iova + 0x1234n, RO));
    expect(r).toMatchObject({ iova, translatedAddr: 0x2_0000_0000n, addrMask: size - 1n });
    expect(fault(env.smmu.translate(SID, iova + size, RO)).reason).toBe(0x10);
  });

  test('2 MiB and 1 GiB blocks translate with their offset', () => {
    const { env, t } = s1Env(25);
    t.map(0x4000_0000n, 0xc000_0000n, 30, AF);
    t.map(0x0060_0000n, 0x0a00_0000n, 21, AF);
    expect(ok(env.smmu.translate(SID, 0x4012_3456n, RO))).toMatchObject({ iova: 0x4000_0000n, translatedAddr: 0xc000_0000n, addrMask: 0x3fff_ffffn });
    expect(ok(env.smmu.translate(SID, 0x0071_2345n, WO))).toMatchObject({ iova: 0x0060_0000n, translatedAddr: 0x0a00_0000n, addrMask: 0x1f_ffffn });
  });

  test('AP[2]=1 faults writes only (F_PERMISSION); AF=0 does not fault (QEMU 7.2)', () => {
    const { env, t } = s1Env(25);
    t.map(0x1000n, 0x0500_0000n, 12, AP_RO | AF);
    t.map(0x2000n, 0x0600_0000n, 12, 0n);
    expect(ok(env.smmu.translate(SID, 0x1000n, RO)).perm).toBe(RO);
    const f = fault(env.smmu.translate(SID, 0x1008n, WO));
    expect(f).toMatchObject({ reason: 0x13, recorded: true });
    // Record: type, StreamID, RnW=0 (write), input address exactly.
    expect(env.events()).toEqual([[0x13, SID, 0, 0, 0x1008, 0, 0, 0]]);
    expect(ok(env.smmu.translate(SID, 0x2000n, WO)).translatedAddr).toBe(0x0600_0000n);
  });

  test('APTable[1] faults writes below it unless CD.HAD0; the IOTLB keeps only the leaf permission', () => {
    for (const had0 of [false, true]) {
      const { env, t } = s1Env(25, { had0 });
      t.map(0x20_0000n, 0x0500_0000n, 12, AF, APTABLE_RO);
      if (!had0) {
        expect(fault(env.smmu.translate(SID, 0x20_0000n, WO)).reason).toBe(0x13);
        // A read caches the leaf (RW): a later write hits the IOTLB and succeeds (the findings).
        ok(env.smmu.translate(SID, 0x20_0000n, RO));
        expect(ok(env.smmu.translate(SID, 0x20_0000n, WO)).perm).toBe(IOMMUAccessFlags.RW);
      } else {
        expect(ok(env.smmu.translate(SID, 0x20_0000n, WO)).translatedAddr).toBe(0x0500_0000n);
      }
    }
  });

  test('CD.R=0 suppresses translation faults but not F_WALK_EABT', () => {
    const { env, t } = s1Env(25, { r: false });
    expect(fault(env.smmu.translate(SID, 0x5000n, RO)).recorded).toBe(false);
    expect(env.events()).toEqual([]);
    // A level-2 table pointer outside RAM: the level-3 read aborts.
    t.map(0x40_0000n, 0n, 12, AF);
    const l2 = t.descAt(0x40_0000n, 2);
    env.ram.writeU64(l2, 0x0000_8000_0000_0000n | 3n);
    env.tlbiAll();
    expect(fault(env.smmu.translate(SID, 0x40_0010n, RO)).recorded).toBe(true);
    const [rec] = env.events();
    // F_WALK_EABT, RnW=1, CLASS=TT, ADDR2 = the descriptor address (index 0 of the bad table).
    expect(rec).toEqual([0x0b, SID, 0, (1 << 3) | (1 << 8), 0x40_0010, 0, 0, 0x8000]);
  });

  test('invalid descriptors and reserved level-3 type 0b01 are F_TRANSLATION', () => {
    const { env, t } = s1Env(25);
    const at = t.map(0x3000n, 0x0500_0000n, 12, AF);
    env.ram.writeU64(at, 0x0500_0000n | 1n | AF);
    expect(fault(env.smmu.translate(SID, 0x3000n, RO)).reason).toBe(0x10);
  });
});

describe('IOTLB (keyed by ASID, not StreamID; QEMU smmu-common)', () => {
  test('two streams with one ASID share entries; TLBI_NH_VA of one page drops it', () => {
    const { env, t } = s1Env(25, { asid: 7 });
    env.writeSte(0x18, { config: 0b101, ctxPtr: CD });
    env.cfgiAll();
    t.map(0x1000n, 0x0500_0000n, 12, AF);
    expect(ok(env.smmu.translate(SID, 0x1000n, RO)).translatedAddr).toBe(0x0500_0000n);
    // The guest changes the PTE without invalidating: both streams still see the cached entry.
    t.map(0x1000n, 0x0600_0000n, 12, AF);
    expect(ok(env.smmu.translate(0x18, 0x1000n, RO)).translatedAddr).toBe(0x0500_0000n);
    env.tlbiVa(8, 0x1000n); // another ASID: no effect
    expect(ok(env.smmu.translate(0x18, 0x1000n, RO)).translatedAddr).toBe(0x0500_0000n);
    env.tlbiVa(7, 0x1000n);
    expect(ok(env.smmu.translate(0x18, 0x1000n, RO)).translatedAddr).toBe(0x0600_0000n);
  });

  test('a range TLBI (TG=4K, NUM, SCALE) drops (NUM+1) << SCALE pages and no more', () => {
    const { env, t } = s1Env(25, { asid: 3 });
    for (let i = 0n; i < 8n; i++) t.map(0x10_0000n + i * 0x1000n, 0x0500_0000n + i * 0x1000n, 12, AF);
    for (let i = 0n; i < 8n; i++) ok(env.smmu.translate(SID, 0x10_0000n + i * 0x1000n, RO));
    for (let i = 0n; i < 8n; i++) t.map(0x10_0000n + i * 0x1000n, 0x0600_0000n + i * 0x1000n, 12, AF);
    env.tlbiVa(3, 0x10_1000n, { tg: 1, num: 2, scale: 1 }); // (2 + 1) << 1 = 6 pages from page 1
    const got = [];
    for (let i = 0n; i < 8n; i++) got.push(ok(env.smmu.translate(SID, 0x10_0000n + i * 0x1000n, RO)).translatedAddr >> 24n);
    expect(got).toEqual([5n, 6n, 6n, 6n, 6n, 6n, 6n, 5n]);
  });

  test('256 entries at most: the 257th insertion flushes the rest', () => {
    const { env, t } = s1Env(25);
    for (let i = 0n; i < 257n; i++) t.map(i * 0x1000n, 0x0100_0000n + i * 0x1000n, 12, AF);
    for (let i = 0n; i < 256n; i++) ok(env.smmu.translate(SID, i * 0x1000n, RO));
    expect(env.smmu.iotlbSize).toBe(256);
    ok(env.smmu.translate(SID, 256n * 0x1000n, RO));
    expect(env.smmu.iotlbSize).toBe(1);
  });

  test('property: translations equal an independent map of the leaves written (random T0SZ, pages and blocks)', () => {
    fc.assert(fc.property(
      fc.integer({ min: 16, max: 39 }),
      fc.array(fc.record({ slot: fc.nat({ max: 1 << 20 }), size: fc.constantFrom(12, 21, 30), out: fc.nat({ max: 0xff }) }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { minLength: 1, maxLength: 20 }),
      (t0sz, leaves, probes) => {
        const { env, t, start } = s1Env(t0sz);
        const inputsize = 64 - t0sz;
        // Leaves no larger than the start level's entry, at distinct, non-overlapping places.
        const maxSize = 12 + (3 - start) * 9;
        const model = new Map<bigint, { ia: bigint; size: number; out: bigint }>();
        for (const l of leaves) {
          const size = Math.min(l.size, maxSize);
          const ia = (BigInt(l.slot) << BigInt(size)) % (1n << BigInt(inputsize));
          const key = ia >> 30n; // one leaf per 1 GiB region keeps leaves disjoint
          if (model.has(key)) continue;
          const out = BigInt(l.out) << 30n; // aligned for every leaf size
          model.set(key, { ia, size, out });
          t.map(ia, out, size, AF);
        }
        env.tlbiAll();
        for (const p of probes) {
          const entries = [...model.values()];
          const e = entries[p % entries.length]!;
          const off = BigInt(p) % (1n << BigInt(e.size));
          const r = ok(env.smmu.translate(SID, e.ia + off, RO));
          expect(r.translatedAddr + ((e.ia + off) & r.addrMask)).toBe(e.out + off);
          expect(r.addrMask).toBe((1n << BigInt(e.size)) - 1n);
        }
      },
    ), { numRuns: 25 });
  });
});

describe('configuration errors and queues', () => {
  test('STE/CD decoding: abort (no event), bypass, C_BAD_STE, C_BAD_CD, C_BAD_STREAMID', () => {
    const env = new SmmuEnv();
    env.writeSte(1, { config: 0b000 });
    env.writeSte(2, { config: 0b100 });
    env.writeSte(3, { config: 0b110 }); // stage 2 on a stage-1-only SMMU
    env.writeCd(CD, { asid: 1, t0sz: 40, ttb0: 0x10_0000 }); // T0SZ 40 > 39
    env.writeSte(4, { config: 0b101, ctxPtr: CD });
    env.cfgiAll();
    expect(fault(env.smmu.translate(1, 0x1000n, RO)).recorded).toBe(false);
    expect(ok(env.smmu.translate(2, 0x1234n, WO)).translatedAddr).toBe(0x1000n);
    expect(fault(env.smmu.translate(3, 0x1000n, RO)).reason).toBe(0x04);
    expect(fault(env.smmu.translate(4, 0x1000n, RO)).reason).toBe(0x0a);
    expect(fault(env.smmu.translate(0x100, 0x1000n, RO)).reason).toBe(0x02); // LOG2SIZE 8: 256 StreamIDs
    expect(env.events()).toEqual([[0x04, 3, 0, 0, 0, 0, 0, 0], [0x0a, 4, 0, 0, 0, 0, 0, 0], [0x02, 0x100, 0, 0, 0, 0, 0, 0]]);
  });

  test('a full event queue drops the record and toggles GERROR.EVENTQ_ABT_ERR (QEMU 7.2, no OVFLG)', () => {
    const env = new SmmuEnv();
    const irqs: SmmuIrq[] = [];
    env.smmu.events.on('irq', (i) => irqs.push(i));
    env.smmu.mmioWrite(0x50, 4, 5n); // GERROR_IRQEN | EVENTQ_IRQEN
    env.writeSte(1, { config: 0b110 });
    env.cfgiAll();
    const size = 2 ** EVTQ_LOG2;
    for (let i = 0; i < size; i++) expect(fault(env.smmu.translate(1, 0n, RO)).recorded).toBe(true);
    expect(irqs.filter((i) => i.line === 'eventq')).toHaveLength(size);
    expect(fault(env.smmu.translate(1, 0n, RO)).recorded).toBe(false);
    expect(env.smmu.mmioRead(0x60, 4)).toBe(4n);
    expect(env.smmu.mmioRead(0xa8, 4)).toBe(BigInt(size)); // wrap bit set, index 0, bit 31 clear
    expect(irqs.at(-1)).toEqual({ line: 'gerror', spi: 77 });
    expect(env.ram.readU32(EVTQ)).toBe(0x04);
  });

  test('an illegal command stops CONS with CERROR_ILL; GERRORN resumes at CONS; CMD_SYNC CS=IRQ pulses', () => {
    const env = new SmmuEnv();
    const irqs: string[] = [];
    env.smmu.events.on('irq', (i) => irqs.push(i.line));
    const cons = env.commands([0x07, 0, 0, 0]); // 0x07 is not a command QEMU handles
    expect(cons).toBe(0x0100_0000); // ERR = 1 at index 0
    expect(env.smmu.mmioRead(0x60, 4) & 1n).toBe(1n);
    env.ram.writeU32(0x2_0000, 0x46 | (1 << 12)); // overwrite with CMD_SYNC CS=SIG_IRQ
    env.smmu.mmioWrite(0x64, 4, 1n);
    expect(Number(env.smmu.mmioRead(0x9c, 4))).toBe(0x0100_0002); // drained, ERR kept
    expect(irqs).toEqual(['cmdqSync']);
  });
});
