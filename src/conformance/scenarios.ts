/**
 * The kit's scenarios. Each one plays a guest and a host against a fresh
 * instance and throws a ConformanceFailure at the first broken rule. The
 * expected state is always the kit's own (Harness.tables, listener views
 * computed from events), never the implementation's.
 */
import type * as FastCheck from 'fast-check';
import { U64_MAX } from '../core/guest-addr';
import { Harness } from './harness';
import type { ConformanceAdapter, ConformanceOptions, PageSize } from './types';
import { ConformanceFailure, PAGE_1G, PAGE_2M, PAGE_4K, resolveCapabilities, scenarioIovaBase } from './types';

const K4 = PAGE_4K;
const M2 = PAGE_2M;
const G1 = PAGE_1G;
const RO = 1;
const WO = 2;
const RW = 3;
const UNMAP = 0x1;
const MAP = 0x2;
const ALL = 0x3;
const DEVIOTLB_UNMAP = 0x4;

/** One scenario: a name, the rules it stresses, and its body. */
export interface ConformanceScenario {
  readonly name: string;
  readonly rules: readonly string[];
  /** Needs `disableTranslation`/`enableTranslation`. */
  readonly needsDisable?: boolean;
  /** Needs MAP notifiers (its rules hold only for a listener with a view: C7 replay, C8 teardown). */
  readonly needsMapNotifiers?: boolean;
  /**
   * Why the scenario cannot run against `adapter` here (what it needs is
   * not in the adapter's capabilities, an optional adapter method is
   * missing, an optional peer dependency is not installed), or undefined
   * when it can. `runScenario` skips it with this reason instead of
   * failing on the missing piece.
   */
  unavailable?(adapter: ConformanceAdapter<unknown>): string | undefined;
  run(adapter: ConformanceAdapter<unknown>, options: ConformanceOptions): Promise<void>;
}

/** The reason a scenario needing disable/enable cannot run against `adapter`, if any. */
function missingDisable(adapter: ConformanceAdapter<unknown>): string | undefined {
  const missing = (['disableTranslation', 'enableTranslation'] as const).filter((m) => typeof adapter[m] !== 'function');
  return missing.length === 0 ? undefined : `adapter has no ${missing.join(' or ')}`;
}

/** Why no scenario fits the adapter's IOVA space (capabilities.iovaBits, reservedIova), if so. */
function noIovaSpace(adapter: ConformanceAdapter<unknown>): string | undefined {
  const b = scenarioIovaBase(resolveCapabilities(adapter));
  return 'reason' in b ? b.reason : undefined;
}

/** What keeps a scenario with these needs from running against `adapter` (the first reason), if anything. */
function unavailableFor(needs: { disable: boolean; mapNotifiers: boolean }) {
  return (adapter: ConformanceAdapter<unknown>): string | undefined => {
    const space = noIovaSpace(adapter);
    if (space !== undefined) return space;
    if (needs.mapNotifiers && !resolveCapabilities(adapter).mapNotifiers) {
      return 'the implementation serves UNMAP notifiers only (capabilities.mapNotifiers false); this rule holds for MAP listeners';
    }
    return needs.disable ? missingDisable(adapter) : undefined;
  };
}

/**
 * fast-check, loaded when the property scenario first needs it: it is an
 * optional peer dependency, so `viommu/conformance` must load (and its other
 * scenarios run) without it. Undefined when it is not installed.
 */
let fastCheck: typeof FastCheck | null | undefined;
function loadFastCheck(): typeof FastCheck | undefined {
  if (fastCheck === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      fastCheck = require('fast-check') as typeof FastCheck;
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw e;
      fastCheck = null;
    }
  }
  return fastCheck ?? undefined;
}

/** Runs `body` on a fresh harness, then checks nothing is left pending. */
async function withHarness(adapter: ConformanceAdapter<unknown>, name: string, body: (h: Harness) => Promise<void>): Promise<void> {
  const h = await Harness.create(adapter, name);
  try {
    await body(h);
    h.flush();
  } finally {
    await h.destroy();
  }
}

