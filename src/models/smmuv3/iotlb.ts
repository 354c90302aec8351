/**
 * The SMMUv3 IOTLB as QEMU keys it (smmu-common.c): by (ASID, VMID, iova,
 * TG, level), not by StreamID, so streams sharing an ASID share entries; it
 * holds 256 entries and is flushed whole when full (SMMU_IOTLB_MAX_SIZE).
 * QEMU 7.2 has no VMID in the key; the model uses VMID -1 for every entry of
 * a stage-1-only configuration, which is the same thing.
 *
 * Layout, for translate()'s hit path: (ASID, VMID, TG) is numbered once per
 * decoded configuration (a "bucket"), and the table is open-addressed over
 * typed arrays keyed by (4 KiB frame of the block's start, bucket * 4 +
 * level), with a count per level so a lookup skips levels nothing is cached
 * at. Invalidations (rare, at most 256 entries) rebuild the table from the
 * survivors. Internal to the smmuv3 model.
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
  /** Bucket number of (asid, vmid, tg). */
  readonly bucket: number;
  /** 4 KiB frame of the entry's first byte (its key). */
  readonly frame: number;
  /** The translation: iova and translatedAddr aligned to addrMask. */
  readonly entry: IOMMUTLBEntry;
}

const SLOTS = 1024; // power of two, four times the cap
const SLOT_MASK = SLOTS - 1;
const TWO32 = 0x1_0000_0000;

function slotOf(frame: number, tag: number): number {
  const lo = frame >>> 0;
  const hi = (frame / TWO32) >>> 0;
  const h = Math.imul(lo ^ Math.imul(hi, 0x85ebca77) ^ Math.imul(tag, 0xc2b2ae3d), 0x9e3779b1);
  return (h >>> 22) & SLOT_MASK;
}

export class SmmuIotlb {
  private readonly frames = new Float64Array(SLOTS);
  private readonly tags = new Int32Array(SLOTS);
  private readonly gens = new Uint32Array(SLOTS);
  private readonly slots: Array<IotlbEntry | undefined> = new Array<IotlbEntry | undefined>(SLOTS).fill(undefined);
  /** Slots whose stamp equals `gen` are occupied. */
  private gen = 1;
  private count = 0;
  private readonly perLevel = new Int32Array(4);
  private readonly bucketIds = new Map<string, number>();

  /** The number of (asid, vmid, tg) (-1 for "none"), assigned on first use. */
  bucket(asid: number, vmid: number, tg: number): number {
    const key = `${asid}/${vmid}/${tg}`;
    let id = this.bucketIds.get(key);
    if (id === undefined) {
      id = this.bucketIds.size;
      this.bucketIds.set(key, id);
    }
    return id;
  }

  get size(): number {
    return this.count;
  }

  private find(frame: number, tag: number): number {
    let s = slotOf(frame, tag);
    const gen = this.gen;
    for (;;) {
      if (this.gens[s] !== gen) return -1;
      if (this.frames[s] === frame && this.tags[s] === tag) return s;
      s = (s + 1) & SLOT_MASK;
    }
  }

  /** The entry of `bucket` holding 4 KiB frame `pfn`, trying levels `start`..3 in order (QEMU smmu_iotlb_lookup); `frames[l]` is the block size of level l in frames. */
  lookup(bucket: number, start: number, frames: readonly number[], pfn: number): IotlbEntry | undefined {
    if (this.count === 0) return undefined;
    const n = this.perLevel;
    for (let level = start; level <= 3; level++) {
      if (n[level] === 0) continue;
      const f = frames[level]!;
      const s = this.find(pfn - (pfn % f), bucket * 4 + level);
      if (s >= 0) return this.slots[s];
    }
    return undefined;
  }

  /** The entry with exactly this key, or undefined. */
  get(bucket: number, level: number, frame: number): IotlbEntry | undefined {
    const s = this.find(frame, bucket * 4 + level);
    return s < 0 ? undefined : this.slots[s];
  }

  /** Inserts (QEMU smmu_iotlb_insert: a full IOTLB is flushed first). */
  insert(e: IotlbEntry): void {
    if (this.count >= IOTLB_MAX) this.clear();
    this.put(e);
  }

  private put(e: IotlbEntry): void {
    const tag = e.bucket * 4 + e.level;
    let s = slotOf(e.frame, tag);
    const gen = this.gen;
    for (;;) {
      if (this.gens[s] !== gen) {
        this.gens[s] = gen;
        this.frames[s] = e.frame;
        this.tags[s] = tag;
        this.count++;
        this.perLevel[e.level]!++;
        break;
      }
      if (this.frames[s] === e.frame && this.tags[s] === tag) break;
      s = (s + 1) & SLOT_MASK;
    }
    this.slots[s] = e;
  }

  clear(): void {
    this.gen++;
    if (this.gen === 0xffff_ffff) {
      this.gens.fill(0);
      this.gen = 1;
    }
    this.slots.fill(undefined);
    this.count = 0;
    this.perLevel.fill(0);
  }

  /** Removes every entry `pred` selects; returns the removed ones. */
  removeWhere(pred: (e: IotlbEntry) => boolean): IotlbEntry[] {
    if (this.count === 0) return [];
    const removed: IotlbEntry[] = [];
    const kept: IotlbEntry[] = [];
    for (const e of this.entries()) (pred(e) ? removed : kept).push(e);
    if (removed.length === 0) return removed;
    this.clear();
    for (const e of kept) this.put(e);
    return removed;
  }

  /** Every entry (invalidation scans, tests). */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    const gen = this.gen;
    for (let s = 0; s < SLOTS; s++) if (this.gens[s] === gen) out.push(this.slots[s]!);
    return out;
  }
}
