/**
 * `viommu replay --record OUT` never destroys data: an unwritable OUT is an
 * I/O error (exit 2, trace-v1) before anything is replayed, OUT equal to the
 * trace being read is safe (the file is only replaced once the run is
 * complete), and a malformed trace leaves OUT as it was.
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli';

const FIX = join(__dirname, '../../fixtures');

describe('replay --record', () => {
  test('an unwritable OUT: exit 2 with the reason, nothing replayed', async () => {
    const r = await cli('replay', join(FIX, 'none/clean.jsonl'), '--record', '/nonexistent-dir/out.jsonl');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/cannot write \/nonexistent-dir\/out\.jsonl: ENOENT/);
    expect(r.out).toBe('');
  });

  test('OUT equal to the input: the trace survives and is replaced by the recording', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'viommu-rec-'));
    const file = join(dir, 'trace.jsonl');
    copyFileSync(join(FIX, 'qemu-vtd/fault-event-msi.jsonl'), file);
    const before = readFileSync(file, 'utf8');
    const r = await cli('replay', file, '--record', file);
    expect(r.code).toBe(0);
    // Every event line of a QEMU capture comes back (expectations refilled from this run, which matches QEMU).
    const after = readFileSync(file, 'utf8');
    expect(after.split('\n').length).toBe(before.split('\n').length);
    expect((await cli('replay', file)).code).toBe(0);
    expect(readdirSync(dir)).toEqual(['trace.jsonl']); // no temporary file left
  });

  test('a malformed trace leaves OUT untouched', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'viommu-rec-'));
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, readFileSync(join(FIX, 'none/clean.jsonl'), 'utf8') + '{"op":"no-such-op"}\n');
    const out = join(dir, 'out.jsonl');
    writeFileSync(out, 'keep me\n');
    const r = await cli('replay', bad, '--record', out);
    expect(r.code).toBe(2);
    expect(readFileSync(out, 'utf8')).toBe('keep me\n');
    expect(readdirSync(dir).sort()).toEqual(['bad.jsonl', 'out.jsonl']);
  });
});
