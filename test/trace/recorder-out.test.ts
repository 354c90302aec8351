/**
 * The recorder's output: payload lines carry the payload's lowercase hex in
 * memory order (trace-v1 `data`/`expect` byte strings), as Node's own hex
 * encoder gives it, whichever encoder (WebAssembly SIMD or Node's) runs; a
 * byte sink gets the lines as UTF-8, each ending in a newline, in chunks it
 * may keep.
 */
import fc from 'fast-check';
import { TraceOutput } from '../../src/trace/recorder-out';

const ref = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Bytes at an arbitrary offset inside a larger buffer (the encoder must not assume alignment). */
const payload = (maxLength: number) =>
  fc.tuple(fc.uint8Array({ maxLength }), fc.nat({ max: 7 })).map(([b, off]) => {
    const host = new Uint8Array(b.length + off);
    host.set(b, off);
    return host.subarray(off);
  });

const ascii = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 });

describe.each([true, false])('TraceOutput (SIMD encoder allowed: %s)', (simd) => {
  test('a payload line to a line sink is prefix + hex + suffix', () => {
    fc.assert(fc.property(ascii, payload(600), ascii, (prefix, data, suffix) => {
      const lines: string[] = [];
      const out = new TraceOutput((l) => lines.push(l), undefined, simd);
      out.payloadLine(prefix, data, suffix);
      expect(lines).toEqual([prefix + ref(data) + suffix]);
    }));
  });

  test('a byte sink receives exactly the lines, newline-terminated, in whole-line chunks it can keep', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 30 }).map((text) => ({ text })),
      fc.tuple(ascii, payload(5000), ascii).map(([prefix, data, suffix]) => ({ prefix, data, suffix })),
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
      expect(Buffer.concat(chunks).toString('utf8')).toBe(expected);
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
