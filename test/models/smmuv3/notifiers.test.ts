/**
 * SMMUv3 notifiers: MAP refused at registration (C1, no caching mode in the
 * architecture), UNMAP for TLBI commands on the affected StreamIDs at
 * leaf-entry granularity (C5, C6), DEVIOTLB_UNMAP for ATC_INV, teardown
 * when translation is switched off (C8).
 */
import { IOMMUNotifierFlag } from '../../../src/core';
import { IOMMUAccessFlags, isFault } from '../../../src/core';
import { AF, SmmuEnv } from './env';

const U64 = 2n ** 64n - 1n;
const CD = 0x4_0000;
const CD2 = 0x4_0040;

interface Got { type: number; iova: bigint; mask: bigint }

function setup() {
  const env = new SmmuEnv();
  const t = env.tables(12, 39, 1);
  env.writeCd(CD, { asid: 1, t0sz: 25, ttb0: t.root });
  env.writeCd(CD2, { asid: 2, t0sz: 25, ttb0: t.root });
  env.writeSte(8, { config: 0b101, ctxPtr: CD });
  env.writeSte(0x18, { config: 0b101, ctxPtr: CD2 });
  env.cfgiAll();
  const listen = (sid: number, flags: number, start = 0n, end = U64): Got[] => {
    const got: Got[] = [];
    env.smmu.addressSpace(sid).registerNotifier({ flags, start, end, notify: (e) => got.push({ type: e.type, iova: e.entry.iova, mask: e.entry.addrMask }) });
    return got;
  };
  return { env, t, listen };
}

test('C1: a MAP notifier is refused with the reason; UNMAP and DEVIOTLB_UNMAP are accepted', () => {
  const { env } = setup();
  const as = env.smmu.addressSpace(8);
  expect(() => as.registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: U64, notify: () => undefined })).toThrow(/MAP.*caching mode/);
  expect(() => as.registerNotifier({ flags: IOMMUNotifierFlag.UNMAP | IOMMUNotifierFlag.DEVIOTLB_UNMAP, start: 0n, end: U64, notify: () => undefined })).not.toThrow();
});

test('TLBI_NH_VA of a page inside a 2 MiB block: UNMAP of the whole block, only to the StreamID with that ASID', () => {
  const { env, t, listen } = setup();
  t.map(0x40_0000n, 0x0a00_0000n, 21, AF);
  expect(isFault(env.smmu.translate(8, 0x45_6000n, IOMMUAccessFlags.RO))).toBe(false);
  const a = listen(8, IOMMUNotifierFlag.UNMAP);
  const b = listen(0x18, IOMMUNotifierFlag.UNMAP);
  env.tlbiVa(1, 0x45_6000n);
  expect(a).toEqual([{ type: IOMMUNotifierFlag.UNMAP, iova: 0x40_0000n, mask: 0x1f_ffffn }]);
  expect(b).toEqual([]);
});

test('a range TLBI of 4K pages is delivered as aligned power-of-two UNMAPs covering exactly the range', () => {
  const { env, listen } = setup();
  const a = listen(8, IOMMUNotifierFlag.UNMAP);
  env.tlbiVa(1, 0x1000n, { tg: 1, num: 5, scale: 0 }); // 6 pages from 0x1000: [0x1000, 0x7000)
  const covered = a.map((e) => [e.iova, e.iova + e.mask]);
  for (const e of a) expect(e.iova & e.mask).toBe(0n);
  expect(covered.sort((x, y) => Number(x[0]! - y[0]!))).toEqual([[0x1000n, 0x1fffn], [0x2000n, 0x3fffn], [0x4000n, 0x5fffn], [0x6000n, 0x6fffn]]);
});

test('C6: UNMAPs stay inside the notifier range', () => {
  const { env, listen } = setup();
  const a = listen(8, IOMMUNotifierFlag.UNMAP, 0x3000n, 0x4fffn);
  env.tlbiVa(1, 0x1000n, { tg: 1, num: 7, scale: 0 });
  for (const e of a) {
    expect(e.iova).toBeGreaterThanOrEqual(0x3000n);
    expect(e.iova + e.mask).toBeLessThanOrEqual(0x4fffn);
  }
  expect(a.length).toBeGreaterThan(0);
});

test('TLBI_NH_ASID unmaps the spaces of that ASID only; TLBI_NSNH_ALL every space', () => {
  const { env, listen } = setup();
  const a = listen(8, IOMMUNotifierFlag.UNMAP);
  const b = listen(0x18, IOMMUNotifierFlag.UNMAP);
  env.commands([0x11, 2 << 16, 0, 0]);
  expect(a).toEqual([]);
  expect(b.length).toBeGreaterThan(0);
  b.length = 0;
  env.tlbiAll();
  expect(a.length).toBeGreaterThan(0);
  expect(b.length).toBeGreaterThan(0);
});

test('ATC_INV gives DEVIOTLB_UNMAP of 2^Size pages at the aligned address; UNMAP-only listeners get nothing', () => {
  const { env, listen } = setup();
  const dev = listen(8, IOMMUNotifierFlag.DEVIOTLB_UNMAP);
  const un = listen(8, IOMMUNotifierFlag.UNMAP);
  env.commands([0x40, 8, 0x0001_3000 | 2, 0]); // SID 8, Size 2 (16 KiB), address 0x13000
  expect(dev).toEqual([{ type: IOMMUNotifierFlag.DEVIOTLB_UNMAP, iova: 0x1_0000n, mask: 0x3fffn }]);
  expect(un).toEqual([]);
});

test('C8: SMMUEN 1 -> 0 tears every UNMAP listener down', () => {
  const { env, listen } = setup();
  const a = listen(8, IOMMUNotifierFlag.UNMAP);
  env.smmu.mmioWrite(0x20, 4, 0xcn);
  expect(a.length).toBeGreaterThan(0);
});
