/**
 * Every `--json` output against the one report schema in the repository
 * (docs/report-schema.json, documented in docs/report-format.md): single
 * replay, batch replay at -j 1 and -j 2, and check, on passing, mismatching,
 * violating, malformed and unreadable traces.
 */
import Ajv from 'ajv';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli } from '../helpers/cli';

const ROOT = join(__dirname, '../..');
const FIX = join(ROOT, 'fixtures');
const schema = JSON.parse(readFileSync(join(ROOT, 'docs/report-schema.json'), 'utf8')) as { properties: Record<string, unknown> };
const validate = new Ajv({ strict: true, allErrors: true }).compile(schema);

interface Report { status: number; mismatchCount: number; mismatches: unknown[]; violationCount: number; violations: unknown[]; command: string }

/** Parses JSON Lines output and holds every line to the schema; returns the reports. */
function reports(out: string): Report[] {
  expect(out.endsWith('\n')).toBe(true);
  return out.slice(0, -1).split('\n').map((line) => {
    const r = JSON.parse(line) as unknown;
    if (!validate(r)) throw new Error(`${line}\ndoes not match docs/report-schema.json: ${JSON.stringify(validate.errors, null, 2)}`);
    const rep = r as Report;
    // What the schema cannot say: the lists are the first of the counted items.
    expect(rep.mismatches.length).toBeLessThanOrEqual(rep.mismatchCount);
    expect(rep.violations.length).toBeLessThanOrEqual(rep.violationCount);
    return rep;
  });
}

describe('the --json report schema', () => {
  let dir: string;
  let traces: Record<'passing' | 'mismatching' | 'violating' | 'malformed' | 'unreadable' | 'vtd', string>;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'viommu-schema-'));
    const mismatching = join(dir, 'mismatching.jsonl');
    // Two mismatches: memory that differs, and a view that is not what the notifications built.
    writeFileSync(mismatching, [
      '{"trace":"viommu","version":1,"model":"none","ram":[{"base":"0x0","size":"0x1000"}]}',
      '{"op":"mem.write","gpa":"0x10","data":"abcd"}',
      '{"op":"mem.expect","gpa":"0x10","data":"abce"}',
      '{"op":"notifier.add","id":"v","sid":"0x1","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffffffffffff"}',
      '{"op":"notify","id":"v","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x2000","perm":"rw"}',
      '{"op":"view.expect","id":"v","entries":[]}',
    ].join('\n') + '\n');
    const malformed = join(dir, 'malformed.jsonl');
    writeFileSync(malformed, readFileSync(join(FIX, 'none/clean.jsonl'), 'utf8') + '{"op":"notify"}\n');
    traces = {
      passing: join(FIX, 'none/clean.jsonl'),
      vtd: join(FIX, 'qemu-vtd/sl-4k-rw-basic.jsonl'),
      mismatching,
      violating: join(FIX, 'none/violation-c4.jsonl'),
      malformed,
      unreadable: join(dir, 'missing.jsonl'),
    };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('the schema is a valid strict JSON Schema and the documentation lists each of its fields', () => {
    expect(typeof validate).toBe('function');
    const doc = readFileSync(join(ROOT, 'docs/report-format.md'), 'utf8');
    for (const field of Object.keys(schema.properties)) expect([field, doc.includes(`| \`${field}\` |`)]).toEqual([field, true]);
  });

  test('single replay and check: one schema-valid report per trace; status is the exit status', async () => {
    const want = { passing: [0, 0], vtd: [0, 0], mismatching: [1, 0], violating: [1, 1], malformed: [2, 2], unreadable: [2, 2] } as const;
    for (const [name, file] of Object.entries(traces)) {
      const [replayStatus, checkStatus] = want[name as keyof typeof want];
      const r = await cli('replay', file, '--json');
      const [rep] = reports(r.out);
      expect([name, r.code, rep!.status, rep!.command]).toEqual([name, replayStatus, replayStatus, 'replay']);
      const c = await cli('check', file, '--json');
      const [chk] = reports(c.out);
      expect([name, c.code, chk!.status, chk!.command]).toEqual([name, checkStatus, checkStatus, 'check']);
      // check counts the same mismatches as replay: its mismatchCount is true, only its verdict ignores them.
      expect([name, chk!.mismatchCount]).toEqual([name, rep!.mismatchCount]);
    }
    const m = reports((await cli('replay', traces.mismatching, '--json')).out)[0]!;
    expect(m.mismatchCount).toBe(2);
    expect(m.mismatches).toHaveLength(2);
  });

  test('batch replay at -j 1 and -j 2: one schema-valid report per trace, mismatches always an array', async () => {
    const files = Object.values(traces);
    for (const jobs of ['1', '2']) {
      const r = await cli('replay', ...files, '--json', '-j', jobs);
      expect(r.code).toBe(2);
      const reps = reports(r.out);
      expect(reps).toHaveLength(files.length);
      const mismatching = reps[files.indexOf(traces.mismatching)]!;
      expect(Array.isArray(mismatching.mismatches)).toBe(true);
      expect(mismatching.mismatchCount).toBe(2);
    }
  });

  test('the schema rejects the shapes issue 12 found: a number for mismatches, a status that ok contradicts, a missing key', async () => {
    const [good] = reports((await cli('replay', traces.mismatching, '--json')).out) as unknown as Array<Record<string, unknown>>;
    expect(validate({ ...good, mismatches: 2 })).toBe(false);
    expect(validate({ ...good, ok: true })).toBe(false);
    const { schemaVersion: _drop, ...noVersion } = good!;
    expect(validate(noVersion)).toBe(false);
    expect(validate({ ...good, malformed: { line: 3, reason: 'x' } })).toBe(false); // malformed means status 2
    expect(validate({ ...good, extra: 1 })).toBe(false);
  });
});
