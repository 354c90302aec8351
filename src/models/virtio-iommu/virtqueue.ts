/**
 * Split virtqueues served straight from guest memory (virtio 1.2 section
 * 2.7), for emulators that have no virtio layer of their own: the request
 * queue feeds the device's request-level interface and the event queue
 * takes its fault reports.
 *
 * What the driver controls is checked as QEMU's virtqueue_pop checks it; a
 * malformed queue (descriptor index out of range, a chain longer than the
 * queue, a readable descriptor after a writable one, nested indirect tables,
 * rings or buffers outside RAM, the avail index running ahead by more than
 * the queue size) is a device error (QEMU `virtio_error`: NEEDS_RESET, the
 * queue is not processed further), never an exception.
 */
import { hex } from '../../core/guest-addr';
import type { GuestMemory } from '../../memory/guest-memory';
import type { FaultSink } from './events';

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Readable bytes copied per request: every request body is far shorter, and QEMU ignores extra bytes. */
const MAX_COPY = 4096;

/** Where a split virtqueue lives in guest memory. */
export interface SplitQueueLayout {
  /** Queue size (a power of two, at most 32768). */
  size: number;
  desc: number;
  avail: number;
  used: number;
}

/** A descriptor chain popped from the avail ring. */
export interface DescriptorChain {
  head: number;
  /** Device-readable buffers, then device-writable ones, in chain order. */
  readable: Array<{ addr: number; len: number }>;
  writable: Array<{ addr: number; len: number }>;
}

/** Thrown inside this module only; turned into the device error by the caller. */
class QueueError extends Error {}

export class SplitVirtqueue {
  private lastAvail = 0;
  private usedIdx = 0;
  private readonly buf8 = new Uint8Array(16);
  private readonly view = new DataView(this.buf8.buffer);

  constructor(private readonly mem: GuestMemory, readonly layout: SplitQueueLayout) {
    const n = layout.size;
    if (!Number.isInteger(n) || n < 1 || n > 32768 || (n & (n - 1)) !== 0) throw new RangeError(`virtqueue size ${n} is not a power of two <= 32768`);
  }

  private read(addr: number, len: number): DataView {
    if (!Number.isSafeInteger(addr) || addr < 0 || !this.mem.read(addr, this.buf8.subarray(0, len))) {
      throw new QueueError(`ring read of ${len} bytes at ${hex(addr)} is outside RAM`);
    }
    return this.view;
  }

  private u16(addr: number): number {
    return this.read(addr, 2).getUint16(0, true);
  }

  /** The next available chain, or undefined when the driver has made none available. Throws QueueError. */
  pop(): DescriptorChain | undefined {
    const { size, avail } = this.layout;
    const availIdx = this.u16(avail + 2);
    const pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending === 0) return undefined;
    // QEMU: "Guest moved avail index from %u to %u".
    if (pending > size) throw new QueueError(`avail index moved from ${this.lastAvail} to ${availIdx} (queue size ${size})`);
    const head = this.u16(avail + 4 + 2 * (this.lastAvail % size));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (head >= size) throw new QueueError(`descriptor index ${head} out of range (queue size ${size})`);
    const chain: DescriptorChain = { head, readable: [], writable: [] };
    this.walk(this.layout.desc, size, head, chain, false);
    return chain;
  }

  private walk(table: number, count: number, first: number, chain: DescriptorChain, indirect: boolean): void {
    let i = first;
    for (let steps = 0; ; steps++) {
      // A chain cannot have more descriptors than its table (QEMU: "Looped descriptor").
      if (steps >= count) throw new QueueError(`descriptor chain longer than the ${indirect ? 'indirect table' : 'queue'} (${count})`);
      const v = this.read(table + 16 * i, 16);
      const addr = Number(v.getBigUint64(0, true));
      const len = v.getUint32(8, true);
      const flags = v.getUint16(12, true);
      const next = v.getUint16(14, true);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (indirect) throw new QueueError('indirect descriptor inside an indirect table');
        if (len === 0 || len % 16 !== 0) throw new QueueError(`indirect table of ${len} bytes (a multiple of 16)`);
        if (flags & VIRTQ_DESC_F_NEXT) throw new QueueError('indirect descriptor with NEXT');
        this.walk(addr, len / 16, 0, chain, true);
        return;
      }
      if (flags & VIRTQ_DESC_F_WRITE) chain.writable.push({ addr, len });
      else if (chain.writable.length > 0) throw new QueueError('device-readable descriptor after a device-writable one');
      else chain.readable.push({ addr, len });
      if (!(flags & VIRTQ_DESC_F_NEXT)) return;
      if (next >= count) throw new QueueError(`next descriptor ${next} out of range (${count})`);
      i = next;
    }
  }

  /** The chain's readable bytes, at most `max` (the rest are ignored). Throws QueueError outside RAM. */
  gather(chain: DescriptorChain, max: number): { data: Uint8Array; total: number } {
    let total = 0;
    for (const d of chain.readable) total += d.len;
    const data = new Uint8Array(Math.min(total, max));
    this.copy(chain.readable, data, (addr, part) => this.mem.read(addr, part), 'readable');
    return { data, total };
  }

  /** Writes `bytes` across the chain's writable buffers. Throws QueueError outside RAM or when they are too small. */
  scatter(chain: DescriptorChain, bytes: Uint8Array): void {
    if (this.copy(chain.writable, bytes, (addr, part) => this.mem.write(addr, part), 'writable') < bytes.length) {
      throw new QueueError(`writable part too small for ${bytes.length} bytes`);
    }
  }

  /** Moves `bytes` to or from `buffers` in order (`io`); returns how many bytes the buffers held. */
  private copy(buffers: DescriptorChain['readable'], bytes: Uint8Array, io: (addr: number, part: Uint8Array) => boolean, what: string): number {
    let at = 0;
    for (const d of buffers) {
      if (at >= bytes.length) break;
      const n = Math.min(d.len, bytes.length - at);
      if (!io(d.addr, bytes.subarray(at, at + n))) throw new QueueError(`${what} buffer at ${hex(d.addr)} is outside RAM`);
      at += n;
    }
    return at;
  }

  /** Returns a chain to the driver with `len` bytes used. Throws QueueError outside RAM. */
  push(chain: DescriptorChain, len: number): void {
    const { size, used } = this.layout;
    const slot = used + 4 + 8 * (this.usedIdx % size);
    this.view.setUint32(0, chain.head, true);
    this.view.setUint32(4, len, true);
    this.view.setUint16(8, (this.usedIdx + 1) & 0xffff, true);
    if (!this.mem.write(slot, this.buf8.subarray(0, 8))) throw new QueueError(`used ring at ${hex(used)} is outside RAM`);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    if (!this.mem.write(used + 2, this.buf8.subarray(8, 10))) throw new QueueError(`used ring at ${hex(used)} is outside RAM`);
  }
}

