/**
 * Every QEMU 7.2 amd-iommu capture (fixtures/qemu-amdvi, every expectation
 * is what QEMU returned or held; headers name profile "qemu-7.2") replays with
 * no mismatch.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { replayTrace } from '../../../src/trace';
import { replayProblems } from '../../helpers/replay';

const DIR = join(__dirname, '../../../fixtures/qemu-amdvi');
const files = readdirSync(DIR).filter((f) => f.endsWith('.jsonl')).sort();

test('the 13 captures are present, each naming the QEMU 7.2 profile', () => {
  expect(files).toHaveLength(13);
  for (const f of files) {
    const header = JSON.parse(readFileSync(join(DIR, f), 'utf8').split('\n')[0]!) as { model: string; config: { profile?: string } };
    expect(header.model).toBe('amd-vi');
    expect(header.config.profile).toBe('qemu-7.2');
  }
});

test.each(files)('%s replays clean', async (file) => {
  const r = await replayProblems(join(DIR, file));
  expect(r.problems).toEqual([]);
  expect(r.events).toBeGreaterThan(10);
  expect(r.ok).toBe(true);
});

/**
 * The captures whose manifest lists no QEMU 7.2 deviation replay clean under
 * the spec profile too (their faults happen with EventIntEn clear and the log
 * slots they would fill are never read), while a capture that records a
 * deviation does not: the profiles really differ where the findings say.
 */
test.each(['large-pages.jsonl', 'skip-levels.jsonl', 'dte-modes-and-disable.jsonl'])('%s also replays clean under profile "spec"', async (file) => {
  const text = readFileSync(join(DIR, file), 'utf8').replace('"profile":"qemu-7.2",', '');
  const r = await replayTrace(Buffer.from(text));
  expect(r.mismatches).toEqual([]);
  expect(r.ok).toBe(true);
});

test.each([
  ['qemu72-walk-deviations.jsonl', 'dma.write'],
  ['registers.jsonl', 'mmio.read'],
  ['command-buffer-wrap.jsonl', 'mmio.read'],
  ['event-log.jsonl', 'mmio.read'],
])('%s does not replay under profile "spec" (it records QEMU 7.2 deviations)', async (file, op) => {
  const text = readFileSync(join(DIR, file), 'utf8').replace('"profile":"qemu-7.2",', '');
  const r = await replayTrace(Buffer.from(text));
  expect(r.ok).toBe(false);
  expect(r.mismatches.map((m) => m.op)).toContain(op);
});

test('a changed expectation is caught', async () => {
  const text = readFileSync(join(DIR, 'basic-translate-3level.jsonl'), 'utf8');
  const bad = text.replace('"expect":"0x18"}', '"expect":"0x10"}');
  expect(bad).not.toEqual(text);
  const r = await replayTrace(Buffer.from(bad));
  expect(r.ok).toBe(false);
});
