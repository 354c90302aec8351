/**
 * Model traces: `notify` lines are expectations (trace-v1). A recording of
 * the vtd-notify scenario (every notification the listeners got, written by
 * --record) replays clean; dropping or adding any notify line — the last one
 * included — is a mismatch; reordering lines of one group by iova is not.
 */
import { replayTrace } from '../../src/trace';

const SOURCE = 'fixtures/vtd-notify/notify-aw39-9100.jsonl';

async function recorded(): Promise<string[]> {
  const lines: string[] = [];
  const r = await replayTrace(SOURCE, { record: (l: string) => lines.push(l) });
  expect(r.ok).toBe(true);
  return lines;
}
const replay = (lines: string[]) => replayTrace(Buffer.from(lines.join('\n') + '\n'));
const isNotify = (l: string) => l.startsWith('{"op":"notify"');

describe('notify groups in a model trace', () => {
  let lines: string[];
  beforeAll(async () => { lines = await recorded(); });

  test('the recording lists notifications and replays clean', async () => {
    expect(lines.filter(isNotify).length).toBeGreaterThan(50);
    expect((await replay(lines)).ok).toBe(true);
  });

  test('dropping the last notify line is a mismatch', async () => {
    const last = lines.map(isNotify).lastIndexOf(true);
    const r = await replay(lines.filter((_, i) => i !== last));
    expect(r.mismatches.some((m) => m.op === 'notify')).toBe(true);
  });

  test('dropping a notify line in the middle is a mismatch', async () => {
    const idx = lines.map((l, i) => (isNotify(l) ? i : -1)).filter((i) => i >= 0);
    const mid = idx[Math.floor(idx.length / 2)]!;
    const r = await replay(lines.filter((_, i) => i !== mid));
    expect(r.mismatches.some((m) => m.op === 'notify')).toBe(true);
  });

  test('a notify line that did not happen is a mismatch', async () => {
    const i = lines.findIndex(isNotify);
    const extra = lines[i]!.replace(/"iova":"0x[0-9a-f]+"/, '"iova":"0x7ff000"');
    const r = await replay([...lines.slice(0, i + 1), extra, ...lines.slice(i + 1)]);
    expect(r.mismatches.some((m) => m.op === 'notify')).toBe(true);
  });

  test('lines of one group in another iova order still match (stable sort by iova)', async () => {
    // Find two adjacent notify lines of one listener with different iovas and swap them.
    const id = (l: string) => /"id":"([^"]*)"/.exec(l)?.[1];
    const iova = (l: string) => /"iova":"([^"]*)"/.exec(l)?.[1];
    const i = lines.findIndex((l, k) => isNotify(l) && isNotify(lines[k + 1] ?? '') && id(l) === id(lines[k + 1]!) && iova(l) !== iova(lines[k + 1]!));
    expect(i).toBeGreaterThan(0);
    const swapped = [...lines];
    [swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!];
    expect((await replay(swapped)).ok).toBe(true);
  });
});
