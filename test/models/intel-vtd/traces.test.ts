/**
 * Replays every reference trace of the VT-d model through the trace engine:
 * QEMU 7.2 captures (fixtures/qemu-vtd), the Linux guest log conversion
 * (fixtures/linux-guest, gzip) and the notifier scenarios with view
 * expectations (fixtures/vtd-notify). Every expectation must hold and no
 * contract rule may be broken.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { replayProblems } from '../../helpers/replay';

const root = path.join(__dirname, '../../../fixtures');
const traces = (dir: string): string[] =>
  fs.readdirSync(path.join(root, dir))
    .filter((f) => f.endsWith('.jsonl') || f.endsWith('.jsonl.gz'))
    .sort()
    .map((f) => path.join(dir, f));

const all = [...traces('qemu-vtd'), ...traces('linux-guest'), ...traces('vtd-notify')];

describe('VT-d reference traces replay clean', () => {
  it('has every fixture (28 QEMU captures, the Linux guest trace, 2 notifier scenarios)', () => {
    expect(traces('qemu-vtd')).toHaveLength(28);
    expect(traces('linux-guest')).toHaveLength(1);
    expect(traces('vtd-notify')).toHaveLength(2);
  });

  it.each(all)('%s', async (name) => {
    const r = await replayProblems(path.join(root, name));
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.events).toBeGreaterThan(0);
  });
});
