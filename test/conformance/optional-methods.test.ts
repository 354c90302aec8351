/**
 * An adapter may leave out the optional methods (disableTranslation,
 * enableTranslation): the scenarios that need them are skipped with a stated
 * reason instead of failing with a bare TypeError, and every other scenario
 * still runs. Likewise without fast-check (an optional peer dependency): the
 * property scenario is skipped, the rest of the kit loads and runs.
 */
import { conformanceScenarios, describeIommuConformance, runScenario } from '../../src/conformance';
import type { ConformanceAdapter } from '../../src/conformance';
import { vtdAdapter } from './vtd-adapter';
import type { VtdCtx } from './vtd-adapter';

const { disableTranslation: _d, enableTranslation: _e, ...withoutDisable } = vtdAdapter(39);
const noDisable: ConformanceAdapter<VtdCtx> = withoutDisable;
const teardown = conformanceScenarios.find((s) => s.rules.includes('C8'))!;

describe('an adapter without disableTranslation/enableTranslation', () => {
  test('the teardown scenario (C8) is skipped with the reason, without creating an instance', async () => {
    let created = 0;
    const counting: ConformanceAdapter<VtdCtx> = { ...noDisable, create: (o) => { created++; return noDisable.create(o); } };
    expect(teardown.needsDisable).toBe(true);
    await expect(runScenario(teardown, counting)).resolves.toEqual({
      status: 'skipped', reason: 'adapter has no disableTranslation or enableTranslation',
    });
    expect(created).toBe(0);
  });

  test('the reason names only what is missing', async () => {
    const { enableTranslation: _x, ...rest } = vtdAdapter(39);
    await expect(runScenario(teardown, rest)).resolves.toEqual({ status: 'skipped', reason: 'adapter has no enableTranslation' });
  });

  test('every other scenario still runs and passes', async () => {
    const outcomes = [];
    for (const s of conformanceScenarios) outcomes.push([s.name, (await runScenario(s, noDisable, { numRuns: 3, seed: 7 })).status]);
    expect(outcomes.filter(([, st]) => st === 'skipped')).toEqual([[teardown.name, 'skipped']]);
    expect(outcomes.filter(([, st]) => st === 'passed')).toHaveLength(conformanceScenarios.length - 1);
  });

  test('with the full adapter the teardown scenario runs (passed, not skipped)', async () => {
    await expect(runScenario(teardown, vtdAdapter(39))).resolves.toEqual({ status: 'passed' });
  });

  test('run directly (scenario.run), the missing method is named in a plain Error, not a TypeError', async () => {
    const err = await teardown.run(noDisable as ConformanceAdapter<unknown>, {}).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(/needs the adapter's optional disableTranslation/);
  });

  test('describeIommuConformance declares the skipped scenario as a test whose name gives the reason, and that test passes', async () => {
    const declared: { name: string; fn: () => Promise<void> }[] = [];
    const g = globalThis as unknown as { describe: unknown; test: unknown };
    const saved = { describe: g.describe, test: g.test };
    g.describe = (_n: string, body: () => void) => body();
    g.test = (name: string, fn: () => Promise<void>) => { declared.push({ name, fn }); };
    try {
      describeIommuConformance('no-disable', noDisable, { numRuns: 2 });
    } finally {
      g.describe = saved.describe;
      g.test = saved.test;
    }
    expect(declared).toHaveLength(conformanceScenarios.length);
    const skipped = declared.filter((d) => d.name.includes('skipped'));
    expect(skipped.map((d) => d.name)).toEqual([`${teardown.name} (${teardown.rules.join(', ')}): skipped: adapter has no disableTranslation or enableTranslation`]);
    await expect(skipped[0]!.fn()).resolves.toBeUndefined();
  });
});

describe('without fast-check installed', () => {
  afterAll(() => jest.dontMock('fast-check'));

  test('viommu/conformance loads, the property scenario is skipped with the reason, the others run', async () => {
    let kit: typeof import('../../src/conformance') | undefined;
    jest.isolateModules(() => {
      jest.doMock('fast-check', () => {
        throw Object.assign(new Error("Cannot find module 'fast-check'"), { code: 'MODULE_NOT_FOUND' });
      });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      kit = require('../../src/conformance') as typeof import('../../src/conformance');
    });
    if (kit === undefined) throw new Error('the kit did not load');
    const property = kit.conformanceScenarios.find((s) => s.name.includes('fast-check'))!;
    await expect(kit.runScenario(property, vtdAdapter(39))).resolves.toEqual({
      status: 'skipped', reason: 'fast-check is not installed (an optional peer dependency of viommu/conformance)',
    });
    const other = kit.conformanceScenarios.find((s) => s.rules.includes('C7'))!;
    await expect(kit.runScenario(other, vtdAdapter(39))).resolves.toEqual({ status: 'passed' });
  });
});
