/**
 * The IOTLB: cached translations keyed by (bucket, key), where the device
 * chooses bucket and key per profile: QEMU 7.2 keys by
 * `(iova >> 12) | (DeviceID << 36)` (so iova bits 48-63 alias DeviceIDs),
 * the spec profile by (DeviceID, full 4 KiB frame). At most 1024 entries; an
 * insert into a full IOTLB flushes it first (QEMU AMDVI_IOTLB_MAX_SIZE; a
 * cache may drop entries at any time, so the spec profile does the same).
 * Internal.
 *
 * Layout (the hot path allocates nothing but the entry): a pool of 1024
 * slots filled in order, chained from 4096 hash heads through `next`; a
 * flush empties the pool and bumps the heads' generation (O(1)); a removal
 * compacts the pool and rebuilds the chains (at most 1024 entries).
 */
import type { IOMMUAccessFlags } from '../../core/access';
import type { IOMMUTLBEntry } from '../../core/tlb-entry';

export const AMDVI_IOTLB_MAX_SIZE = 1024;

/**
 * One cached translation: the entry handed out on a hit (the same object
 * every time; its perm is what a hit grants), with what invalidation matches
 * on.
 */
export class IotlbEntry implements IOMMUTLBEntry {
  constructor(
    readonly iova: bigint,
    readonly translatedAddr: bigint,
    readonly addrMask: bigint,
    readonly perm: IOMMUAccessFlags,
    /** DeviceID whose walk filled it. */
    readonly devid: number,
    /** DomainID of the DTE it was walked under (INVALIDATE_IOMMU_PAGES matches on it). */
    readonly domid: number,
    /** First 4 KiB frame and frame count of the page it covers (range invalidation). */
    readonly firstPfn: number,
    readonly pages: number,
  ) {}
}

const HEADS = 4096;
const TWO_32 = 4294967296;

function headOf(bucket: number, key: number): number {
  const h = Math.imul((key >>> 0) + Math.imul(bucket, 0x27d4eb2d), 0x9e3779b1) ^ Math.imul((key / TWO_32) >>> 0, 0x85ebca77);
  return (h >>> 20) & (HEADS - 1);
}

export class AmdViIotlb {
  /** Per hash head: first pool slot of its chain (valid when headGen matches `gen`). */
  private readonly head = new Int32Array(HEADS);
  private readonly headGen = new Uint32Array(HEADS);
  private gen = 1;
  /** The pool: slot i holds (bucket, key, entry) and the next slot of its chain (-1: end). */
  private readonly next = new Int32Array(AMDVI_IOTLB_MAX_SIZE);
  private readonly poolBucket = new Int32Array(AMDVI_IOTLB_MAX_SIZE);
  private readonly poolKey = new Float64Array(AMDVI_IOTLB_MAX_SIZE);
  private readonly pool: Array<IotlbEntry | undefined> = new Array<IotlbEntry | undefined>(AMDVI_IOTLB_MAX_SIZE).fill(undefined);
  private used = 0;

  get size(): number {
    return this.used;
  }

  private slotOf(bucket: number, key: number, h: number): number {
    if (this.headGen[h] !== this.gen) return -1;
    for (let i = this.head[h]!; i >= 0; i = this.next[i]!) {
      if (this.poolKey[i] === key && this.poolBucket[i] === bucket) return i;
    }
    return -1;
  }

  lookup(bucket: number, key: number): IotlbEntry | undefined {
    const i = this.slotOf(bucket, key, headOf(bucket, key));
    return i < 0 ? undefined : this.pool[i];
  }

  /** Caches `entry` under (bucket, key), replacing what was there (g_hash_table_replace); flushes everything first when full (QEMU). */
  insert(bucket: number, key: number, entry: IotlbEntry): void {
    const h = headOf(bucket, key);
    const old = this.slotOf(bucket, key, h);
    if (old >= 0) {
      this.pool[old] = entry;
      return;
    }
    if (this.used >= AMDVI_IOTLB_MAX_SIZE) this.clear();
    this.link(bucket, key, entry, h);
  }

  private link(bucket: number, key: number, entry: IotlbEntry, h: number): void {
    const i = this.used++;
    this.poolBucket[i] = bucket;
    this.poolKey[i] = key;
    this.pool[i] = entry;
    if (this.headGen[h] !== this.gen) {
      this.headGen[h] = this.gen;
      this.next[i] = -1;
    } else {
      this.next[i] = this.head[h]!;
    }
    this.head[h] = i;
  }

  remove(bucket: number, key: number): void {
    const i = this.slotOf(bucket, key, headOf(bucket, key));
    if (i >= 0) this.removeIf((e) => e === this.pool[i]);
  }

  clear(): void {
    this.gen = (this.gen + 1) >>> 0;
    if (this.gen === 0) {
      this.headGen.fill(0);
      this.gen = 1;
    }
    this.pool.fill(undefined, 0, this.used);
    this.used = 0;
  }

  /** Drops the entries `drop` selects (at most 1024 visited), keeping the others. */
  removeIf(drop: (e: IotlbEntry) => boolean): void {
    const n = this.used;
    const keep: Array<[number, number, IotlbEntry]> = [];
    for (let i = 0; i < n; i++) {
      const e = this.pool[i]!;
      if (!drop(e)) keep.push([this.poolBucket[i]!, this.poolKey[i]!, e]);
    }
    if (keep.length === n) return;
    this.clear();
    for (const [b, k, e] of keep) this.link(b, k, e, headOf(b, k));
  }
}
