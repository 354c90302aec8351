/**
 * Typed records of trace format v1 (docs/trace-format.md). Addresses,
 * masks and register values are bigint (they may reach 2^64 - 1); small
 * counts are numbers; byte payloads are Uint8Array in memory order. Every
 * event carries the 1-based line it came from.
 */
import type { IOMMUAccessFlags } from '../core/access';
import type { IOMMUEventType } from '../core/tlb-entry';

/** A trace RAM region (header `ram`). */
export interface TraceRamRegion {
  base: bigint;
  size: bigint;
}

/** Line 1 of a trace. */
export interface TraceHeader {
  trace: 'viommu';
  version: 1;
  /** `intel-vtd`, `virtio-iommu`, `smmuv3`, `amd-vi` or `none`. */
  model: string;
  /** The model's options, as found (validated by the model). */
  config: Record<string, unknown>;
  ram: TraceRamRegion[];
  source?: string;
}

interface Base {
  /** 1-based line number in the trace file. */
  line: number;
  note?: string;
}

/** An entry as traces write it (`notify`, `view.expect`). */
export interface TraceEntry {
  iova: bigint;
  mask: bigint;
  translated: bigint;
  perm: IOMMUAccessFlags;
}

export interface MemWriteEvent extends Base { op: 'mem.write'; gpa: bigint; data: Uint8Array }
export interface MemExpectEvent extends Base { op: 'mem.expect'; gpa: bigint; data: Uint8Array }
export interface MmioWriteEvent extends Base { op: 'mmio.write'; reg: number; size: 4 | 8; value: bigint }
export interface MmioReadEvent extends Base { op: 'mmio.read'; reg: number; size: 4 | 8; expect?: bigint }
export interface DmaReadEvent extends Base {
  op: 'dma.read'; sid: number; pasid?: number; iova: bigint; len: number;
  /** The data read when every page translated, or `fault`. */
  expect?: Uint8Array | 'fault';
}
export interface DmaWriteEvent extends Base {
  op: 'dma.write'; sid: number; pasid?: number; iova: bigint; data: Uint8Array; expect?: 'ok' | 'fault';
}
export type TranslateExpect = { translated: bigint; mask: bigint; perm: IOMMUAccessFlags } | { fault: true };
export interface TranslateEvent extends Base {
  op: 'translate'; sid: number; pasid?: number; iova: bigint;
  /** RO, WO or RW. */
  access: IOMMUAccessFlags;
  expect?: TranslateExpect;
}
export interface NotifierAddEvent extends Base {
  op: 'notifier.add'; id: string; sid: number;
  /** The PASID address space of `sid` (absent: requests without PASID). */
  pasid?: number;
  /** IOMMUNotifierFlag bits. */
  flags: number;
  start: bigint; end: bigint;
}
export interface NotifierDelEvent extends Base { op: 'notifier.del'; id: string }
export interface NotifyEvent extends Base, TraceEntry { op: 'notify'; id: string; type: IOMMUEventType }
export interface ViewExpectEvent extends Base { op: 'view.expect'; id: string; entries: TraceEntry[] }
export interface MsiExpectEvent extends Base { op: 'msi.expect'; addr: bigint; data: number }
export interface VirtioConfigReadEvent extends Base { op: 'virtio.config.read'; offset: number; size: number; expect?: bigint }
export interface VirtioConfigWriteEvent extends Base { op: 'virtio.config.write'; offset: number; size: number; value: bigint }
export interface VirtioFeaturesEvent extends Base { op: 'virtio.features'; value: bigint }
export interface VirtioRequestEvent extends Base { op: 'virtio.request'; data: Uint8Array; writable: number; expect?: Uint8Array }
export interface VirtioEventExpectEvent extends Base { op: 'virtio.event.expect'; data: Uint8Array }
/** The driver reset the device (status 0): domains, mappings and endpoints dropped, `bypass` kept. */
export interface VirtioResetEvent extends Base { op: 'virtio.reset' }

export type TraceEvent =
  | MemWriteEvent | MemExpectEvent | MmioWriteEvent | MmioReadEvent
  | DmaReadEvent | DmaWriteEvent | TranslateEvent
  | NotifierAddEvent | NotifierDelEvent | NotifyEvent | ViewExpectEvent | MsiExpectEvent
  | VirtioConfigReadEvent | VirtioConfigWriteEvent | VirtioFeaturesEvent | VirtioRequestEvent | VirtioEventExpectEvent | VirtioResetEvent;

export type TraceOp = TraceEvent['op'];

/** Every op of trace v1. */
export const TRACE_OPS: readonly TraceOp[] = [
  'mem.write', 'mem.expect', 'mmio.write', 'mmio.read', 'dma.read', 'dma.write', 'translate',
  'notifier.add', 'notifier.del', 'notify', 'view.expect', 'msi.expect',
  'virtio.config.read', 'virtio.config.write', 'virtio.features', 'virtio.request', 'virtio.event.expect', 'virtio.reset',
];

/** A malformed trace (exit status 2): names the line and the reason. */
export class TraceFormatError extends Error {
  override readonly name = 'TraceFormatError';
  constructor(readonly line: number, readonly reason: string, readonly file?: string) {
    super(`${file ? file + ':' : 'line '}${line}: ${reason}`);
  }
}
