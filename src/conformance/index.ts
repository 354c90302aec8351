/**
 * `viommu/conformance`: a jest suite factory that checks an IOMMU
 * implementation against the notifier contract (shared/spec/contract.md,
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
 * The scenarios are exported too (`conformanceScenarios`, `runScenario`), to
 * run them outside jest or to assert that a broken implementation fails.
 * The property scenario uses fast-check, which must be installed.
 */
import { conformanceScenarios } from './scenarios';
import type { ConformanceScenario } from './scenarios';
import type { ConformanceAdapter, ConformanceOptions } from './types';

export { ConformanceFailure, PAGE_4K, PAGE_2M, PAGE_1G } from './types';
export type { ConformanceAdapter, ConformanceNotifierHandle, ConformanceOptions, PageSize } from './types';
export { conformanceScenarios } from './scenarios';
export type { ConformanceScenario } from './scenarios';

/**
 * Runs one scenario against a fresh instance of the implementation. Resolves
 * when the implementation conforms; rejects with a ConformanceFailure (rule,
 * scenario, step, what was wrong) at the first broken rule.
 */
export function runScenario<Ctx>(scenario: ConformanceScenario, adapter: ConformanceAdapter<Ctx>, options: ConformanceOptions = {}): Promise<void> {
  return scenario.run(adapter as ConformanceAdapter<unknown>, options);
}

type JestLike = {
  describe: (name: string, fn: () => void) => void;
  test: (name: string, fn: () => Promise<void>, timeout?: number) => void;
};

/**
 * Declares, with jest's global `describe` and `test`, one test per scenario
 * for `adapter`. Call it at the top level of a jest test file. Scenarios that
 * need `disableTranslation` are declared only when the adapter has it.
 */
export function describeIommuConformance<Ctx>(name: string, adapter: ConformanceAdapter<Ctx>, options: ConformanceOptions = {}): void {
  const g = globalThis as unknown as Partial<JestLike>;
  if (typeof g.describe !== 'function' || typeof g.test !== 'function') {
    throw new Error('describeIommuConformance: jest globals (describe, test) are missing; call it from a jest test file, or use runScenario');
  }
  const { describe, test } = g as JestLike;
  describe(`${name}: IOMMU notifier contract conformance`, () => {
    for (const s of conformanceScenarios) {
      if (s.needsDisable && (adapter.disableTranslation === undefined || adapter.enableTranslation === undefined)) continue;
      test(`${s.name} (${s.rules.join(', ')})`, () => runScenario(s, adapter, options));
    }
  });
}
