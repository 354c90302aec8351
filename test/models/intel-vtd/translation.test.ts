/**
 * VT-d root/context/PASID resolution and second-level walks against the VT-d
 * spec layouts and QEMU 7.2's order of checks (shared/reference/vtd-facts.md
 * §4-§5, qemu-7.2-findings.md). Tables are built byte by byte by the helper.
 */
import { SparseRam } from '../../../src/memory/sparse-ram';
import { DEFAULT_VTD_CONFIG, type VtdConfig } from '../../../src/models/intel-vtd/config';
import {
  isContextFault,
  isQualifiedFault,
  refreshPasid,
  resolveContext,
  walkSecondLevel,
  type VtdContext,
  type VtdContextFault,
  type VtdLeaf,
} from '../../../src/models/intel-vtd/translation';
import {
  VtdTables,
  legacyRootEntry,
  scalableRootEntry,
  slpte,
  writeWords,
} from './helpers/tables';

const RAM_SIZE = 0x400_0000; // 64 MiB
const ROOT = 0x1_0000;
const CTX = 0x2_0000;
const SID = 0x0020; // 00:04.0
const OUTSIDE = 0x4000_0000; // 1 GiB: below 2^39, outside RAM

function cfgOf(over: Partial<VtdConfig> = {}): VtdConfig {
  return { ...DEFAULT_VTD_CONFIG, ...over };
}

function setup(firstPage = 0x10_0000): { mem: SparseRam; t: VtdTables } {
  const mem = new SparseRam([{ base: 0, size: RAM_SIZE }]);
  return { mem, t: new VtdTables(mem, firstPage) };
}

function expectFault(r: ReturnType<typeof resolveContext>, reason: number, suppressed = false): void {
  expect(isContextFault(r)).toBe(true);
  expect(r as VtdContextFault).toEqual({ reason, suppressed });
}

function expectContext(r: ReturnType<typeof resolveContext>): VtdContext {
  if (isContextFault(r)) throw new Error(`expected a context, got fault 0x${r.reason.toString(16)}`);
  return r;
}

function newLeaf(): VtdLeaf {
  return { iovaPfn: -1, pages: -1, xlatPfn: -1, perm: -1, level: -1 };
}

describe('isQualifiedFault (QEMU 7.2 vtd_qualified_faults)', () => {
  it.each([2, 3, 4, 5, 6, 7, 0xc, 0xd, 0xe, 0x87])('0x%s is qualified', (r) => expect(isQualifiedFault(r)).toBe(true));
  it.each([0, 1, 8, 9, 0xa, 0xb, 0x58, 0x20])('0x%s is not qualified', (r) => expect(isQualifiedFault(r)).toBe(false));
});

describe('resolveContext: legacy root entry', () => {
  const cfg = cfgOf();

  it('resolves a present root and context entry', () => {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: CTX }));
    t.legacyContext(CTX, 0x20, { slptptr: 0x30_0000, aw: 1, did: 0x1234 });
    expect(expectContext(resolveContext(mem, cfg, ROOT, false, SID))).toEqual({
      did: 0x1234, passThrough: false, slptptr: 0x30_0000, levels: 3, fpd: false, pasid: undefined,
    });
  });

  it('indexes the root table by bus and the context table by devfn', () => {
    const { mem, t } = setup();
    t.root(ROOT, 3, legacyRootEntry({ ctp: CTX + 0x1000 }));
    t.legacyContext(CTX + 0x1000, 0x2d, { slptptr: 0x31_0000, did: 7 });
    expect(expectContext(resolveContext(mem, cfg, ROOT, false, 0x032d)).did).toBe(7);
    expectFault(resolveContext(mem, cfg, ROOT, false, 0x042d), 0x1);
    expectFault(resolveContext(mem, cfg, ROOT, false, 0x032c), 0x2);
  });

  it('root table outside RAM -> 0x8 (not qualified)', () => {
    const { mem } = setup();
    expectFault(resolveContext(mem, cfg, OUTSIDE, false, SID), 0x8);
  });

  it('root entry not present -> 0x1, even with reserved bits set', () => {
    const { mem, t } = setup();
    expectFault(resolveContext(mem, cfg, ROOT, false, SID), 0x1);
    t.root(ROOT, 0, legacyRootEntry({ present: false, ctp: CTX, extraLo: 0x2n, hi: 1n }));
    expectFault(resolveContext(mem, cfg, ROOT, false, SID), 0x1);
  });

  it.each([
    ['lo bit 1', 0x2n, 0n, 39],
    ['lo bit 11', 0x800n, 0n, 39],
    ['lo bit 39 at aw 39', 1n << 39n, 0n, 39],
    ['lo bit 63 at aw 48', 1n << 63n, 0n, 48],
    ['hi bit 0', 0n, 1n, 39],
    ['hi bit 63', 0n, 1n << 63n, 39],
  ] as const)('root reserved %s -> 0xa', (_name, extraLo, hi, aw) => {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: CTX, extraLo, hi }));
    t.legacyContext(CTX, 0x20, { slptptr: 0x30_0000, fpd: true });
    expectFault(resolveContext(mem, cfgOf({ awBits: aw }), ROOT, false, SID), 0xa);
  });

  it('root CTP bit 39 is legal at aw 48 (then read error 0x9: outside RAM)', () => {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: 1n << 39n }));
    expectFault(resolveContext(mem, cfgOf({ awBits: 48 }), ROOT, false, SID), 0x9);
  });
});

