/**
 * `viommu check` (implemented in src/cli/main.ts by the trace area; these
 * tests pin its behaviour on the fixtures): each violation with rule, line,
 * listener and entry, a table per rule and listener, exit 0/1/2.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli';

const FIX = join(__dirname, '../../fixtures');


describe('viommu check on the fixtures', () => {
  test.each(['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c10'])('violation-%s: the rule, line and listener the fixture names; exit 1', async (rule) => {
    const trace = join(FIX, `none/violation-${rule}.jsonl`);
    const lines = readFileSync(trace, 'utf8').split('\n');
    const at = lines.findIndex((l) => l.includes(`"note":"${rule.toUpperCase()}:`));
    const ev = JSON.parse(lines[at]!) as { op: string; id: string; type?: string; iova?: string; mask?: string };
    const R = rule.toUpperCase();
    const r = await cli('check', trace);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(new RegExp(`^line ${at + 1}: ${R} violation \\(listener ${ev.id}\\)`, 'm'));
    // Exactly one violation in a one-violation fixture.
    expect(r.out.match(/^line \d+: C\d+ violation/gm)).toHaveLength(1);
    if (ev.op === 'notify') expect(r.out).toContain(`  event: ${ev.type} iova ${ev.iova} mask ${ev.mask}`);
    expect(r.out).toMatch(new RegExp(`^${R} +${ev.id} +1$`, 'm'));
  });

  test('clean traces exit 0: model none and a VT-d notifier trace', async () => {
    expect((await cli('check', join(FIX, 'none/clean.jsonl'))).code).toBe(0);
    const vtd = await cli('check', join(FIX, 'vtd-notify/notify-aw39-9100.jsonl'));
    expect(vtd.code).toBe(0);
    expect(vtd.out).toMatch(/0 violations: OK/);
  });

  describe('with files', () => {
    let dir: string;
    beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'viommu-check-')); });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    test('a model trace with a mismatch but no violation: replay exits 1, check exits 0', async () => {
      const lines = readFileSync(join(FIX, 'vtd-notify/notify-aw39-9100.jsonl'), 'utf8').split('\n');
      const v = lines.findIndex((l) => l.includes('"op":"view.expect"') && !l.includes('"entries":[]'));
      lines[v] = lines[v]!.replace(/"entries":\[.*\]/, '"entries":[]');
      const f = join(dir, 'mismatch.jsonl');
      writeFileSync(f, lines.join('\n'));
      expect((await cli('replay', f)).code).toBe(1);
      const c = await cli('check', f);
      expect(c.code).toBe(0);
      expect(c.out).not.toMatch(/view\.expect/);
      // --json tells the truth about mismatches (it never zeroes them), while the status stays check's.
      const replayJson = JSON.parse((await cli('replay', f, '--json')).out) as { mismatchCount: number; mismatches: Array<{ line: number; op: string }> };
      const checkJson = JSON.parse((await cli('check', f, '--json')).out) as Record<string, unknown>;
      expect(replayJson.mismatchCount).toBeGreaterThan(0);
      expect(replayJson.mismatches.some((m) => m.line === v + 1 && m.op === 'view.expect')).toBe(true);
      expect(checkJson).toMatchObject({ command: 'check', status: 0, ok: true, violationCount: 0, mismatchCount: replayJson.mismatchCount, mismatches: replayJson.mismatches });
    });

    test('a malformed trace exits 2 with the line', async () => {
      const lines = readFileSync(join(FIX, 'none/violation-c4.jsonl'), 'utf8').split('\n');
      lines.splice(2, 0, '{"op":"notify","id":"vfio"}');
      const f = join(dir, 'malformed.jsonl');
      writeFileSync(f, lines.join('\n'));
      const r = await cli('check', f);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`${f}:3: malformed trace`);
    });
  });
});
