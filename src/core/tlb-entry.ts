import type { IOMMUAccessFlags } from './access';

/**
 * One IOVA translation, as QEMU's `IOMMUTLBEntry`: it covers
 * [iova, iova + addrMask]; `addrMask + 1` is a power of two and `iova` (and,
 * for a mapping, `translatedAddr`) is aligned to it (rule C2). `addrMask` is
 * 0xfff for a 4 KiB translation.
 *
 * Values are bigint because an IOVA is a 64-bit quantity: the last page of the
 * space, and `addrMask = 2^64 - 1`, must be representable.
 *
 * *NOTE*: entries handed to a notifier are only valid during the callback
 * (as in QEMU); a listener that keeps one must copy it. Models may reuse them.
 */
export interface IOMMUTLBEntry {
  /** The address space `translatedAddr` is in (opaque; guest memory when absent). */
  targetAs?: unknown;
  iova: bigint;
  translatedAddr: bigint;
  addrMask: bigint;
  perm: IOMMUAccessFlags;
}

/**
 * Notifier flags (QEMU `IOMMUNotifierFlag`). A notifier asks for a set of
 * event types; `ALL` is MAP | UNMAP as in contract.md.
 */
export const IOMMUNotifierFlag = {
  NONE: 0,
  /** Valid -> invalid transitions (cache invalidations). */
  UNMAP: 0x1,
  /** Invalid -> valid transitions (newly created entries). Needs an exact shadow. */
  MAP: 0x2,
  /** Device-IOTLB invalidations (ATS), as sent by the guest. */
  DEVIOTLB_UNMAP: 0x4,
  /** MAP | UNMAP. */
  IOTLB_EVENTS: 0x3,
  /** MAP | UNMAP (contract.md). */
  ALL: 0x3,
} as const;
export type IOMMUNotifierFlag = number;

/** The type of one event: exactly one of UNMAP, MAP, DEVIOTLB_UNMAP. */
export type IOMMUEventType = 0x1 | 0x2 | 0x4;

/** One notification (QEMU `IOMMUTLBEvent`). */
export interface IOMMUTLBEvent {
  type: IOMMUEventType;
  entry: IOMMUTLBEntry;
}

/** Name of an event type or flag set, for messages and traces (`MAP|UNMAP`). */
export function flagsToString(flags: number): string {
  const names: string[] = [];
  if (flags & IOMMUNotifierFlag.MAP) names.push('MAP');
  if (flags & IOMMUNotifierFlag.UNMAP) names.push('UNMAP');
  if (flags & IOMMUNotifierFlag.DEVIOTLB_UNMAP) names.push('DEVIOTLB_UNMAP');
  return names.length ? names.join('|') : 'NONE';
}
