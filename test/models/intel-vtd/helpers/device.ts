/**
 * Test bench for the VT-d device: RAM, a legacy root/context table with
 * second-level tables per device, the invalidation queue, and recorders for
 * the model's events. Register offsets and descriptor layouts are written
 * from the VT-d specification (chapter 11 registers, 6.5.2 descriptors), not
 * taken from the model.
 */
import { IOMMUAccessFlags } from '../../../../src/core/access';
import type { IOMMUTLBEntry, IOMMUTLBEvent } from '../../../../src/core/tlb-entry';
import type { IOMMUFault, MsiMessage } from '../../../../src/core/model';
import type { NotifierHandle } from '../../../../src/core/notifier-list';
import { SparseRam } from '../../../../src/memory/sparse-ram';
import { VtdDescriptor, VtdInvalidationQueue, createIntelVtd } from '../../../../src/models/intel-vtd';
import type { IntelVtd, VtdConfig, VtdLimits } from '../../../../src/models/intel-vtd';
import { VtdTables } from './tables';

export const REG = {
  VER: 0x00, CAP: 0x08, ECAP: 0x10, GCMD: 0x18, GSTS: 0x1c, RTADDR: 0x20, CCMD: 0x28, FSTS: 0x34,
  FECTL: 0x38, FEDATA: 0x3c, FEADDR: 0x40, FEUADDR: 0x44, PMEN: 0x64, IQH: 0x80, IQT: 0x88, IQA: 0x90,
  ICS: 0x9c, IECTL: 0xa0, IEDATA: 0xa4, IEADDR: 0xa8, IEUADDR: 0xac, IQERCD: 0xb0, IRTA: 0xb8,
  IVA: 0xf0, IOTLB: 0xf8, FRCD_LO: 0x220, FRCD_HI: 0x228,
} as const;

export const GCMD = {
  TE: 0x8000_0000n, SRTP: 0x4000_0000n, SFL: 0x2000_0000n, EAFL: 0x1000_0000n, WBF: 0x0800_0000n,
  QIE: 0x0400_0000n, IRE: 0x0200_0000n, SIRTP: 0x0100_0000n, CFI: 0x0080_0000n,
} as const;

/** Invalidation descriptors (VT-d spec 6.5.2), as [lo, hi]: the model's exported encoders (guest-tables.ts). */
export const desc = VtdDescriptor;

export const SID_A = 0x20; // 00:04.0
export const SID_B = 0x28; // 00:05.0
export const ROOT = 0x1_0000;
export const CONTEXT = 0x1_1000;
export const QUEUE = 0x2_0000;
export const STATUS = 0x3_0000;

export interface Bench {
  ram: SparseRam;
  tables: VtdTables;
  vtd: IntelVtd;
  msis: MsiMessage[];
  faults: IOMMUFault[];
  guestErrors: string[];
  /** Second-level root table of each device set up with `device()`. */
  slpt: Map<number, number>;
  cfg: Partial<VtdConfig>;
  /** Legacy context entry for `sid` with a fresh second-level table (DID `did`). */
  device(sid: number, did?: number, extra?: { fpd?: boolean; tt?: number; aw?: number }): number;
  /** Maps iova -> addr for `sid` (4 KiB unless leafLevel). */
  map(sid: number, iova: bigint, addr: bigint, opts?: { leafLevel?: number; r?: boolean; w?: boolean; extra?: bigint }): void;
  /** Clears the leaf for `iova` (4 KiB leaf at level 1 unless leafLevel). */
  unmap(sid: number, iova: bigint, leafLevel?: number): void;
  read(offset: number, size?: 4 | 8): bigint;
  write(offset: number, value: bigint, size?: 4 | 8): void;
  /** SRTP with the legacy root table. */
  setRoot(): void;
  /** IQA (QS=0, 256 descriptors) and QIE. */
  enableQueue(iqa?: bigint): void;
  enableTranslation(): void;
  /** Writes descriptors at the software tail and moves IQT past them. */
  submit(...descs: Array<[bigint, bigint]>): void;
  /** The software tail (in descriptors). */
  readonly tail: number;
}