function scenario(
  name: string, rules: string[], body: (h: Harness) => Promise<void>, needs: { disable?: boolean; mapNotifiers?: boolean } = {},
): ConformanceScenario {
  const needsDisable = needs.disable ?? false;
  const needsMapNotifiers = needs.mapNotifiers ?? false;
  return {
    name, rules, needsDisable, needsMapNotifiers,
    unavailable: unavailableFor({ disable: needsDisable, mapNotifiers: needsMapNotifiers }),
    run: (adapter) => withHarness(adapter, name, body),
  };
}

/** Registers a DEVIOTLB_UNMAP listener over kit-relative [0, end] when the implementation serves them (capabilities.devIotlbUnmap). */
async function registerDevIotlb(h: Harness, end: bigint = U64_MAX): Promise<void> {
  if (h.caps.devIotlbUnmap === true) await h.register('deviotlb', DEVIOTLB_UNMAP, 0n, end);
}

const registration = scenario('registration is refused without flags, with an empty range, or for a notifier the implementation does not serve', ['C1'], async (h) => {
  const refused = async (why: string, n: { flags: number; start: bigint; end: bigint }) => {
    h.step = `register ${why}`;
    let threw = false;
    try {
      const handle = await h.adapter.registerNotifier(h.ctx, n, () => {});
      await handle.unregister();
    } catch {
      threw = true;
    }
    if (!threw) h.fail('C1', `a notifier with ${why} was accepted`);
  };
  await refused('no flag (NONE)', { flags: 0, start: 0n, end: 0xffff_ffffn });
  await refused('an empty range (start > end)', { flags: h.caps.mapNotifiers ? ALL : UNMAP, start: 0x2000n, end: 0x1000n });
  // What the adapter says the implementation does not serve must be refused, not accepted and starved.
  if (!h.caps.mapNotifiers) {
    await refused('MAP on an implementation serving UNMAP notifiers only', { flags: MAP, start: 0n, end: U64_MAX });
    await refused('MAP|UNMAP on an implementation serving UNMAP notifiers only', { flags: ALL, start: 0n, end: U64_MAX });
  }
  if (h.caps.devIotlbUnmap === false) await refused('DEVIOTLB_UNMAP on an implementation without them', { flags: DEVIOTLB_UNMAP, start: 0n, end: U64_MAX });
  h.flush();
});

const mapUnmap = scenario('map and unmap 4K, 2M and 1G leaves', ['C2', 'C3', 'C4', 'C5', 'C9'], async (h) => {
  await h.register('all', ALL);
  await h.register('unmap-only', UNMAP);
  await registerDevIotlb(h);
  for (let i = 0n; i < 3n; i++) await h.map(G1 + i * K4, 0x1_0000_0000n + i * K4, K4, RW);
  await h.invalidate(G1, 4n * K4);
  await h.map(2n * G1 + M2, 0x2_0000_0000n, M2, RO);
  await h.invalidate(2n * G1 + M2, M2);
  await h.map(3n * G1, 0x4_0000_0000n, G1, WO);
  await h.invalidate(3n * G1, G1);
  await h.checkTranslations();
  await h.unmap(G1 + K4, K4);
  await h.invalidate(G1 + K4, K4);
  await h.unmap(2n * G1 + M2, M2);
  await h.invalidate(2n * G1 + M2, M2);
  await h.unmap(3n * G1, G1);
  await h.invalidate(3n * G1, G1);
  await h.checkTranslations();
});

