/**
 * The recorder's output: trace lines, either handed to a line sink as strings
 * or packed into byte chunks for a byte sink. Lines that carry a payload
 * (`dma.read` expect, `dma.write` data, `mem.write` data) are written as a
 * prefix, the payload's hex and a suffix, without building the hex as a JS
 * string: Node's `toString('hex')` plus the string concatenation and the later
 * UTF-8 encoding by the sink cost several times the DMA itself for 4 KiB.
 * @internal
 */

import type { DmaReadEvent, DmaWriteEvent, MemWriteEvent } from './types';
import { hex } from './writer';

const DIGITS = '0123456789abcdef';
/** The ASCII codes of DIGITS. */
const HEX = Uint8Array.from(DIGITS, (c) => c.charCodeAt(0));
/** Payloads shorter than this are encoded by a JS loop (a WebAssembly call and two copies cost more there). */
const SIMD_MIN = 32;

/**
 * The hex encoder: a WebAssembly SIMD function (16 bytes in, 32 ASCII bytes
 * out per step) when the runtime has it, else Node's `toString('hex')`.
 * Measured here for 4 KiB: JS table loops 2.6-3.3 us, `toString('hex')` ~4 us
 * plus the string's later encoding, this ~0.7 us including the copies in and
 * out of its memory. One instance serves every recorder (JS is single-threaded
 * here); its memory grows to 3 bytes per byte of the largest payload seen. The module is assembled below rather than shipped as a
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
  if (enc === null) {
    buf.write(Buffer.from(data.buffer, data.byteOffset, n).toString('hex'), pos, 'latin1');
    return;
  }
  if (n < SIMD_MIN) {
    for (let i = 0, o = pos; i < n; i++, o += 2) {
      const b = data[i]!;
      buf[o] = HEX[b >> 4]!;
      buf[o + 1] = HEX[b & 15]!;
    }
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
    mem[o] = HEX[b >> 4]!;
    mem[o + 1] = HEX[b & 15]!;
  }
  buf.set(mem.subarray(out, out + 2 * n), pos);
}

/** An event whose line carries a byte payload (a `dma.read` only when it has data as `expect`). */
export type PayloadEvent = MemWriteEvent | DmaWriteEvent | (DmaReadEvent & { expect: Uint8Array });

const NL = 0x0a;
const CHUNK = 1 << 16;
/** Chunks are cut from slabs of this size: one backing store per 16 chunks (fewer external allocations, less GC). */
const SLAB = 1 << 20;

/**
 * Where recorded lines go. With a line sink every line is passed at once as a
 * string (without newline). With a byte sink lines are packed, each followed
 * by `\n`, into chunks of about 64 KiB handed over when full and on `flush()`;
 * each chunk is the sink's to keep (the output does not reuse it), so a sink
 * may queue it (`stream.write(chunk)`).
 * @internal
 */
export class TraceOutput {
  /** Line sink: scratch for payload hex. Byte sink: the slab lines are written into, from `start` (the pending chunk) to `pos`. */
  private buf: Buffer;
  private start = 0;
  private pos = 0;
  private readonly enc: SimdHex | null;

  /** Which hex encoder runs (for tests and diagnostics). */
  get encoder(): 'simd' | 'node' {
    return this.enc === null ? 'node' : 'simd';
  }

  /** `useSimd` false: Node's hex encoder only (for tests of that path). */
  constructor(
    private readonly writeLine: ((line: string) => void) | undefined,
    private readonly writeBytes: ((chunk: Uint8Array) => void) | undefined,
    useSimd = true,
  ) {
    this.enc = useSimd ? simdHex() : null;
    this.buf = Buffer.allocUnsafeSlow(writeBytes !== undefined ? SLAB : 8192);
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

  /** One line made of `prefix`, the hex of `data` and `suffix`. */
  payloadLine(prefix: string, data: Uint8Array, suffix: string): void {
    const h = 2 * data.length;
    if (this.writeBytes === undefined) {
      // Only the hex goes through the buffer: one latin1 decode, no hex intermediate string.
      if (this.buf.length < h) this.buf = Buffer.allocUnsafeSlow(h);
      writeHex(this.enc, data, this.buf, 0);
      this.writeLine!(prefix + this.buf.toString('latin1', 0, h) + suffix);
      return;
    }
    this.reserve(3 * (prefix.length + suffix.length) + h + 1); // UTF-8: at most 3 bytes per UTF-16 unit
    const buf = this.buf;
    this.pos += buf.write(prefix, this.pos, 'utf8');
    writeHex(this.enc, data, buf, this.pos);
    this.pos += h;
    this.pos += buf.write(suffix, this.pos, 'utf8');
    buf[this.pos++] = NL;
  }

  /**
   * The line of `ev`, the same text as the writer's `formatEvent(ev)` (trace-v1
   * key order; the tests hold the two equal), built from its parts here so that
   * the payload needs no JS string and the rest no intermediate ones.
   */
  payloadEvent(ev: PayloadEvent): void {
    const note = ev.note === undefined ? '"}' : `","note":${JSON.stringify(ev.note)}}`;
    switch (ev.op) {
      case 'mem.write':
        this.payloadLine(`{"op":"mem.write","gpa":"${hex(ev.gpa)}","data":"`, ev.data, note);
        return;
      case 'dma.write': {
        const pasid = ev.pasid === undefined ? '' : `,"pasid":${ev.pasid}`;
        const tail = ev.expect === undefined ? '"' : `","expect":"${ev.expect}"`;
        this.payloadLine(`{"op":"dma.write","sid":"${hex(ev.sid)}"${pasid},"iova":"${hex(ev.iova)}","data":"`, ev.data,
          ev.note === undefined ? tail + '}' : `${tail},"note":${JSON.stringify(ev.note)}}`);
        return;
      }
      case 'dma.read': {
        const pasid = ev.pasid === undefined ? '' : `,"pasid":${ev.pasid}`;
        this.payloadLine(`{"op":"dma.read","sid":"${hex(ev.sid)}"${pasid},"iova":"${hex(ev.iova)}","len":${ev.len},"expect":"`, ev.expect, note);
        return;
      }
    }
  }

  /** Hands the pending bytes to the byte sink (nothing to do for a line sink). */
  flush(): void {
    if (this.writeBytes === undefined || this.pos === this.start) return;
    const chunk = this.buf.subarray(this.start, this.pos);
    this.start = this.pos; // the chunk's bytes are never written again
    this.writeBytes(chunk);
  }

  /**
   * Makes room for `n` more bytes: hands over the pending chunk when it would
   * outgrow CHUNK, and starts a new slab when this one is full (a line bigger
   * than a slab gets a slab of its own size).
   */
  private reserve(n: number): void {
    if (this.pos - this.start + n > CHUNK) this.flush();
    if (this.pos + n > this.buf.length) {
      this.flush();
      this.buf = Buffer.allocUnsafeSlow(Math.max(SLAB, n));
      this.start = this.pos = 0;
    }
  }
}
