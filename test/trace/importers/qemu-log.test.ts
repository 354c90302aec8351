import { readFileSync, writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { importQemuLog, formatImportSummary, isQemuTraceLog } from '../../../src/trace/importers/qemu-log';
import { cli } from '../../helpers/cli';

/** A real QEMU 7.2 trace log (fixtures/qemu-logs/README.md). */
const REAL_LOG = join(__dirname, '../../../fixtures/qemu-logs/vtd-vhost-noats.log.gz');
const FIXTURES = join(__dirname, '../../../fixtures/qemu');

/** A Writable that keeps what it was given. */
class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString('utf8');
    cb();
  }
}

async function importText(text: string | Buffer, sourceName = 'test.log') {
  const out = new Collect();
  const summary = await importQemuLog(Readable.from([Buffer.from(text)]), out, { sourceName });
  return { summary, lines: out.text.split('\n').filter((l) => l !== '') };
}

async function importFile(path: string) {
  const out = new Collect();
  const summary = await importQemuLog(path, out);
  return { summary, text: out.text, lines: out.text.split('\n').filter((l) => l !== '') };
}

/** The lines after the header. */
const body = (lines: string[]): string[] => lines.slice(1);

const FULL = '"start":"0x0","end":"0xffffffffffffffff"';

describe('importQemuLog on the real QEMU 7.2 log (vtd-vhost-noats.log.gz)', () => {
  // Independent count: gunzip in one piece, split, strip the optional prefix, compare names.
  const logLines = gunzipSync(readFileSync(REAL_LOG)).toString('utf8').split('\n');
  if (logLines[logLines.length - 1] === '') logLines.pop();
  const nameOf = (l: string): string => l.replace(/^\d+@[\d.]+:/, '').split(' ')[0]!;
  const grepCount = (name: string): number => logLines.filter((l) => nameOf(l) === name).length;
  let result: Awaited<ReturnType<typeof importFile>>;

  beforeAll(async () => {
    result = await importFile(REAL_LOG);
  });

  test('reads every line, detects gzip and counts each kind as an independent grep does', () => {
    const s = result.summary;
    expect(s.gzip).toBe(true);
    expect(s.source).toBe('vtd-vhost-noats.log.gz');
    expect(s.lines).toBe(logLines.length);
    for (const kind of ['vtd_inv_desc_iotlb_pages', 'vtd_inv_desc_iotlb_domain', 'vtd_inv_desc_iotlb_global',
      'vtd_inv_desc_cc_device', 'vtd_inv_desc_cc_devices', 'vtd_inv_desc_cc_global', 'vtd_switch_address_space',
      'vtd_dmar_translate', 'vtd_inv_desc', 'vtd_iotlb_page_update', 'vtd_iotlb_cc_hit', 'vtd_ir_remap']) {
      const n = grepCount(kind);
      expect(n).toBeGreaterThan(0);
      expect([kind, s.kinds[kind]?.read]).toEqual([kind, n]);
    }
    // The README says: no MAP notifier, hence no page-walk lines.
    expect(s.kinds['vtd_page_walk_one']).toBeUndefined();
    expect(grepCount('vtd_page_walk_one')).toBe(0);
    // Every line that is not an intel-iommu (vtd_*) event is unknown (vhost_*, x86_iommu_*).
    expect(s.unknown).toBe(logLines.filter((l) => !nameOf(l).startsWith('vtd_')).length);
    expect(s.unknownKinds['vhost_user_write']).toBe(grepCount('vhost_user_write'));
    let known = 0;
    for (const [kind, c] of Object.entries(s.kinds)) {
      expect([kind, c.used + c.skipped]).toEqual([kind, c.read]);
      known += c.read;
    }
    expect(known + s.unknown).toBe(s.lines);
    expect(s.malformed).toBe(0);
    expect(s.warnings).toEqual([]);
  });

  test('no notification happened, so invalidations are read and skipped, none used', () => {
    const c = result.summary.kinds['vtd_inv_desc_iotlb_pages']!;
    expect(c).toEqual({ read: grepCount('vtd_inv_desc_iotlb_pages'), used: 0, skipped: grepCount('vtd_inv_desc_iotlb_pages') });
    expect(result.summary.notifyLines).toBe(0);
    expect(result.summary.listeners).toEqual([]);
  });

  test('writes a valid trace: the model "none" header and no event lines', () => {
    expect(result.text.endsWith('\n')).toBe(true);
    expect(result.lines).toHaveLength(1);
    const header = JSON.parse(result.lines[0]!);
    expect(header).toEqual({
      trace: 'viommu', version: 1, model: 'none', config: {}, ram: [],
      source: expect.stringMatching(/^imported from QEMU trace log vtd-vhost-noats\.log\.gz: /),
    });
  });

  test('a plain-text copy named .gz is read as text: gzip is detected by magic bytes, output is the same', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qemu-log-'));
    try {
      const plain = join(dir, 'vtd-vhost-noats.log.gz');
      writeFileSync(plain, gunzipSync(readFileSync(REAL_LOG)));
      const again = await importFile(plain);
      expect(again.summary.gzip).toBe(false);
      expect(again.text).toBe(result.text);
      expect(again.summary.kinds).toEqual(result.summary.kinds);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hand-written excerpts (fixtures/qemu)', () => {
  test('clean MAP/UNMAP sequence: listeners per device, domain fallback, notes, malformed lines', async () => {
    const { summary, lines } = await importFile(join(FIXTURES, 'clean-map-unmap.log'));
    expect(JSON.parse(lines[0]!).model).toBe('none');
    // Expected output written from the excerpt: the cc_device walk ties domain 0x1 to 00:04.0,
    // the IOTLB context update ties domain 0x2 to 00:05.0 (DID = high[23:8] = 2),
    // domain 0x7 is never tied to a device.
    expect(body(lines)).toEqual([
      `{"op":"notifier.add","id":"vtd-00:04.0","sid":"0x20","flags":["MAP","UNMAP"],${FULL}}`,
      '{"op":"notify","id":"vtd-00:04.0","type":"MAP","iova":"0x0","mask":"0xfff","translated":"0x3000000","perm":"rw","note":"vtd_inv_desc_cc_device context invalidate device 00:04.00"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"MAP","iova":"0x100000","mask":"0xfff","translated":"0x3100000","perm":"r","note":"vtd_inv_desc_iotlb_pages iotlb invalidate domain 0x1 addr 0x100000 mask 0x1"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"MAP","iova":"0x101000","mask":"0xfff","translated":"0x3101000","perm":"w"}',
      `{"op":"notifier.add","id":"vtd-00:05.0","sid":"0x28","flags":["MAP","UNMAP"],${FULL}}`,
      '{"op":"notify","id":"vtd-00:05.0","type":"MAP","iova":"0x9000","mask":"0xfff","translated":"0x4001000","perm":"rw","note":"vtd_inv_desc_iotlb_pages iotlb invalidate domain 0x2 addr 0x9000 mask 0x0"}',
      `{"op":"notifier.add","id":"vtd-domain-0x7","sid":"0x0","flags":["MAP","UNMAP"],${FULL},"note":"device unknown: stands for the address space(s) of domain 0x7"}`,
      '{"op":"notify","id":"vtd-domain-0x7","type":"MAP","iova":"0x7000","mask":"0xfff","translated":"0x7700000","perm":"rw","note":"vtd_inv_desc_iotlb_pages iotlb invalidate domain 0x7 addr 0x7000 mask 0x0"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"UNMAP","iova":"0x100000","mask":"0xfff","translated":"0x0","perm":"none","note":"vtd_inv_desc_iotlb_pages iotlb invalidate domain 0x1 addr 0x100000 mask 0x1"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"UNMAP","iova":"0x101000","mask":"0xfff","translated":"0x0","perm":"none"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"UNMAP","iova":"0x0","mask":"0x7fffffffff","translated":"0x0","perm":"none","note":"vtd_inv_desc_cc_device context invalidate device 00:04.00; vtd_as_unmap_whole Device 00:04.0 start 0x0 size 0x8000000000"}',
    ]);
    expect(summary.listeners).toEqual(['vtd-00:04.0', 'vtd-00:05.0', 'vtd-domain-0x7']);
    expect(summary.notifyLines).toBe(8);
    // 9 page-walk lines: 7 delivered, 2 malformed (perm 7, truncated).
    expect(summary.kinds['vtd_page_walk_one']).toEqual({ read: 9, used: 7, skipped: 2 });
    // 5 PSIs: 4 produced notifications, the last one only skip_unmap.
    expect(summary.kinds['vtd_inv_desc_iotlb_pages']).toEqual({ read: 5, used: 4, skipped: 1 });
    expect(summary.kinds['vtd_page_walk_one_skip_unmap']).toEqual({ read: 5, used: 0, skipped: 5 });
    expect(summary.malformed).toBe(2);
    const fileLines = readFileSync(join(FIXTURES, 'clean-map-unmap.log'), 'utf8').split('\n');
    const perm7 = fileLines.findIndex((l) => l.endsWith('perm 7')) + 1;
    const cut = fileLines.findIndex((l) => l.endsWith('-> gpa')) + 1;
    expect(summary.warnings.map((w) => [w.line, w.kind])).toEqual([[perm7, 'vtd_page_walk_one'], [cut, 'vtd_page_walk_one']]);
    expect(summary.warnings[0]!.reason).toMatch(/perm 7/);
    // A vhost line, a garbage line and a blank line.
    expect(summary.unknown).toBe(3);
    expect(summary.unknownKinds).toEqual({ vhost_iotlb_miss: 1 });
    expect(formatImportSummary(summary)).toMatch(/line \d+: vtd_page_walk_one: perm 7 is not 0\.\.3/);
  });

  test('QEMU cutting a 2 MiB entry with a 4 KiB UNMAP (C5) comes out as QEMU sent it', async () => {
    const { summary, lines } = await importFile(join(FIXTURES, 'c5-split-2m.log'));
    expect(body(lines)).toEqual([
      `{"op":"notifier.add","id":"vtd-00:04.0","sid":"0x20","flags":["MAP","UNMAP"],${FULL}}`,
      '{"op":"notify","id":"vtd-00:04.0","type":"UNMAP","iova":"0x0","mask":"0x7fffffffff","translated":"0x0","perm":"none","note":"vtd_as_unmap_whole Device 00:04.0 start 0x0 size 0x8000000000"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"MAP","iova":"0x200000","mask":"0x1fffff","translated":"0x40000000","perm":"rw","note":"vtd_replay_ce_valid legacy mode: replay valid context device 00:04.00 domain 0x1 hi 0x101 lo 0x1000001"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"UNMAP","iova":"0x201000","mask":"0xfff","translated":"0x40001000","perm":"none","note":"vtd_inv_desc_iotlb_pages iotlb invalidate domain 0x1 addr 0x201000 mask 0x0"}',
      '{"op":"notify","id":"vtd-00:04.0","type":"MAP","iova":"0x201000","mask":"0xfff","translated":"0x40001000","perm":"rw"}',
    ]);
    expect(summary.malformed).toBe(0);
    expect(summary.kinds['vtd_replay_ce_valid']).toEqual({ read: 1, used: 1, skipped: 0 });
  });

  test('two devices in one domain: the n-th walk after an invalidation goes to the n-th device by sid', async () => {
    const { lines } = await importFile(join(FIXTURES, 'shared-domain.log'));
    expect(body(lines)).toEqual([
      `{"op":"notifier.add","id":"vtd-00:06.0","sid":"0x30","flags":["MAP","UNMAP"],${FULL}}`,
      '{"op":"notify","id":"vtd-00:06.0","type":"MAP","iova":"0x20000","mask":"0xfff","translated":"0x5010000","perm":"rw","note":"vtd_inv_desc_iotlb_pages iotlb invalidate domain 0x3 addr 0x20000 mask 0x0"}',
      `{"op":"notifier.add","id":"vtd-00:07.0","sid":"0x38","flags":["MAP","UNMAP"],${FULL}}`,
      '{"op":"notify","id":"vtd-00:07.0","type":"MAP","iova":"0x20000","mask":"0xfff","translated":"0x5010000","perm":"rw","note":"vtd_inv_desc_iotlb_pages iotlb invalidate domain 0x3 addr 0x20000 mask 0x0"}',
      '{"op":"notify","id":"vtd-00:06.0","type":"UNMAP","iova":"0x20000","mask":"0xfff","translated":"0x0","perm":"none","note":"vtd_inv_desc_iotlb_domain iotlb invalidate whole domain 0x3"}',
      '{"op":"notify","id":"vtd-00:07.0","type":"UNMAP","iova":"0x20000","mask":"0xfff","translated":"0x0","perm":"none","note":"vtd_inv_desc_iotlb_domain iotlb invalidate whole domain 0x3"}',
    ]);
  });

  test('the PID@SECONDS: prefix, CRLF line ends and gzip do not change the output', async () => {
    const withPrefix = readFileSync(join(FIXTURES, 'clean-map-unmap.log'), 'utf8');
    const bare = withPrefix.replace(/^\d+@\d+\.\d+:/gm, '');
    expect(bare).not.toBe(withPrefix);
    const a = await importText(withPrefix);
    const b = await importText(bare);
    const c = await importText(gzipSync(Buffer.from(bare.replace(/\n/g, '\r\n'))));
    expect(b.lines).toEqual(a.lines);
    expect(c.lines).toEqual(a.lines);
    expect(c.summary.gzip).toBe(true);
    expect(c.summary.kinds).toEqual(a.summary.kinds);
  });
});

describe('line handling', () => {
  test('hex is written lowercase and values round-trip (property)', async () => {
    const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 0xffff }), u64, u64, u64, fc.integer({ min: 0, max: 3 }), fc.boolean(),
      async (domain, iova, gpa, mask, perm, upper) => {
        const h = (v: bigint | number): string => (upper ? v.toString(16).toUpperCase() : v.toString(16));
        const line = `vtd_page_walk_one domain 0x${h(domain)} iova 0x${h(iova)} -> gpa 0x${h(gpa)} mask 0x${h(mask)} perm ${perm}\n`;
        const { lines } = await importText(line);
        expect(lines).toHaveLength(3);
        const ev = JSON.parse(lines[2]!);
        expect(ev).toEqual({
          op: 'notify', id: `vtd-domain-0x${domain.toString(16)}`, type: perm ? 'MAP' : 'UNMAP',
          iova: '0x' + iova.toString(16), mask: '0x' + mask.toString(16), translated: '0x' + gpa.toString(16),
          perm: ['none', 'r', 'w', 'rw'][perm],
        });
      }), { numRuns: 100 });
  });

  test('arbitrary input never throws; every output line is JSON; every line is counted once', async () => {
    const names = fc.constantFrom('vtd_page_walk_one', 'vtd_page_walk_level', 'vtd_as_unmap_whole', 'vtd_inv_desc_iotlb_pages',
      'vtd_replay_ce_valid', 'vtd_iotlb_cc_update', 'vtd_inv_desc_cc_device', 'vtd_switch_address_space', 'vhost_x', '');
    const line = fc.tuple(fc.boolean(), names, fc.string({ maxLength: 40 }))
      .map(([prefix, n, rest]) => `${prefix ? '1@2.000003:' : ''}${n}${n ? ' ' : ''}${rest}`.replace(/\n/g, ' '));
    await fc.assert(fc.asyncProperty(fc.array(line, { maxLength: 30 }), async (ls) => {
      const { summary, lines } = await importText(ls.map((l) => l + '\n').join(''));
      expect(summary.lines).toBe(ls.length);
      let known = 0;
      for (const c of Object.values(summary.kinds)) {
        expect(c.used + c.skipped).toBe(c.read);
        known += c.read;
      }
      expect(known + summary.unknown).toBe(ls.length);
      for (const l of lines) JSON.parse(l);
      expect(JSON.parse(lines[0]!).model).toBe('none');
    }), { numRuns: 200 });
  });

  test('random bytes (not text, not gzip) are unknown lines, not an error', async () => {
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919 + 13) % 256));
    bytes[0] = 0x00; // not the gzip magic
    const { summary, lines } = await importText(bytes);
    expect(lines).toHaveLength(1);
    expect(summary.unknown).toBe(summary.lines);
    expect(summary.lines).toBeGreaterThan(0);
  });

  test('a line longer than 64 KiB is dropped as unknown; the lines after it are read', async () => {
    const text = 'x'.repeat(200_000) + '\nvtd_page_walk_one domain 0x1 iova 0x1000 -> gpa 0x2000 mask 0xfff perm 3\n';
    const { summary, lines } = await importText(text);
    expect(summary.lines).toBe(2);
    expect(summary.unknown).toBe(1);
    expect(summary.notifyLines).toBe(1);
    expect(lines[2]).toContain('"iova":"0x1000"');
  });

  test('the warning list is bounded; the malformed count is not', async () => {
    const { summary } = await importText('vtd_page_walk_one bad\n'.repeat(250));
    expect(summary.malformed).toBe(250);
    expect(summary.warnings).toHaveLength(100);
    expect(summary.warnings[99]!.line).toBe(100);
    expect(summary.kinds['vtd_page_walk_one']).toEqual({ read: 250, used: 0, skipped: 250 });
  });

  test('vtd_as_unmap_whole off a 4 KiB boundary: aligned power-of-two chunks over whole pages (7.2 loop)', async () => {
    // [0x3000, 0x3000 + 0xd800): whole pages up to 0x10000, the tail of 0x800 bytes is not sent.
    const { lines } = await importText('vtd_as_unmap_whole Device 00:04.0 start 0x3000 size 0xd800\n');
    expect(body(lines).slice(1).map((l) => { const e = JSON.parse(l); return [e.iova, e.mask]; }))
      .toEqual([['0x3000', '0xfff'], ['0x4000', '0x3fff'], ['0x8000', '0x7fff']]);
  });

  test('a truncated gzip stream rejects with the source name and the line reached', async () => {
    const gz = gzipSync(Buffer.from('vtd_inv_qi_fetch \n'.repeat(20000)));
    const out = new Collect();
    await expect(importQemuLog(Readable.from([gz.subarray(0, gz.length - 40)]), out, { sourceName: 'cut.log.gz' }))
      .rejects.toThrow(/^cut\.log\.gz: cannot read gzip input after line \d+/);
  });
});

