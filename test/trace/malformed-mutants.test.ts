/**
 * Malformed-trace mutation test (issue 13, "Make the campaigns part of the
 * project"). In-repo fixtures are mutated (truncation, wrong JSON types, bad
 * hex, huge numbers, invalid UTF-8, NUL bytes, truncated gzip, 10 MB lines,
 * empty files, a directory, swapped or dropped lines) and each mutant goes
 * through the replay API and the CLI entry (`main(argv, io)`, in-process).
 *
 * What must hold (trace-v1 "What a replayer reports"): exit 0, 1 or 2; a
 * malformed trace names its line, and where the mutation makes a known line
 * malformed it is that line; an unreadable input is a plain I/O or gzip error;
 * never an uncaught exception, a stack trace, a JS internal error message or
 * a hang.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { replayTrace } from '../../src/trace/replay';
import { TraceFormatError } from '../../src/trace/types';
import { main } from '../../src/cli/main';
import { sink } from '../helpers/cli';

const FIXTURES = [
  'fixtures/none/clean.jsonl',
  'fixtures/none/violation-c4.jsonl',
  'fixtures/qemu-vtd/sl-4k-rw-basic.jsonl',
  'fixtures/qemu-vtd/qi-page-selective.jsonl',
  'fixtures/qemu-vtd/fault-event-msi.jsonl',
  'fixtures/qemu-vtd/sm-sl-basic.jsonl',
  'fixtures/qemu-vtd/sl-2m-large-page.jsonl',
];
const GZ_FIXTURE = 'fixtures/linux-guest/linux-vhost-noats.jsonl.gz';
/** Generous bound per mutant and entry point: a hang, not a slow run. */
const MUTANT_MS = 20_000;

/** Deterministic PRNG (mulberry32) so that every run makes the same mutants. */
function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
  };
}

interface Mutant {
  name: string;
  bytes: Buffer;
  /** The line the mutation makes malformed when that is certain (exit 2 naming it). */
  badLine?: number;
  /** The exit status the mutant must give when it is certain. */
  exit?: 0 | 1 | 2;
}

const lineStarts = (b: Buffer): number[] => {
  const s = [0];
  for (let i = b.indexOf(10); i >= 0 && i + 1 < b.length; i = b.indexOf(10, i + 1)) s.push(i + 1);
  return s;
};
/** 1-based line of byte offset `off`. */
const lineOf = (starts: number[], off: number): number => {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= off) lo = mid; else hi = mid - 1;
  }
  return lo + 1;
};

/** Raw JSON texts a field can be given instead of its right type. */
const WRONG_TYPES = ['null', 'true', '0', '-1', '1.5', '""', '[]', '{}', '[1,2]', '{"a":1}', '"\\u0000"', '"💥"'];
const BAD_HEX = ['"0xZZ"', '"0x"', '"0X10"', '"0x 1"', '"x10"', '"0x1_000"', '"0x-1"', '" 0x1"', '"0x1 "', '"１"'];
const HUGE = ['1e400', '-1e400', '9007199254740993', '1e21', '-0', '"0x10000000000000000"', '"0xffffffffffffffffffffffffffffffff"', `"0x${'f'.repeat(4096)}"`, '123456789012345678901234567890'];

/** Line `text` with top-level field `key` given the raw JSON `raw`. */
function withField(text: string, key: string, raw: string): string {
  const o = JSON.parse(text) as Record<string, unknown>;
  return '{' + Object.keys(o).map((k) => `${JSON.stringify(k)}:${k === key ? raw : JSON.stringify(o[k])}`).join(',') + '}';
}