function writableSize(chain: DescriptorChain): number {
  let n = 0;
  for (const d of chain.writable) n += d.len;
  return n;
}

/** What the queues need of the device (VirtioIommuDevice). */
export interface VirtioIommuQueueDevice {
  virtioRequest(data: Uint8Array, writable: number): Uint8Array;
  readonly needsReset: boolean;
  setFaultSink(sink: FaultSink | undefined): void;
  /** The transport met a malformed queue (QEMU virtio_error). */
  transportError(message: string): void;
}

/**
 * The request queue (index 0) and event queue (index 1) of one device,
 * served from guest memory. `processRequests()` is what a notify of the
 * request queue does; fault reports go to the event queue's buffers (one
 * per report; none available: dropped, as QEMU). `onUsed(queue)` is called
 * when a queue's used ring advanced (the emulator raises the interrupt).
 */
export class VirtioIommuQueues implements FaultSink {
  readonly requestQueue: SplitVirtqueue;
  readonly eventQueue: SplitVirtqueue;

  constructor(
    mem: GuestMemory,
    private readonly device: VirtioIommuQueueDevice,
    layouts: { request: SplitQueueLayout; event: SplitQueueLayout },
    private readonly onUsed: (queue: 0 | 1) => void = () => {},
  ) {
    this.requestQueue = new SplitVirtqueue(mem, layouts.request);
    this.eventQueue = new SplitVirtqueue(mem, layouts.event);
    device.setFaultSink(this);
  }

  /** Processes every available request; returns how many were completed. */
  processRequests(): number {
    let done = 0;
    const q = this.requestQueue;
    while (!this.device.needsReset) {
      try {
        const chain = q.pop();
        if (chain === undefined) break;
        const { data } = q.gather(chain, MAX_COPY);
        const out = this.device.virtioRequest(data, writableSize(chain));
        // A request the device did not complete (device error) is not returned (QEMU detaches it).
        if (this.device.needsReset) break;
        q.scatter(chain, out);
        q.push(chain, out.length);
        done++;
        this.onUsed(0);
      } catch (e) {
        if (!(e instanceof QueueError)) throw e;
        this.device.transportError(`request queue: ${e.message}`);
        break;
      }
    }
    return done;
  }

  /** FaultSink: one report into the next event buffer; false when there is none. */
  push(report: Uint8Array): boolean {
    const q = this.eventQueue;
    try {
      const chain = q.pop();
      if (chain === undefined) return false;
      if (writableSize(chain) < report.length) throw new QueueError('error buffer of wrong size');
      q.scatter(chain, report);
      q.push(chain, report.length);
      this.onUsed(1);
      return true;
    } catch (e) {
      if (!(e instanceof QueueError)) throw e;
      this.device.transportError(`event queue: ${e.message}`);
      return false;
    }
  }

  /** Stops serving the event queue (the device's own queue takes fault reports again). */
  detach(): void {
    this.device.setFaultSink(undefined);
  }
}
