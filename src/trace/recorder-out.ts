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
const DIGITS = '0123456789abcdef';

/**
 * The hex encoder: a WebAssembly SIMD function (16 bytes in, 32 ASCII bytes
 * out per step) when the runtime has it, else Node's `toString('hex')`.
 * Measured here for 4 KiB: JS table loops ~2.6 us, `toString('hex')` ~4 us
 * plus the string's later encoding, this ~0.5 us including the copies in and
 * out of its memory. The module is assembled below rather than shipped as a
 * blob so that each instruction can be read.
 *
 *   (func $hex (param $src i32) (param $dst i32) (param $blocks i32)
 *     (local $v v128) (local $hi v128) (local $lo v128)
 *     (block (loop
 *       (br_if 1 (i32.eqz (local.get $blocks)))
 *       (local.set $v (v128.load (local.get $src)))
 *       (local.set $hi (i8x16.swizzle (v128.const "0123456789abcdef") (i8x16.shr_u (local.get $v) (i32.const 4))))
 *       (local.set $lo (i8x16.swizzle (v128.const "0123456789abcdef") (v128.and (local.get $v) (i8x16.splat (i32.const 15)))))
 *       (v128.store (local.get $dst) (i8x16.shuffle 0 16 1 17 .. 7 23 (local.get $hi) (local.get $lo)))
 *       (v128.store offset=16 (local.get $dst) (i8x16.shuffle 8 24 .. 15 31 (local.get $hi) (local.get $lo)))
 *       (src += 16) (dst += 32) (blocks -= 1) (br 0))))
 */
function assembleHexModule(): Uint8Array {
  const SIMD = 0xfd;
  const digits = [...DIGITS].map((c) => c.charCodeAt(0));
  const lanes = (from: number) => Array.from({ length: 16 }, (_, i) => (i & 1 ? 16 : 0) + from + (i >> 1));
  const body = [
    0x01, 0x03, 0x7b, // locals: 3 x v128
    0x02, 0x40, 0x03, 0x40, // block, loop
    0x20, 0x02, 0x45, 0x0d, 0x01, // br_if 1 (blocks == 0)
    0x20, 0x00, SIMD, 0x00, 0x00, 0x00, 0x21, 0x03, // v = v128.load align=1 src
    SIMD, 0x0c, ...digits, 0x20, 0x03, 0x41, 0x04, SIMD, 0x6d, SIMD, 0x0e, 0x21, 0x04, // hi = swizzle(digits, v >> 4)
    SIMD, 0x0c, ...digits, 0x20, 0x03, 0x41, 0x0f, SIMD, 0x0f, SIMD, 0x4e, SIMD, 0x0e, 0x21, 0x05, // lo = swizzle(digits, v & 15)
    0x20, 0x01, 0x20, 0x04, 0x20, 0x05, SIMD, 0x0d, ...lanes(0), SIMD, 0x0b, 0x00, 0x00, // store interleave(hi, lo)[0..15] at dst
    0x20, 0x01, 0x20, 0x04, 0x20, 0x05, SIMD, 0x0d, ...lanes(8), SIMD, 0x0b, 0x00, 0x10, // ... [16..31] at dst + 16
    0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, // src += 16
    0x20, 0x01, 0x41, 0x20, 0x6a, 0x21, 0x01, // dst += 32
    0x20, 0x02, 0x41, 0x01, 0x6b, 0x21, 0x02, // blocks -= 1
    0x0c, 0x00, 0x0b, 0x0b, 0x0b, // br 0; end loop, block, func
  ];
  const section = (id: number, bytes: number[]) => [id, ...uleb(bytes.length), ...bytes];
  const code = [0x01, ...uleb(body.length), ...body];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    ...section(1, [0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00]), // type: (i32 i32 i32) -> ()
    ...section(3, [0x01, 0x00]), // func 0: type 0
    ...section(5, [0x01, 0x00, 0x01]), // memory: min 1 page
    ...section(7, [0x02, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00, 0x03, 0x68, 0x65, 0x78, 0x00, 0x00]), // export "mem", "hex"
    ...section(10, code),
  ]);
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** What is used of the WebAssembly API (not in this project's type libraries). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

interface SimdHex {
  memory: WasmMemory;
  /** A view of `memory` (renewed when it grows, which detaches the old buffer). */
  view: Uint8Array;
  hex: (src: number, dst: number, blocks: number) => void;
}

let simd: SimdHex | null | undefined;
/** The SIMD encoder, or null where WebAssembly SIMD is missing (compiled once, on first use). */
function simdHex(): SimdHex | null {
  if (simd === undefined) {
    try {
      const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
      if (wasm === undefined) throw new Error('no WebAssembly');
      const inst = new wasm.Instance(new wasm.Module(assembleHexModule()));
      const memory = inst.exports['mem'] as WasmMemory;
      simd = { memory, view: new Uint8Array(memory.buffer), hex: inst.exports['hex'] as SimdHex['hex'] };
    } catch {
      simd = null;
    }
  }
  return simd;
}

/**
 * Writes the lowercase hex of `data` into `buf` at `pos` (2 bytes per byte),
 * with the SIMD encoder when given one.
 */
function writeHex(enc: SimdHex | null, data: Uint8Array, buf: Buffer, pos: number): void {
  const n = data.length;
  if (enc === null || n < 16) {
    buf.write(Buffer.from(data.buffer, data.byteOffset, n).toString('hex'), pos, 'latin1');
    return;
  }
  // Input at 0, output after it; the memory grows for large payloads (3 bytes per payload byte).
  const out = (n + 15) & ~15;
  const need = out + 2 * n;
  let mem = enc.view;
  if (mem.byteLength < need) {
    const have = enc.memory.buffer.byteLength;
    if (have < need) enc.memory.grow(Math.ceil((need - have) / 65536));
    mem = enc.view = new Uint8Array(enc.memory.buffer);
  }
  mem.set(data, 0);
  const blocks = n >>> 4;
  enc.hex(0, out, blocks);
  for (let i = blocks * 16, o = out + 2 * i; i < n; i++, o += 2) {
    const b = mem[i]!;
    mem[o] = DIGITS.charCodeAt(b >> 4);
    mem[o + 1] = DIGITS.charCodeAt(b & 15);
  }
  buf.set(mem.subarray(out, out + 2 * n), pos);
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
  private readonly enc: SimdHex | null;

  /** `useSimd` false: Node's hex encoder only (for tests of that path). */
  constructor(
    private readonly writeLine: ((line: string) => void) | undefined,
    private readonly writeBytes: ((chunk: Uint8Array) => void) | undefined,
    useSimd = true,
  ) {
    this.enc = useSimd ? simdHex() : null;
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
    writeHex(this.enc, data, buf, this.pos);
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
