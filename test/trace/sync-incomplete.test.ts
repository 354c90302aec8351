/**
 * A hostile guest whose page tables alias one table everywhere: the model's
 * notifier sync stops at its work bound (never a hang), and the replayer
 * reports that the listeners' views may be stale (C9), so `viommu replay`
 * does not exit 0 on it.
 */
import { replayTrace } from '../../src/trace';
import { createIntelVtd } from '../../src/models/intel-vtd';
import type { GuestMemory } from '../../src/memory';

const lines = [
  '{"trace":"viommu","version":1,"model":"intel-vtd","config":{"awBits":39,"cachingMode":true},"ram":[{"base":"0x0","size":"0x1000000"}]}',
  '{"op":"mem.write","gpa":"0x100000","data":"0110100000000000","note":"root entry bus 0 -> context table 0x101000"}',
  '{"op":"mem.write","gpa":"0x101200","data":"0100200000000000","note":"context devfn 0x20: SLPTPTR 0x200000"}',
  '{"op":"mem.write","gpa":"0x101208","data":"0101000000000000","note":"AW 39 (3 levels), DID 1"}',
  // Every entry of the level-3 table points back at the table itself (R|W), so a full walk would visit 512^3 entries.
  ...Array.from({ length: 512 }, (_, i) => `{"op":"mem.write","gpa":"0x${(0x200000 + i * 8).toString(16)}","data":"0300200000000000"}`),
  '{"op":"mmio.write","reg":"0x20","size":8,"value":"0x100000"}',
  '{"op":"mmio.write","reg":"0x18","size":4,"value":"0x40000000"}',
  '{"op":"mmio.write","reg":"0x18","size":4,"value":"0x80000000"}',
  '{"op":"notifier.add","id":"vfio","sid":"0x20","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffffffffffff"}',
];

describe('a sync abandoned at the walk bound', () => {
  test('is reported as C9 against the listeners of the device, and replay goes on', async () => {
    const report = await replayTrace(Buffer.from(lines.join('\n') + '\n'), {
      createModel: (cfg, mem) => createIntelVtd(cfg as object, mem as GuestMemory, { syncWalkBudget: 10_000 }),
    });
    expect(report.ok).toBe(false);
    expect(report.violations).toEqual([
      expect.objectContaining({ line: lines.length, rule: 'C9', listener: 'vfio' }),
    ]);
    expect(report.violations[0]!.message).toContain('stale');
  });
});
