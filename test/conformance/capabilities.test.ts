/**
 * The kit is model-neutral: an adapter states what its implementation
 * supports (ConformanceAdapter.capabilities) and the scenarios adapt or are
 * skipped with the reason.
 * - An UNMAP-only implementation (VT-d without caching mode: QEMU refuses a
 *   MAP notifier there, docs/contract.md C1) runs every rule that applies to
 *   UNMAP listeners, skips replay (C7) and teardown (C8) with the reason,
 *   and must refuse MAP registrations.
 * - IOVAs stay inside the stated width and clear of the reserved windows.
 * - What is stated as unsupported (DEVIOTLB_UNMAP) must be refused.
 */
import { ConformanceFailure, conformanceScenarios, describeIommuConformance, runScenario } from '../../src/conformance';
import type { ConformanceAdapter, ConformanceCapabilities } from '../../src/conformance';
import type { ScenarioOutcome } from '../../src/conformance';
import { X86_MSI_RANGE } from '../../src/core';
import { vtdAdapter } from './vtd-adapter';
import type { VtdCtx } from './vtd-adapter';

const MAP = 0x2;
const UNMAP = 0x1;
const DEVIOTLB_UNMAP = 0x4;
const OPTS = { numRuns: 8, seed: 7 };

/** Runs every scenario; outcome by scenario name (a ConformanceFailure is kept, anything else thrown). */
async function runAll(adapter: ConformanceAdapter<VtdCtx>): Promise<Map<string, ScenarioOutcome | ConformanceFailure>> {
  const out = new Map<string, ScenarioOutcome | ConformanceFailure>();
  for (const s of conformanceScenarios) {
    try {
      out.set(s.name, await runScenario(s, adapter, OPTS));
    } catch (e) {
      if (!ConformanceFailure.is(e)) throw e;
      out.set(s.name, e);
    }
  }
  return out;
}

/** The adapter with its capabilities replaced. */
function stating<C>(a: ConformanceAdapter<C>, caps: ConformanceCapabilities): ConformanceAdapter<C> {
  return { ...a, capabilities: { ...a.capabilities, ...caps } };
}

/** Records the registrations that succeeded and every map call the kit made. */
function spied(a: ConformanceAdapter<VtdCtx>) {
  const registered: number[] = [];
  const maps: Array<[bigint, bigint]> = [];
  /** Events delivered to the kit's listeners, by type. */
  const events = new Map<number, number>();
  const adapter: ConformanceAdapter<VtdCtx> = {
    ...a,
    registerNotifier: (c, n, notify) => {
      const h = a.registerNotifier(c, n, (e) => { events.set(e.type, (events.get(e.type) ?? 0) + 1); notify(e); });
      registered.push(n.flags);
      return h;
    },
    map: (c, iova, gpa, size, perm) => {
      maps.push([iova, iova + size - 1n]);
      return a.map(c, iova, gpa, size, perm);
    },
  };
  return { adapter, registered, maps, events };
}

const UNMAP_ONLY_REASON = 'the implementation serves UNMAP notifiers only (capabilities.mapNotifiers false); this rule holds for MAP listeners';

describe('an UNMAP-only implementation (VT-d without caching mode)', () => {
  const unmapOnly = vtdAdapter(39, { cachingMode: false });

  test('the adapter states it, and the model indeed refuses a MAP notifier', () => {
    expect(unmapOnly.capabilities?.mapNotifiers).toBe(false);
    const c = unmapOnly.create({ mapNotifiers: false, cachingMode: false }) as VtdCtx;
    expect(() => c.vtd.addressSpace(0x20).registerNotifier({ flags: MAP | UNMAP, start: 0n, end: 0xffffn, notify: () => {} })).toThrow();
  });

  test('replay (C7) and teardown (C8) are skipped with the reason; every other scenario passes', async () => {
    const { adapter, registered, events } = spied(unmapOnly);
    const results = await runAll(adapter);
    const skipped = [...results].filter(([, r]) => !ConformanceFailure.is(r) && r.status === 'skipped');
    expect(skipped.map(([name]) => name).sort()).toEqual(
      conformanceScenarios.filter((s) => s.rules.includes('C7') && s.rules.length === 1 || s.rules.includes('C8')).map((s) => s.name).sort(),
    );
    for (const [, r] of skipped) expect(r).toEqual({ status: 'skipped', reason: UNMAP_ONLY_REASON });
    const failed = [...results].filter(([, r]) => ConformanceFailure.is(r)).map(([, r]) => (r as Error).message);
    expect(failed).toEqual([]);
    // The kit's listeners were registered, all without MAP.
    expect(registered.length).toBeGreaterThan(10);
    expect(registered.filter((f) => (f & MAP) !== 0)).toEqual([]);
    // They received UNMAPs (the guest's invalidations), each checked by the kit, and no MAP.
    expect(events.get(UNMAP) ?? 0).toBeGreaterThan(10);
    expect(events.get(MAP)).toBeUndefined();
  });

  test('describeIommuConformance declares the skipped scenarios with their reason, and names the mode', () => {
    const declared: string[] = [];
    const suites: string[] = [];
    const g = globalThis as unknown as { describe: unknown; test: unknown };
    const saved = { describe: g.describe, test: g.test };
    g.describe = (n: string, body: () => void) => { suites.push(n); body(); };
    g.test = (name: string) => { declared.push(name); };
    try {
      describeIommuConformance('vtd-no-cm', unmapOnly);
    } finally {
      g.describe = saved.describe;
      g.test = saved.test;
    }
    expect(suites).toEqual(['vtd-no-cm (UNMAP notifiers only): IOMMU notifier contract conformance']);
    expect(declared.filter((n) => n.endsWith(`skipped: ${UNMAP_ONLY_REASON}`))).toHaveLength(2);
  });

  test('an implementation that says UNMAP only but accepts a MAP notifier fails C1', async () => {
    const lying = stating(vtdAdapter(39), { mapNotifiers: false }); // caching mode on: MAP is served
    const registration = conformanceScenarios.find((s) => s.rules.join() === 'C1')!;
    await expect(runScenario(registration, lying)).rejects.toMatchObject({ rule: 'C1', message: expect.stringMatching(/MAP on an implementation serving UNMAP notifiers only/) });
  });

  test('an UNMAP-only implementation that ignores listener ranges is still caught (C6)', async () => {
    const broken: ConformanceAdapter<VtdCtx> = {
      ...unmapOnly,
      registerNotifier: (c, n, notify) => unmapOnly.registerNotifier(c, { ...n, start: 0n, end: 2n ** 64n - 1n }, notify),
    };
    const results = await runAll(broken);
    const rules = [...results.values()].filter(ConformanceFailure.is).map((f) => f.rule);
    expect(rules).toContain('C6');
  });
});

