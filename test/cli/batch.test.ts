import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isBatchReplay, runBatch } from '../../src/cli/commands/batch';
import { expandGlob, globMatch } from '../../src/trace/batch-glob';

import { sink } from '../helpers/cli';

const FIX = join(__dirname, '../../fixtures');


/** Counted from the trace text by the spec's definitions (trace-v1), not by the replayer. */
function countTrace(file: string): { ops: number; expectations: number } {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const header = JSON.parse(lines[0]!) as { model: string };
  let expectations = 0;
  for (const l of lines.slice(1)) {
    const ev = JSON.parse(l) as { op: string; expect?: unknown };
    if (['mem.expect', 'view.expect', 'msi.expect', 'virtio.event.expect'].includes(ev.op)) expectations++;
    else if (ev.op === 'notify') expectations += header.model === 'none' ? 0 : 1;
    else if (ev.expect !== undefined) expectations++;
  }
  return { ops: lines.length - 1, expectations };
}

interface Row { trace: string; ops: number; expectations: number; mismatches: number; violations: number; status: string }

function rows(out: string): Map<string, Row> {
  const m = new Map<string, Row>();
  for (const line of out.split('\n').slice(2)) {
    const c = line.trim().split(/\s{2,}/);
    if (c.length < 7) continue;
    m.set(c[0]!, { trace: c[0]!, ops: Number(c[1]), expectations: Number(c[2]), mismatches: Number(c[3]), violations: Number(c[4]), status: c[6]! });
  }
  return m;
}

describe('viommu replay, batch', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'viommu-batch-'));
    copyFileSync(join(FIX, 'none/clean.jsonl'), join(dir, 'clean.jsonl'));
    copyFileSync(join(FIX, 'none/violation-c5.jsonl'), join(dir, 'violating.jsonl'));
    // Malformed on line 3: an unknown op (trace-v1: an error naming the line).
    const clean = readFileSync(join(FIX, 'none/clean.jsonl'), 'utf8').split('\n');
    clean.splice(2, 0, '{"op":"no.such.op"}');
    writeFileSync(join(dir, 'malformed.jsonl'), clean.join('\n'));
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'model.jsonl.gz'), gzipSync(readFileSync(join(FIX, 'qemu-vtd/sl-4k-rw-basic.jsonl'))));
    writeFileSync(join(dir, 'sub', 'notes.txt'), 'not a trace');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a directory with --jobs 2: one row per trace, counts from the traces, exit 2 for the malformed one', async () => {
    const s = sink();
    const code = await runBatch([dir, '--jobs', '2'], s.io);
    expect(code).toBe(2);
    const r = rows(s.out);
    expect([...r.keys()].sort()).toEqual(['clean.jsonl', 'malformed.jsonl', 'sub/model.jsonl.gz', 'violating.jsonl'].map((f) => join(dir, f)).sort());
    const clean = r.get(join(dir, 'clean.jsonl'))!;
    expect(clean).toMatchObject({ ...countTrace(join(FIX, 'none/clean.jsonl')), mismatches: 0, violations: 0, status: 'ok' });
    const bad = r.get(join(dir, 'violating.jsonl'))!;
    expect(bad).toMatchObject({ ...countTrace(join(FIX, 'none/violation-c5.jsonl')), mismatches: 0, violations: 1, status: 'FAILED' });
    // Nothing past the malformed line is replayed: only line 2 was applied.
    expect(r.get(join(dir, 'malformed.jsonl'))).toMatchObject({ ops: 1, status: 'MALFORMED line 3' });
    expect(r.get(join(dir, 'sub/model.jsonl.gz'))).toMatchObject({ ...countTrace(join(FIX, 'qemu-vtd/sl-4k-rw-basic.jsonl')), mismatches: 0, violations: 0, status: 'ok' });
    expect(s.err).toContain(`${join(dir, 'malformed.jsonl')}:3: malformed trace`);
    expect(s.out).toMatch(/4 traces: 2 clean, 1 failed, 1 malformed/);
  });

  test('exit 1 when the worst trace has a violation; 0 when all are clean (in-process, --jobs 1)', async () => {
    const a = sink();
    expect(await runBatch([join(dir, 'clean.jsonl'), join(dir, 'violating.jsonl'), '--jobs', '1'], a.io)).toBe(1);
    expect(rows(a.out).size).toBe(2);
    const b = sink();
    expect(await runBatch([join(dir, 'clean.jsonl'), join(dir, 'sub/model.jsonl.gz'), '-j', '1'], b.io)).toBe(0);
    expect([...rows(b.out).values()].map((x) => x.status)).toEqual(['ok', 'ok']);
  });

  test('a glob selects the traces; --json gives one object per trace', async () => {
    const s = sink();
    const code = await runBatch([join(dir, '*.jsonl'), '--json', '-j', '1'], s.io);
    const objs = s.out.trim().split('\n').map((l) => JSON.parse(l) as { file: string; status: number; violations: number });
    expect(objs.map((o) => o.file)).toEqual(['clean.jsonl', 'malformed.jsonl', 'violating.jsonl'].map((f) => join(dir, f)));
    expect(objs.map((o) => o.status)).toEqual([0, 2, 1]);
    expect(code).toBe(2);
  });

  test('a missing file is a row of its own and exit 2; usage errors exit 2', async () => {
    const s = sink();
    expect(await runBatch([join(dir, 'clean.jsonl'), join(dir, 'gone.jsonl'), '-j', '1'], s.io)).toBe(2);
    expect(rows(s.out).get(join(dir, 'gone.jsonl'))?.status).toBe('UNREADABLE');
    for (const argv of [[join(dir, 'nothing*.jsonl')], [dir, '--jobs', '0'], [dir, '--jobs', 'x'], []]) {
      const u = sink();
      expect(await runBatch(argv, u.io)).toBe(2);
      expect(u.err).toMatch(/viommu: /);
    }
  });

  test('isBatchReplay: directory, glob, several files or --jobs', () => {
    expect(isBatchReplay([join(dir, 'clean.jsonl')])).toBe(false);
    expect(isBatchReplay([join(dir, 'clean.jsonl'), '--record', 'out.jsonl'])).toBe(false);
    expect(isBatchReplay([join(dir, 'clean.jsonl'), '--json'])).toBe(false);
    expect(isBatchReplay([dir])).toBe(true);
    expect(isBatchReplay(['x/*.jsonl'])).toBe(true);
    expect(isBatchReplay(['a.jsonl', 'b.jsonl'])).toBe(true);
    expect(isBatchReplay([join(dir, 'clean.jsonl'), '--jobs', '3'])).toBe(true);
    expect(isBatchReplay([join(dir, 'clean.jsonl'), '-j2'])).toBe(true);
  });
});

