import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replayTrace } from '../../src/trace/replay';
import { closeChromium, dumpDom, screenshot } from './chromium';

import { cli } from '../helpers/cli';

const FIX = join(__dirname, '../../fixtures');


interface MarkAttrs { kind: string; listener: string; line: number }

/** The marks in a DOM (chromium's serialisation or the page itself): elements with data-kind. */
function marksIn(html: string): MarkAttrs[] {
  const out: MarkAttrs[] = [];
  for (const m of html.matchAll(/<(?:rect|circle|path)\b[^>]*\bdata-kind="([a-z]+)"[^>]*>/g)) {
    const tag = m[0];
    out.push({ kind: m[1]!, listener: /data-listener="([^"]*)"/.exec(tag)![1]!, line: Number(/data-line="(\d+)"/.exec(tag)![1]) });
  }
  return out;
}

function count(marks: MarkAttrs[], kind: string, listener?: string): number {
  return marks.filter((m) => m.kind === kind && (listener === undefined || m.listener === listener)).length;
}

/** Notify lines of a trace text, per listener and kind (MAP -> map, UNMAP and DEVIOTLB_UNMAP -> unmap). */
function notifyCounts(text: string): Map<string, { map: number; unmap: number }> {
  const m = new Map<string, { map: number; unmap: number }>();
  for (const l of text.split('\n').slice(1)) {
    if (l.trim() === '') continue;
    const ev = JSON.parse(l) as { op: string; id?: string; type?: string };
    if (ev.op !== 'notify') continue;
    let c = m.get(ev.id!);
    if (c === undefined) m.set(ev.id!, (c = { map: 0, unmap: 0 }));
    if (ev.type === 'MAP') c.map++; else c.unmap++;
  }
  return m;
}

