import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { readTrace, readTraceAll, TraceFormatError, formatEvent, formatHeader, parseEvent, parseEventLine } from '../../src/trace';
import type { TraceEvent } from '../../src/trace';
import { parseNotifyFast } from '../../src/trace/parse';
import { firstInvalidUtf8 } from '../../src/trace/reader';

const HEADER = '{"trace":"viommu","version":1,"model":"none","config":{},"ram":[{"base":"0x0","size":"0x8000000"}],"source":"test"}';
const NOTIFY = '{"op":"notify","id":"vfio","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x2000","perm":"rw"}';

function trace(...lines: string[]): Buffer {
  return Buffer.from([HEADER, ...lines].join('\n') + '\n');
}

async function formatErrorOf(input: Buffer | string): Promise<TraceFormatError> {
  try {
    await readTraceAll(input);
  } catch (e) {
    if (e instanceof TraceFormatError) return e;
    throw e;
  }
  throw new Error('no error');
}

describe('trace reader', () => {
  test('reads the header and typed events with line numbers', async () => {
    const { header, events } = await readTraceAll(trace(
      '{"op":"mem.write","gpa":"0x1000","data":"0102ff"}',
      '',
      '{"op":"mmio.read","reg":"0x1c","size":4,"expect":"0x80000000","note":"gsts"}',
      NOTIFY,
    ));
    expect(header).toEqual({ trace: 'viommu', version: 1, model: 'none', config: {}, ram: [{ base: 0n, size: 0x8000000n }], source: 'test' });
    expect(events).toEqual([
      { op: 'mem.write', line: 2, gpa: 0x1000n, data: new Uint8Array([1, 2, 0xff]) },
      { op: 'mmio.read', line: 4, reg: 0x1c, size: 4, expect: 0x80000000n, note: 'gsts' },
      { op: 'notify', line: 5, id: 'vfio', type: 2, iova: 0x1000n, mask: 0xfffn, translated: 0x2000n, perm: 3 },
    ]);
  });

  test('unknown keys are ignored', async () => {
    const { events } = await readTraceAll(trace('{"op":"notifier.del","id":"a","future":{"x":[1,2]},"sid":"0x99"}'));
    expect(events).toEqual([{ op: 'notifier.del', line: 2, id: 'a' }]);
  });

  test('every op of trace v1 parses, including the virtio-iommu ops', async () => {
    const lines = [
      '{"op":"mem.expect","gpa":"0x10","data":"00"}',
      '{"op":"mmio.write","reg":"0x18","size":4,"value":"0x80000000"}',
      '{"op":"dma.read","sid":"0x20","iova":"0x1000","len":4,"expect":"fault"}',
      '{"op":"dma.read","sid":"0x20","pasid":5,"iova":"0x1000","len":2,"expect":"abcd"}',
      '{"op":"dma.write","sid":"0x28","iova":"0x1000","data":"00ff","expect":"ok"}',
      '{"op":"translate","sid":"0x20","iova":"0x1000","access":"rw","expect":{"translated":"0x5000","mask":"0xfff","perm":"r"}}',
      '{"op":"translate","sid":"0x20","iova":"0x1000","access":"w","expect":{"fault":true}}',
      '{"op":"notifier.add","id":"v","sid":"0x20","flags":["MAP","UNMAP","DEVIOTLB_UNMAP"],"start":"0x0","end":"0xffffffffffffffff"}',
      '{"op":"view.expect","id":"v","entries":[{"iova":"0x0","mask":"0xfff","translated":"0x1000","perm":"w"}]}',
      '{"op":"msi.expect","addr":"0xfee00000","data":"0x4041"}',
      '{"op":"virtio.config.read","offset":8,"size":8,"expect":"0xfffff000"}',
      '{"op":"virtio.config.write","offset":36,"size":1,"value":"0x1"}',
      '{"op":"virtio.features","value":"0x100000000"}',
      '{"op":"virtio.request","data":"0100000002000000","writable":4,"expect":"00000000"}',
      '{"op":"virtio.event.expect","data":"01020304"}',
    ];
    const { events } = await readTraceAll(trace(...lines));
    expect(events.map((e) => e.op)).toEqual([
      'mem.expect', 'mmio.write', 'dma.read', 'dma.read', 'dma.write', 'translate', 'translate', 'notifier.add', 'view.expect', 'msi.expect',
      'virtio.config.read', 'virtio.config.write', 'virtio.features', 'virtio.request', 'virtio.event.expect',
    ]);
    expect(events[2]).toMatchObject({ sid: 0x20, expect: 'fault' });
    expect(events[3]).toMatchObject({ pasid: 5, expect: new Uint8Array([0xab, 0xcd]) });
    expect(events[5]).toMatchObject({ access: 3, expect: { translated: 0x5000n, mask: 0xfffn, perm: 1 } });
    expect(events[7]).toMatchObject({ flags: 7, start: 0n, end: 2n ** 64n - 1n });
    expect(events[9]).toMatchObject({ addr: 0xfee00000n, data: 0x4041 });
    // The writer writes what the reader reads.
    const again = await readTraceAll(trace(...events.map(formatEvent)));
    expect(again.events).toEqual(events);
  });

  test.each([
    ['{"op":"notify",', /bad JSON/],
    ['[1,2]', /must be a JSON object/],
    ['{"gpa":"0x0"}', /missing "op"/],
    ['{"op":"teleport","x":1}', /unknown op "teleport"/],
    ['{"op":"mem.write","gpa":"0x10"}', /mem.write: missing field "data"/],
    ['{"op":"mem.write","gpa":"1000","data":"00"}', /field "gpa" must be a 0x-prefixed hex string/],
    ['{"op":"mem.write","gpa":"0xzz","data":"00"}', /field "gpa"/],
    ['{"op":"mem.write","gpa":"0x10","data":"abc"}', /field "data" must be hex bytes/],
    ['{"op":"mem.write","gpa":"0x10","data":"0g"}', /field "data" must be hex bytes/],
    ['{"op":"mem.write","gpa":"0x10000000000000000","data":"00"}', /does not fit 64 bits/],
    ['{"op":"mmio.write","reg":"0x18","size":2,"value":"0x1"}', /must be 4 or 8/],
    ['{"op":"mmio.write","reg":"0x18","size":4,"value":"0x100000000"}', /does not fit 32 bits/],
    ['{"op":"dma.read","sid":"0x20","iova":"0x0","len":-1}', /field "len" must be an integer/],
    ['{"op":"dma.read","sid":"0x20","iova":"0x0","len":4294967296}', /field "len" must be an integer in \[0, 67108864\]/],
    ['{"op":"dma.write","sid":"0x20","iova":"0x0","data":"00","expect":"maybe"}', /"ok" or "fault"/],
    ['{"op":"translate","sid":"0x20","iova":"0x0","access":"none"}', /access/],
    ['{"op":"notifier.add","id":"a","sid":"0x20","flags":["MAP","ALL"],"start":"0x0","end":"0x1"}', /unknown flag "ALL"/],
    ['{"op":"notify","id":"a","type":"REMAP","iova":"0x0","mask":"0xfff","translated":"0x0","perm":"rw"}', /field "type"/],
    ['{"op":"notify","id":"a","type":"MAP","iova":"0x0","mask":"0xfff","translated":"0x0","perm":"x"}', /field "perm"/],
  ])('malformed line %s is reported with its line number', async (line, reason) => {
    const err = await formatErrorOf(trace(NOTIFY, line, NOTIFY));
    expect(err.line).toBe(3);
    expect(err.reason).toMatch(reason);
  });

  test.each([
    ['{"trace":"other","version":1,"model":"none"}', /"trace" must be "viommu"/],
    ['{"trace":"viommu","version":2,"model":"none"}', /unsupported version 2/],
    ['{"trace":"viommu","version":1}', /"model"/],
    ['{"trace":"viommu","version":1,"model":"none","ram":[{"base":"0x0"}]}', /ram\[0\].*missing field "size"/],
    [NOTIFY, /"trace" must be "viommu"/],
  ])('a wrong header is an error on line 1: %s', async (header, reason) => {
    const err = await formatErrorOf(Buffer.from(header + '\n' + NOTIFY + '\n'));
    expect(err.line).toBe(1);
    expect(err.reason).toMatch(reason);
  });

  test('an empty file is malformed', async () => {
    expect((await formatErrorOf(Buffer.alloc(0))).reason).toMatch(/empty trace/);
  });

  test('nothing past a malformed line is handed over', async () => {
    const seen: number[] = [];
    await expect(readTrace(trace(NOTIFY, '{"op":"nope"}', NOTIFY), { header: () => {}, event: (e) => { seen.push(e.line); } }))
      .rejects.toThrow(/line 3: unknown op/);
    expect(seen).toEqual([2]);
  });

  test('gzip is detected by magic bytes, whatever the file name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'viommu-reader-'));
    const raw = trace(NOTIFY, NOTIFY);
    writeFileSync(join(dir, 'a.jsonl.gz'), gzipSync(raw));
    writeFileSync(join(dir, 'b.jsonl'), gzipSync(raw));
    writeFileSync(join(dir, 'c.jsonl'), raw);
    for (const f of ['a.jsonl.gz', 'b.jsonl', 'c.jsonl']) {
      const { events } = await readTraceAll(join(dir, f));
      expect(events.map((e) => e.line)).toEqual([2, 3]);
    }
    // Concatenated gzip members are one stream, as gzip -d reads them.
    const { events } = await readTraceAll(Buffer.concat([gzipSync(trace(NOTIFY)), gzipSync(Buffer.from(NOTIFY + '\n'))]));
    expect(events.map((e) => e.line)).toEqual([2, 3]);
  });

  test('a malformed line inside a gzip file names the file and the line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'viommu-reader-'));
    const f = join(dir, 't.jsonl.gz');
    writeFileSync(f, gzipSync(trace(NOTIFY, NOTIFY, '{"op":1}')));
    const err = await formatErrorOf(f);
    expect(err.line).toBe(4);
    expect(err.message).toContain(`${f}:4`);
  });

  test('a corrupt gzip stream is an error (not a format error)', async () => {
    const gz = gzipSync(trace(NOTIFY));
    await expect(readTraceAll(gz.subarray(0, gz.length - 12))).rejects.toThrow(/gzip|unexpected end/i);
  });

  test('a missing file is an error', async () => {
    await expect(readTraceAll(join(mkdtempSync(join(tmpdir(), 'viommu-reader-')), 'absent.jsonl'))).rejects.toThrow(/ENOENT/);
  });

  test('CRLF line ends and a missing final newline are accepted', async () => {
    const { events } = await readTraceAll(Buffer.from(HEADER + '\r\n' + NOTIFY + '\r\n' + NOTIFY));
    expect(events).toHaveLength(2);
    expect(events[1]).toMatchObject({ line: 3, translated: 0x2000n });
  });

  test('property: any chunking of the bytes (multi-byte UTF-8 split too) gives the same events', async () => {
    const lines = [
      NOTIFY,
      '{"op":"notifier.add","id":"é-listener-ü","sid":"0x20","flags":["MAP"],"start":"0x0","end":"0xfff","note":"√ unicode ✓"}',
      '{"op":"mem.write","gpa":"0x0","data":"' + 'ab'.repeat(3000) + '"}',
      NOTIFY,
    ];
    const bytes = trace(...lines);
    const want = (await readTraceAll(bytes)).events;
    await fc.assert(fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 4000 }), { minLength: 1, maxLength: 20 }), async (cuts) => {
      const chunks: Buffer[] = [];
      let pos = 0;
      for (const c of cuts) {
        if (pos >= bytes.length) break;
        chunks.push(bytes.subarray(pos, pos + c));
        pos += c;
      }
      if (pos < bytes.length) chunks.push(bytes.subarray(pos));
      const got = (await readTraceAll(Readable.from(chunks))).events;
      expect(got).toEqual(want);
    }), { numRuns: 50 });
  });

  test('the header round-trips through the writer', async () => {
    const { header } = await readTraceAll(trace());
    expect(formatHeader(header)).toBe(HEADER);
  });
});