describe('resolveContext: legacy context entry', () => {
  const cfg = cfgOf();
  function withContext(f: Parameters<VtdTables['legacyContext']>[2], c: VtdConfig = cfg): ReturnType<typeof resolveContext> {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: CTX }));
    t.legacyContext(CTX, 0x20, f);
    return resolveContext(mem, c, ROOT, false, SID);
  }

  it('context table outside RAM -> 0x9 (not qualified)', () => {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: OUTSIDE }));
    expectFault(resolveContext(mem, cfg, ROOT, false, SID), 0x9);
  });

  it('not present -> 0x2; FPD is read from the not-present entry and suppresses it', () => {
    expectFault(withContext({ present: false }), 0x2, false);
    expectFault(withContext({ present: false, fpd: true }), 0x2, true);
  });

  it('not present wins over reserved bits (P checked first)', () => {
    expectFault(withContext({ present: false, extraLo: 0x10n, extraHi: 1n << 40n }), 0x2);
  });

  it.each([
    ['lo bit 4', 0x10n, 0n],
    ['lo bit 11', 0x800n, 0n],
    ['lo bit 39 (above HAW 39)', 1n << 39n, 0n],
    ['hi bit 7', 0n, 0x80n],
    ['hi bit 24', 0n, 1n << 24n],
    ['hi bit 63', 0n, 1n << 63n],
  ] as const)('reserved %s -> 0xb, never suppressed by FPD', (_n, extraLo, extraHi) => {
    expectFault(withContext({ slptptr: 0x30_0000, fpd: true, extraLo, extraHi }), 0xb, false);
  });

  it('the same entry bytes are judged against each aw-bits (bit 40: reserved at 39, address at 48)', () => {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: CTX }));
    t.legacyContext(CTX, 0x20, { slptptr: (1n << 40n) | 0x30_0000n });
    expectFault(resolveContext(mem, cfg, ROOT, false, SID), 0xb);
    expect(expectContext(resolveContext(mem, cfgOf({ awBits: 48 }), ROOT, false, SID)).slptptr).toBe(2 ** 40 + 0x30_0000);
    expectFault(resolveContext(mem, cfg, ROOT, false, SID), 0xb);
  });

  it('hi bits 6:3 (available) are not reserved', () => {
    expect(isContextFault(withContext({ slptptr: 0x30_0000, extraHi: 0x78n }))).toBe(false);
  });

  it('reserved bits win over an unsupported AW', () => {
    expectFault(withContext({ aw: 2, extraLo: 0x10n }), 0xb);
  });

  it('AW: 1 (3-level) ok at aw 39; 2 (4-level) needs aw-bits 48; 0 and 3 invalid -> 0x3', () => {
    expect(expectContext(withContext({ aw: 1 })).levels).toBe(3);
    expectFault(withContext({ aw: 2 }), 0x3);
    expect(expectContext(withContext({ aw: 2 }, cfgOf({ awBits: 48 }))).levels).toBe(4);
    expect(expectContext(withContext({ aw: 1 }, cfgOf({ awBits: 48 }))).levels).toBe(3);
    expectFault(withContext({ aw: 0 }), 0x3);
    expectFault(withContext({ aw: 3 }, cfgOf({ awBits: 48 })), 0x3);
    expectFault(withContext({ aw: 0, fpd: true }), 0x3, true);
  });

  it('TT: 0 translated; 1 needs device-iotlb; 2 pass-through needs pt; 3 invalid -> 0x3', () => {
    expect(expectContext(withContext({ tt: 0 })).passThrough).toBe(false);
    expectFault(withContext({ tt: 1 }), 0x3);
    expectFault(withContext({ tt: 1, fpd: true }), 0x3, true);
    expect(expectContext(withContext({ tt: 1 }, cfgOf({ deviceIotlb: true }))).passThrough).toBe(false);
    expect(expectContext(withContext({ tt: 2 })).passThrough).toBe(true);
    expectFault(withContext({ tt: 2 }, cfgOf({ passThrough: false })), 0x3);
    expectFault(withContext({ tt: 3 }, cfgOf({ deviceIotlb: true })), 0x3);
  });

  it('AW is checked before TT (both 0x3) and applies to pass-through contexts too', () => {
    expectFault(withContext({ tt: 2, aw: 0 }), 0x3);
  });

  it('decodes FPD, DID and SLPTPTR', () => {
    expect(expectContext(withContext({ fpd: true, did: 0xffff, slptptr: 0x7f_ffff_f000 }))).toEqual({
      did: 0xffff, passThrough: false, slptptr: 0x7f_ffff_f000, levels: 3, fpd: true, pasid: undefined,
    });
  });

  it('scalableRoot is ignored without x-scalable-mode (legacy 16-byte entries)', () => {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: CTX }));
    t.legacyContext(CTX, 0x20, { did: 9 });
    expect(expectContext(resolveContext(mem, cfg, ROOT, true, SID)).did).toBe(9);
  });
});

