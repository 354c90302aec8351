/**
 * `viommu replay --record OUT` never destroys data: an unwritable OUT is an
 * I/O error (exit 2, trace-v1) before anything is replayed, OUT equal to the
 * trace being read is safe (the file is only replaced once the run is
 * complete), and a malformed trace leaves OUT as it was.
 */
import {
  copyFileSync, createReadStream, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync,
  symlinkSync, writeFileSync,
} from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
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

/**
 * Output files by one rule (src/cli/output.ts): `-` is stdout, symbolic links
 * are followed and stay links, special files are written through and stay
 * what they were; and `-` as an input is stdin.
 */
describe('output files and -', () => {
  const TRACE = join(FIX, 'qemu-vtd/sl-4k-rw-basic.jsonl');
  let dir: string;
  let recorded: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'viommu-out-'));
    // The reference: a recording to a plain new file.
    expect((await cli('replay', TRACE, '--record', join(dir, 'plain.jsonl'))).code).toBe(0);
    recorded = readFileSync(join(dir, 'plain.jsonl'), 'utf8');
    // A QEMU capture re-recorded by a model that matches QEMU: the same events.
    expect(recorded.split('\n').length).toBe(readFileSync(TRACE, 'utf8').split('\n').length);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('--record through a symbolic link writes its target; the link stays a link', async () => {
    const target = join(dir, 'target.jsonl');
    writeFileSync(target, 'old\n');
    const link = join(dir, 'link.jsonl');
    symlinkSync('target.jsonl', link); // relative, as links often are
    expect((await cli('replay', TRACE, '--record', link)).code).toBe(0);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe('target.jsonl');
    expect(readFileSync(target, 'utf8')).toBe(recorded);
    // A dangling link: the write creates its target, as a shell redirection does.
    const dangling = join(dir, 'dangling.jsonl');
    symlinkSync('created.jsonl', dangling);
    expect((await cli('replay', TRACE, '--record', dangling)).code).toBe(0);
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dir, 'created.jsonl'), 'utf8')).toBe(recorded);
    // report -o and import -o follow the same rule.
    const page = join(dir, 'page-link.html');
    symlinkSync('page.html', page);
    expect((await cli('report', TRACE, '-o', page)).code).toBe(0);
    expect(lstatSync(page).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dir, 'page.html'), 'utf8')).toMatch(/^<!DOCTYPE html>/i);
  });

  test('--record /dev/null writes through the device: it stays a character device', async () => {
    const before = statSync('/dev/null');
    const r = await cli('replay', TRACE, '--record', '/dev/null');
    expect(r.code).toBe(0);
    const after = lstatSync('/dev/null');
    expect(after.isCharacterDevice()).toBe(true);
    expect(after.rdev).toBe(before.rdev);
    expect(readdirSync('/dev').filter((f) => f.startsWith('null.'))).toEqual([]); // no temporary file beside it
    expect((await cli('report', TRACE, '-o', '/dev/null')).code).toBe(0);
    expect((await cli('import', 'qemu-log', join(FIX, 'qemu/c5-split-2m.log'), '-o', '/dev/null')).code).toBe(0);
    expect(lstatSync('/dev/null').isCharacterDevice()).toBe(true);
  });

  const devFull = existsSync('/dev/full') ? test : test.skip;
  devFull('--record /dev/full: a clear write error, exit 2, the device untouched', async () => {
    const r = await cli('replay', TRACE, '--record', '/dev/full');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^viommu: cannot write \/dev\/full: ENOSPC/m);
    expect(lstatSync('/dev/full').isCharacterDevice()).toBe(true);
    const imp = await cli('import', 'qemu-log', join(FIX, 'qemu/c5-split-2m.log'), '-o', '/dev/full');
    expect(imp.code).toBe(2);
    expect(imp.err).toMatch(/cannot write \/dev\/full: ENOSPC/);
  });

  const withMkfifo = spawnSync('mkfifo', ['--version']).status === 0 ? test : test.skip;
  withMkfifo('--record into a FIFO writes through it to the reader', async () => {
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const reader = new Promise<string>((ok, fail) => {
      const chunks: Buffer[] = [];
      createReadStream(fifo).on('data', (c) => chunks.push(c as Buffer)).on('end', () => ok(Buffer.concat(chunks).toString('utf8'))).on('error', fail);
    });
    expect((await cli('replay', TRACE, '--record', fifo)).code).toBe(0);
    expect(await reader).toBe(recorded);
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  test('--record - writes the trace to stdout and the report to stderr', async () => {
    const r = await cli('replay', TRACE, '--record', '-');
    expect(r.code).toBe(0);
    expect(r.out).toBe(recorded);
    expect(r.err).toMatch(/^replay .*sl-4k-rw-basic\.jsonl \(model intel-vtd\): 107 events, 0 mismatches, 0 violations: OK\n$/);
    const json = await cli('replay', TRACE, '--record', '-', '--json');
    expect(json.out).toBe(recorded);
    expect(JSON.parse(json.err)).toMatchObject({ schemaVersion: 1, status: 0 });
    // gzip on stdout only when asked by the name: `-` stays plain text.
    const gz = await cli('replay', TRACE, '--record', join(dir, 'out.jsonl.gz'));
    expect(gz.code).toBe(0);
    expect(gunzipSync(readFileSync(join(dir, 'out.jsonl.gz'))).toString('utf8')).toBe(recorded);
  });

  test('- as the trace reads stdin, plain or gzip, for replay, check and report', async () => {
    const text = readFileSync(TRACE);
    for (const input of [text, gzipSync(text)]) {
      const r = await cli.withStdin(input, 'replay', '-');
      expect(r.code).toBe(0);
      expect(r.out).toBe('replay - (model intel-vtd): 107 events, 0 mismatches, 0 violations: OK\n');
      const c = await cli.withStdin(input, 'check', '-', '--json');
      expect(c.code).toBe(0);
      expect(JSON.parse(c.out)).toMatchObject({ file: '-', command: 'check', model: 'intel-vtd', events: 107 });
      const rec = await cli.withStdin(input, 'replay', '-', '--record', '-');
      expect(rec.out).toBe(recorded);
    }
    const violating = readFileSync(join(FIX, 'none/violation-c4.jsonl'));
    expect((await cli.withStdin(violating, 'check', '-')).code).toBe(1);
    const page = await cli.withStdin(violating, 'report', '-', '-o', '-');
    expect(page.code).toBe(1);
    expect(page.out).toMatch(/^<!DOCTYPE html>/i);
    expect(page.err).toMatch(/^report -: -: 3 events/);
    // A malformed trace on stdin: exit 2 naming "-" and the line.
    const bad = await cli.withStdin('{"trace":"viommu","version":1,"model":"none","ram":[]}\n{"op":"notify"}\n', 'replay', '-');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/^viommu: -:2: malformed trace: /m);
  });

  test('stdin cannot be part of a batch', async () => {
    const r = await cli('replay', '-', join(FIX, 'none/clean.jsonl'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/standard input \(-\) can only be replayed on its own/);
  });
});