describe('viommu import qemu-log', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'qemu-log-cli-')); });
  afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

  test('-o writes the trace and prints the summary on stdout', async () => {
    const out = join(dir, 'out.jsonl');
    const r = await cli('import', 'qemu-log', join(FIXTURES, 'c5-split-2m.log'), '-o', out);
    expect(r.code).toBe(0);
    expect(readFileSync(out, 'utf8').split('\n').filter(Boolean)).toHaveLength(6);
    expect(r.out).toMatch(/c5-split-2m\.log: 20 lines; wrote 4 notify line\(s\) for 1 listener\(s\)/);
    expect(r.out).toMatch(/vtd_page_walk_one +3 +3 +0/);
    expect(r.err).toBe('');
  });

  test('without -o, or with -o -, the trace goes to stdout and the summary to stderr', async () => {
    for (const extra of [[], ['-o', '-']]) {
      const r = await cli('import', 'qemu-log', join(FIXTURES, 'shared-domain.log'), ...extra);
      expect(r.code).toBe(0);
      expect(r.out.split('\n').filter(Boolean)).toHaveLength(7);
      expect(JSON.parse(r.out.split('\n')[0]!)).toMatchObject({ trace: 'viommu', model: 'none' });
      expect(r.err).toMatch(/shared-domain\.log: 20 lines/);
    }
  });

  test('- reads the log from standard input (gzip detected by content)', async () => {
    const log = gzipSync(readFileSync(join(FIXTURES, 'c5-split-2m.log')));
    const r = await cli.withStdin(log, 'import', 'qemu-log', '-');
    expect(r.code).toBe(0);
    const direct = await importFile(join(FIXTURES, 'c5-split-2m.log'));
    // Same events as the file import (the header's source names stdin instead of the file).
    expect(body(r.out.split('\n').filter(Boolean))).toEqual(body(direct.lines));
    expect(r.err).toMatch(/^viommu import qemu-log: stdin \(gzip\): 20 lines/);
  });

  test('a file that is not a QEMU trace log: exit 2, the reason, no output file left', async () => {
    const notLog = join(dir, 'notes.txt');
    writeFileSync(notLog, 'hello\nthis is not a log\n{"trace":"viommu","version":1}\n');
    const out = join(dir, 'out.jsonl');
    const r = await cli('import', 'qemu-log', notLog, '-o', out);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/notes\.txt is not a QEMU intel-iommu trace log: none of its 3 line\(s\) is a vtd_\* trace event/);
    expect(existsSync(out)).toBe(false);
    // Empty input too.
    writeFileSync(notLog, '');
    expect((await cli('import', 'qemu-log', notLog, '-o', out)).code).toBe(2);
    // The rule: at least one known vtd_* event line, whatever else is in the log.
    const one = await importText('garbage\nvtd_inv_qi_fetch \nmore garbage\n');
    expect(isQemuTraceLog(one.summary)).toBe(true);
    expect(isQemuTraceLog((await importText('vhost_user_write req:1 flags:0x1\n')).summary)).toBe(false);
  });

  test('usage errors and unreadable input exit 2 with a message', async () => {
    let r = await cli('import', 'qemu-log');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/missing required argument 'log'/);
    r = await cli('import', 'qemu-log', 'a.log', '--frobnicate');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown option '--frobnicate'/);
    expect((await cli('import', 'qemu-log', 'a.log', '-o')).code).toBe(2);
    r = await cli('import', 'qemu-lg', 'a.log');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/'qemu-lg' is invalid for argument 'format'\. Allowed choices are qemu-log/);
    const missing = join(dir, 'nope.log');
    r = await cli('import', 'qemu-log', missing, '-o', join(dir, 'x.jsonl'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/nope\.log/);
    expect(existsSync(join(dir, 'x.jsonl'))).toBe(false);
    r = await cli('import', 'qemu-log', join(FIXTURES, 'c5-split-2m.log'), '-o', join(dir, 'no-such-dir', 'x.jsonl'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/cannot write .*no-such-dir.*ENOENT/);
    expect(existsSync(join(dir, 'no-such-dir'))).toBe(false);
  });

  test('--help is complete: the format, the arguments, -o and the exit status', async () => {
    for (const argv of [['import', '--help'], ['import', 'qemu-log', '--help'], ['help', 'import']]) {
      const r = await cli(...argv);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/^Usage: viommu import \[options\] <format> <log>$/m);
      expect(r.out).toMatch(/choices: "qemu-log"/);
      expect(r.out).toMatch(/-o, --output <OUT>/);
      expect(r.out).toMatch(/Exit status: 0 imported, 2 /);
    }
  });
});
