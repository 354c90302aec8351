/**
 * The kit can fail: deliberately broken implementations (the VT-d model
 * behind a wrapper that breaks one rule) must be caught, with the rule the
 * breakage violates. The scenarios run directly (runScenario), so the
 * failure is asserted rather than reported as a failing test.
 */
import { ConformanceFailure, conformanceScenarios, runScenario } from '../../src/conformance';
import type { ConformanceAdapter, ConformanceScenario } from '../../src/conformance';
import { U64_MAX } from '../../src/core';
import type { IOMMUTLBEvent } from '../../src/core/tlb-entry';
import { vtdAdapter } from './vtd-adapter';
import type { VtdCtx } from './vtd-adapter';

const good = vtdAdapter(39);
type Notify = (e: IOMMUTLBEvent) => void;

/** The good adapter with its notify path rewritten. */
function withNotify(rewrite: (e: IOMMUTLBEvent, notify: Notify) => void): ConformanceAdapter<VtdCtx> {
  return { ...good, registerNotifier: (c, n, notify) => good.registerNotifier(c, n, (e) => rewrite(e, notify)) };
}

const copy = (e: IOMMUTLBEvent): IOMMUTLBEvent => ({ type: e.type, entry: { ...e.entry } });

const broken: Record<string, ConformanceAdapter<VtdCtx>> = {
  'drops UNMAPs': withNotify((e, n) => { if (e.type !== 1) n(e); }),
  'sends every MAP twice': withNotify((e, n) => { n(copy(e)); if (e.type === 2) n(copy(e)); }),
  'cuts UNMAPs of large entries to their first 4 KiB': withNotify((e, n) => {
    n(e.type === 1 && e.entry.addrMask > 0xfffn ? { type: 1, entry: { ...e.entry, addrMask: 0xfffn } } : e);
  }),
  'sends MAPs with perm NONE': withNotify((e, n) => n(e.type === 2 ? { type: 2, entry: { ...e.entry, perm: 0 } } : e)),
  'misaligns MAPs': withNotify((e, n) => n(e.type === 2 ? { type: 2, entry: { ...e.entry, translatedAddr: e.entry.translatedAddr + 0x800n } } : e)),
  'ignores listener ranges': {
    ...good,
    registerNotifier: (c, n, notify) => good.registerNotifier(c, { ...n, start: 0n, end: U64_MAX }, notify),
  },
  'never unregisters': {
    ...good,
    registerNotifier: (c, n, notify) => { good.registerNotifier(c, n, notify); return { unregister: () => {} }; },
  },
  'accepts any registration': {
    ...good,
    registerNotifier: (c, n, notify) => {
      try { return good.registerNotifier(c, n, notify); } catch { return { unregister: () => {} }; }
    },
  },
  'does not replay on registration': {
    ...good,
    registerNotifier: (c, n, notify) => {
      let live = false;
      const h = good.registerNotifier(c, n, (e) => { if (live) notify(e); });
      live = true;
      return h;
    },
  },
  'ignores page-selective invalidations': {
    ...good,
    invalidate: (c, iova, size) => (typeof size === 'string' ? good.invalidate(c, iova, size) : undefined),
  },
  'does not tear down on disable': {
    ...good,
    registerNotifier: (c, n, notify) => {
      const h = good.registerNotifier(c, n, (e) => { if (!(c as VtdCtx & { off?: boolean }).off) notify(e); });
      return h;
    },
    disableTranslation: (c) => { (c as VtdCtx & { off?: boolean }).off = true; good.disableTranslation!(c); },
    enableTranslation: (c) => { (c as VtdCtx & { off?: boolean }).off = false; good.enableTranslation!(c); },
  },
  'translates to the wrong page': {
    ...good,
    translate: (c, iova, access) => {
      const t = good.translate(c, iova, access) as ReturnType<typeof c.vtd.translate>;
      return 'fault' in t ? t : { ...t, translatedAddr: t.translatedAddr + 0x1000n * (t.addrMask + 1n) };
    },
  },
};

/** Which rule each breakage must be caught for (by at least one scenario). */
const expectedRule: Record<string, string[]> = {
  'drops UNMAPs': ['C4', 'C9'],
  'sends every MAP twice': ['C4'],
  'cuts UNMAPs of large entries to their first 4 KiB': ['C5'],
  'sends MAPs with perm NONE': ['C3'],
  'misaligns MAPs': ['C2'],
  'ignores listener ranges': ['C6'],
  'never unregisters': ['C10'],
  'accepts any registration': ['C1'],
  'does not replay on registration': ['C7'],
  'ignores page-selective invalidations': ['C9'],
  'does not tear down on disable': ['C8'],
  'translates to the wrong page': ['C9'],
};

async function failures(adapter: ConformanceAdapter<VtdCtx>): Promise<ConformanceFailure[]> {
  const out: ConformanceFailure[] = [];
  for (const s of conformanceScenarios as readonly ConformanceScenario[]) {
    try {
      await runScenario(s, adapter, { numRuns: 10, seed: 42 });
    } catch (e) {
      if (!ConformanceFailure.is(e)) throw e;
      out.push(e);
    }
  }
  return out;
}

describe('the conformance kit catches broken implementations', () => {
  test('the unbroken adapter passes every scenario', async () => {
    expect((await failures(good)).map((f) => f.message)).toEqual([]);
  });

  test.each(Object.keys(broken))('an implementation that %s fails', async (name) => {
    const found = await failures(broken[name]!);
    expect(found.length).toBeGreaterThan(0);
    const rules = new Set(found.map((f) => f.rule));
    expect(expectedRule[name]!.filter((r) => rules.has(r))).not.toEqual([]);
    // Failures name the scenario and the step.
    expect(found[0]!.message).toMatch(/\(.+, at ".+"\)/);
  });

  test('describeIommuConformance outside jest globals says so', () => {
    // The kit refuses to run without describe/test rather than silently doing nothing.
    const g = globalThis as { describe?: unknown };
    const saved = g.describe;
    g.describe = undefined;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { describeIommuConformance } = require('../../src/conformance') as typeof import('../../src/conformance');
      expect(() => describeIommuConformance('x', good)).toThrow(/jest globals/);
    } finally {
      g.describe = saved;
    }
  });
});