export function makeBench(cfg: Partial<VtdConfig> = { cachingMode: true }, ramSize = 0x800_0000, limits?: VtdLimits): Bench {
  const ram = new SparseRam([{ base: 0n, size: BigInt(ramSize) }]);
  const tables = new VtdTables(ram, 0x10_0000);
  const vtd = createIntelVtd(cfg, ram, limits);
  const levels = cfg.awBits === 48 ? 4 : 3;
  const queue = new VtdInvalidationQueue(ram, vtd, QUEUE);
  const b: Bench = {
    ram, tables, vtd, cfg, msis: [], faults: [], guestErrors: [], slpt: new Map(),
    get tail() { return queue.tail; },
    device(sid, did = 1, extra = {}) {
      const top = tables.page();
      b.slpt.set(sid, top);
      tables.legacyContext(CONTEXT, sid & 0xff, { slptptr: top, aw: extra.aw ?? (levels === 4 ? 2 : 1), did, fpd: extra.fpd, tt: extra.tt });
      return top;
    },
    map(sid, iova, addr, opts = {}) {
      tables.map(b.slpt.get(sid)!, levels, iova, addr, opts);
    },
    unmap(sid, iova, leafLevel = 1) {
      if (!tables.unmap(b.slpt.get(sid)!, levels, iova, leafLevel)) throw new Error(`test bench: no table path to 0x${iova.toString(16)}`);
    },
    read: (offset, size = 4) => vtd.mmioRead(offset, size),
    write: (offset, value, size = 4) => vtd.mmioWrite(offset, size, value),
    setRoot() {
      b.write(REG.RTADDR, BigInt(ROOT), 8);
      b.write(REG.GCMD, GCMD.SRTP);
    },
    enableQueue(iqa = BigInt(QUEUE)) {
      b.write(REG.IQA, iqa, 8);
      b.write(REG.GCMD, GCMD.QIE | (b.read(REG.GSTS) & GCMD.TE));
    },
    enableTranslation() {
      b.write(REG.GCMD, GCMD.TE | (b.read(REG.GSTS) & GCMD.QIE));
    },
    submit(...descs) {
      queue.submit(...descs);
    },
  };
  tables.root(ROOT, 0, [BigInt(CONTEXT) | 1n, 0n]);
  vtd.events.on('msi', (m) => b.msis.push(m));
  vtd.events.on('fault', (f) => b.faults.push(f));
  vtd.events.on('guestError', (m) => b.guestErrors.push(m));
  return b;
}

/** Root, queue and translation on, with devices A (DID 1) and B (DID 2). */
export function bringUp(cfg: Partial<VtdConfig> = { cachingMode: true }): Bench {
  const b = makeBench(cfg);
  b.device(SID_A, 1);
  b.device(SID_B, 2);
  b.setRoot();
  b.enableQueue();
  b.enableTranslation();
  return b;
}

export const RO = IOMMUAccessFlags.RO;
export const WO = IOMMUAccessFlags.WO;

/** A notifier that records every event (copies) and keeps its handle. */
export class Recorder {
  events: Array<{ type: number; iova: bigint; mask: bigint; translated: bigint; perm: number }> = [];
  handle!: NotifierHandle;
  notify = (e: IOMMUTLBEvent): void => {
    this.events.push({ type: e.type, iova: e.entry.iova, mask: e.entry.addrMask, translated: e.entry.translatedAddr, perm: e.entry.perm });
  };
  take(): Recorder['events'] {
    const e = this.events;
    this.events = [];
    return e;
  }
}

/** A view as plain tuples [iova, mask, translated, perm], sorted. */
export function viewOf(b: Bench, sid: number, h: NotifierHandle): Array<[bigint, bigint, bigint, number]> {
  return b.vtd.addressSpace(sid).notifiers.view(h)
    .map((e: IOMMUTLBEntry): [bigint, bigint, bigint, number] => [e.iova, e.addrMask, e.translatedAddr, e.perm])
    .sort((x, y) => (x[0] < y[0] ? -1 : 1));
}