describe('notify fast path', () => {
  const hex64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
  const id = fc.string({ maxLength: 8 });
  const notifyLine = fc.record({
    id, type: fc.constantFrom('MAP', 'UNMAP', 'DEVIOTLB_UNMAP', 'BOGUS'), iova: hex64, mask: hex64, translated: hex64,
    perm: fc.constantFrom('none', 'r', 'w', 'rw', 'RW'),
    upper: fc.boolean(), zeros: fc.boolean(), note: fc.option(fc.string({ maxLength: 5 })), reorder: fc.boolean(), spaces: fc.boolean(),
  }).map((r) => {
    const h = (v: bigint) => {
      let s = v.toString(16);
      if (r.zeros) s = '00' + s;
      return '0x' + (r.upper ? s.toUpperCase() : s);
    };
    const o: Record<string, unknown> = { op: 'notify', id: r.id, type: r.type, iova: h(r.iova), mask: h(r.mask), translated: h(r.translated), perm: r.perm };
    if (r.note !== null) o['note'] = r.note;
    const keys = r.reorder ? Object.keys(o).reverse() : Object.keys(o);
    return JSON.stringify(Object.fromEntries(keys.map((k) => [k, o[k]])), null, r.spaces ? 1 : undefined).replace(/\n/g, '');
  });

  const outcome = (f: () => TraceEvent): TraceEvent | string => {
    try {
      return f();
    } catch (e) {
      return (e as Error).message;
    }
  };

  test('property: the fast path parses exactly as JSON.parse does', () => {
    fc.assert(fc.property(notifyLine, (line) => {
      expect(outcome(() => parseEventLine(line, 7))).toEqual(outcome(() => parseEvent(line, 7)));
    }), { numRuns: 2000 });
  });

  test('canonical lines written by the writer take the fast path and read back equal', () => {
    fc.assert(fc.property(fc.stringMatching(/^[a-z0-9 ._-]{0,8}$/), fc.constantFrom(1, 2, 4), hex64, hex64, hex64, fc.constantFrom(0, 1, 2, 3), (i, type, iova, mask, translated, perm) => {
      const ev = { op: 'notify' as const, line: 3, id: i, type: type as 1 | 2 | 4, iova, mask, translated, perm: perm as 0 | 1 | 2 | 3 };
      expect(parseNotifyFast(formatEvent(ev), 3)).toEqual(ev);
      expect(parseEventLine(formatEvent(ev), 3)).toEqual(ev);
      expect(parseEvent(formatEvent(ev), 3)).toEqual(ev);
    }), { numRuns: 500 });
  });
});

