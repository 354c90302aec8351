/**
 * Replays the extra QEMU 7.2 captures (fixtures/qemu-vtd-extra, made with
 * tools/qemu-capture from the real qemu-system-x86_64 7.2.22): variants of the
 * reference scenario families with other seeds and parameters. Every
 * expectation is what QEMU returned; the model must match all of them. QEMU
 * is not needed to run this test.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { replayProblems } from '../../helpers/replay';

const dir = path.join(__dirname, '../../../fixtures/qemu-vtd-extra');
const traces = fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort();

describe('extra QEMU 7.2 VT-d captures replay clean', () => {
  it('has the captured fixtures', () => {
    expect(traces.length).toBeGreaterThanOrEqual(30);
  });

  it.each(traces)('%s', async (name) => {
    const r = await replayProblems(path.join(dir, name));
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.events).toBeGreaterThan(0);
  });
});
