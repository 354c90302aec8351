/**
 * The hostile-guest fuzzer (fuzz/engine.ts) in `npm test`: a fixed-seed
 * short campaign over every epoch kind must report nothing, and the parts
 * that judge (the shadow view's contract checks, the access counter) are
 * checked on cases whose answer comes from contract.md, not from the model.
 */
import { IOMMUNotifierFlag as F, SparseRam } from '../../src/index';
import type { IOMMUTLBEvent } from '../../src/index';
import { CountingMemory, EPOCH_KINDS, runFuzz } from '../../fuzz/engine';
import { ShadowView, diffRuns, mergeRuns } from '../../fuzz/shadow';

const ev = (type: number, iova: bigint, mask: bigint, xl: bigint, perm: number): IOMMUTLBEvent =>
  ({ type, entry: { iova, addrMask: mask, translatedAddr: xl, perm } }) as IOMMUTLBEvent;
const U64_MAX = 2n ** 64n - 1n;

describe('fuzz engine', () => {
  test('a fixed-seed campaign over every epoch kind (strict and repair lists, clean and hostile guests) finds nothing', () => {
    const res = runFuzz({ seed: 20261204, ops: 16_000, epochOps: 2000 });
    expect(res.ops).toBe(16_000);
    for (const k of new Set(EPOCH_KINDS)) expect(res.stats[`epochs.${k}`]).toBeGreaterThan(0);
    // The campaign did exercise what it judges.
    expect(res.stats['coherenceChecks']).toBeGreaterThan(10);
    expect(res.stats['blockCoherenceChecks']).toBeGreaterThan(100);
    expect(res.stats['hostileOps']).toBeGreaterThan(100);
    expect(res.findings.map((f) => `${f.kind} (seed ${f.seed}, op ${f.op}, ${f.epoch}): ${f.message}`)).toEqual([]);
  });

  test('deterministic per seed', () => {
    const a = runFuzz({ seed: 7, ops: 3000, epochOps: 1000 });
    const b = runFuzz({ seed: 7, ops: 3000, epochOps: 1000 });
    const strip = (s: Record<string, number>) => Object.fromEntries(Object.entries(s).filter(([k]) => !k.startsWith('ms.')));
    expect(strip(b.stats)).toEqual(strip(a.stats));
    expect(b.findings.map((f) => [f.op, f.message])).toEqual(a.findings.map((f) => [f.op, f.message]));
  });

  test('the shadow view flags each rule as contract.md states it', () => {
    const v = new ShadowView(F.ALL, 0n, 0xffff_ffffn);
    expect(v.apply(ev(F.MAP, 0x2000n, 0x1fffn, 0x4000n, 3))).toBeUndefined();
    expect(v.apply(ev(F.UNMAP, 0x2000n, 0xfffn, 0n, 0))).toMatch(/^C5/); // cuts [0x2000, 0x3fff]
    expect(v.apply(ev(F.MAP, 0x2000n, 0x1fffn, 0x4000n, 3))).toBeUndefined();
    expect(v.apply(ev(F.MAP, 0x3000n, 0xfffn, 0x9000n, 3))).toMatch(/^C4/); // over a live entry
    expect(v.apply(ev(F.UNMAP, 0n, 0xffffn, 0n, 0))).toBeUndefined(); // whole entries: legal
    expect(v.apply(ev(F.MAP, 0x1000n, 0x1fffn, 0n, 3))).toMatch(/^C2/); // not aligned
    expect(v.apply(ev(F.MAP, 0n, 0x2fffn, 0n, 3))).toMatch(/^C2/); // not a power of two
    expect(v.apply(ev(F.UNMAP, 0n, 0xfffn, 0n, 3))).toMatch(/^C3/);
    expect(v.apply(ev(F.MAP, 0n, 0xfffn, 0n, 0))).toMatch(/^C3/);
    expect(v.apply(ev(F.DEVIOTLB_UNMAP, 0n, 0xfffn, 0n, 0))).toMatch(/^C6/); // not in its flags
    expect(v.apply(ev(F.MAP, 0x1_0000_0000n, 0xfffn, 0n, 3))).toMatch(/^C6/); // outside its range
    v.removed = true;
    expect(v.apply(ev(F.UNMAP, 0n, 0xfffn, 0n, 0))).toMatch(/^C10/);
    // MAP-only listeners are never told of changes: no view, no C4.
    const mapOnly = new ShadowView(F.MAP, 0n, U64_MAX);
    expect(mapOnly.apply(ev(F.MAP, 0n, 0xfffn, 0n, 3))).toBeUndefined();
    expect(mapOnly.apply(ev(F.MAP, 0n, 0xfffn, 0x1000n, 3))).toBeUndefined();
  });

  test('views are compared as page functions: a split or merged view equals the tables', () => {
    const tables = [{ s: 0n, e: 0x1f_ffffn, xl: 0x40_0000n, perm: 3 }];
    const split = [{ s: 0x1000n, e: 0x1f_ffffn, xl: 0x40_1000n, perm: 3 }, { s: 0n, e: 0xfffn, xl: 0x40_0000n, perm: 3 }];
    expect(diffRuns(mergeRuns(split, 0n, U64_MAX), mergeRuns(tables, 0n, U64_MAX))).toBeUndefined();
    expect(diffRuns(mergeRuns(split.slice(1), 0n, U64_MAX), mergeRuns(tables, 0n, U64_MAX))).toMatch(/view has/);
    expect(diffRuns(mergeRuns(split, 0n, 0xfffn), mergeRuns(tables, 0n, 0xfffn))).toBeUndefined();
  });

  test('CountingMemory counts every guest-memory call (the work bound is in calls)', () => {
    const m = new CountingMemory(new SparseRam([{ base: 0, size: 0x10000 }]));
    m.writeU64(0, 1n);
    m.readU64(0);
    m.readU32(8);
    m.read(0, new Uint8Array(4096));
    m.write(0x20000, new Uint8Array(1)); // outside RAM: still a call
    expect(m.accesses).toBe(5);
  });
});