describe('IOVA space: width and reserved windows', () => {
  const overlaps = (a: [bigint, bigint], r: { start: bigint; end: bigint }) => a[0] <= r.end && r.start <= a[1];

  test.each([
    ['the x86 MSI window', [X86_MSI_RANGE]],
    ['the MSI window and 4-8 GiB', [X86_MSI_RANGE, { start: 1n << 32n, end: (2n << 32n) - 1n }]],
    ['a window at 0', [{ start: 0n, end: 0xfffn }]],
  ])('with %s reserved, every IOVA the kit maps avoids them and stays below 2^39; everything passes', async (_n, reserved) => {
    const { adapter, maps } = spied(stating(vtdAdapter(39), { reservedIova: reserved }));
    const results = await runAll(adapter);
    expect([...results.values()].filter(ConformanceFailure.is).map((f) => f.message)).toEqual([]);
    expect(maps.length).toBeGreaterThan(50);
    for (const m of maps) {
      for (const r of reserved) expect(overlaps(m, r)).toBe(false);
      expect(m[1] < 1n << 39n).toBe(true);
    }
  });

  test('without reserved windows the scenarios start at IOVA 0', async () => {
    const { adapter, maps } = spied(stating(vtdAdapter(39), { reservedIova: [] }));
    const mapUnmap = conformanceScenarios.find((s) => s.name.startsWith('map and unmap'))!;
    await expect(runScenario(mapUnmap, adapter)).resolves.toEqual({ status: 'passed' });
    // The scenario maps its 1 GiB leaf at kit IOVA 3 GiB: the window 0xfee00000 lies inside it.
    expect(maps.some((m) => overlaps(m, X86_MSI_RANGE))).toBe(true);
  });

  test('a space too small for the scenarios skips every scenario that maps, with the reason', async () => {
    const small = stating(vtdAdapter(39), { iovaBits: 32, reservedIova: [X86_MSI_RANGE] });
    const results = await runAll(small);
    for (const s of conformanceScenarios) {
      const r = results.get(s.name)!;
      if (s.rules.join() === 'C1') continue; // registration maps nothing, but shares the rule: below
      expect(r).toEqual({ status: 'skipped', reason: expect.stringMatching(/4 GiB of IOVA space clear of the reserved windows below 2\^32/) });
    }
  });

  test('a malformed capability is an adapter error naming the field', async () => {
    const bad = stating(vtdAdapter(39), { iovaBits: 70 });
    await expect(runScenario(conformanceScenarios[1]!, bad)).rejects.toThrow(/capabilities\.iovaBits/);
  });
});

describe('DEVIOTLB_UNMAP notifiers', () => {
  const registration = conformanceScenarios.find((s) => s.rules.join() === 'C1')!;

  test('stated as unsupported: the VT-d model without device-iotlb refuses them and passes', async () => {
    expect(vtdAdapter(39).capabilities?.devIotlbUnmap).toBe(false);
    await expect(runScenario(registration, vtdAdapter(39))).resolves.toEqual({ status: 'passed' });
  });

  test('stated as unsupported, a model that accepts them fails C1 (VT-d with device-iotlb serves them)', async () => {
    await expect(runScenario(registration, stating(vtdAdapter(39, { deviceIotlb: true }), { devIotlbUnmap: false })))
      .rejects.toMatchObject({ rule: 'C1', message: expect.stringMatching(/DEVIOTLB_UNMAP/) });
  });

  test('stated as served, the kit registers one in the scenarios that map, and they pass', async () => {
    const { adapter, registered } = spied(vtdAdapter(39, { deviceIotlb: true }));
    const results = await runAll(adapter);
    expect([...results.values()].filter(ConformanceFailure.is).map((f) => f.message)).toEqual([]);
    expect(registered).toContain(DEVIOTLB_UNMAP);
  });
});