describe('glob matcher', () => {
  test.each([
    ['*.jsonl', 'a.jsonl', true],
    ['*.jsonl', 'd/a.jsonl', false],
    ['?.jsonl', 'a.jsonl', true],
    ['?.jsonl', 'ab.jsonl', false],
    ['**/*.jsonl', 'a.jsonl', true],
    ['**/*.jsonl', 'x/y/a.jsonl', true],
    ['x/**/a.jsonl', 'x/a.jsonl', true],
    ['x/**/a.jsonl', 'x/p/q/a.jsonl', true],
    ['x/**/a.jsonl', 'y/p/a.jsonl', false],
    ['x/**', 'x/p/q', true],
    ['a+b(1).jsonl', 'a+b(1).jsonl', true],
    ['a.jsonl', 'aXjsonl', false],
    ['v*-c?.jsonl', 'violation-c5.jsonl', true],
    ['v*-c?.jsonl', 'violation-c10.jsonl', false],
  ])('%s vs %s -> %s', (pattern, path, want) => {
    expect(globMatch(pattern, path)).toBe(want);
  });

  test('expandGlob walks the fixtures', () => {
    const base = join(FIX, 'none');
    expect(expandGlob(join(base, 'violation-c?.jsonl')).map((p) => p.slice(base.length + 1)))
      .toEqual(['violation-c1.jsonl', 'violation-c2.jsonl', 'violation-c3.jsonl', 'violation-c4.jsonl', 'violation-c5.jsonl', 'violation-c6.jsonl']);
    expect(expandGlob(join(FIX, '**/notify-*.jsonl'))).toEqual([join(FIX, 'vtd-notify/notify-aw39-9100.jsonl'), join(FIX, 'vtd-notify/notify-aw48-9101.jsonl')]);
  });
});
