import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { TraceWriter } from '../../src/trace';

// TraceWriter.open() follows the output rule of the CLI (issue 12, item 2):
// links are followed, devices are written through, `-` is stdout.
describe('TraceWriter.open output rule', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'viommu-writer-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('a symbolic link stays a link and its target gets the trace', async () => {
    const target = join(dir, 'target.jsonl');
    const link = join(dir, 'link.jsonl');
    writeFileSync(target, 'old\n');
    symlinkSync(target, link);
    const w = await TraceWriter.open(link);
    w.line('{"op":"a"}');
    await w.close();
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(target);
    expect(readFileSync(target, 'utf8')).toBe('{"op":"a"}\n');
  });

  test('/dev/null stays a character device', async () => {
    const w = await TraceWriter.open('/dev/null');
    w.line('{"op":"a"}');
    await w.close();
    expect(lstatSync('/dev/null').isCharacterDevice()).toBe(true);
  });

  test('an abandoned write leaves a regular file as it was', async () => {
    const f = join(dir, 'keep.jsonl');
    writeFileSync(f, 'old\n');
    const w = await TraceWriter.open(f);
    w.line('{"op":"new"}');
    await w.abandon();
    expect(readFileSync(f, 'utf8')).toBe('old\n');
  });

  test('- writes to the given stdout', async () => {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    const w = await TraceWriter.open('-', out);
    expect(w.toStdout).toBe(true);
    w.line('{"op":"x"}');
    await w.close();
    expect(Buffer.concat(chunks).toString()).toBe('{"op":"x"}\n');
  });
});
