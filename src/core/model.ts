import type { TypedEmitter } from './typed-events';
import type { IOMMUAccessFlags } from './access';
import type { IOMMUTLBEntry } from './tlb-entry';
import type { IOMMUNotifier, NotifierHandle, NotifierList } from './notifier-list';

/**
 * A translation request that failed. `recorded` says whether the model logged
 * it (fault recording registers, event queue); a fault suppressed by the guest
 * (FPD, compression) still fails the access.
 */
export interface IOMMUFault {
  readonly fault: true;
  /** Model-specific reason code (VT-d: the fault reason of the FRCD). */
  readonly reason: number;
  readonly recorded: boolean;
  readonly sid: number;
  readonly iova: bigint;
  readonly access: IOMMUAccessFlags;
}

/** What `translate()` answers: a translation (iova aligned to its mask; add the offset) or a fault. */
export type TranslateResult = IOMMUTLBEntry | IOMMUFault;

export function isFault(result: TranslateResult): result is IOMMUFault {
  return (result as IOMMUFault).fault === true;
}

/** An interrupt message the IOMMU sent (fault event, invalidation completion). */
export interface MsiMessage {
  address: bigint;
  data: number;
}

export type IOMMUModelEvents = {
  /** The IOMMU sent an MSI. */
  msi: (message: MsiMessage) => void;
  /** A DMA translation failed (recorded or not). */
  fault: (fault: IOMMUFault) => void;
  /** The model met a guest error it handled without a guest-visible fault (logged, as QEMU's error_report). */
  guestError: (message: string) => void;
  /**
   * A notifier sync of the address space of `sid` stopped before the
   * listeners' views matched the tables (a walk over its work bound, from a
   * hostile guest): they may hold stale or miss entries until the next
   * invalidation succeeds (C9 does not hold meanwhile).
   */
  syncIncomplete: (sid: number, reason: string) => void;
};

/**
 * The IOMMU address space of one device (requester id `sid`, optional PASID):
 * where notifiers register.
 */
export interface IOMMUAddressSpace {
  readonly sid: number;
  readonly pasid: number | undefined;
  /** The notifier list (contract enforcement, views). */
  readonly notifiers: NotifierList;
  /**
   * Registers a notifier and replays current translations to it (C7). Throws
   * when the model refuses the flags (C1), with the reason.
   */
  registerNotifier(notifier: IOMMUNotifier): NotifierHandle;
}

/**
 * What a trace replayer, recorder or conformance kit needs of any IOMMU
 * model. Register-based models (Intel VT-d, SMMUv3, AMD-Vi) also have
 * `mmioRead`/`mmioWrite` (see MmioIOMMUModel); a request-based model
 * (virtio-iommu, which the guest drives through a virtqueue) has none and
 * offers its own request interface instead (VirtioIommuOps in
 * src/models/virtio-iommu).
 */
export interface IOMMUModel {
  /** Trace-v1 model name (`intel-vtd`, `virtio-iommu`, ...). */
  readonly kind: string;
  readonly events: TypedEmitter<IOMMUModelEvents>;
  /** Guest read of a register at byte offset `offset` (size 4 or 8); register-based models only. */
  mmioRead?(offset: number, size: 4 | 8): bigint;
  /** Guest write of a register; register-based models only. Guest errors become modelled behaviour, never exceptions. */
  mmioWrite?(offset: number, size: 4 | 8, value: bigint): void;
  /** One translation as a device requests it; fills caches and records faults like a DMA. */
  translate(sid: number, iova: bigint, access: IOMMUAccessFlags, pasid?: number): TranslateResult;
  /** The address space of a device, created on first use. */
  addressSpace(sid: number, pasid?: number): IOMMUAddressSpace;
  /** System reset: registers to their reset values, caches dropped, notifiers unmapped (C8). */
  reset(): void;
}

/** A model programmed through MMIO registers (VT-d, SMMUv3, AMD-Vi). */
export interface MmioIOMMUModel extends IOMMUModel {
  mmioRead(offset: number, size: 4 | 8): bigint;
  mmioWrite(offset: number, size: 4 | 8, value: bigint): void;
}

/** Whether `model` has MMIO registers. */
export function hasMmio(model: IOMMUModel): model is MmioIOMMUModel {
  return typeof model.mmioRead === 'function' && typeof model.mmioWrite === 'function';
}

/** `model` as a register-based model, or an Error naming the model (a trace's mmio op on a request-based model). */
export function requireMmio(model: IOMMUModel): MmioIOMMUModel {
  if (!hasMmio(model)) throw new Error(`model ${model.kind} has no MMIO registers (it is driven by requests)`);
  return model;
}

/**
 * The request-level interface of a virtio-iommu model (trace-v1 "Ops for
 * request-based models"): the emulator owns the virtio transport and hands
 * over each request's device-readable bytes and the size of its
 * device-writable part.
 */
export interface VirtioIommuOps {
  /** Read of the device configuration space (virtio 1.2 5.13.4) at `offset`, `size` 1, 2, 4 or 8 bytes. */
  virtioConfigRead(offset: number, size: number): bigint;
  /** Write of the configuration space (only `bypass` is writable). */
  virtioConfigWrite(offset: number, size: number, value: bigint): void;
  /** The feature bits the driver acknowledged. */
  virtioFeatures(value: bigint): void;
  /**
   * Processes one request from the request queue; returns what the device
   * wrote at the start of the device-writable part (its length is the used
   * length: empty when the request was not completed, e.g. after a device
   * error). Never throws for guest input.
   */
  virtioRequest(data: Uint8Array, writable: number): Uint8Array;
  /** The oldest fault report the device put on the event queue and the driver has not taken, or undefined. */
  virtioTakeEvent(): Uint8Array | undefined;
  /** Device reset (status 0, trace-v1 `virtio.reset`): domains, mappings and endpoints dropped; `bypass` kept. */
  virtioReset(): void;
  /** True after a device error (virtio_error: DEVICE_NEEDS_RESET); requests are ignored until virtioReset(). */
  readonly needsReset: boolean;
}

/** A virtio-iommu model: no registers, requests instead. */
export interface VirtioIommuModel extends IOMMUModel, VirtioIommuOps {
  readonly kind: 'virtio-iommu';
}

/** Whether `model` is a virtio-iommu model (by its trace-v1 kind). */
export function isVirtioIommuModel(model: IOMMUModel): model is VirtioIommuModel {
  return model.kind === 'virtio-iommu';
}
