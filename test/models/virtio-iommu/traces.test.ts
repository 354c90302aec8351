/**
 * Every QEMU 7.2 virtio-iommu capture (fixtures/qemu-virtio-iommu, every
 * expectation is what QEMU answered) replays with no mismatch, and the model
 * queued no fault report the capture does not list.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { replayTrace } from '../../../src/trace';
import { createVirtioIommu } from '../../../src/models/virtio-iommu';
import type { VirtioIommu } from '../../../src/models/virtio-iommu';
import { replayProblems } from '../../helpers/replay';

const DIR = join(__dirname, '../../../fixtures/qemu-virtio-iommu');
const files = readdirSync(DIR).filter((f) => f.endsWith('.jsonl')).sort();

test('the 15 captures are present', () => {
  expect(files).toHaveLength(15);
});

test.each(files)('%s replays clean', async (file) => {
  const r = await replayProblems(join(DIR, file));
  expect(r.problems).toEqual([]);
  expect(r.events).toBeGreaterThan(10);
  expect(r.ok).toBe(true);
});

test.each(files)('%s: no fault report beyond the ones QEMU made', async (file) => {
  let model: VirtioIommu | undefined;
  const r = await replayTrace(join(DIR, file), { createModel: (c, m) => (model = createVirtioIommu(c as Record<string, unknown>, m)) });
  expect(r.ok).toBe(true);
  expect(model!.virtioTakeEvent()).toBeUndefined();
});

test('a changed expectation is caught (the replay compares request answers)', async () => {
  const text = readFileSync(join(DIR, 'attach-detach-errors.jsonl'), 'utf8');
  // The first S_OK answer turned into S_INVAL.
  const bad = text.replace('"writable":4,"expect":"00000000"', '"writable":4,"expect":"04000000"');
  expect(bad).not.toEqual(text);
  const r = await replayTrace(Buffer.from(bad));
  expect(r.ok).toBe(false);
  expect(r.mismatches.map((m) => m.op)).toContain('virtio.request');
});
