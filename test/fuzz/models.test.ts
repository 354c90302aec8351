/**
 * The hostile-guest fuzzer on the virtio-iommu, SMMUv3 and AMD-Vi models
 * (fuzz/virtio.ts, fuzz/smmu.ts, fuzz/amd.ts) in `npm test`: a fixed-seed
 * short campaign per model (clean and hostile epochs) must report nothing,
 * and must have exercised what it judges. The checks themselves come from
 * the guest's own record (statuses, page tables), never from the model.
 */
import { runFuzz } from '../../fuzz/engine';
import type { FuzzModel } from '../../fuzz/engine';

const show = (fs: ReturnType<typeof runFuzz>['findings']) => fs.map((f) => `${f.kind} (seed ${f.seed}, op ${f.op}, ${f.epoch}): ${f.message}`);

describe.each([
  // [model, ops, stats the campaign must have produced]
  ['virtio-iommu', 12_000, ['requests', 'coherenceChecks', 'vhostChecks', 'status.0', 'status.4', 'status.6', 'resets', 'c1Refusals']],
  ['smmuv3', 16_000, ['invalidations', 'vhostChecks', 'steChanges', 'eventRecords', 'hostileOps', 'aliasedTables', 'c1Refusals']],
  ['amd-vi', 16_000, ['invalidations', 'coherenceChecks', 'blockCoherenceChecks', 'vhostChecks', 'hostileOps', 'aliasedTables', 'c1Refusals']],
] as Array<[FuzzModel, number, string[]]>)('fuzz %s', (model, ops, exercised) => {
  test('a fixed-seed campaign over clean and hostile epochs finds nothing', () => {
    const res = runFuzz({ seed: 20261204, ops, model, epochOps: 2000 });
    expect(res.ops).toBe(ops);
    expect(Object.keys(res.stats).filter((k) => k.startsWith('epochs.')).sort()).toEqual(expect.arrayContaining([expect.stringMatching(/-clean$/), expect.stringMatching(/-hostile$/)]));
    for (const k of exercised) expect(res.stats[k] ?? 0).toBeGreaterThan(0);
    expect(show(res.findings)).toEqual([]);
  });
});

test('deterministic per seed (virtio-iommu, SMMUv3, AMD-Vi)', () => {
  for (const model of ['virtio-iommu', 'smmuv3', 'amd-vi'] as const) {
    const a = runFuzz({ seed: 11, ops: 1500, model, epochOps: 500 });
    const b = runFuzz({ seed: 11, ops: 1500, model, epochOps: 500 });
    const strip = (s: Record<string, number>) => Object.fromEntries(Object.entries(s).filter(([k]) => !k.startsWith('ms.')));
    expect(strip(b.stats)).toEqual(strip(a.stats));
  }
});
