import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isBatchReplay } from '../../src/cli/commands/batch';
import { expandGlob, globMatch } from '../../src/trace/batch-glob';
import { Capture, cli } from '../helpers/cli';
import { main } from '../../src/cli/main';
import { startProgress } from '../../src/cli/progress';

const FIX = join(__dirname, '../../fixtures');


/** Counted from the trace text by the spec's definitions (trace-v1), not by the replayer. */
function countTrace(file: string): { events: number; expectations: number } {
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const header = JSON.parse(lines[0]!) as { model: string };
  let expectations = 0;
  for (const l of lines.slice(1)) {
    const ev = JSON.parse(l) as { op: string; expect?: unknown };
    if (['mem.expect', 'view.expect', 'msi.expect', 'virtio.event.expect'].includes(ev.op)) expectations++;
    else if (ev.op === 'notify') expectations += header.model === 'none' ? 0 : 1;
    else if (ev.expect !== undefined) expectations++;
  }
  return { events: lines.length - 1, expectations };
}

interface Row { trace: string; events: number; expectations: number; mismatches: number; violations: number; ms: number; status: string }

/** The table's rows by trace; checks the header names the columns as the help does. */
function rows(out: string): Map<string, Row> {
  const lines = out.split('\n');
  expect(lines[0]!.trim().split(/\s{2,}/)).toEqual(['trace', 'events', 'expectations', 'mismatches', 'violations', 'time', 'status']);
  const m = new Map<string, Row>();
  for (const line of lines.slice(1)) {
    const c = line.trim().split(/\s{2,}/);
    if (c.length < 7) continue;
    const t = /^([\d.]+) (ms|s)$/.exec(c[5]!)!;
    m.set(c[0]!, {
      trace: c[0]!, events: Number(c[1]), expectations: Number(c[2]), mismatches: Number(c[3]), violations: Number(c[4]),
      ms: Number(t[1]) * (t[2] === 's' ? 1000 : 1), status: c[6]!,
    });
  }
  return m;
}

