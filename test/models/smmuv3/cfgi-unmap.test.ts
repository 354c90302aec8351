/**
 * Regression (found by `npm run fuzz -- --model smmuv3`): a guest that
 * changes a stream's STE (translating -> abort or bypass, bypass -> abort,
 * another ASID) issues CFGI_STE and a TLBI of the old ASID (IHI 0070 4.3.1,
 * 4.4; Linux's arm-smmu-v3 detach). The TLBI is matched against the
 * stream's new configuration, which no longer uses that ASID, and bypass
 * translations have no ASID at all: so a vhost-like UNMAP listener kept
 * serving the old translations (identity included) after the guest had
 * invalidated them. CFGI_STE/CFGI_STE_RANGE/CFGI_CD now unmap the whole
 * space of the streams they name (C8: the context entry changed).
 * Expectations from the architecture: after CFGI + TLBI + CMD_SYNC an
 * aborting stream translates nothing.
 */
import { IOMMUAccessFlags, IOMMUNotifierFlag, isFault } from '../../../src/core';
import { VhostListener } from '../../../src/listeners';
import { AF, SmmuEnv } from './env';

const CD = 0x4_0000;
const SID = 8;
const IOVA = 0x1000n;
const U64 = 2n ** 64n - 1n;

function setup() {
  const env = new SmmuEnv();
  const t = env.tables(12, 39, 1);
  t.map(IOVA, 0x30_0000n, 12, AF);
  env.writeCd(CD, { asid: 1, t0sz: 25, ttb0: t.root });
  env.writeSte(SID, { config: 0b101, ctxPtr: CD });
  env.cfgiAll();
  const vhost = new VhostListener({ miss: (iova, perm) => { const r = env.smmu.translate(SID, iova, perm); return isFault(r) ? undefined : r; } });
  vhost.attach(env.smmu.addressSpace(SID));
  return { env, vhost };
}

test('translating -> abort, CFGI_STE, TLBI_NH_ASID of the old ASID: the cached translation is gone', () => {
  const { env, vhost } = setup();
  expect(vhost.translate(IOVA, IOMMUAccessFlags.RO)?.uaddr).toBe(0x30_0000n);
  env.writeSte(SID, { config: 0b000 });
  env.commands([0x03, SID, 0, 0], [0x11, 1 << 16, 0, 0]); // CFGI_STE, TLBI_NH_ASID 1
  expect(vhost.lookup(IOVA)).toBeUndefined();
  expect(vhost.translate(IOVA, IOMMUAccessFlags.RO)).toBeUndefined();
});

test('bypass -> abort, CFGI_STE: the cached identity is gone', () => {
  const { env, vhost } = setup();
  env.writeSte(SID, { config: 0b100 });
  env.commands([0x03, SID, 0, 0]);
  expect(vhost.translate(0x5000n, IOMMUAccessFlags.RO)?.uaddr).toBe(0x5000n);
  env.writeSte(SID, { config: 0b000 });
  env.commands([0x04, SID, 0, 0]); // CFGI_STE_RANGE, Range 0
  expect(vhost.lookup(0x5000n)).toBeUndefined();
});

test('only the streams the CFGI names are unmapped', () => {
  const { env } = setup();
  const got: bigint[] = [];
  env.smmu.addressSpace(0x30).registerNotifier({ flags: IOMMUNotifierFlag.UNMAP, start: 0n, end: U64, notify: (e) => got.push(e.entry.iova) });
  env.commands([0x03, SID, 0, 0]);
  expect(got).toEqual([]);
  env.commands([0x04, 0, 31, 0]); // CFGI_ALL
  expect(got.length).toBeGreaterThan(0);
});
