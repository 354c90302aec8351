/**
 * Trace-v1 writer: one line per record, keys in a fixed order (`op`, the
 * fields in the order of the trace-v1 table, `expect`, `note`), lowercase
 * hex, so that the same run always produces the same bytes.
 */
import { permToString } from '../core/access';
import { hex } from '../core/guest-addr';
import { flagsToString } from '../core/tlb-entry';
import type { TraceEntry, TraceEvent, TraceHeader } from './types';
import { openOutput } from './output-file';
import type { OutputFile } from './output-file';

/** `0x`-prefixed lowercase hex (the core's formatter, re-exported for the trace layer). */
export { hex };

/** Bytes as lowercase hex without prefix, in memory order. */
export function hexBytes(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('hex');
}

function q(s: string): string {
  return JSON.stringify(s);
}

function entryJson(e: TraceEntry): string {
  return `{"iova":"${hex(e.iova)}","mask":"${hex(e.mask)}","translated":"${hex(e.translated)}","perm":"${permToString(e.perm)}"}`;
}

const TYPE_NAMES: Record<number, string> = { 1: 'UNMAP', 2: 'MAP', 4: 'DEVIOTLB_UNMAP' };

/** The header line (without newline). */
export function formatHeader(h: TraceHeader): string {
  const ram = h.ram.map((r) => `{"base":"${hex(r.base)}","size":"${hex(r.size)}"}`).join(',');
  let s = `{"trace":"viommu","version":1,"model":${q(h.model)},"config":${stableJson(h.config)},"ram":[${ram}]`;
  if (h.source !== undefined) s += `,"source":${q(h.source)}`;
  return s + '}';
}

/** JSON with object keys in the order they were inserted (config is copied as found). */
function stableJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? hex(x) : x));
}

/** One event line (without newline). */
export function formatEvent(ev: TraceEvent): string {
  let s: string;
  const pasid = (p: number | undefined) => (p === undefined ? '' : `,"pasid":${p}`);
  switch (ev.op) {
    case 'mem.write':
    case 'mem.expect':
      s = `{"op":"${ev.op}","gpa":"${hex(ev.gpa)}","data":"${hexBytes(ev.data)}"`;
      break;
    case 'mmio.write':
      s = `{"op":"mmio.write","reg":"${hex(ev.reg)}","size":${ev.size},"value":"${hex(ev.value)}"`;
      break;
    case 'mmio.read':
      s = `{"op":"mmio.read","reg":"${hex(ev.reg)}","size":${ev.size}`;
      if (ev.expect !== undefined) s += `,"expect":"${hex(ev.expect)}"`;
      break;
    case 'dma.read':
      s = `{"op":"dma.read","sid":"${hex(ev.sid)}"${pasid(ev.pasid)},"iova":"${hex(ev.iova)}","len":${ev.len}`;
      if (ev.expect !== undefined) s += `,"expect":"${ev.expect === 'fault' ? 'fault' : hexBytes(ev.expect)}"`;
      break;
    case 'dma.write':
      s = `{"op":"dma.write","sid":"${hex(ev.sid)}"${pasid(ev.pasid)},"iova":"${hex(ev.iova)}","data":"${hexBytes(ev.data)}"`;
      if (ev.expect !== undefined) s += `,"expect":"${ev.expect}"`;
      break;
    case 'translate':
      s = `{"op":"translate","sid":"${hex(ev.sid)}"${pasid(ev.pasid)},"iova":"${hex(ev.iova)}","access":"${permToString(ev.access)}"`;
      if (ev.expect !== undefined) {
        s += 'fault' in ev.expect
          ? ',"expect":{"fault":true}'
          : `,"expect":{"translated":"${hex(ev.expect.translated)}","mask":"${hex(ev.expect.mask)}","perm":"${permToString(ev.expect.perm)}"}`;
      }
      break;
    case 'notifier.add': {
      const flags = ev.flags === 0 ? '' : flagsToString(ev.flags).split('|').map((n) => q(n)).join(',');
      s = `{"op":"notifier.add","id":${q(ev.id)},"sid":"${hex(ev.sid)}"${pasid(ev.pasid)},"flags":[${flags}],"start":"${hex(ev.start)}","end":"${hex(ev.end)}"`;
      break;
    }
    case 'notifier.del':
      s = `{"op":"notifier.del","id":${q(ev.id)}`;
      break;
    case 'notify':
      s = `{"op":"notify","id":${q(ev.id)},"type":"${TYPE_NAMES[ev.type]}","iova":"${hex(ev.iova)}","mask":"${hex(ev.mask)}",`
        + `"translated":"${hex(ev.translated)}","perm":"${permToString(ev.perm)}"`;
      break;
    case 'view.expect':
      s = `{"op":"view.expect","id":${q(ev.id)},"entries":[${ev.entries.map(entryJson).join(',')}]`;
      break;
    case 'msi.expect':
      s = `{"op":"msi.expect","addr":"${hex(ev.addr)}","data":"${hex(ev.data)}"`;
      break;
    case 'virtio.config.read':
      s = `{"op":"virtio.config.read","offset":${ev.offset},"size":${ev.size}`;
      if (ev.expect !== undefined) s += `,"expect":"${hex(ev.expect)}"`;
      break;
    case 'virtio.config.write':
      s = `{"op":"virtio.config.write","offset":${ev.offset},"size":${ev.size},"value":"${hex(ev.value)}"`;
      break;
    case 'virtio.features':
      s = `{"op":"virtio.features","value":"${hex(ev.value)}"`;
      break;
    case 'virtio.request':
      s = `{"op":"virtio.request","data":"${hexBytes(ev.data)}","writable":${ev.writable}`;
      if (ev.expect !== undefined) s += `,"expect":"${hexBytes(ev.expect)}"`;
      break;
    case 'virtio.event.expect':
      s = `{"op":"virtio.event.expect","data":"${hexBytes(ev.data)}"`;
      break;
    case 'virtio.reset':
      s = '{"op":"virtio.reset"';
      break;
  }
  if (ev.note !== undefined) s += `,"note":${q(ev.note)}`;
  return s + '}';
}