function mutantsOf(path: string, seed: number): Mutant[] {
  const orig = readFileSync(path);
  const r = rng(seed);
  const lines = orig.toString('utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const starts = lineStarts(orig);
  const out: Mutant[] = [];
  const join = (ls: string[]) => Buffer.from(ls.join('\n') + '\n');

  // Truncation at random byte offsets: a cut inside a line leaves a partial JSON object, malformed there.
  for (let i = 0; i < 6; i++) {
    const cut = 1 + r(orig.length - 1);
    const cutLine = lineOf(starts, cut);
    const atBoundary = orig[cut - 1] === 10 || orig[cut] === 10 || (orig[cut] === 13 && orig[cut + 1] === 10);
    out.push({ name: `truncated at byte ${cut}`, bytes: orig.subarray(0, cut), ...(atBoundary ? {} : { badLine: cutLine, exit: 2 as const }) });
  }
  // Wrong JSON types, bad hex and huge numbers in a random field of a random event line.
  const mutateField = (kind: string, values: string[], n: number) => {
    for (let i = 0; i < n; i++) {
      const k = 1 + r(lines.length - 1);
      const text = lines[k]!;
      const keys = Object.keys(JSON.parse(text) as object).filter((x) => x !== 'note');
      const key = keys[r(keys.length)]!;
      const raw = values[r(values.length)]!;
      const ls = [...lines];
      ls[k] = withField(text, key, raw);
      // Lines before k are untouched: if anything is malformed, it is line k+1.
      out.push({ name: `${kind}: line ${k + 1} field ${key} = ${raw.slice(0, 24)}`, bytes: join(ls), badLine: k + 1 });
    }
  };
  mutateField('wrong type', WRONG_TYPES, 8);
  mutateField('bad hex', BAD_HEX, 4);
  mutateField('huge number', HUGE, 4);
  // Invalid UTF-8 and NUL bytes inserted anywhere in a line: that line is malformed (JSON allows neither raw).
  for (const [kind, bad] of [['invalid UTF-8', [0xff]], ['invalid UTF-8', [0xc0, 0x80]], ['invalid UTF-8', [0xed, 0xa0, 0x80]], ['NUL byte', [0]], ['NUL byte', [0]]] as const) {
    let at = r(orig.length);
    if (orig[at] === 10) at++; // insert into a line, not as a line of its own
    out.push({
      name: `${kind} at byte ${at}`,
      bytes: Buffer.concat([orig.subarray(0, at), Buffer.from(bad), orig.subarray(at)]),
      badLine: lineOf(starts, Math.min(at, orig.length - 1)), exit: 2,
    });
  }
  // Random byte flips: anything may happen, but within the rules.
  for (let i = 0; i < 4; i++) {
    const b = Buffer.from(orig);
    const at = r(b.length);
    b[at] = r(256);
    out.push({ name: `byte ${at} flipped to ${b[at]}`, bytes: b });
  }
  // Semantic mutants: lines dropped, duplicated, swapped (0, 1 or 2; the header moved away is malformed on line 1).
  const a = 1 + r(lines.length - 1);
  const bl = 1 + r(lines.length - 1);
  out.push({ name: `line ${a + 1} dropped`, bytes: join(lines.filter((_, i) => i !== a)) });
  out.push({ name: `line ${a + 1} duplicated`, bytes: join([...lines.slice(0, a + 1), ...lines.slice(a)]) });
  const sw = [...lines];
  [sw[a], sw[bl]] = [sw[bl]!, sw[a]!];
  out.push({ name: `lines ${a + 1} and ${bl + 1} swapped`, bytes: join(sw) });
  out.push({ name: 'header swapped with line 2', bytes: join([lines[1]!, lines[0]!, ...lines.slice(2)]), badLine: 1, exit: 2 });
  // 10 MB lines: in an ignored note (same outcome as the original), as garbage, and without a final newline.
  const big = 'n'.repeat(10 << 20);
  const ls = [...lines];
  ls[a] = withField(lines[a]!, 'note', JSON.stringify(big));
  out.push({ name: '10 MB note', bytes: join(ls) });
  out.push({ name: '10 MB garbage line', bytes: join([...lines.slice(0, a), big, ...lines.slice(a)]), badLine: a + 1, exit: 2 });
  out.push({ name: '10 MB unterminated last line', bytes: Buffer.concat([orig, Buffer.from('{"op":"mem.write","gpa":"0x0","data":"' + big)]), badLine: starts.length + 1, exit: 2 });
  return out;
}

function generalMutants(): Mutant[] {
  const r = rng(7);
  const random = Buffer.alloc(2048);
  for (let i = 0; i < random.length; i++) random[i] = r(256);
  random[0] = 0x7b; // not the gzip magic
  const gz = gzipSync(readFileSync('fixtures/none/clean.jsonl'));
  const realGz = readFileSync(GZ_FIXTURE);
  const out: Mutant[] = [
    { name: 'empty file', bytes: Buffer.alloc(0), badLine: 1, exit: 2 },
    { name: 'a lone newline', bytes: Buffer.from('\n'), badLine: 1, exit: 2 },
    { name: 'NUL bytes only', bytes: Buffer.alloc(4096), badLine: 1, exit: 2 },
    { name: 'random bytes', bytes: random, badLine: 1, exit: 2 },
    { name: 'a gzip magic and nothing else', bytes: Buffer.from([0x1f, 0x8b]) },
    { name: 'a 10 MB data payload (valid: 5 MB written to RAM)', bytes: Buffer.from(
      '{"trace":"viommu","version":1,"model":"intel-vtd","config":{},"ram":[{"base":"0x0","size":"0x1000000"}]}\n'
      + `{"op":"mem.write","gpa":"0x0","data":"${'ab'.repeat(5 << 20)}"}\n`
      + `{"op":"mem.expect","gpa":"0x4ffffe","data":"abab"}\n`), exit: 0 },
  ];
  for (const cut of [10, 20, 100, gz.length >> 1, gz.length - 9, gz.length - 1]) out.push({ name: `gzip truncated at ${cut}/${gz.length}`, bytes: gz.subarray(0, cut) });
  for (const cut of [30, realGz.length >> 2, realGz.length >> 1, realGz.length - 4]) out.push({ name: `${GZ_FIXTURE} truncated at ${cut}`, bytes: realGz.subarray(0, cut) });
  const flipped = Buffer.from(realGz);
  const mid = realGz.length >> 1;
  flipped[mid] = realGz[mid]! ^ 0x55;
  out.push({ name: `${GZ_FIXTURE} with a corrupt byte`, bytes: flipped });
  return out;
}

/** Text a JS engine error or a stack leaves in the output. */
const CRASH_TEXT = /\n {4}at |TypeError|RangeError|ReferenceError|SyntaxError: (?!.*JSON)|Cannot read propert|is not a function|is not iterable|Maximum call stack|Invalid array length|Invalid string length|internal:/;

type Outcome = { exit: number; line?: number; detail: string };

async function bounded<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t0 = performance.now();
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`${what}: no answer within ${MUTANT_MS} ms (hang)`)), MUTANT_MS); })]);
  } finally {
    clearTimeout(timer);
    const ms = performance.now() - t0;
    if (ms > MUTANT_MS) throw new Error(`${what}: took ${ms.toFixed(0)} ms`);
  }
}