describe('UTF-8 (trace-v1 "Encoding": a trace is UTF-8)', () => {
  const bytes = (...parts: Array<string | number[]>): Buffer =>
    Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
  /** A notifier.del line whose id holds `raw` bytes. */
  const delWith = (raw: number[]): Buffer => bytes('{"op":"notifier.del","id":"a', raw, 'b"}');

  // Ill-formed sequences from Unicode 15 Table 3-7 and its notes: a lone
  // continuation byte, overlong forms (C0/C1, E0 80, F0 80), a surrogate
  // (ED A0), a code point above U+10FFFF (F4 90, F5), a truncated sequence.
  test.each([
    ['lone continuation byte', [0x80]],
    ['overlong 2-byte', [0xc0, 0xaf]],
    ['overlong 3-byte', [0xe0, 0x80, 0xaf]],
    ['surrogate', [0xed, 0xa0, 0x80]],
    ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['F5 lead byte', [0xf5, 0x80, 0x80, 0x80]],
    ['truncated 3-byte', [0xe2, 0x82]],
    ['FF byte', [0xff]],
  ])('%s inside a JSON string is a malformed line, named', async (_name, raw) => {
    const input = Buffer.concat([trace(NOTIFY), delWith(raw), Buffer.from('\n' + NOTIFY + '\n')]);
    const seen: number[] = [];
    const err = await readTrace(input, { header: () => {}, event: (e) => { seen.push(e.line); } }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TraceFormatError);
    expect((err as TraceFormatError).line).toBe(3);
    // The bad byte is the first after `{"op":"notifier.del","id":"a` (28 bytes): byte 29 of the line.
    expect((err as TraceFormatError).reason).toMatch(/invalid UTF-8 at byte 29 /);
    expect(seen).toEqual([2]);
  });

  test('well-formed multi-byte characters (2, 3 and 4 bytes) are read as themselves', async () => {
    const { events } = await readTraceAll(Buffer.concat([trace(), delWith([0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9d, 0x84, 0x9e]), Buffer.from('\n')]));
    expect(events).toEqual([{ op: 'notifier.del', line: 2, id: 'aé€𝄞b' }]);
  });

  test('an invalid byte in the header, or in a line split across chunks and inside gzip, is named', async () => {
    const badHeader = Buffer.concat([Buffer.from(HEADER.replace('"test"', '"t')), Buffer.from([0xff]), Buffer.from('"\n')]);
    expect((await formatErrorOf(badHeader)).line).toBe(1);
    const long = Buffer.concat([trace(...Array<string>(5000).fill(NOTIFY)), delWith([0xed, 0xbf, 0xbf]), Buffer.from('\n')]);
    const chunks: Buffer[] = [];
    for (let i = 0; i < long.length; i += 997) chunks.push(long.subarray(i, i + 997));
    const viaChunks = await readTraceAll(Readable.from(chunks)).then(() => undefined, (e: unknown) => e);
    expect(viaChunks).toMatchObject({ line: 5002 });
    expect(await formatErrorOf(gzipSync(long))).toMatchObject({ line: 5002 });
  });

  test('property: the reader accepts a line exactly when a fatal TextDecoder does, and names the line', async () => {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const valid = (b: Uint8Array): boolean => { try { decoder.decode(b); return true; } catch { return false; } };
    // Bytes biased toward UTF-8 lead and continuation bytes, without '"', '\\', controls (JSON would refuse them anyway).
    const byte = fc.oneof(fc.integer({ min: 0x80, max: 0xff }), fc.constantFrom(0x61, 0xc3, 0xe2, 0xf0, 0x9d, 0xa9, 0x82));
    await fc.assert(fc.asyncProperty(fc.array(byte, { maxLength: 12 }), async (raw) => {
      const input = Buffer.concat([trace(), delWith(raw), Buffer.from('\n')]);
      const got = await readTraceAll(input).then(() => 'ok', (e: unknown) => e);
      if (valid(Uint8Array.from(raw))) expect(got).toBe('ok');
      else expect(got).toMatchObject({ line: 2, reason: expect.stringMatching(/invalid UTF-8/) });
    }), { numRuns: 1000 });
  });

  test('property: the byte named is where a fatal decoder first fails', () => {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const valid = (b: Uint8Array): boolean => { try { decoder.decode(b); return true; } catch { return false; } };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 16 }), (b) => {
      const k = firstInvalidUtf8(b, 0, b.length);
      if (k < 0) { expect(valid(b)).toBe(true); return; }
      expect(valid(b)).toBe(false);
      // Everything before k is well-formed; no longer prefix ending on a character boundary past k is.
      expect(valid(b.subarray(0, k))).toBe(true);
      for (let e = k + 1; e <= b.length; e++) expect(valid(b.subarray(0, e))).toBe(false);
    }), { numRuns: 2000 });
  });
});
