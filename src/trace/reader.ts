/**
 * Streaming reader of trace-v1 files (`.jsonl`, or gzip-compressed, detected
 * by its magic bytes whatever the name). Memory stays constant on a
 * multi-GB trace: chunks are split into lines here (node's readline is much
 * slower), each line is parsed and handed over, and nothing is kept.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { parseEventLine, parseHeader } from './parse';
import { TraceFormatError } from './types';
import type { TraceEvent, TraceHeader } from './types';

/** A trace: a file path, bytes, or a stream / async iterable of byte chunks. */
export type TraceInput = string | Uint8Array | Readable | AsyncIterable<Uint8Array>;

/** Receives a trace as it is read. Throwing from a callback stops the reading (the error propagates). */
export interface TraceHandler {
  header(header: TraceHeader): void;
  event(event: TraceEvent): void;
  /**
   * Optional fast path: offered each event line first, as raw UTF-8 bytes
   * `buf[start, end)` (without line end), before it is decoded; return true
   * when it was handled, so that it is not parsed. It must handle a line
   * exactly as `event(parse(line))` would.
   */
  fastLine?(buf: Buffer, start: number, end: number, line: number): boolean;
}

export interface ReadTraceOptions {
  /** Called now and then with the bytes consumed from the input (compressed bytes for gzip) and the input's size when known. */
  onProgress?: (bytes: number, total: number | undefined) => void;
  /** Name used in error messages (default: the path when `input` is one). */
  name?: string;
  /** Awaited after each chunk: backpressure for a consumer that writes (for example `--record`). */
  afterChunk?: () => Promise<void> | void;
}

export interface ReadTraceResult {
  header: TraceHeader;
  /** Lines read, header included. */
  lines: number;
}

/**
 * Byte offset of the first ill-formed UTF-8 sequence in `buf[start, end)`
 * (Unicode 15, Table 3-7 "Well-Formed UTF-8 Byte Sequences": no overlong
 * forms, no surrogates, nothing above U+10FFFF), or -1 when it is
 * well-formed. Only called on a line already known to be bad, to name where.
 */
export function firstInvalidUtf8(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end) {
    const b = buf[i]!;
    if (b < 0x80) { i++; continue; }
    let n: number; let lo = 0x80; let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) n = 1;
    else if (b >= 0xe0 && b <= 0xef) { n = 2; if (b === 0xe0) lo = 0xa0; else if (b === 0xed) hi = 0x9f; }
    else if (b >= 0xf0 && b <= 0xf4) { n = 3; if (b === 0xf0) lo = 0x90; else if (b === 0xf4) hi = 0x8f; }
    else return i - start;
    if (i + n >= end) return i - start; // truncated sequence
    const c1 = buf[i + 1]!;
    if (c1 < lo || c1 > hi) return i - start;
    for (let k = 2; k <= n; k++) {
      const c = buf[i + k]!;
      if (c < 0x80 || c > 0xbf) return i - start;
    }
    i += n + 1;
  }
  return -1;
}

const GZIP_MAGIC_0 = 0x1f;
const GZIP_MAGIC_1 = 0x8b;
const HIGH_WATER_MARK = 1 << 20;
/**
 * Longest line read (256 MiB): twice the hex of the largest DMA payload the
 * parser accepts (64 MiB) with room to spare, and below V8's string limit
 * (~512 MiB), so an endless line is a malformed trace, not an out-of-memory.
 */
export const MAX_LINE_BYTES = 256 << 20;

function toChunks(input: Exclude<TraceInput, string>): AsyncIterable<Uint8Array> {
  if (input instanceof Uint8Array) {
    return (async function* () { yield input; })();
  }
  return input as AsyncIterable<Uint8Array>;
}

/** Bytes of the trace, gunzipped when they start with the gzip magic. */
async function* decode(src: AsyncIterable<Uint8Array>, progress: (n: number) => void): AsyncGenerator<Buffer> {
  const it = src[Symbol.asyncIterator]();
  // Gather at least two bytes to look at the magic.
  let head: Buffer = Buffer.alloc(0);
  let done = false;
  while (head.length < 2) {
    const r = await it.next();
    if (r.done) { done = true; break; }
    const b = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    progress(b.length);
    head = head.length === 0 ? b : Buffer.concat([head, b]);
  }
  if (head.length < 2 || head[0] !== GZIP_MAGIC_0 || head[1] !== GZIP_MAGIC_1) {
    if (head.length) yield head;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      progress(r.value.byteLength);
      yield Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
  }
  const gunzip = createGunzip({ chunkSize: 1 << 16 });
  const feed = Readable.from((async function* () {
    yield head;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      progress(r.value.byteLength);
      yield Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
  })(), { objectMode: false });
  feed.on('error', (e) => gunzip.destroy(e));
  feed.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(`gzip: ${msg}`);
  } finally {
    feed.destroy();
  }
}

/**
 * Reads a trace: the header first, then every event in order. Throws
 * TraceFormatError (line number and reason) at the first malformed line,
 * before handing over anything past it; other errors (unreadable file,
 * corrupt gzip) propagate as they are.
 */