const changeInPlace = scenario('a mapping changed in place is UNMAP then MAP; re-invalidation repeats nothing', ['C4', 'C5', 'C9'], async (h) => {
  await h.register('all', ALL);
  await h.map(0x10_0000n, 0x8000_0000n, K4, RW);
  await h.invalidate(0x10_0000n, K4);
  await h.map(0x10_0000n, 0x9000_0000n, K4, RW); // other address
  await h.invalidate(0x10_0000n, K4);
  await h.map(0x10_0000n, 0x9000_0000n, K4, RO); // other permission
  await h.invalidate(0x10_0000n, K4);
  await h.invalidate(0x10_0000n, K4); // nothing changed: no MAP over the identical live entry
  await h.map(M2, 0xa000_0000n, M2, RW);
  await h.invalidate(M2, M2);
  await h.map(M2, 0xa020_0000n, M2, RW);
  await h.invalidate(0n, 'domain');
  await h.invalidate(0n, 'global');
  await h.checkTranslations();
});

const largeSmall = scenario('a 2M leaf replaced by a 4K table and back, a 1G leaf by 2M leaves and back', ['C4', 'C5', 'C9'], async (h) => {
  await h.register('all', ALL);
  await h.map(G1 + M2, 0x2_0000_0000n, M2, RW);
  await h.invalidate(G1 + M2, M2);
  await h.map(G1 + M2 + 3n * K4, 0x3_0000_0000n, K4, RO); // the 2M leaf becomes a table
  await h.map(G1 + M2 + 9n * K4, 0x3_0001_0000n, K4, RW);
  await h.invalidate(G1 + M2, M2);
  await h.checkTranslations();
  await h.map(G1 + M2, 0x2_0020_0000n, M2, RW); // the table becomes a 2M leaf again
  await h.invalidate(G1 + M2, M2);
  await h.map(2n * G1, 0x40_0000_0000n, G1, RW);
  await h.invalidate(2n * G1, G1);
  await h.map(2n * G1 + 5n * M2, 0x5_0000_0000n, M2, RO); // 1G leaf -> table of 2M leaves
  await h.map(2n * G1 + 5n * M2 + M2 + K4, 0x5_1000_0000n, K4, RW);
  await h.invalidate(2n * G1, G1);
  await h.checkTranslations();
  await h.map(2n * G1, 0x60_0000_0000n, G1, RO);
  await h.invalidate(2n * G1, G1);
  await h.checkTranslations();
});

const cutLarge = scenario('invalidations that cut large pages', ['C5', 'C9'], async (h) => {
  await h.register('all', ALL);
  await h.map(M2 * 4n, 0x2_0000_0000n, M2, RW);
  await h.invalidate(M2 * 4n, M2);
  await h.map(M2 * 4n, 0x2_0040_0000n, M2, RO); // retarget the 2M leaf
  await h.invalidate(M2 * 4n + 7n * K4, K4, false); // only one 4K of it
  await h.invalidate(M2 * 4n, M2);
  await h.map(G1, 0x40_0000_0000n, G1, RW);
  await h.invalidate(G1, G1);
  await h.map(G1, 0x60_0000_0000n, G1, RW);
  await h.invalidate(G1 + 3n * M2, M2, false);
  await h.invalidate(G1, G1);
  await h.map(M2 * 8n + K4, 0x3_0000_0000n, K4, RW);
  await h.invalidate(M2 * 8n, M2);
  await h.map(M2 * 8n, 0x3_0020_0000n, M2, RW); // a 4K table replaced by a 2M leaf, invalidated in part
  await h.invalidate(M2 * 8n + K4, K4, false);
  await h.invalidate(M2 * 8n, M2);
  await h.checkTranslations();
});

const rangeCuts = scenario('notifier ranges that cut entries', ['C6', 'C7', 'C9'], async (h) => {
  await h.map(0n, 0x2_0000_0000n, M2, RW);
  await h.map(M2, 0x3_0000_0000n, M2, RO);
  await h.map(G1, 0x40_0000_0000n, G1, RW);
  await h.invalidate(0n, 'global');
  await h.register('window', ALL, K4 * 3n, M2 + 5n * K4 - 1n); // starts inside the first leaf, ends inside the second
  await h.register('tail', ALL, G1 + 0x1234_5000n, (2n * G1) - 1n);
  await h.register('unmap-window', UNMAP, M2, M2 + K4 - 1n);
  await h.map(M2, 0x3_0040_0000n, M2, RW);
  await h.invalidate(M2, M2);
  await h.map(G1, 0x60_0000_0000n, G1, RO);
  await h.invalidate(G1, G1);
  await h.unmap(0n, M2);
  await h.invalidate(0n, M2);
});

