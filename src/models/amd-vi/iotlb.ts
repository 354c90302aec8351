/**
 * The IOTLB: cached translations keyed by (bucket, key), where the device
 * chooses bucket and key per profile: QEMU 7.2 keys by
 * `(iova >> 12) | (DeviceID << 36)` (so iova bits 48-63 alias DeviceIDs),
 * the spec profile by (DeviceID, full 4 KiB frame). At most 1024 entries; an
 * insert into a full IOTLB flushes it first (QEMU AMDVI_IOTLB_MAX_SIZE; a
 * cache may drop entries at any time, so the spec profile does the same).
 * Internal.
 */
import type { IOMMUTLBEntry } from '../../core/tlb-entry';

export const AMDVI_IOTLB_MAX_SIZE = 1024;

/** One cached translation. */
export interface IotlbSlot {
  /** DeviceID whose walk filled it. */
  readonly devid: number;
  /** DomainID of the DTE it was walked under (INVALIDATE_IOMMU_PAGES matches on it). */
  readonly domid: number;
  /** The translation handed out on a hit (the same object every time); its perm is what a hit grants. */
  readonly entry: IOMMUTLBEntry;
  /** First 4 KiB frame and frame count of the page it covers (range invalidation). */
  readonly firstPfn: number;
  readonly pages: number;
}

export class AmdViIotlb {
  private readonly buckets: Array<Map<number, IotlbSlot> | undefined> = [];
  /** Buckets that may hold entries. */
  private readonly used: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  lookup(bucket: number, key: number): IotlbSlot | undefined {
    return this.buckets[bucket]?.get(key);
  }

  insert(bucket: number, key: number, slot: IotlbSlot): void {
    if (this.count >= AMDVI_IOTLB_MAX_SIZE) this.clear();
    let m = this.buckets[bucket];
    if (m === undefined) {
      m = new Map();
      this.buckets[bucket] = m;
      this.used.push(bucket);
    }
    const before = m.size;
    m.set(key, slot);
    this.count += m.size - before;
  }

  remove(bucket: number, key: number): void {
    const m = this.buckets[bucket];
    if (m !== undefined && m.delete(key)) this.count--;
  }

  clear(): void {
    for (const b of this.used) this.buckets[b] = undefined;
    this.used.length = 0;
    this.count = 0;
  }

  /** Drops the entries `drop` selects (at most 1024 visited). */
  removeIf(drop: (s: IotlbSlot) => boolean): void {
    for (const b of this.used) {
      const m = this.buckets[b];
      if (m === undefined) continue;
      for (const [k, s] of m) {
        if (drop(s)) {
          m.delete(k);
          this.count--;
        }
      }
    }
  }
}