/** The summary line's wall and summed times, in ms. */
function times(out: string): { wall: number; summed: number } {
  const t = /\(([\d.]+) s wall time; ([\d.]+) s summed over traces\)\n$/.exec(out)!;
  expect(t).not.toBeNull();
  return { wall: Number(t[1]) * 1000, summed: Number(t[2]) * 1000 };
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
    const s = await cli('replay', dir, '--jobs', '2');
    expect(s.code).toBe(2);
    const r = rows(s.out);
    expect([...r.keys()].sort()).toEqual(['clean.jsonl', 'malformed.jsonl', 'sub/model.jsonl.gz', 'violating.jsonl'].map((f) => join(dir, f)).sort());
    const clean = r.get(join(dir, 'clean.jsonl'))!;
    expect(clean).toMatchObject({ ...countTrace(join(FIX, 'none/clean.jsonl')), mismatches: 0, violations: 0, status: 'ok' });
    const bad = r.get(join(dir, 'violating.jsonl'))!;
    expect(bad).toMatchObject({ ...countTrace(join(FIX, 'none/violation-c5.jsonl')), mismatches: 0, violations: 1, status: 'FAILED' });
    // Nothing past the malformed line is replayed: only line 2 was applied.
    expect(r.get(join(dir, 'malformed.jsonl'))).toMatchObject({ events: 1, status: 'MALFORMED line 3' });
    expect(r.get(join(dir, 'sub/model.jsonl.gz'))).toMatchObject({ ...countTrace(join(FIX, 'qemu-vtd/sl-4k-rw-basic.jsonl')), mismatches: 0, violations: 0, status: 'ok' });
    expect(s.err).toContain(`${join(dir, 'malformed.jsonl')}:3: malformed trace`);
    expect(s.out).toMatch(/4 traces: 2 clean, 1 failed, 1 malformed or unreadable \(/);
  });

  test('the summary gives wall time, and the per-trace times summed, labelled as such', async () => {
    // In this thread (-j 1) the traces run one after another: the wall time cannot be less than their sum.
    const seq = await cli('replay', dir, '-j', '1');
    const r = [...rows(seq.out).values()];
    const t = times(seq.out);
    const sum = r.reduce((a, x) => a + x.ms, 0);
    // Both printed to 10 ms; the rows to 0.1 ms.
    expect(Math.abs(t.summed - sum)).toBeLessThanOrEqual(5 + r.length * 0.05);
    expect(t.wall).toBeGreaterThanOrEqual(t.summed - 10);
    // On worker threads the wall time still covers the slowest trace.
    const par = await cli('replay', dir, '-j', '2');
    expect(times(par.out).wall).toBeGreaterThanOrEqual(Math.max(...[...rows(par.out).values()].map((x) => x.ms)) - 5);
  });

  test('exit 1 when the worst trace has a violation; 0 when all are clean (in-process, --jobs 1)', async () => {
    const a = await cli('replay', join(dir, 'clean.jsonl'), join(dir, 'violating.jsonl'), '--jobs', '1');
    expect(a.code).toBe(1);
    expect(rows(a.out).size).toBe(2);
    const b = await cli('replay', join(dir, 'clean.jsonl'), join(dir, 'sub/model.jsonl.gz'), '-j', '1');
    expect(b.code).toBe(0);
    expect([...rows(b.out).values()].map((x) => x.status)).toEqual(['ok', 'ok']);
  });

  test('a glob selects the traces; --json gives one report per trace, in order', async () => {
    const s = await cli('replay', join(dir, '*.jsonl'), '--json', '-j', '1');
    const objs = s.out.trim().split('\n').map((l) => JSON.parse(l) as { file: string; status: number; violationCount: number });
    expect(objs.map((o) => o.file)).toEqual(['clean.jsonl', 'malformed.jsonl', 'violating.jsonl'].map((f) => join(dir, f)));
    expect(objs.map((o) => o.status)).toEqual([0, 2, 1]);
    expect(s.code).toBe(2);
  });

  test('--json: a batch at any -j prints, per trace, the report a single replay prints', async () => {
    const files = ['clean.jsonl', 'violating.jsonl', 'malformed.jsonl', 'sub/model.jsonl.gz', 'gone.jsonl'].map((f) => join(dir, f));
    const withoutTime = (line: string) => { const o = JSON.parse(line) as Record<string, unknown>; delete o['timeMs']; return o; };
    const single = [];
    for (const f of files) {
      const r = await cli('replay', f, '--json');
      expect(r.out.trim().split('\n')).toHaveLength(1);
      single.push(withoutTime(r.out));
    }
    for (const jobs of [[], ['-j', '1'], ['-j', '2']]) {
      const b = await cli('replay', ...files, '--json', ...jobs);
      expect(b.code).toBe(2);
      expect(b.out.trim().split('\n').map(withoutTime)).toEqual(single);
    }
    // One trace with -j 1 is a batch of one: still the same report.
    const one = await cli('replay', files[1]!, '--json', '-j', '1');
    expect(one.out.trim().split('\n').map(withoutTime)).toEqual([single[1]]);
  });

  test('a missing file is a row of its own and exit 2; usage errors exit 2', async () => {
    const s = await cli('replay', join(dir, 'clean.jsonl'), join(dir, 'gone.jsonl'), '-j', '1');
    expect(s.code).toBe(2);
    expect(rows(s.out).get(join(dir, 'gone.jsonl'))?.status).toBe('UNREADABLE');
    for (const argv of [[join(dir, 'nothing*.jsonl')], [dir, '--jobs', '0'], [dir, '--jobs', 'x'], [dir, '-'], [dir, '--record', join(dir, 'x.jsonl')]]) {
      const u = await cli('replay', ...argv);
      expect(u.code).toBe(2);
      expect(u.err).toMatch(/viommu: /);
      expect(u.out).toBe('');
    }
    expect((await cli('replay', dir, '--jobs', '0')).err).toMatch(/option '-j, --jobs <N>' argument '0' is invalid/);
  });

  test('a progress bar on a terminal stderr only, erased at the end', async () => {
    const files = [join(dir, 'clean.jsonl'), join(dir, 'violating.jsonl')];
    const run = async (tty: boolean) => {
      const io = { stdout: new Capture(), stderr: new Capture() };
      io.stderr.isTTY = tty;
      const code = await main(['replay', ...files, '-j', '1'], io);
      return { code, out: io.stdout.text, err: io.stderr.text };
    };
    const tty = await run(true);
    const plain = await run(false);
    expect(tty.code).toBe(1);
    expect(plain.code).toBe(1);
    expect(tty.err).toMatch(/\/2 traces/);
    expect(tty.err).toMatch(/100% 2\/2 traces/);
    // Ends with the line erased (cursor to column 0, clear line): nothing of the bar stays on screen.
    expect(tty.err.endsWith('\x1b[2K')).toBe(true);
    expect(plain.err).toBe('');
    // The report on stdout does not depend on the terminal.
    expect(rows(tty.out)).toEqual(new Map([...rows(plain.out)].map(([k, v]) => [k, { ...v, ms: rows(tty.out).get(k)!.ms }])));
  });

  test('startProgress: nothing at all when the stream is not a terminal', () => {
    const out = new Capture();
    expect(startProgress(out, 10, 'bytes')).toBeUndefined();
    expect(out.text).toBe('');
    out.isTTY = true;
    const bar = startProgress(out, 4 << 20, 'bytes')!;
    bar.update(1 << 20);
    bar.stop();
    expect(out.text).toMatch(/\] (0|25)% [01]\/4 MiB/);
    expect(out.text).not.toContain('\n');
  });

  test('isBatchReplay: directory, glob, several files or --jobs', () => {
    expect(isBatchReplay([join(dir, 'clean.jsonl')], undefined)).toBe(false);
    expect(isBatchReplay(['-'], undefined)).toBe(false);
    expect(isBatchReplay([dir], undefined)).toBe(true);
    expect(isBatchReplay(['x/*.jsonl'], undefined)).toBe(true);
    expect(isBatchReplay(['a.jsonl', 'b.jsonl'], undefined)).toBe(true);
    expect(isBatchReplay([join(dir, 'clean.jsonl')], 3)).toBe(true);
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
