/**
 * VirtioIommuQueues: a driver's split virtqueues built by hand in SparseRam
 * (virtio 1.2 section 2.7 layouts), served from guest memory. Requests come
 * back in the used ring with QEMU's used lengths; fault reports land in the
 * event queue's buffers; malformed queues are device errors, never throws.
 */
import { IOMMUAccessFlags } from '../../../src/core/access';
import { SparseRam } from '../../../src/memory/sparse-ram';
import {
  createVirtioIommu, decodeFaultReport, encodeAttach, encodeMap, encodeProbe, VirtioIommuQueues, VirtioIommuStatus as S,
  VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
} from '../../../src/models/virtio-iommu';

const QSIZE = 8;
const REQ = { size: QSIZE, desc: 0x1000, avail: 0x2000, used: 0x3000 };
const EVT = { size: QSIZE, desc: 0x4000, avail: 0x5000, used: 0x6000 };
const BUFS = 0x10000;

/** A minimal driver: writes descriptors and avail entries, reads the used ring. */
class Driver {
  private nextBuf = BUFS;
  private availIdx = [0, 0];
  private nextDesc = [0, 0];
  constructor(readonly ram: SparseRam) {}

  alloc(len: number): number {
    const a = this.nextBuf;
    this.nextBuf += (len + 15) & ~15;
    return a;
  }

  desc(q: typeof REQ, i: number, addr: number, len: number, flags: number, next: number): void {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(addr), true);
    v.setUint32(8, len, true);
    v.setUint16(12, flags, true);
    v.setUint16(14, next, true);
    this.ram.write(q.desc + 16 * i, b);
  }

  /** Makes chain `head` available on queue `qi`. */
  offer(qi: 0 | 1, head: number): void {
    const q = qi === 0 ? REQ : EVT;
    const idx = this.availIdx[qi]!;
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, head, true);
    this.ram.write(q.avail + 4 + 2 * (idx % q.size), b);
    this.availIdx[qi] = (idx + 1) & 0xffff;
    new DataView(b.buffer).setUint16(0, this.availIdx[qi]!, true);
    this.ram.write(q.avail + 2, b);
  }

  /** A request: readable `data`, writable `writable` bytes, as two (or, split, three) descriptors. Returns the writable address. */
  request(data: Uint8Array, writable: number, split = false): number {
    const i = this.nextDesc[0]!;
    const n = split ? 3 : 2;
    this.nextDesc[0] = (i + n) % QSIZE;
    const rd = this.alloc(data.length);
    this.ram.write(rd, data);
    const wr = this.alloc(writable);
    if (split) {
      const half = 8;
      this.desc(REQ, i, rd, half, VIRTQ_DESC_F_NEXT, i + 1);
      this.desc(REQ, i + 1, rd + half, data.length - half, VIRTQ_DESC_F_NEXT, i + 2);
      this.desc(REQ, i + 2, wr, writable, VIRTQ_DESC_F_WRITE, 0);
    } else {
      this.desc(REQ, i, rd, data.length, VIRTQ_DESC_F_NEXT, i + 1);
      this.desc(REQ, i + 1, wr, writable, VIRTQ_DESC_F_WRITE, 0);
    }
    this.offer(0, i);
    return wr;
  }

  eventBuffer(i: number, len = 24): number {
    const a = this.alloc(len);
    this.desc(EVT, i, a, len, VIRTQ_DESC_F_WRITE, 0);
    this.offer(1, i);
    return a;
  }

  used(q: typeof REQ, k: number): { idx: number; id: number; len: number } {
    return { idx: this.ram.readU32(q.used) >>> 16, id: this.ram.readU32(q.used + 4 + 8 * k), len: this.ram.readU32(q.used + 8 + 8 * k) };
  }

  bytes(addr: number, len: number): Uint8Array {
    const b = new Uint8Array(len);
    this.ram.read(addr, b);
    return b;
  }
}

function setup(): { ram: SparseRam; drv: Driver; dev: ReturnType<typeof createVirtioIommu>; queues: VirtioIommuQueues; used: number[] } {
  const ram = new SparseRam([{ base: 0, size: 1 << 20 }]);
  const dev = createVirtioIommu({ bootBypass: false, endpoints: [0x20] }, ram);
  const used: number[] = [];
  const queues = new VirtioIommuQueues(ram, dev, { request: REQ, event: EVT }, (q) => used.push(q));
  return { ram, drv: new Driver(ram), dev, queues, used };
}