describe('resolveContext: scalable mode', () => {
  const cfg = cfgOf({ scalableMode: true });
  const DIR = 0x5_0000;
  const PT = 0x6_0000;

  /** Root -> SM context (devfn 0x20, RID_PASID 5) -> PASID dir entry 0 -> PASID entry 5. */
  function smSetup(): { mem: SparseRam; t: VtdTables } {
    const s = setup();
    s.t.root(ROOT, 0, scalableRootEntry({ lctp: CTX }));
    s.t.scalableContext(CTX, 0x20, { pasidDir: DIR, ridPasid: 5 });
    s.t.pasidDir(DIR, 5, { table: PT });
    s.t.pasidEntry(PT, 5, { aw: 1, pgtt: 2, slptptr: 0x30_0000, did: 0x42 });
    return s;
  }

  it('resolves RID_PASID through the PASID directory and table', () => {
    const { mem } = smSetup();
    expect(expectContext(resolveContext(mem, cfg, ROOT, true, SID))).toEqual({
      did: 0x42, passThrough: false, slptptr: 0x30_0000, levels: 3, fpd: false, pasid: 5,
      scalable: { pasidDir: DIR, ridPasid: 5, contextFpd: false },
    });
  });

  it('refreshPasid re-reads the PASID entry under the cached context entry (QEMU 7.2: no PASID cache)', () => {
    const { mem, t } = smSetup();
    const ctx = expectContext(resolveContext(mem, cfg, ROOT, true, SID));
    // The guest rewrites the PASID entry, and zaps the context entry (still cached).
    t.pasidEntry(PT, 5, { aw: 1, pgtt: 4, slptptr: 0x34_0000, did: 0x43, fpd: true });
    t.scalableContext(CTX, 0x20, { present: false });
    expect(expectContext(refreshPasid(mem, cfg, ctx))).toEqual({
      did: 0x43, passThrough: true, slptptr: 0x34_0000, levels: 3, fpd: true, pasid: 5,
      scalable: { pasidDir: DIR, ridPasid: 5, contextFpd: false },
    });
    t.pasidDir(DIR, 5, { present: false, table: PT });
    expectFault(refreshPasid(mem, cfg, ctx), 0x58);
    // A not-present directory entry with FPD still gives 0x58, never suppressed.
    t.pasidDir(DIR, 5, { present: false, fpd: true, table: PT });
    expectFault(refreshPasid(mem, cfg, ctx), 0x58);
  });

  it('refreshPasid returns a legacy context unchanged', () => {
    const { mem, t } = setup();
    t.root(ROOT, 0, legacyRootEntry({ ctp: CTX }));
    t.legacyContext(CTX, 0x20, { did: 3 });
    const ctx = expectContext(resolveContext(mem, cfgOf(), ROOT, false, SID));
    expect(refreshPasid(mem, cfgOf(), ctx)).toBe(ctx);
  });

  it('context entries are 32 bytes; devfn >= 128 uses the upper half (UP/UCTP) at index devfn & 0x7f', () => {
    const { mem, t } = smSetup();
    expectFault(resolveContext(mem, cfg, ROOT, true, 0x00a0), 0x1); // UP clear while LP set
    t.root(ROOT, 0, scalableRootEntry({ lctp: CTX, uctp: CTX + 0x1000 }));
    t.scalableContext(CTX + 0x1000, 0xa0, { pasidDir: DIR, ridPasid: 5 });
    expect(expectContext(resolveContext(mem, cfg, ROOT, true, 0x00a0)).did).toBe(0x42);
    // devfn 0x20 still uses LCTP: its entry at CTX + 0x20 * 32.
    expect(expectContext(resolveContext(mem, cfg, ROOT, true, SID)).did).toBe(0x42);
  });

  it('root reserved bits in either half -> 0xa', () => {
    const { mem, t } = smSetup();
    t.root(ROOT, 0, scalableRootEntry({ lctp: CTX, extraHi: 0x4n }));
    expectFault(resolveContext(mem, cfg, ROOT, true, SID), 0xa);
    t.root(ROOT, 0, scalableRootEntry({ lctp: CTX, extraHi: 1n << 40n }));
    expectFault(resolveContext(mem, cfg, ROOT, true, SID), 0xa);
  });

  it('context not present -> 0x2 (SM context FPD suppresses); reserved -> 0xb', () => {
    const { mem, t } = smSetup();
    t.scalableContext(CTX, 0x20, { present: false, fpd: true });
    expectFault(resolveContext(mem, cfg, ROOT, true, SID), 0x2, true);
    for (const extra of [
      [0x20n, 0n, 0n, 0n],
      [1n << 40n, 0n, 0n, 0n],
      [0n, 1n << 21n, 0n, 0n],
      [0n, 0n, 1n, 0n],
      [0n, 0n, 0n, 1n << 63n],
    ] as Array<[bigint, bigint, bigint, bigint]>) {
      t.scalableContext(CTX, 0x20, { pasidDir: DIR, ridPasid: 5, fpd: true, extra });
      expectFault(resolveContext(mem, cfg, ROOT, true, SID), 0xb);
    }
    // PDTS (bits 11:9) and DTE/PASIDE/PRE (bits 4:2) are not reserved.
    t.scalableContext(CTX, 0x20, { pasidDir: DIR, ridPasid: 5, extra: [0xe1cn, 0n, 0n, 0n] });
    expect(isContextFault(resolveContext(mem, cfg, ROOT, true, SID))).toBe(false);
  });

  it('PASID problems -> 0x58, never suppressed', () => {
    const cases: Array<(t: VtdTables) => void> = [
      (t) => t.pasidDir(DIR, 5, { present: false, table: PT }),
      (t) => t.pasidEntry(PT, 5, { present: false, slptptr: 0x30_0000 }),
      (t) => t.pasidEntry(PT, 5, { pgtt: 0 }),
      (t) => t.pasidEntry(PT, 5, { pgtt: 5 }),
      (t) => t.pasidEntry(PT, 5, { aw: 2 }), // 4-level at aw 39
      (t) => t.pasidEntry(PT, 5, { aw: 0 }),
      (t) => t.pasidDir(DIR, 5, { table: OUTSIDE }),
      (t) => t.scalableContext(CTX, 0x20, { pasidDir: OUTSIDE, ridPasid: 5 }),
      (t) => t.scalableContext(CTX, 0x20, { pasidDir: DIR, ridPasid: 6, fpd: true }),
    ];
    for (const broken of cases) {
      const { mem, t } = smSetup();
      broken(t);
      expectFault(resolveContext(mem, cfg, ROOT, true, SID), 0x58);
    }
  });

  it('PGTT 1/2/3 walk the second level; 4 is pass-through only with pt', () => {
    for (const pgtt of [1, 2, 3]) {
      const { mem, t } = smSetup();
      t.pasidEntry(PT, 5, { pgtt, slptptr: 0x30_0000 });
      const ctx = expectContext(resolveContext(mem, cfg, ROOT, true, SID));
      expect([ctx.passThrough, ctx.slptptr]).toEqual([false, 0x30_0000]);
    }
    const { mem, t } = smSetup();
    t.pasidEntry(PT, 5, { pgtt: 4 });
    expect(expectContext(resolveContext(mem, cfg, ROOT, true, SID)).passThrough).toBe(true);
    expectFault(resolveContext(mem, cfgOf({ scalableMode: true, passThrough: false }), ROOT, true, SID), 0x58);
  });

  it('PASID entry AW 2 gives 4 levels at aw 48', () => {
    const { mem, t } = smSetup();
    t.pasidEntry(PT, 5, { aw: 2, slptptr: 0x30_0000 });
    expect(expectContext(resolveContext(mem, cfgOf({ scalableMode: true, awBits: 48 }), ROOT, true, SID)).levels).toBe(4);
  });

  it('FPD comes from the context, the PASID directory entry or the PASID entry', () => {
    const a = smSetup();
    a.t.scalableContext(CTX, 0x20, { pasidDir: DIR, ridPasid: 5, fpd: true });
    expect(expectContext(resolveContext(a.mem, cfg, ROOT, true, SID)).fpd).toBe(true);
    const b = smSetup();
    b.t.pasidDir(DIR, 5, { table: PT, fpd: true });
    expect(expectContext(resolveContext(b.mem, cfg, ROOT, true, SID)).fpd).toBe(true);
    const c = smSetup();
    c.t.pasidEntry(PT, 5, { fpd: true, slptptr: 0x30_0000 });
    expect(expectContext(resolveContext(c.mem, cfg, ROOT, true, SID)).fpd).toBe(true);
  });

  it('indexes the directory by pasid >> 6 and the table by pasid & 0x3f', () => {
    const { mem, t } = smSetup();
    const pasid = 0x1234; // dir index 0x48, entry 0x34
    t.scalableContext(CTX, 0x20, { pasidDir: DIR, ridPasid: pasid });
    t.pasidDir(DIR, pasid, { table: PT + 0x1000 });
    t.pasidEntry(PT + 0x1000, pasid, { slptptr: 0x32_0000, did: 0x77 });
    writeWords(mem, DIR + 0x48 * 8 - 8, 0n); // the neighbour stays empty
    const ctx = expectContext(resolveContext(mem, cfg, ROOT, true, SID));
    expect([ctx.pasid, ctx.did, ctx.slptptr]).toEqual([pasid, 0x77, 0x32_0000]);
  });

  it('an explicit PASID selects its own entry (RID_PASID must still be valid)', () => {
    const { mem, t } = smSetup();
    t.pasidEntry(PT, 9, { slptptr: 0x33_0000, did: 0x99 });
    const ctx = expectContext(resolveContext(mem, cfg, ROOT, true, SID, 9));
    expect([ctx.pasid, ctx.did, ctx.slptptr]).toEqual([9, 0x99, 0x33_0000]);
    expectFault(resolveContext(mem, cfg, ROOT, true, SID, 10), 0x58);
  });
});