const replay = scenario('replay on registration', ['C7'], async (h) => {
  await h.map(0x4000_0000n, 0x1_0000_0000n, G1, RO);
  await h.map(0x20_0000n, 0x2_0000_0000n, M2, RW);
  for (let i = 0n; i < 5n; i++) await h.map(0x1000_0000n + i * K4 * 3n, 0x3_0000_0000n + i * K4, K4, WO);
  await h.invalidate(0n, 'global');
  await h.register('late', ALL);
  await h.register('late-window', ALL, 0x1000_1000n, 0x4000_0000n + M2 - 1n);
  await h.map(0x1000_0000n, 0x4_0000_0000n, K4, RW);
  await h.invalidate(0x1000_0000n, K4);
  await h.register('later', ALL, 0n, 0x3fff_ffffn);
}, { mapNotifiers: true });

const unregisterDuringDelivery = scenario('unregistering during delivery', ['C10'], async (h) => {
  await h.register('first', ALL, 0n, U64_MAX, (_e, l) => {
    // Leaves on its first event; the kit flags any later event to it as C10.
    if (l.received === 1) {
      l.registered = false;
      void l.handle?.unregister();
    }
  });
  await h.register('second', ALL);
  for (let i = 0n; i < 8n; i++) await h.map(M2 + i * K4, 0x1_0000_0000n + i * K4, K4, RW);
  await h.invalidate(M2, M2);
  const first = h.listeners[0]!;
  // With MAP served the invalidation MAPs 8 pages to it; UNMAP-only, it may have had nothing yet.
  if (h.caps.mapNotifiers && first.received !== 1) h.fail('C10', `listener first received ${first.received} events; it unregistered on the first`);
  await h.unmap(M2, M2);
  await h.invalidate(M2, M2);
  if (first.received > 1) h.fail('C10', `listener first received ${first.received} events; it unregistered on the first`);
  h.flush();
});

const teardown = scenario('teardown when translation is disabled', ['C8', 'C7', 'C9'], async (h) => {
  await h.register('all', ALL);
  await h.register('window', ALL, M2, G1 + M2 - 1n);
  await h.map(M2, 0x1_0000_0000n, M2, RW);
  await h.map(G1, 0x40_0000_0000n, G1, RO);
  await h.map(3n * M2 + K4, 0x2_0000_0000n, K4, WO);
  await h.invalidate(0n, 'global');
  await h.disableTranslation();
  await h.enableTranslation();
  await h.invalidate(0n, 'global');
  await h.checkTranslations();
}, { disable: true, mapNotifiers: true });

/** A random step of the property scenario. */
interface Op { kind: 'map' | 'unmap'; g: number; m: number; k: number; size: 0 | 1 | 2; target: number; perm: 1 | 2 | 3 }
type Inval = 'covering' | 'domain' | 'global' | 'partial';

const SIZES = [K4, M2, G1] as const;

/** The property's input: a list of steps, each a few map/unmap ops then one invalidation. */
function stepsArb(fc: typeof FastCheck) {
  const opArb: FastCheck.Arbitrary<Op> = fc.record({
    kind: fc.constantFrom<'map' | 'unmap'>('map', 'map', 'unmap'),
    g: fc.integer({ min: 0, max: 1 }),
    m: fc.integer({ min: 0, max: 3 }),
    k: fc.integer({ min: 0, max: 7 }),
    size: fc.constantFrom<0 | 1 | 2>(0, 0, 1, 1, 2),
    target: fc.integer({ min: 0, max: 15 }),
    perm: fc.constantFrom<1 | 2 | 3>(1, 2, 3),
  });
  const stepArb = fc.record({
    ops: fc.array(opArb, { minLength: 1, maxLength: 3 }),
    inval: fc.constantFrom<Inval>('covering', 'covering', 'covering', 'domain', 'global', 'partial'),
  });
  return fc.array(stepArb, { minLength: 1, maxLength: 8 });
}

