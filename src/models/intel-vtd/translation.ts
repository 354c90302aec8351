/**
 * Second-level translation structures of Intel VT-d as QEMU 7.2 reads them:
 * root and context tables (legacy and scalable mode), the PASID directory and
 * table (RID_PASID), and second-level page tables. Pure functions of guest
 * memory and the model configuration: the device (device.ts) owns the caches
 * and the fault recording, this module only says what the tables say.
 *
 * Fault reasons are the FRCD.FR codes QEMU 7.2 reports (see
 * shared/reference/qemu-7.2-findings.md): 0x1 root not present, 0x2 context not
 * present, 0x3 invalid context, 0x4 beyond AW, 0x5 write / 0x6 read not
 * permitted (also for not-present PTEs), 0x7 paging entry unreadable, 0x8 root
 * read error, 0x9 context read error, 0xa root reserved, 0xb context reserved,
 * 0xc PTE reserved, 0xe interrupt range (legacy), 0x58 invalid PASID entry,
 * 0x87 interrupt range (scalable).
 */
import type { GuestMemory } from '../../memory/guest-memory';
import type { LeafWalker } from '../../core/leaf';
import type { VtdConfig } from './config';

/** A resolved device context: what a translation of this device needs. */
export interface VtdContext {
  /** Domain id (legacy context DID, or PASID entry DID in scalable mode). */
  did: number;
  /** Pass-through (legacy TT=2, scalable PGTT=4): iova = gpa. */
  passThrough: boolean;
  /** Legacy TT=1 (device-TLB allowed) is translated like TT=0. */
  /** Guest-physical address of the second-level root table (SLPTPTR). */
  slptptr: number;
  /** Second-level paging levels: 3 or 4. */
  levels: 3 | 4;
  /** Fault processing disable (context FPD, or PASID dir/entry FPD in scalable mode). */
  fpd: boolean;
  /** PASID the context was resolved for (scalable mode: the RID_PASID); undefined in legacy mode. */
  pasid: number | undefined;
}

/** Why a context could not be resolved. */
export interface VtdContextFault {
  reason: number;
  /** FPD suppresses recording of this fault (qualified fault and FPD set where QEMU reads it). */
  suppressed: boolean;
}

export type VtdContextResult = VtdContext | VtdContextFault;

export function isContextFault(r: VtdContextResult): r is VtdContextFault {
  return (r as VtdContextFault).reason !== undefined;
}

/**
 * Resolves the context of requester `sid` (bus << 8 | devfn) from the root
 * table at `rootTable` (RTADDR latched at SRTP; `scalableRoot` = RTADDR.TTM
 * bit 10 with scalable mode on). `pasid` selects a PASID entry in scalable
 * mode (default: the context's RID_PASID).
 */
export declare function resolveContext(
  mem: GuestMemory, cfg: VtdConfig, rootTable: number, scalableRoot: boolean, sid: number, pasid?: number,
): VtdContextResult;

/** A leaf found by `walkSecondLevel`: `pages` 4 KiB frames at `iovaPfn` -> `xlatPfn`, with the AND of R/W down the walk. */
export interface VtdLeaf {
  iovaPfn: number;
  pages: number;
  xlatPfn: number;
  /** IOMMUAccessFlags: bit 0 read, bit 1 write. */
  perm: number;
  /** Level of the leaf: 1 (4K), 2 (2M), 3 (1G). */
  level: number;
}

/**
 * Translates one IOVA (as a page frame number) through the second-level
 * tables of `ctx` for an access (`write` true for a write, false for a read;
 * QEMU checks read when the request has no permission). Returns the leaf, or
 * a fault reason (0x4, 0x5, 0x6, 0x7, 0xc, 0xe / 0x87). `out` is filled to
 * avoid allocation on the hot path; the return value is 0 on success.
 */
export declare function walkSecondLevel(
  mem: GuestMemory, cfg: VtdConfig, ctx: VtdContext, iovaPfn: number, write: boolean, out: VtdLeaf,
): number;

/**
 * A LeafWalker over the second-level tables of `ctx`, for the notifier sync:
 * reports every valid leaf intersecting the range, whole, in order; skips
 * unreadable and reserved entries silently (as QEMU's vtd_page_walk does);
 * clips to 2^min(AGAW, awBits). Visits at most `budget` entries and then
 * throws `VtdWalkLimitError` (a hostile guest's tables that alias one table
 * everywhere must not hang the host).
 */
export declare function secondLevelWalker(mem: GuestMemory, cfg: VtdConfig, ctx: VtdContext, budget: number): LeafWalker;

export class VtdWalkLimitError extends Error {
  override readonly name = 'VtdWalkLimitError';
}