/**
 * Writes a trace to an output opened by the rule of `openOutput()`
 * (output-file.ts): a regular file is written beside `path` and replaces it
 * only when `close()` succeeds, so a failed run never leaves a truncated
 * trace and `--record` onto the trace being read cannot destroy it; a
 * symbolic link is followed and a device or FIFO written through; `-` is
 * standard output. Gzip-compressed when `path` ends in `.gz`. Lines are
 * gathered into writes of about 64 KiB.
 */
export class TraceWriter {
  private buffer: string[] = [];
  private buffered = 0;

  private constructor(private readonly out: OutputFile) {}

  /**
   * Opens `path` (`-`: `stdout`); rejects with the OS error when it cannot be
   * opened, before anything is written, so a caller can fail before replaying.
   */
  static async open(path: string, stdout: NodeJS.WritableStream = process.stdout): Promise<TraceWriter> {
    return new TraceWriter(await openOutput(path, stdout, { gzip: path.endsWith('.gz') }));
  }

  /** A writer over an output the caller opened. */
  static over(out: OutputFile): TraceWriter {
    return new TraceWriter(out);
  }

  /** True when the trace goes to standard output. */
  get toStdout(): boolean {
    return this.out.toStdout;
  }

  header(h: TraceHeader): void {
    this.line(formatHeader(h));
  }

  event(ev: TraceEvent): void {
    this.line(formatEvent(ev));
  }

  /** A raw line (without newline). */
  line(text: string): void {
    this.buffer.push(text);
    this.buffered += text.length;
    if (this.buffered >= 1 << 16) this.flush();
  }

  /** Raw bytes of whole lines (each ending in a newline), after the lines given so far: the recorder's byte sink. */
  bytes(chunk: Uint8Array): void {
    this.flush();
    if (this.out.error === undefined) this.out.stream.write(chunk);
  }

  /** Hands the buffered lines to the output. */
  flush(): void {
    if (this.buffer.length === 0) return;
    if (this.out.error === undefined) this.out.stream.write(this.buffer.join('\n') + '\n');
    this.buffer = [];
    this.buffered = 0;
  }

  /** Resolves when the output has room again or has failed (await it now and then so that memory stays bounded). */
  async drained(): Promise<void> {
    const s = this.out.stream as NodeJS.WritableStream & { writableNeedDrain?: boolean };
    if (this.out.error !== undefined || !s.writableNeedDrain) return;
    await Promise.race([new Promise<void>((ok) => s.once('drain', () => ok())), this.out.failed.catch(() => undefined)]);
  }

  /** Flushes, closes and puts the file in place; rejects with the first I/O error (a temporary file is then removed). */
  async close(): Promise<void> {
    this.flush();
    await this.out.commit();
  }

  /** Gives up: a regular file keeps its old content (what went to stdout or through a device stays written). */
  async abandon(): Promise<void> {
    await this.out.abandon();
  }
}