/** The smallest aligned power-of-two range holding [lo, hi]. */
function covering(lo: bigint, hi: bigint): [bigint, bigint] {
  let size = K4;
  while ((lo & ~(size - 1n)) + size <= hi) size <<= 1n;
  return [lo & ~(size - 1n), size];
}

const property: ConformanceScenario = {
  name: 'random map/unmap/invalidate sequences (fast-check)',
  rules: ['C2', 'C3', 'C4', 'C5', 'C6', 'C9'],
  unavailable: (adapter) => noIovaSpace(adapter)
    ?? (loadFastCheck() === undefined ? 'fast-check is not installed (an optional peer dependency of viommu/conformance)' : undefined),
  async run(adapter, options) {
    const fc = loadFastCheck();
    if (fc === undefined) throw new Error('conformance kit: the property scenario needs fast-check; install it (npm install --save-dev fast-check)');
    const prop = fc.asyncProperty(stepsArb(fc), async (steps) => {
      await withHarness(adapter, this.name, async (h) => {
        await h.register('all', ALL);
        await h.register('window', ALL, M2 + 3n * K4, G1 + 2n * M2 + K4 - 1n);
        await h.register('unmap-only', UNMAP, 0n, G1 - 1n);
        await registerDevIotlb(h, G1 - 1n);
        for (const step of steps) {
          let lo: bigint | undefined;
          let hi = 0n;
          for (const op of step.ops) {
            const size: PageSize = SIZES[op.size];
            let iova = BigInt(op.g) * G1;
            if (size !== G1) iova += BigInt(op.m) * M2;
            if (size === K4) iova += BigInt(op.k) * K4;
            let span: [bigint, bigint];
            if (op.kind === 'map') {
              span = await h.map(iova, BigInt(op.target + 4) * G1 + (size === G1 ? 0n : BigInt(op.k) * M2), size, op.perm);
            } else {
              // Unmap a slot only when no larger leaf covers it (else unmap that leaf).
              // (h.tables holds absolute IOVAs; h.map/h.unmap take kit-relative ones.)
              const abs = h.at(iova);
              const bigger = h.tables.overlapping(abs, abs + size - 1n).find((e) => e.iova < abs || e.last > abs + size - 1n);
              span = bigger ? await h.unmap(bigger.iova - h.base, bigger.last - bigger.iova + 1n) : await h.unmap(iova, size);
            }
            lo = lo === undefined || span[0] < lo ? span[0] : lo;
            hi = hi > span[1] ? hi : span[1];
          }
          const [clo, csize] = covering(lo!, hi);
          const changedLo = clo;
          if (step.inval === 'domain' || step.inval === 'global') {
            await h.invalidate(0n, step.inval);
          } else if (step.inval === 'partial' && csize > K4) {
            await h.invalidate(changedLo, K4, false);
            await h.invalidate(changedLo, csize);
          } else {
            await h.invalidate(changedLo, csize);
          }
        }
        await h.checkTranslations(4);
      });
    });
    try {
      await fc.assert(prop, { numRuns: options.numRuns ?? 25, ...(options.seed !== undefined ? { seed: options.seed } : {}) });
    } catch (e) {
      // fast-check wraps the failure; surface the kit's own, with the counterexample.
      const cause = (e as { cause?: unknown }).cause;
      if (ConformanceFailure.is(cause)) {
        cause.message += `\n${(e as Error).message.split('\n').slice(0, 4).join('\n')}`;
        throw cause;
      }
      throw e;
    }
  },
};

/** Every scenario of the kit, in the order `describeIommuConformance` runs them. */
export const conformanceScenarios: readonly ConformanceScenario[] = [
  registration, mapUnmap, changeInPlace, largeSmall, cutLarge, rangeCuts, replay, unregisterDuringDelivery, teardown, property,
];
