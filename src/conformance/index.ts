/**
 * `viommu/conformance`: a jest suite factory that checks an IOMMU
 * implementation against the notifier contract (docs/contract.md,
 * C1..C10). The implementation provides a small adapter (see
 * ConformanceAdapter); the kit plays the guest and the host, keeps its own
 * model of the page tables and of every listener's view (computed from the
 * events each listener received, never from the implementation), checks
 * every event against C2..C6 and C10 as it arrives, and after every step
 * compares each MAP|UNMAP listener's view with the tables (C7..C9).
 *
 * ```ts
 * // my-iommu.conformance.test.ts
 * import { describeIommuConformance } from 'viommu/conformance';
 * describeIommuConformance('my-iommu', myAdapter, { numRuns: 25 });
 * ```
 *
 * The adapter states what the implementation supports
 * (`capabilities`: MAP notifiers or UNMAP only, DEVIOTLB_UNMAP, IOVA width,
 * reserved IOVA windows, page tables or requests; translation that can be
 * disabled is stated by having disableTranslation/enableTranslation). The
 * scenarios adapt to it (their IOVAs move clear of reserved windows, their
 * listeners leave out MAP on an UNMAP-only implementation, which must
 * refuse MAP registrations, C1) or are skipped with the reason.
 *
 * The scenarios are exported too (`conformanceScenarios`, `runScenario`), to
 * run them outside jest or to assert that a broken implementation fails.
 *
 * Peer dependencies (both optional for users who never import this entry
 * point): jest, whose global `describe`/`test` the suite factory declares its
 * tests with, and fast-check, which the property scenario runs on. Without
 * fast-check that one scenario is skipped with its reason.
 */
import { conformanceScenarios } from './scenarios';
import type { ConformanceScenario } from './scenarios';
import type { ConformanceAdapter, ConformanceOptions } from './types';

export { ConformanceFailure, PAGE_4K, PAGE_2M, PAGE_1G } from './types';
export type {
  ConformanceAdapter, ConformanceCapabilities, ConformanceCreateOptions, ConformanceNotifierHandle, ConformanceOptions, PageSize,
} from './types';
export { conformanceScenarios } from './scenarios';
export type { ConformanceScenario } from './scenarios';

/** What `runScenario` resolves with: the scenario ran and conformed, or could not run here (and why). */
export type ScenarioOutcome = { status: 'passed' } | { status: 'skipped'; reason: string };

/**
 * Runs one scenario against a fresh instance of the implementation. Resolves
 * with `passed` when the implementation conforms, or `skipped` with a reason
 * when the scenario needs what this adapter or installation lacks (a
 * capability such as MAP notifiers or enough IOVA space clear of reserved
 * windows, an optional adapter method such as `disableTranslation`, or
 * fast-check);
 * rejects with a ConformanceFailure (rule, scenario, step, what was wrong) at
 * the first broken rule.
 */
export async function runScenario<Ctx>(scenario: ConformanceScenario, adapter: ConformanceAdapter<Ctx>, options: ConformanceOptions = {}): Promise<ScenarioOutcome> {
  const a = adapter as ConformanceAdapter<unknown>;
  const reason = scenario.unavailable?.(a);
  if (reason !== undefined) return { status: 'skipped', reason };
  await scenario.run(a, options);
  return { status: 'passed' };
}

type JestLike = {
  describe: (name: string, fn: () => void) => void;
  test: (name: string, fn: () => Promise<void>, timeout?: number) => void;
};

/**
 * Declares, with jest's global `describe` and `test`, one test per scenario
 * for `adapter`. Call it at the top level of a jest test file. A scenario
 * that cannot run here (see runScenario) is still declared, as a test whose
 * name ends in "skipped: <reason>", so the gap shows in every test report;
 * that test checks the scenario is indeed skipped for that reason.
 */
export function describeIommuConformance<Ctx>(name: string, adapter: ConformanceAdapter<Ctx>, options: ConformanceOptions = {}): void {
  const g = globalThis as unknown as Partial<JestLike>;
  if (typeof g.describe !== 'function' || typeof g.test !== 'function') {
    throw new Error('describeIommuConformance: jest globals (describe, test) are missing; call it from a jest test file, or use runScenario');
  }
  const { describe, test } = g as JestLike;
  const caps = adapter.capabilities;
  const stated = [
    caps?.mapNotifiers === false ? 'UNMAP notifiers only' : '',
    caps?.mapping === 'requests' ? 'request-based' : '',
  ].filter((x) => x !== '').join(', ');
  describe(`${name}${stated ? ` (${stated})` : ''}: IOMMU notifier contract conformance`, () => {
    for (const s of conformanceScenarios) {
      const title = `${s.name} (${s.rules.join(', ')})`;
      const reason = s.unavailable?.(adapter as ConformanceAdapter<unknown>);
      if (reason === undefined) {
        test(title, async () => { await runScenario(s, adapter, options); });
      } else {
        test(`${title}: skipped: ${reason}`, async () => {
          const outcome = await runScenario(s, adapter, options);
          if (outcome.status !== 'skipped' || outcome.reason !== reason) throw new Error(`expected the scenario to be skipped (${reason}), got ${JSON.stringify(outcome)}`);
        });
      }
    }
  });
}