/** The replay API's answer as an exit status; anything thrown that is not an I/O, gzip or format error is a crash. */
async function viaApi(input: Buffer | string): Promise<Outcome> {
  try {
    const rep = await bounded('replayTrace', replayTrace(input));
    if (rep.malformed) return { exit: 2, line: rep.malformed.line, detail: rep.malformed.reason };
    return { exit: rep.ok ? 0 : 1, detail: `${rep.mismatches.length} mismatches, ${rep.violationCount} violations` };
  } catch (e) {
    if (e instanceof TraceFormatError) return { exit: 2, line: e.line, detail: e.message };
    const code = (e as { code?: unknown }).code;
    if (e instanceof Error && e.name === 'Error' && ((typeof code === 'string' && /^E[A-Z]+$/.test(code)) || e.message.startsWith('gzip:'))) {
      return { exit: 2, detail: e.message };
    }
    throw new Error(`replayTrace threw ${e instanceof Error ? `${e.constructor.name}: ${e.stack}` : String(e)}`);
  }
}

async function viaCli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const s = sink();
  const code = await bounded(`viommu ${argv.join(' ')}`, main(argv, s.io));
  return { code, out: s.out, err: s.err };
}

describe('malformed-trace mutants: exit 0/1/2, the line named, never a crash or a hang', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'viommu-mutants-')); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  /** Outcomes over all mutants: the campaign must reach every exit status, or it proves little. */
  const seen = { 0: 0, 1: 0, 2: 0, lines: 0 };
  afterAll(() => {
    expect(seen[0]).toBeGreaterThan(3);
    expect(seen[1]).toBeGreaterThan(3);
    expect(seen[2]).toBeGreaterThan(50);
    expect(seen.lines).toBeGreaterThan(50);
  });

  const check = async (m: Mutant, file: string) => {
    writeFileSync(file, m.bytes);
    const api = await viaApi(m.bytes);
    seen[api.exit as 0 | 1 | 2]++;
    if (api.line !== undefined) seen.lines++;
    const fromFile = await viaApi(file);
    const ctx = `${m.name}: API ${JSON.stringify(api)}`;
    expect([ctx, api.exit]).toEqual([ctx, fromFile.exit]);
    expect([ctx, [0, 1, 2].includes(api.exit)]).toEqual([ctx, true]);
    if (m.exit !== undefined) expect([ctx, api.exit]).toEqual([ctx, m.exit]);
    if (m.badLine !== undefined && api.exit === 2) expect([ctx, api.line]).toEqual([ctx, m.badLine]);
    for (const cmd of ['replay', 'check'] as const) {
      const c = await viaCli([cmd, file]);
      const cctx = `${ctx}; viommu ${cmd}: exit ${c.code}, stderr ${c.err.slice(0, 300)}`;
      expect([cctx, [0, 1, 2].includes(c.code)]).toEqual([cctx, true]);
      expect([cctx, CRASH_TEXT.test(c.out + c.err)]).toEqual([cctx, false]);
      // A malformed line is named as FILE:LINE (trace-v1: line number and reason).
      if (api.line !== undefined) {
        expect([cctx, c.code]).toEqual([cctx, 2]);
        expect([cctx, c.err.includes(`:${api.line}:`)]).toEqual([cctx, true]);
      } else if (cmd === 'replay') {
        expect([cctx, c.code]).toEqual([cctx, api.exit]);
      }
    }
  };

  test.each(FIXTURES.map((f, i) => [f, i] as const))('mutants of %s', async (fixture, i) => {
    const ms = mutantsOf(fixture, 1000 + i);
    for (const [k, m] of ms.entries()) await check(m, join(dir, `m${i}-${k}.jsonl`));
  });

  test('mutants from nothing: empty, NUL, random bytes, truncated and corrupt gzip, 10 MB payload', async () => {
    for (const [k, m] of generalMutants().entries()) await check(m, join(dir, `g${k}.jsonl`));
  });

  test('a 10 MB note leaves the outcome of the original trace unchanged', async () => {
    const orig = await viaApi(readFileSync(FIXTURES[1]!));
    const noted = mutantsOf(FIXTURES[1]!, 1001).find((m) => m.name === '10 MB note')!;
    expect(await viaApi(noted.bytes)).toMatchObject({ exit: orig.exit });
    expect(orig.exit).toBe(1); // violation-c4: a C4 violation
  });

  test('a directory given as a trace is an unreadable input (exit 2), not a crash', async () => {
    const d = join(dir, 'a-dir.jsonl');
    mkdirSync(d);
    await expect(viaApi(d)).resolves.toMatchObject({ exit: 2, detail: expect.stringMatching(/is a directory/) });
    for (const cmd of ['check', 'report']) {
      const c = await viaCli(cmd === 'report' ? [cmd, d, '-o', join(dir, 'r.html')] : [cmd, d]);
      expect([cmd, c.code, CRASH_TEXT.test(c.out + c.err)]).toEqual([cmd, 2, false]);
    }
    const empty = join(dir, 'empty-dir');
    mkdirSync(empty);
    const c = await viaCli(['replay', empty]);
    expect([c.code, CRASH_TEXT.test(c.out + c.err)]).toEqual([2, false]);
  });
});