test('requests: tail at the start of the writable part, used length 4 (516 for PROBE), chains split across descriptors', () => {
  const { drv, queues, used } = setup();
  const w1 = drv.request(encodeAttach(1, 0x20), 8);
  const w2 = drv.request(encodeMap(1, 0x10000n, 0x10fffn, 0x80000n, 3), 4, true);
  const w3 = drv.request(encodeProbe(0x20), 516);
  expect(queues.processRequests()).toBe(3);
  expect(used).toEqual([0, 0, 0]);
  expect(drv.used(REQ, 0)).toEqual({ idx: 3, id: 0, len: 4 });
  expect(drv.used(REQ, 1)).toEqual({ idx: 3, id: 2, len: 4 });
  expect(drv.used(REQ, 2)).toEqual({ idx: 3, id: 5, len: 516 });
  expect(drv.bytes(w1, 4)[0]).toBe(S.OK);
  expect(drv.bytes(w2, 4)[0]).toBe(S.OK);
  expect(Array.from(drv.bytes(w3, 4))).toEqual([1, 0, 20, 0]); // RESV_MEM, length 20
  expect(drv.bytes(w3 + 512, 1)[0]).toBe(S.OK);
  expect(queues.processRequests()).toBe(0);
});

test('fault reports go to the event queue buffers; none available: dropped', () => {
  const { drv, dev, used } = setup();
  const buf = drv.eventBuffer(0);
  dev.translate(0x20, 0x1234n, IOMMUAccessFlags.WO);
  expect(used).toEqual([1]);
  expect(drv.used(EVT, 0)).toEqual({ idx: 1, id: 0, len: 24 });
  expect(decodeFaultReport(drv.bytes(buf, 24))).toEqual({ reason: 0, flags: 0x100, endpoint: 0x20, address: 0x1234n });
  dev.translate(0x20, 0x5678n, IOMMUAccessFlags.WO);
  expect(used).toEqual([1]);
  expect(dev.needsReset).toBe(false);
});

test('indirect descriptors are followed', () => {
  const { ram, drv, queues } = setup();
  const table = drv.alloc(32);
  const rd = drv.alloc(20);
  ram.write(rd, encodeAttach(1, 0x20));
  const wr = drv.alloc(4);
  const d = new Uint8Array(32);
  const v = new DataView(d.buffer);
  v.setBigUint64(0, BigInt(rd), true); v.setUint32(8, 20, true); v.setUint16(12, VIRTQ_DESC_F_NEXT, true); v.setUint16(14, 1, true);
  v.setBigUint64(16, BigInt(wr), true); v.setUint32(24, 4, true); v.setUint16(28, VIRTQ_DESC_F_WRITE, true);
  ram.write(table, d);
  drv.desc(REQ, 0, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
  drv.offer(0, 0);
  expect(queues.processRequests()).toBe(1);
  expect(drv.bytes(wr, 1)[0]).toBe(S.OK);
});

test.each([
  ['a looped chain (longer than the queue)', (drv: Driver) => { drv.desc(REQ, 0, BUFS, 4, VIRTQ_DESC_F_NEXT, 1); drv.desc(REQ, 1, BUFS, 4, VIRTQ_DESC_F_NEXT, 0); drv.offer(0, 0); }],
  ['a head index out of range', (drv: Driver) => drv.offer(0, QSIZE + 3)],
  ['a readable descriptor after a writable one', (drv: Driver) => { drv.desc(REQ, 0, BUFS, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1); drv.desc(REQ, 1, BUFS, 20, 0, 0); drv.offer(0, 0); }],
  ['a buffer outside RAM', (drv: Driver) => { drv.desc(REQ, 0, 0x4000_0000, 20, VIRTQ_DESC_F_NEXT, 1); drv.desc(REQ, 1, BUFS, 4, VIRTQ_DESC_F_WRITE, 0); drv.offer(0, 0); }],
  ['a request with no writable part (bad tail)', (drv: Driver) => { drv.ram.write(BUFS, encodeAttach(1, 0x20)); drv.desc(REQ, 0, BUFS, 20, 0, 0); drv.offer(0, 0); }],
])('%s is a device error (NEEDS_RESET), not an exception', (_name, build) => {
  const { drv, dev, queues } = setup();
  build(drv);
  expect(() => queues.processRequests()).not.toThrow();
  expect(dev.needsReset).toBe(true);
  expect(drv.used(REQ, 0).idx).toBe(0);
});