export async function readTrace(input: TraceInput, handler: TraceHandler, options: ReadTraceOptions = {}): Promise<ReadTraceResult> {
  const name = options.name ?? (typeof input === 'string' ? input : undefined);
  let total: number | undefined;
  let source: AsyncIterable<Uint8Array>;
  if (typeof input === 'string') {
    const st = await stat(input);
    // A directory opens fine and fails on read with a bare "EISDIR: illegal operation": name it.
    if (st.isDirectory()) throw Object.assign(new Error(`${input}: is a directory, not a trace`), { code: 'EISDIR' });
    total = st.size;
    source = createReadStream(input, { highWaterMark: HIGH_WATER_MARK });
  } else {
    source = toChunks(input);
    if (input instanceof Uint8Array) total = input.length;
  }
  let consumed = 0;
  let lastReport = 0;
  const onProgress = options.onProgress;
  const afterChunk = options.afterChunk;
  const progress = (n: number) => {
    consumed += n;
    if (onProgress && consumed - lastReport >= HIGH_WATER_MARK) {
      lastReport = consumed;
      onProgress(consumed, total);
    }
  };

  let lineNo = 0;
  const fast = handler.fastLine;
  let header: TraceHeader | undefined;
  /**
   * One line. `check`: validate its UTF-8 first (trace-v1 "Encoding": a trace
   * is UTF-8, so an ill-formed sequence is a malformed line, never a U+FFFD
   * read silently). Whole chunks are validated at once (one `isUtf8` call per
   * MiB), so lines are checked one by one only in a chunk that failed.
   */
  const handle = (buf: Buffer, start: number, end: number, check: boolean) => {
    lineNo++;
    if (end - start > MAX_LINE_BYTES) throw new TraceFormatError(lineNo, `line longer than ${MAX_LINE_BYTES} bytes`);
    if (end > start && buf[end - 1] === 13) end--;
    if (check && !isUtf8(buf.subarray(start, end))) {
      throw new TraceFormatError(lineNo, `invalid UTF-8 at byte ${firstInvalidUtf8(buf, start, end) + 1} of the line (a trace is UTF-8: trace-v1 "Encoding")`);
    }
    if (header === undefined) {
      if (lineNo !== 1 || end === start) throw new TraceFormatError(lineNo, 'line 1 must be the trace header');
      header = parseHeader(buf.toString('utf8', start, end), lineNo);
      handler.header(header);
      return;
    }
    if (end === start) return;
    if (fast !== undefined && fast.call(handler, buf, start, end, lineNo)) return;
    handler.event(parseEventLine(buf.toString('utf8', start, end), lineNo));
  };

  try {
    // Bytes of a line that spans chunks. Lines are cut at byte 0x0a, which
    // never occurs inside a multi-byte UTF-8 sequence.
    let carry: Buffer[] = [];
    let carryBytes = 0;
    for await (const chunk of decode(source, progress)) {
      let pos = 0;
      let nl = chunk.indexOf(10);
      if (nl >= 0 && carry.length) {
        carry.push(chunk.subarray(0, nl));
        const joined = Buffer.concat(carry);
        carry = [];
        carryBytes = 0;
        handle(joined, 0, joined.length, true);
        pos = nl + 1;
        nl = chunk.indexOf(10, pos);
      }
      // The complete lines of this chunk, [pos, last newline), validated at
      // once: they start and end at a line break, so no sequence is cut.
      const last = nl >= 0 ? chunk.lastIndexOf(10) : -1;
      const check = last > pos && !isUtf8(chunk.subarray(pos, last));
      while (nl >= 0) {
        handle(chunk, pos, nl, check);
        pos = nl + 1;
        nl = chunk.indexOf(10, pos);
      }
      if (pos < chunk.length) {
        carry.push(chunk.subarray(pos));
        carryBytes += chunk.length - pos;
        if (carryBytes > MAX_LINE_BYTES) throw new TraceFormatError(lineNo + 1, `line longer than ${MAX_LINE_BYTES} bytes`);
      }
      if (afterChunk) await afterChunk();
    }
    if (carry.length) {
      const joined = Buffer.concat(carry);
      handle(joined, 0, joined.length, true);
    }
  } catch (e) {
    if (e instanceof TraceFormatError && name !== undefined && e.file === undefined) {
      throw new TraceFormatError(e.line, e.reason, name);
    }
    throw e;
  }
  if (header === undefined) throw new TraceFormatError(1, 'empty trace: line 1 must be the trace header', name);
  onProgress?.(consumed, total);
  return { header, lines: lineNo };
}

/** Reads a whole (small) trace into memory: for tests and tools, not for multi-GB traces. */
export async function readTraceAll(input: TraceInput, options: ReadTraceOptions = {}): Promise<{ header: TraceHeader; events: TraceEvent[] }> {
  const events: TraceEvent[] = [];
  let header: TraceHeader | undefined;
  await readTrace(input, { header: (h) => { header = h; }, event: (e) => { events.push(e); } }, options);
  return { header: header!, events };
}
