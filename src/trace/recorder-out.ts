/**
 * The recorder's output: trace lines, either handed to a line sink as strings
 * or packed into byte chunks for a byte sink. Lines that carry a payload
 * (`dma.read` expect, `dma.write` data, `mem.write` data) are written as a
 * prefix, the payload's hex and a suffix, without building the hex as a JS
 * string: Node's `toString('hex')` plus the string concatenation and the later
 * UTF-8 encoding by the sink cost several times the DMA itself for 4 KiB.
 * @internal
 */

/** Lowercase hex digit pairs of each byte, as two ASCII bytes in memory order (little-endian u16). */
const PAIR = new Uint16Array(256);
for (let b = 0; b < 256; b++) {
  const d = (n: number) => (n < 10 ? 0x30 + n : 0x57 + n); // '0'..'9', 'a'..'f'
  PAIR[b] = d(b >> 4) | (d(b & 15) << 8);
}
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Hex of two bytes (a little-endian u16) as four ASCII bytes (a little-endian u32); built on first use (256 KiB). */
let quad: Uint32Array | undefined;
function quadTable(): Uint32Array {
  if (quad === undefined) {
    quad = new Uint32Array(65536);
    for (let x = 0; x < 65536; x++) quad[x] = (PAIR[x & 255]! | (PAIR[x >>> 8]! << 16)) >>> 0;
  }
  return quad;
}

/**
 * Writes the lowercase hex of `src` into `dst32`'s bytes (2 per input byte)
 * from its start; `dst32` holds `2 * src.length + 4` bytes or more. Little-endian hosts only.
 */
function hexInto(src: Uint8Array, dst32: Uint32Array): void {
  const n = src.length;
  const pairs = n >>> 1;
  if ((src.byteOffset & 1) === 0) {
    const q = quadTable();
    const s16 = new Uint16Array(src.buffer, src.byteOffset, pairs);
    for (let i = 0; i < pairs; i++) dst32[i] = q[s16[i]!]!;
  } else {
    for (let i = 0, j = 0; i < pairs; i++, j += 2) dst32[i] = (PAIR[src[j]!]! | (PAIR[src[j + 1]!]! << 16)) >>> 0;
  }
  if (n & 1) {
    const dst8 = new Uint8Array(dst32.buffer, dst32.byteOffset);
    const p = PAIR[src[n - 1]!]!;
    dst8[2 * n - 2] = p & 0xff;
    dst8[2 * n - 1] = p >>> 8;
  }
}

const NL = 0x0a;
const CHUNK = 1 << 16;

/**
 * Where recorded lines go. With a line sink every line is passed at once as a
 * string (without newline). With a byte sink lines are packed, each followed
 * by `\n`, into chunks of about 64 KiB handed over when full and on `flush()`;
 * each chunk is the sink's to keep (the output does not reuse it), so a sink
 * may queue it (`stream.write(chunk)`).
 * @internal
 */
export class TraceOutput {
  private buf: Buffer;
  private pos = 0;
  /** Aligned scratch for payload hex (grown for large payloads). */
  private hex = new Uint32Array(2048 + 1);

  constructor(
    private readonly writeLine: ((line: string) => void) | undefined,
    private readonly writeBytes: ((chunk: Uint8Array) => void) | undefined,
  ) {
    this.buf = Buffer.allocUnsafeSlow(writeBytes !== undefined ? CHUNK : 4096);
  }

  /** One line of text. */
  line(text: string): void {
    if (this.writeBytes === undefined) {
      this.writeLine!(text);
      return;
    }
    this.reserve(3 * text.length + 1); // UTF-8: at most 3 bytes per UTF-16 unit
    this.pos += this.buf.write(text, this.pos, 'utf8');
    this.buf[this.pos++] = NL;
  }

  /** One line made of `prefix`, the hex of `data` and `suffix` (prefix and suffix are ASCII). */
  payloadLine(prefix: string, data: Uint8Array, suffix: string): void {
    const n = prefix.length + 2 * data.length + suffix.length;
    if (this.writeBytes === undefined) {
      // Build the line in the buffer from 0 and decode it once: a flat string, no hex intermediate.
      if (this.buf.length < n) this.buf = Buffer.allocUnsafeSlow(n);
      this.pos = 0;
      this.put(prefix, data, suffix);
      this.writeLine!(this.buf.toString('latin1', 0, n));
      this.pos = 0;
      return;
    }
    this.reserve(n + 1);
    this.put(prefix, data, suffix);
    this.buf[this.pos++] = NL;
  }

  /** Hands the pending bytes to the byte sink (nothing to do for a line sink). */
  flush(): void {
    if (this.writeBytes === undefined || this.pos === 0) return;
    const chunk = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafeSlow(CHUNK);
    this.pos = 0;
    this.writeBytes(chunk);
  }

  private put(prefix: string, data: Uint8Array, suffix: string): void {
    const buf = this.buf;
    this.pos += buf.write(prefix, this.pos, 'latin1');
    const h = 2 * data.length;
    if (!LITTLE_ENDIAN) {
      // The tables hold ASCII pairs in little-endian order; elsewhere use Node's encoder.
      buf.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex'), this.pos, 'latin1');
    } else {
      if (this.hex.length * 4 < h + 4) this.hex = new Uint32Array((h >>> 2) + 2);
      hexInto(data, this.hex);
      buf.set(new Uint8Array(this.hex.buffer, 0, h), this.pos);
    }
    this.pos += h;
    this.pos += buf.write(suffix, this.pos, 'latin1');
  }

  /** Makes room for `n` more bytes: flushes when the chunk is full; a line bigger than a chunk gets a chunk of its own size. */
  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.flush();
    if (n > this.buf.length) this.buf = Buffer.allocUnsafeSlow(n);
  }
}
