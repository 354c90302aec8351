/**
 * Every QEMU 7.2 SMMUv3 capture (fixtures/qemu-smmuv3, every expectation is
 * what QEMU answered) replays with no mismatch, and a changed expectation is
 * caught.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { replayTrace } from '../../../src/trace';
import { replayProblems } from '../../helpers/replay';

const DIR = join(__dirname, '../../../fixtures/qemu-smmuv3');
const files = readdirSync(DIR).filter((f) => f.endsWith('.jsonl')).sort();

test('the 19 captures are present', () => {
  expect(files).toHaveLength(19);
});

test.each(files)('%s replays clean', async (file) => {
  const r = await replayProblems(join(DIR, file));
  expect(r.problems).toEqual([]);
  expect(r.events).toBeGreaterThan(10);
  expect(r.ok).toBe(true);
});

test('a changed expectation is caught (IDR0 read)', async () => {
  const text = readFileSync(join(DIR, 's1-basic-4k.jsonl'), 'utf8');
  const bad = text.replace('"expect":"0xd40101a"', '"expect":"0xd40101b"');
  expect(bad).not.toEqual(text);
  const r = await replayTrace(Buffer.from(bad));
  expect(r.ok).toBe(false);
  expect(r.mismatches.map((m) => m.op)).toContain('mmio.read');
});