describe('viommu report', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'viommu-report-')); });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await closeChromium();
  });

  async function report(trace: string, extra: string[] = []): Promise<{ code: number; html: string; file: string }> {
    const file = join(dir, trace.replace(/[/.]/g, '_') + extra.join('_') + '.html');
    // Through the command line, as a user runs it.
    const { code } = await cli('report', trace, '-o', file, ...extra);
    return { code, html: readFileSync(file, 'utf8'), file };
  }

  test('model none: one map/unmap mark per notify line of each listener, in Chromium; screenshot is a PNG', async () => {
    const trace = join(FIX, 'none/clean.jsonl');
    const r = await report(trace);
    expect(r.code).toBe(0);
    const dom = await dumpDom(r.file);
    const marks = marksIn(dom);
    const want = notifyCounts(readFileSync(trace, 'utf8'));
    expect(want.size).toBeGreaterThan(3);
    for (const [id, c] of want) {
      expect({ id, map: count(marks, 'map', id), unmap: count(marks, 'unmap', id) }).toEqual({ id, ...c });
    }
    expect(count(marks, 'violation') + count(marks, 'fault')).toBe(0);
    // The page's script ran: it counted the marks it found.
    const total = [...want.values()].reduce((a, c) => a + c.map + c.unmap, 0);
    expect(dom).toMatch(new RegExp(`<span id="drawn">${total}</span>`));
    // Each mark names the line of its notify.
    const lines = readFileSync(trace, 'utf8').split('\n');
    for (const m of marks) expect(lines[m.line - 1]).toContain(`"op":"notify","id":"${m.listener}"`);

    const png = join(dir, 'clean.png');
    const buf = await screenshot(r.file, png);
    expect(buf.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(buf.readUInt32BE(16)).toBeGreaterThan(0); // IHDR width
    expect(buf.length).toBeGreaterThan(2000);
  });

  test('the page loads nothing from outside', async () => {
    const r = await report(join(FIX, 'none/clean.jsonl'));
    expect(r.html).not.toMatch(/<(link|img|iframe)\b/i);
    expect(r.html).not.toMatch(/\b(src|href)\s*=/i);
    expect(r.html).not.toMatch(/url\(|@import|https?:\/\/(?!www\.w3\.org\/2000\/svg)/i);
  });

  test('each violation fixture: one violation mark on the line and listener the fixture names', async () => {
    for (const rule of ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c10']) {
      const trace = join(FIX, `none/violation-${rule}.jsonl`);
      const lines = readFileSync(trace, 'utf8').split('\n');
      const at = lines.findIndex((l) => l.includes(`"note":"${rule.toUpperCase()}:`));
      expect(at).toBeGreaterThan(0);
      const id = (JSON.parse(lines[at]!) as { id: string }).id;
      const r = await report(trace);
      expect(r.code).toBe(1);
      const marks = marksIn(rule === 'c5' ? await dumpDom(r.file) : r.html);
      expect({ rule, v: marks.filter((m) => m.kind === 'violation') }).toEqual({ rule, v: [{ kind: 'violation', listener: id, line: at + 1 }] });
      expect(r.html).toContain(`<td>${rule.toUpperCase()}</td>`);
    }
  });

  test('model trace: marks are what the model delivered (as recorded by the replayer), with a 48-bit compressed axis', async () => {
    const trace = join(FIX, 'vtd-notify/notify-aw48-9101.jsonl');
    const recorded: string[] = [];
    await replayTrace(trace, { record: (l) => recorded.push(l) });
    const want = notifyCounts(recorded.join('\n'));
    const r = await report(trace);
    expect(r.code).toBe(0);
    const marks = marksIn(await dumpDom(r.file));
    let total = 0;
    for (const [id, c] of want) {
      expect({ id, map: count(marks, 'map', id), unmap: count(marks, 'unmap', id) }).toEqual({ id, ...c });
      total += c.map + c.unmap;
    }
    expect(total).toBeGreaterThan(100);
    expect(marks.length).toBe(total);
    // Scattered mappings above 4 GiB: the axis breaks between ranges that occur.
    expect(r.html).toMatch(/class="brk"/);
  });

  test('faults are marked on a lane of their device, one per faulting translation', async () => {
    const trace = join(FIX, 'qemu-vtd/fault-not-present.jsonl');
    const text = readFileSync(trace, 'utf8').split('\n');
    const faulting = text.map((l, i) => ({ l, line: i + 1 }))
      .filter(({ l }) => /"expect":"fault"|"expect":\{"fault":true\}/.test(l));
    const r = await report(trace);
    expect(r.code).toBe(0);
    const marks = marksIn(r.html).filter((m) => m.kind === 'fault');
    expect(marks.map((m) => m.line)).toEqual(faulting.map((f) => f.line));
    for (const m of marks) expect(m.listener).toMatch(/^sid 0x[0-9a-f]+$/);
  });

  test('a mark cap: only the first N marks are drawn, and the page says so', async () => {
    const r = await report(join(FIX, 'vtd-notify/notify-aw39-9100.jsonl'), ['--max-marks', '40']);
    expect(marksIn(r.html)).toHaveLength(40);
    expect(r.html).toMatch(/only the first 40 of \d+ marks/);
    // Violations are drawn even when notifications are capped.
    const c5 = await report(join(FIX, 'none/violation-c5.jsonl'), ['--max-marks', '0']);
    expect(marksIn(c5.html).map((m) => m.kind)).toEqual(['violation']);
  });

  test('mismatches are listed; malformed and usage errors exit 2', async () => {
    const lines = readFileSync(join(FIX, 'none/clean.jsonl'), 'utf8').split('\n');
    const v = lines.findIndex((l) => l.includes('"op":"view.expect","id":"win"'));
    lines[v] = '{"op":"view.expect","id":"win","entries":[]}';
    const bad = join(dir, 'mismatch.jsonl');
    writeFileSync(bad, lines.join('\n'));
    const r = await report(bad);
    expect(r.code).toBe(1);
    expect(r.html).toContain(`<tr class="mismatch" data-line="${v + 1}">`);

    const mal = join(dir, 'malformed.jsonl');
    writeFileSync(mal, lines.slice(0, 4).concat(['{"op":"notify"']).join('\n'));
    const m = await report(mal);
    expect(m.code).toBe(2);
    expect(m.html).toContain('Malformed trace: line 5');

    for (const argv of [[], [bad], [bad, '-o'], [join(dir, 'missing.jsonl'), '-o', join(dir, 'x.html')], [bad, '-o', join(dir, 'y.html'), '--max-marks', 'lots']]) {
      const r = await cli('report', ...argv);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/^viommu: /);
    }
  });
});