describe('walkSecondLevel', () => {
  const SL = 0x30_0000;

  function ctxOf(levels: 3 | 4, over: Partial<VtdContext> = {}): VtdContext {
    return { did: 1, passThrough: false, slptptr: SL, levels, fpd: false, pasid: undefined, ...over };
  }

  function walkSetup(): { mem: SparseRam; t: VtdTables } {
    const s = setup(0x40_0000);
    s.t.pte(SL, 0, 0n); // make sure the top table is in RAM (zeroed)
    return s;
  }

  const cfg39 = cfgOf();
  const cfg48 = cfgOf({ awBits: 48 });

  it('3-level 4 KiB read/write walk', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, 0x12_3456_7000n, 0x0abc_d000n);
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x12_3456_7, false, out)).toBe(0);
    expect(out).toEqual({ iovaPfn: 0x12_3456_7, pages: 1, xlatPfn: 0xabcd, perm: 3, level: 1 });
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x12_3456_7, true, out)).toBe(0);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x12_3456_8, false, out)).toBe(6);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x12_3456_8, true, out)).toBe(5);
  });

  it('4-level walk at aw 48 with a high iova', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 4, 0xabcd_1234_5000n, 0x7fff_f000n);
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg48, ctxOf(4), 0xabcd_1234_5, true, out)).toBe(0);
    expect(out).toEqual({ iovaPfn: 0xabcd_1234_5, pages: 1, xlatPfn: 0x7ffff, perm: 3, level: 1 });
  });

  it('2 MiB leaf (PS at level 2): iova aligned down, 512 pages', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, 0x4060_0000n, 0x0120_0000n, { leafLevel: 2 });
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x4060_0 + 0x1ff, false, out)).toBe(0);
    expect(out).toEqual({ iovaPfn: 0x40600, pages: 512, xlatPfn: 0x1200, perm: 3, level: 2 });
  });

  it('1 GiB leaf (PS at level 3) on 4 levels and at the top of 3 levels', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 4, 0x80_c000_0000n, 0x4000_0000n, { leafLevel: 3 });
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg48, ctxOf(4), 0x80_c000_0 + 0x12345, true, out)).toBe(0);
    expect(out).toEqual({ iovaPfn: 0x80_c000_0, pages: 0x40000, xlatPfn: 0x40000, perm: 3, level: 3 });
    const s = walkSetup();
    s.t.map(SL, 3, 0x40_0000_0000n, 0x8000_0000n, { leafLevel: 3 });
    expect(walkSecondLevel(s.mem, cfg39, ctxOf(3), 0x40_0000_0 + 5, false, out)).toBe(0);
    expect(out).toEqual({ iovaPfn: 0x40_0000_0, pages: 0x40000, xlatPfn: 0x80000, perm: 3, level: 3 });
  });

  it('PS at level 4 is reserved -> 0xc', () => {
    const { mem, t } = walkSetup();
    t.pte(SL, 1, slpte({ r: true, w: true, ps: true, addr: 0 }));
    expect(walkSecondLevel(mem, cfg48, ctxOf(4), 2 ** 27, false, newLeaf())).toBe(0xc);
  });

  it('iova beyond 2^min(AGAW, aw-bits) -> 0x4', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, (1n << 39n) - 0x1000n, 0x5000n);
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 2 ** 27 - 1, false, out)).toBe(0);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 2 ** 27, false, out)).toBe(4);
    expect(walkSecondLevel(mem, cfg48, ctxOf(3), 2 ** 27, false, out)).toBe(4); // 3-level context: AGAW 39
    expect(walkSecondLevel(mem, cfg48, ctxOf(4), 2 ** 36, false, out)).toBe(4);
    expect(walkSecondLevel(mem, cfg48, ctxOf(4), 2 ** 36 - 1, false, out)).toBe(6); // in range, not mapped
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), -1, false, out)).toBe(4);
  });

  it('permissions: read-only leaf faults writes (0x5), write-only leaf faults reads (0x6)', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, 0x1000n, 0x9000n, { w: false });
    t.map(SL, 3, 0x2000n, 0xa000n, { r: false });
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 1, true, out)).toBe(5);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 1, false, out)).toBe(0);
    expect(out.perm).toBe(1);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 2, false, out)).toBe(6);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 2, true, out)).toBe(0);
    expect(out.perm).toBe(2);
  });

  it('permissions are ANDed down the walk (read-only directory entry)', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, 0x4000_0000n, 0x9000n, { dirPerm: { r: true, w: false } });
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x40000, true, out)).toBe(5);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x40000, false, out)).toBe(0);
    expect(out.perm).toBe(1);
  });

  it('permission is checked before reserved bits at each level', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, 0x3000n, 0xb000n, { w: false, extra: 1n << 45n });
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 3, true, newLeaf())).toBe(5);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 3, false, newLeaf())).toBe(0xc);
    // A not-present entry with reserved bits is a permission fault too.
    t.map(SL, 3, 0x4000n, 0xc000n, { r: false, w: false, extra: 1n << 45n });
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 4, false, newLeaf())).toBe(6);
  });

  describe('reserved bits (7.2 masks)', () => {
    /** Walks a 3-level (aw 39) or 4-level (aw 48) mapping whose entry at `level` carries `extra`. */
    function reasonWith(level: number, extra: bigint, cfg: VtdConfig, leafLevel = 1): number {
      const { mem, t } = walkSetup();
      const levels = cfg.awBits === 48 ? 4 : 3;
      const iova = 0x4020_0000n;
      // Page address aligned to the leaf size (2 MiB at 18 MiB, or 1 GiB).
      t.map(SL, levels, iova, leafLevel === 3 ? 0x4000_0000n : 0x0120_0000n, { leafLevel });
      // Add `extra` to the entry at `level` on the path of `iova`.
      let table = SL;
      for (let l = levels; l >= level; l--) {
        const idx = Number((iova >> BigInt(12 + 9 * (l - 1))) & 0x1ffn);
        const gpa = table + idx * 8;
        const v = (BigInt(mem.readU32(gpa + 4)) << 32n) | BigInt(mem.readU32(gpa));
        if (l === level) writeWords(mem, gpa, v | extra);
        table = Number(v & 0xf_ffff_ffff_f000n);
      }
      return walkSecondLevel(mem, cfg, ctxOf(levels as 3 | 4), Number(iova >> 12n), false, newLeaf());
    }
    const dt = cfgOf({ deviceIotlb: true });
    const sm = cfgOf({ scalableMode: true });
    const dt48 = cfgOf({ awBits: 48, deviceIotlb: true });

    it.each([
      ['4K leaf bit 11 (SNP)', 1, 1n << 11n, cfg39, 0xc],
      ['4K leaf SNP with x-scalable-mode', 1, 1n << 11n, sm, 0],
      ['4K leaf bit 39 at aw 39', 1, 1n << 39n, cfg39, 0xc],
      ['4K leaf bit 51 at aw 48', 1, 1n << 51n, cfg48, 0xc],
      ['4K leaf bits 52..61 and 63 ignored', 1, 0xbff0_0000_0000_0000n, cfg39, 0],
      ['4K leaf bit 62 (TM)', 1, 1n << 62n, cfg39, 0xc],
      ['4K leaf TM with device-iotlb', 1, 1n << 62n, dt, 0],
      ['4K leaf bits 10:2 (X, EMT, IPAT, PS) not reserved', 1, 0x7fcn, cfg39, 0],
      ['L2 non-leaf bit 11', 2, 1n << 11n, sm, 0xc],
      ['L2 non-leaf TM even with device-iotlb', 2, 1n << 62n, dt, 0xc],
      ['L3 non-leaf bit 40', 3, 1n << 40n, cfg39, 0xc],
      ['L3 non-leaf bit 40 at aw 48', 3, 1n << 40n, cfg48, 0],
      ['L4 bit 11', 4, 1n << 11n, cfg48, 0xc],
      ['L4 TM with device-iotlb', 4, 1n << 62n, dt48, 0xc],
    ] as const)('%s', (_n, level, extra, cfg, reason) => {
      // Setting an address bit may move the next table out of RAM: only compare the reserved verdict.
      const r = reasonWith(level, extra, cfg);
      if (reason === 0) expect(r).not.toBe(0xc);
      else expect(r).toBe(reason);
    });

    it.each([
      ['2M leaf bit 12', 2, 1n << 12n, cfg39, 0xc],
      ['2M leaf bit 20', 2, 1n << 20n, cfg39, 0xc],
      ['2M leaf bit 21 is address', 2, 1n << 21n, cfg39, 0],
      ['2M leaf SNP', 2, 1n << 11n, cfg39, 0xc],
      ['2M leaf SNP with x-scalable-mode', 2, 1n << 11n, sm, 0],
      ['2M leaf TM with device-iotlb', 2, 1n << 62n, dt, 0],
      ['1G leaf bit 29', 3, 1n << 29n, cfg48, 0xc],
      ['1G leaf bit 30 is address', 3, 1n << 30n, cfg48, 0],
      ['1G leaf bit 47 at aw 48', 3, 1n << 47n, cfg48, 0],
      ['1G leaf bit 48 at aw 48', 3, 1n << 48n, cfg48, 0xc],
    ] as const)('%s', (_n, level, extra, cfg, reason) => {
      expect(reasonWith(level, extra, cfg, level)).toBe(reason);
    });
  });

  it('output address keeps bits up to HAW only (ignored high bits dropped)', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, 0x5000n, 0x7f_1234_5000n, { extra: (1n << 52n) | (1n << 63n) });
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 5, false, out)).toBe(0);
    expect(out.xlatPfn).toBe(0x7f_1234_5);
  });

  it('unreadable entries: top table -> 0x3, lower table -> 0x7', () => {
    const { mem, t } = walkSetup();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3, { slptptr: OUTSIDE }), 0, false, newLeaf())).toBe(3);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3, { slptptr: 2 ** 60 }), 0, false, newLeaf())).toBe(3);
    t.pte(SL, 0, slpte({ r: true, w: true, addr: OUTSIDE }));
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0, false, newLeaf())).toBe(7);
  });

  it('an all-ones entry reads as QEMU\'s read-error marker (0x3 at the top, 0x7 below)', () => {
    const { mem, t } = walkSetup();
    t.pte(SL, 0, 0xffff_ffff_ffff_ffffn);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0, false, newLeaf())).toBe(3);
    const s = walkSetup();
    s.t.map(SL, 3, 0n, 0n);
    const l2 = s.mem.readU32(SL) & ~0xfff;
    s.t.pte(l2, 0, 0xffff_ffff_ffff_ffffn);
    expect(walkSecondLevel(s.mem, cfg39, ctxOf(3), 0, false, newLeaf())).toBe(7);
  });

  it('output range in 0xfee00000-0xfeefffff -> 0xe (legacy) / 0x87 (x-scalable-mode)', () => {
    const { mem, t } = walkSetup();
    t.map(SL, 3, 0x1000n, 0xfee0_0000n);
    t.map(SL, 3, 0x2000n, 0xfeef_f000n);
    t.map(SL, 3, 0x3000n, 0xfedf_f000n);
    t.map(SL, 3, 0x4000n, 0xfef0_0000n);
    t.map(SL, 3, 0x20_0000n, 0xfec0_0000n, { leafLevel: 2 }); // 0xfec00000-0xfedfffff
    t.map(SL, 3, 0x40_0000n, 0xfee0_0000n, { leafLevel: 2 });
    t.map(SL, 3, 0xc000_0000n, 0xc000_0000n, { leafLevel: 3 }); // covers the range
    const out = newLeaf();
    const sm = cfgOf({ scalableMode: true });
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 1, false, out)).toBe(0xe);
    expect(walkSecondLevel(mem, sm, ctxOf(3), 1, false, out)).toBe(0x87);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 2, true, out)).toBe(0xe);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 3, false, out)).toBe(0);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 4, false, out)).toBe(0);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x200, false, out)).toBe(0);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x400, false, out)).toBe(0xe);
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0xc0000, false, out)).toBe(0xe);
  });

  it('pass-through context translates to the identity 4 KiB page with RW', () => {
    const { mem } = walkSetup();
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3, { passThrough: true, slptptr: OUTSIDE }), 0x12345, true, out)).toBe(0);
    expect(out).toEqual({ iovaPfn: 0x12345, pages: 1, xlatPfn: 0x12345, perm: 3, level: 1 });
  });

  it('a table whose entries point back at itself terminates (depth bounded by levels)', () => {
    const { mem, t } = walkSetup();
    for (let i = 0; i < 512; i++) t.pte(SL, i, slpte({ r: true, w: true, addr: SL }));
    const out = newLeaf();
    expect(walkSecondLevel(mem, cfg39, ctxOf(3), 0x1234, false, out)).toBe(0);
    expect(out).toEqual({ iovaPfn: 0x1234, pages: 1, xlatPfn: SL / 4096, perm: 3, level: 1 });
  });
});
