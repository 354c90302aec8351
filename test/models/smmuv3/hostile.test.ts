/**
 * A hostile guest gets a modelled outcome, never an exception or unbounded
 * work: looping tables, queue indices beyond the queue, stream-table and
 * queue pointers outside RAM, 8-byte accesses where QEMU takes only 4, huge
 * range invalidations. Work is measured in guest-memory reads (CountingMemory).
 */
import fc from 'fast-check';
import { IOMMUAccessFlags, IOMMUNotifierFlag, isFault } from '../../../src/core';
import type { IOMMUTLBEvent } from '../../../src/core';
import { SparseRam } from '../../../src/memory';
import { createSmmuV3 } from '../../../src/models/smmuv3';
import { AF, CMDQ, CountingMemory, SmmuEnv, STRTAB } from './env';

const RO = IOMMUAccessFlags.RO;
const CD = 0x4_0000;

function counted(stage: '1' | 'nested' = '1'): { env: SmmuEnv; mem: CountingMemory } {
  let mem!: CountingMemory;
  const env = new SmmuEnv(stage, (ram) => (mem = new CountingMemory(ram)));
  return { env, mem };
}

test('looping tables: a table descriptor pointing at its own table costs one read per level', () => {
  const { env, mem } = counted();
  const t = env.tables(12, 39, 1);
  env.writeCd(CD, { asid: 1, t0sz: 25, ttb0: t.root });
  env.writeSte(8, { config: 0b101, ctxPtr: CD });
  env.cfgiAll();
  // Every entry of the root table is a table descriptor pointing back at the root.
  for (let i = 0; i < 512; i++) env.ram.writeU64(t.root + i * 8, BigInt(t.root) | 3n);
  mem.reads = 0;
  const r = env.smmu.translate(8, 0x1234_5000n, RO);
  // Level 3 sees a 0b11 descriptor: a page, translated to the table itself (the architecture's outcome).
  expect(isFault(r) ? 'fault' : r.translatedAddr).toBe(BigInt(t.root));
  // The STE and the CD (config cache miss), then one descriptor per level (two 32-bit halves).
  expect(mem.reads).toBeLessThanOrEqual(2 + 2 * 3);
});

test('CMDQ_PROD beyond the queue: at most 2^(LOG2SIZE+1) commands, CMDQ_BASE LOG2SIZE clamped to 19', () => {
  const { env, mem } = counted();
  // 256 CMD_SYNCs (CS none) fill the queue (LOG2SIZE 8).
  for (let i = 0; i < 256; i++) env.ram.writeU32(CMDQ + i * 16, 0x46);
  mem.reads = 0;
  env.smmu.mmioWrite(0x98, 4, 0xffff_ffffn); // index 255, wrap 1, bits above kept
  expect(env.smmu.mmioRead(0x98, 4)).toBe(0xffff_ffffn);
  // CONS went around once and stopped at PROD's index and wrap: 511 commands.
  expect(Number(env.smmu.mmioRead(0x9c, 4)) & 0x1ff).toBe(0x1ff);
  expect(mem.reads).toBe(511);
  env.smmu.mmioWrite(0x90, 8, BigInt(CMDQ | 31));
  expect(env.smmu.mmioRead(0x90, 8)).toBe(BigInt(CMDQ | 31)); // read back as written
});

test('a command queue outside RAM: CERROR_ABT, no exception', () => {
  const env = new SmmuEnv();
  env.smmu.mmioWrite(0x90, 8, (1n << 51n) | 8n);
  env.smmu.mmioWrite(0x98, 4, 1n);
  expect(Number(env.smmu.mmioRead(0x9c, 4)) >>> 24).toBe(2);
  expect(env.smmu.mmioRead(0x60, 4) & 1n).toBe(1n);
});

test('stream table, L2 pointer and CD outside RAM: F_STE_FETCH / F_CD_FETCH with the address', () => {
  const env = new SmmuEnv();
  env.smmu.mmioWrite(0x80, 8, 0x000f_ffff_ffff_0000n); // beyond 2^53 as well
  env.smmu.mmioWrite(0x20, 4, 0xcn);
  env.smmu.mmioWrite(0x20, 4, 0xdn);
  const f = env.smmu.translate(3, 0x1000n, RO);
  expect(isFault(f) && f.reason).toBe(0x03);
  // F_STE_FETCH: the fetch address in ADDR2 (words 6/7): base aligned to the table size (2^(8+5)) + 3 * 64.
  expect(env.events()).toEqual([[0x03, 3, 0, 0, 0, 0, 0xffff_00c0, 0x000f_ffff]]);

  env.smmu.mmioWrite(0x80, 8, BigInt(STRTAB));
  env.smmu.mmioWrite(0x88, 4, BigInt((1 << 16) | (4 << 6) | 8)); // 2-level, SPLIT 4
  env.ram.writeU64(STRTAB, 0x00f0_0000_0000_0000n | 5n); // L1 descriptor: span 5, L2Ptr outside RAM
  env.cfgiAll();
  const g = env.smmu.translate(3, 0x1000n, RO);
  expect(isFault(g) && g.reason).toBe(0x03);
  expect(env.events()[0]?.slice(6)).toEqual([3 * 64, 0x00f0_0000]);

  env.smmu.mmioWrite(0x88, 4, 8n); // FMT=1 is sticky in QEMU: still 2-level
  env.ram.writeU64(STRTAB, BigInt(0x5_0000) | 5n);
  env.ram.writeU64(0x5_0000 + 3 * 64, (0x0000_7fff_0000_0000n) | (0b101n << 1n) | 1n);
  env.cfgiAll();
  const h = env.smmu.translate(3, 0x1000n, RO);
  expect(isFault(h) && h.reason).toBe(0x09);
  expect(env.events()[0]?.slice(4, 6)).toEqual([0, 0x7fff]);
});

