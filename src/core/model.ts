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
 * What a trace replayer, recorder or conformance kit needs of an IOMMU model.
 * Intel VT-d is the first implementation; virtio-iommu, SMMUv3 and AMD-Vi
 * follow on the same interface.
 */
export interface IOMMUModel {
  /** Trace-v1 model name (`intel-vtd`, ...). */
  readonly kind: string;
  readonly events: TypedEmitter<IOMMUModelEvents>;
  /** Guest read of a register at byte offset `offset` (size 4 or 8). */
  mmioRead(offset: number, size: 4 | 8): bigint;
  /** Guest write of a register. Guest errors become modelled behaviour, never exceptions. */
  mmioWrite(offset: number, size: 4 | 8, value: bigint): void;
  /** One translation as a device requests it; fills caches and records faults like a DMA. */
  translate(sid: number, iova: bigint, access: IOMMUAccessFlags, pasid?: number): TranslateResult;
  /** The address space of a device, created on first use. */
  addressSpace(sid: number, pasid?: number): IOMMUAddressSpace;
  /** System reset: registers to their reset values, caches dropped, notifiers unmapped (C8). */
  reset(): void;
}
