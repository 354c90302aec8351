/**
 * The SMMUv3 IOTLB as QEMU keys it (smmu-common.c): by (ASID, VMID, iova,
 * TG, level), not by StreamID, so streams sharing an ASID share entries; it
 * holds 256 entries and is flushed whole when full (SMMU_IOTLB_MAX_SIZE).
 * QEMU 7.2 has no VMID in the key; the model uses VMID -1 for every entry of
 * a stage-1-only configuration, which is the same thing.
 *
 * Layout: one bucket per (ASID, VMID, TG), held by the decoded configuration
 * of every stream that uses it, so a hit costs one Map lookup per level the
 * walk could have ended at. Internal to the smmuv3 model.
 */
import type { IOMMUTLBEntry } from '../../core/tlb-entry';

export const IOTLB_MAX = 256;

/** One cached translation (leaf of a walk, or a combined stage-1+2 result). */
export interface IotlbEntry {
  readonly asid: number;
  readonly vmid: number;
  readonly tg: number;
  readonly level: number;
  /** Stage 1 (or the combined nested result): true; stage 2 only: false. */
  readonly s1: boolean;
  /** Stage 1 result of a nested configuration (TLBI_S2_IPA must drop it: its IPA is not kept). */
  readonly nested: boolean;
  /** The translation: iova and translatedAddr aligned to addrMask. */
  readonly entry: IOMMUTLBEntry;
}

/** The entries of one (ASID, VMID, TG), keyed by `aligned iova frame * 4 + level`. */
export type IotlbBucket = Map<number, IotlbEntry>;

/** The key of a block of `level` at input address `ia` (a number below 2^48) with leaf shift `shift`. */
export function slotKey(ia: number, shift: number, level: number): number {
  return Math.floor(ia / 2 ** shift) * 4 + level;
}

export class SmmuIotlb {
  private readonly buckets = new Map<number, IotlbBucket>();
  private count = 0;

  /** The bucket of (asid, vmid, tg) (-1 for "none"), created on first use and kept across flushes. */
  bucket(asid: number, vmid: number, tg: number): IotlbBucket {
    const key = ((asid + 1) * 0x20000 + (vmid + 1)) * 4 + tg;
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = new Map();
      this.buckets.set(key, b);
    }
    return b;
  }

  get size(): number {
    return this.count;
  }

  /** Inserts (QEMU smmu_iotlb_insert: a full IOTLB is flushed first). */
  insert(bucket: IotlbBucket, key: number, e: IotlbEntry): void {
    if (this.count >= IOTLB_MAX) this.clear();
    if (!bucket.has(key)) this.count++;
    bucket.set(key, e);
  }

  clear(): void {
    for (const b of this.buckets.values()) b.clear();
    this.count = 0;
  }

  /** Removes every entry `pred` selects; returns the removed ones. */
  removeWhere(pred: (e: IotlbEntry) => boolean): IotlbEntry[] {
    const removed: IotlbEntry[] = [];
    if (this.count === 0) return removed;
    for (const b of this.buckets.values()) {
      for (const [k, e] of b) {
        if (pred(e)) {
          b.delete(k);
          removed.push(e);
        }
      }
    }
    this.count -= removed.length;
    return removed;
  }

  /** Every entry (inspection, tests). */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    for (const b of this.buckets.values()) out.push(...b.values());
    return out;
  }
}