test('event queue outside RAM: GERROR.EVENTQ_ABT_ERR, the DMA fails, nothing thrown', () => {
  const env = new SmmuEnv();
  env.smmu.mmioWrite(0x20, 4, 0x9n);
  env.smmu.mmioWrite(0xa0, 8, (1n << 50n) | 5n);
  env.smmu.mmioWrite(0x20, 4, 0xdn);
  const f = env.smmu.translate(7, 0x1000n, RO); // STE all zeros: C_BAD_STE
  expect(isFault(f) && f.recorded).toBe(false);
  expect(env.smmu.mmioRead(0x60, 4)).toBe(4n);
});

test('8-byte accesses where QEMU takes 4: CMDQ_PROD write ignored, EVENTQ_PROD read 0', () => {
  const env = new SmmuEnv();
  env.ram.writeU32(CMDQ, 0x46);
  env.smmu.mmioWrite(0x98, 8, 1n);
  expect(env.smmu.mmioRead(0x98, 4)).toBe(0n);
  expect(env.smmu.mmioRead(0x9c, 4)).toBe(0n);
  env.smmu.mmioWrite(0xa8, 4, 3n);
  expect(env.smmu.mmioRead(0x100a8, 8)).toBe(0n);
  expect(env.smmu.mmioRead(0x100a8, 4)).toBe(3n);
});

test('the largest range TLBI (64K granule, NUM 31, SCALE 31) is a bounded number of pieces, notified in aligned chunks', () => {
  const env = new SmmuEnv();
  const t = env.tables(12, 39, 1);
  env.writeCd(CD, { asid: 1, t0sz: 25, ttb0: t.root });
  env.writeSte(8, { config: 0b101, ctxPtr: CD });
  env.cfgiAll();
  t.map(0x1000n, 0x50_0000n, 12, AF);
  expect(isFault(env.smmu.translate(8, 0x1000n, RO))).toBe(false);
  const got: IOMMUTLBEvent[] = [];
  env.smmu.addressSpace(8).registerNotifier({ flags: IOMMUNotifierFlag.UNMAP, start: 0n, end: 2n ** 64n - 1n, notify: (e) => got.push({ type: e.type, entry: { ...e.entry } }) });
  env.tlbiVa(1, 0x1000n, { tg: 3, num: 31, scale: 31 });
  expect(env.smmu.iotlbSize).toBe(0);
  expect(got.length).toBeGreaterThan(0);
  expect(got.length).toBeLessThan(200);
  for (const e of got) expect(e.entry.iova & e.entry.addrMask).toBe(0n);
});

test('property: random register writes, queue contents and DMA never throw, and each operation reads a bounded amount', () => {
  const offsets = [0x20, 0x44, 0x50, 0x64, 0x80, 0x84, 0x88, 0x90, 0x94, 0x98, 0x9c, 0xa0, 0xa4, 0xa8, 0xac, 0x100a8, 0x1fffc, 0x3];
  fc.assert(fc.property(
    fc.array(fc.oneof(
      fc.record({ kind: fc.constant('mmio' as const), off: fc.constantFrom(...offsets), size: fc.constantFrom(4 as const, 8 as const), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      fc.record({ kind: fc.constant('mem' as const), at: fc.nat({ max: 0x7_fff8 }), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      fc.record({ kind: fc.constant('dma' as const), sid: fc.nat({ max: 0x1_0000 }), iova: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
    ), { maxLength: 40 }),
    fc.constantFrom('1' as const, '2' as const, 'nested' as const),
    (ops, stage) => {
      const mem = new CountingMemory(new SparseRam([{ base: 0n, size: 0x8_0000n }]));
      const smmu = createSmmuV3({ stage }, mem);
      smmu.mmioWrite(0x88, 4, 16n);
      smmu.mmioWrite(0x20, 4, 0xdn);
      for (const op of ops) {
        mem.reads = 0;
        if (op.kind === 'mmio') {
          smmu.mmioWrite(op.off, op.size, op.value);
          smmu.mmioRead(op.off, op.size);
          // A command queue is at most 2^20 commands; RAM here holds 2^15 of them.
          expect(mem.reads).toBeLessThanOrEqual(1 << 20);
        } else if (op.kind === 'mem') {
          mem.writeU64(op.at, op.value);
        } else {
          smmu.translate(op.sid & 0xffff, op.iova, RO);
          // STE, L1 descriptor, CD, and per stage-1 level a stage-2 walk of 4 levels.
          expect(mem.reads).toBeLessThanOrEqual(3 + 5 * (2 * 4 + 2) + 2 * 4);
        }
      }
    },
  ), { numRuns: 60 });
});
