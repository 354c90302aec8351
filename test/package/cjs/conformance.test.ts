/**
 * A CommonJS consumer: the conformance kit from the installed package, run
 * with jest's globals against the VT-d model the package exports.
 */
import { createIntelVtd, SparseRam } from 'viommu';
import { describeIommuConformance } from 'viommu/conformance';
import { replayTrace } from 'viommu/trace';
import { VfioContainer } from 'viommu/listeners';
import { vtdAdapter } from './vtd-adapter';

describeIommuConformance('intel-vtd aw39 (installed package)', vtdAdapter(39), { numRuns: 10 });
describeIommuConformance('intel-vtd aw48 (installed package)', vtdAdapter(48), { numRuns: 5 });

describe('the other entry points load from the package', () => {
  test('viommu/trace replays a trace given as bytes', async () => {
    const header = '{"trace":"viommu","version":1,"model":"none","ram":[]}';
    const add = '{"op":"notifier.add","id":"v","sid":"0x1","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffff"}';
    const map = '{"op":"notify","id":"v","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x5000","perm":"rw"}';
    const r = await replayTrace(Buffer.from([header, add, map, map].join('\n')));
    // The second identical MAP breaks C4 (docs/contract.md).
    expect(r.violations.map((v) => v.rule)).toEqual(['C4']);
  });

  test('viommu/listeners and the root entry point', () => {
    expect(typeof new VfioContainer().openDevice).toBe('function');
    const vtd = createIntelVtd({ awBits: 39 }, new SparseRam([{ base: 0, size: 1 << 20 }]));
    expect(typeof vtd.translate).toBe('function');
  });
});
