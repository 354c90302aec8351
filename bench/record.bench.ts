/**
 * Figures of the trace recorder: the extra time of DMA through the VT-d
 * model when a TraceRecorder sits in front of it (`recordOverheadPct`). The
 * workload is DMA-heavy and leaves the IOMMU alone otherwise: a device reads
 * and writes 4 KiB buffers through 64 mapped pages (IOTLB hits), while the
 * guest CPU refreshes the first bytes of each buffer before the device reads
 * it (so the recorder's shadow has something to find). Without the recorder
 * the same DMA goes through the same helpers (`dmaRead`/`dmaWrite` over the
 * model's translate), as an emulator would do it. Lines go to a sink that
 * counts them (formatting included, file I/O excluded).
 */
import { IOMMUAccessFlags } from '../src/core/access';
import { dmaRead, dmaWrite } from '../src/memory/dma';
import { SparseRam } from '../src/memory/sparse-ram';
import { createIntelVtd } from '../src/models/intel-vtd/index';
import { TraceRecorder } from '../src/trace/recorder';
import type { BenchFigure, BenchSuite } from './harness';
import { gc, medianMs } from './harness';

const SID = 0x20;
const ROOT = 0x10_0000;
const CTX = 0x10_1000;
const L3 = 0x10_2000;
const L2 = 0x10_3000;
const L1 = 0x10_4000;
const BUFS = 0x40_0000;
const PAGES = 64;
const IOVA = 0x1000_0000n;
const RAM = [{ base: 0, size: 0x100_0000 }];
const CONFIG = { awBits: 39 as const, cachingMode: true };

function w64(ram: SparseRam, gpa: number, v: bigint): void {
  ram.writeU64(gpa, v);
}

/** Legacy root/context entries (VT-d 9.1, 9.3) and 3-level tables mapping PAGES 4 KiB pages at IOVA -> BUFS. */
function buildTables(ram: SparseRam): void {
  w64(ram, ROOT, BigInt(CTX) | 1n);
  w64(ram, CTX + (SID & 0xff) * 16, BigInt(L3) | 1n);
  w64(ram, CTX + (SID & 0xff) * 16 + 8, 1n | (1n << 8n)); // AW 39-bit, DID 1
  w64(ram, L3 + Number((IOVA >> 30n) & 0x1ffn) * 8, BigInt(L2) | 3n);
  w64(ram, L2 + Number((IOVA >> 21n) & 0x1ffn) * 8, BigInt(L1) | 3n);
  for (let i = 0; i < PAGES; i++) w64(ram, L1 + (Number((IOVA >> 12n) & 0x1ffn) + i) * 8, BigInt(BUFS + i * 4096) | 3n);
}

interface Dma {
  read(iova: bigint, len: number): void;
  write(iova: bigint, data: Uint8Array): void;
}

function workload(ram: SparseRam, dma: Dma, rounds: number): void {
  const out = new Uint8Array(4096).fill(0x5a);
  const stamp = new Uint8Array(16);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < PAGES; i++) {
      stamp[0] = r & 0xff;
      stamp[1] = i;
      ram.write(BUFS + i * 4096, stamp); // the guest CPU refreshes the buffer head
      dma.read(IOVA + BigInt(i * 4096), 4096);
      out[0] = r & 0xff;
      dma.write(IOVA + BigInt(((i + 1) % PAGES) * 4096), out);
    }
  }
}

function setup(ram: SparseRam, write: (line: string) => void, recorded: boolean): Dma {
  const mmio = (m: { mmioWrite(o: number, s: 4 | 8, v: bigint): void }) => {
    m.mmioWrite(0x20, 8, BigInt(ROOT));
    m.mmioWrite(0x18, 4, 1n << 30n); // SRTP
    m.mmioWrite(0x18, 4, 1n << 31n); // TE
  };
  buildTables(ram);
  if (recorded) {
    const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG, write });
    mmio(rec);
    return { read: (iova, len) => rec.dmaRead(SID, iova, len), write: (iova, data) => rec.dmaWrite(SID, iova, data) };
  }
  const vtd = createIntelVtd(CONFIG, ram);
  mmio(vtd);
  const t = (iova: bigint, w: boolean) => vtd.translate(SID, iova, w ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO);
  return { read: (iova, len) => dmaRead(ram, t, iova, len), write: (iova, data) => dmaWrite(ram, t, iova, data) };
}

export const suite: BenchSuite = () => {
  const rounds = 40;
  let chars = 0;
  const sink = (line: string) => { chars += line.length; };
  const time = (recorded: boolean) => {
    const ram = new SparseRam(RAM);
    const dma = setup(ram, sink, recorded);
    workload(ram, dma, 2); // warm-up (tables walked, shadows filled)
    gc();
    return medianMs(() => workload(ram, dma, rounds), 7);
  };
  // Interleave to share machine noise.
  time(false); time(true);
  const plain = time(false);
  const recorded = time(true);
  chars = 0;
  const ram = new SparseRam(RAM);
  workload(ram, setup(ram, sink, true), 1);
  const bytesPerDma = chars / (PAGES * 2);
  const figures: BenchFigure[] = [
    { key: 'recordOverheadPct', label: 'extra time of DMA through VT-d with the recorder on (4 KiB DMAs, IOTLB hits)', value: ((recorded - plain) / plain) * 100, unit: '%' },
    { key: 'recordDmaPerSec', label: 'recorded 4 KiB DMAs per second', value: (rounds * PAGES * 2) / (recorded / 1000), unit: 'ops/s' },
    { key: 'recordTraceBytesPerDma', label: 'trace text per recorded 4 KiB DMA (payload hex, guest writes)', value: bytesPerDma, unit: 'chars' },
  ];
  return figures;
};
