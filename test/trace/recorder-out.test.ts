/**
 * The recorder's output: payload lines carry the payload's lowercase hex in
 * memory order (trace-v1 `data`/`expect` byte strings), as Node's own hex
 * encoder gives it, whichever encoder (WebAssembly SIMD or Node's) runs; a
 * byte sink gets the lines as UTF-8, each ending in a newline, in chunks it
 * may keep.
 */
import fc from 'fast-check';
import { TraceOutput } from '../../src/trace/recorder-out';
import type { PayloadEvent } from '../../src/trace/recorder-out';
import { formatEvent } from '../../src/trace/writer';

const ref = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Bytes at an arbitrary offset inside a larger buffer (the encoder must not assume alignment). */
const payload = (maxLength: number) =>
  fc.tuple(fc.uint8Array({ maxLength }), fc.nat({ max: 7 })).map(([b, off]) => {
    const host = new Uint8Array(b.length + off);
    host.set(b, off);
    return host.subarray(off);
  });

const ascii = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });
/** Prefixes and suffixes: mostly ASCII (JSON), sometimes any code points (a note). */
const text = fc.oneof(ascii, fc.string({ unit: 'binary', maxLength: 10 }));

describe.each([true, false])('TraceOutput (SIMD encoder allowed: %s)', (simd) => {
  test('a payload line to a line sink is prefix + hex + suffix', () => {
    fc.assert(fc.property(text, payload(600), text, (prefix, data, suffix) => {
      const lines: string[] = [];
      const out = new TraceOutput((l) => lines.push(l), undefined, simd);
      out.payloadLine(prefix, data, suffix);
      expect(lines).toEqual([prefix + ref(data) + suffix]);
    }));
  });

  test('a byte sink receives exactly the lines, newline-terminated, in whole-line chunks it can keep', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 30 }).map((text) => ({ text })),
      fc.tuple(text, payload(5000), text).map(([prefix, data, suffix]) => ({ prefix, data, suffix })),
    );
    fc.assert(fc.property(fc.array(line, { maxLength: 40 }), (items) => {
      const chunks: Uint8Array[] = [];
      const out = new TraceOutput(undefined, (c) => chunks.push(c), simd);
      let expected = '';
      for (const it of items) {
        if ('text' in it) {
          out.line(it.text);
          expected += it.text + '\n';
        } else {
          out.payloadLine(it.prefix, it.data, it.suffix);
          expected += it.prefix + ref(it.data) + it.suffix + '\n';
        }
      }
      out.flush();
      out.flush(); // nothing pending: no empty chunk
      for (const c of chunks) {
        expect(c.length).toBeGreaterThan(0);
        expect(c[c.length - 1]).toBe(0x0a);
      }
      // Decoded after everything was written: earlier chunks were not reused.
      expect(Buffer.concat(chunks)).toEqual(Buffer.from(expected, 'utf8'));
    }), { numRuns: 60 });
  });

  test('payloads larger than a chunk and than the encoder memory are written whole', () => {
    const data = Uint8Array.from({ length: 100_003 }, (_, i) => (i * 131 + (i >> 8)) & 0xff);
    const chunks: Uint8Array[] = [];
    const out = new TraceOutput(undefined, (c) => chunks.push(c), simd);
    out.line('{"a":1}');
    out.payloadLine('{"d":"', data, '"}');
    out.payloadLine('{"d":"', data.subarray(1, 20), '"}');
    out.flush();
    expect(Buffer.concat(chunks).toString('latin1')).toBe(`{"a":1}\n{"d":"${ref(data)}"}\n{"d":"${ref(data.subarray(1, 20))}"}\n`);
    const lines: string[] = [];
    const viaLines = new TraceOutput((l) => lines.push(l), undefined, simd);
    viaLines.payloadLine('<', data, '>');
    viaLines.payloadLine('<', data.subarray(3, 4), '>');
    expect(lines).toEqual([`<${ref(data)}>`, `<${ref(data.subarray(3, 4))}>`]);
  });
});

test('payload event lines are exactly the writer\'s formatEvent lines', () => {
  const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
  const note = opt(fc.string({ unit: 'binary', maxLength: 12 })); // any code points (JSON.stringify leaves most as is)
  const sid = fc.integer({ min: 0, max: 0xffff });
  const pasid = opt(fc.integer({ min: 0, max: 0xfffff }));
  const ev: fc.Arbitrary<PayloadEvent> = fc.oneof(
    fc.record({ gpa: u64, data: payload(40), note }).map(({ gpa, data, note: n }) => ({ op: 'mem.write' as const, line: 0, gpa, data, ...(n === undefined ? {} : { note: n }) })),
    fc.record({ sid, pasid, iova: u64, data: payload(40), expect: opt(fc.constantFrom('ok' as const, 'fault' as const)), note }).map((r) => {
      const e: PayloadEvent = { op: 'dma.write', line: 0, sid: r.sid, iova: r.iova, data: r.data };
      if (r.pasid !== undefined) e.pasid = r.pasid;
      if (r.expect !== undefined) e.expect = r.expect;
      if (r.note !== undefined) e.note = r.note;
      return e;
    }),
    fc.record({ sid, pasid, iova: u64, data: payload(40), note }).map((r) => {
      const e: PayloadEvent = { op: 'dma.read', line: 0, sid: r.sid, iova: r.iova, len: r.data.length, expect: r.data };
      if (r.pasid !== undefined) e.pasid = r.pasid;
      if (r.note !== undefined) e.note = r.note;
      return e;
    }),
  );
  fc.assert(fc.property(ev, (e) => {
    const lines: string[] = [];
    new TraceOutput((l) => lines.push(l), undefined).payloadEvent(e);
    expect(lines).toEqual([formatEvent(e)]);
    const chunks: Uint8Array[] = [];
    const out = new TraceOutput(undefined, (c) => chunks.push(c));
    out.payloadEvent(e);
    out.flush();
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(formatEvent(e) + '\n', 'utf8'));
  }), { numRuns: 300 });
});

test('Node 20 runs the WebAssembly SIMD encoder (the properties above then covered both encoders)', () => {
  expect(new TraceOutput(() => {}, undefined).encoder).toBe('simd');
  expect(new TraceOutput(() => {}, undefined, false).encoder).toBe('node');
});

test('text lines to a byte sink are UTF-8 (listener ids and sources may be any JSON string)', () => {
  const chunks: Uint8Array[] = [];
  const out = new TraceOutput(undefined, (c) => chunks.push(c));
  out.line('{"id":"ñ€😀"}');
  out.flush();
  expect(Buffer.concat(chunks)).toEqual(Buffer.from('{"id":"ñ€😀"}\n', 'utf8'));
});
