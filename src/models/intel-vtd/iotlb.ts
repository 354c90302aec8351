/**
 * The IOTLB as QEMU 7.2 keeps it (`s->iotlb`): entries keyed by address space
 * (source id and PASID), level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) and the 4 KiB
 * frame number of the leaf's first page, looked up level 1 first; at most
 * 1024 entries, the whole table flushed when an insert finds it full
 * (VTD_IOTLB_MAX_SIZE). Internal.
 *
 * Hot path: an open-addressing hash table over typed arrays (frame numbers of
 * a 64-bit space do not fit a small integer, and a `Map` keyed by such
 * doubles allocates on every insert). Slots carry a generation stamp, so a
 * flush is O(1); removal rebuilds the table, which holds at most 1024 entries.
 */
import type { IOMMUTLBEntry } from '../../core/tlb-entry';

/** VTD_IOTLB_MAX_SIZE. */
export const VTD_IOTLB_MAX_SIZE = 1024;

export interface VtdIotlbEntry {
  /** The translation handed out on a hit (the same object every time). */
  readonly entry: IOMMUTLBEntry;
  /** Domain id of the context the entry was walked under (DSI/PSI match on it). */
  readonly did: number;
  /** 4 KiB frame of the leaf's first page. */
  readonly gfn: number;
  /** 4 KiB frames the leaf covers (1, 512 or 262144). */
  readonly pages: number;
  /** Address space id (owner's numbering) and level, packed as `space * 4 + level`. */
  readonly tag: number;
}

const SLOTS = 2048; // power of two, twice the cap: load factor <= 0.5
const SLOT_MASK = SLOTS - 1;
const PAGES_L2 = 512;
const PAGES_L3 = 512 * 512;
const TWO_32 = 4294967296;

function slotOf(gfn: number, tag: number): number {
  const lo = gfn >>> 0;
  const hi = (gfn / TWO_32) >>> 0;
  const h = Math.imul(lo ^ Math.imul(hi, 0x85ebca77) ^ Math.imul(tag, 0xc2b2ae3d), 0x9e3779b1);
  return (h >>> 21) & SLOT_MASK;
}

export class VtdIotlb {
  private readonly gfns = new Float64Array(SLOTS);
  private readonly tags = new Int32Array(SLOTS);
  private readonly gens = new Uint32Array(SLOTS);
  private readonly entries: Array<VtdIotlbEntry | undefined> = new Array<VtdIotlbEntry | undefined>(SLOTS).fill(undefined);
  /** Slots whose stamp equals `gen` are occupied. */
  private gen = 1;
  private count = 0;
  /** Entries per level (index 1..3), so a lookup skips levels nothing is cached at. */
  private readonly perLevel = new Int32Array(4);

  get size(): number {
    return this.count;
  }

  private find(gfn: number, tag: number): VtdIotlbEntry | undefined {
    let s = slotOf(gfn, tag);
    const gen = this.gen;
    for (;;) {
      if (this.gens[s] !== gen) return undefined;
      if (this.gfns[s] === gfn && this.tags[s] === tag) return this.entries[s];
      s = (s + 1) & SLOT_MASK;
    }
  }

  /** The entry of address space `space` covering 4 KiB frame `pfn` (levels 1, 2, 3 in turn, as vtd_lookup_iotlb). */
  lookup(space: number, pfn: number): VtdIotlbEntry | undefined {
    const n = this.perLevel;
    const base = space * 4;
    let e: VtdIotlbEntry | undefined;
    if (n[1]! > 0 && (e = this.find(pfn, base + 1)) !== undefined) return e;
    if (n[2]! > 0 && (e = this.find(pfn - (pfn % PAGES_L2), base + 2)) !== undefined) return e;
    if (n[3]! > 0) return this.find(pfn - (pfn % PAGES_L3), base + 3);
    return undefined;
  }

  /** Caches a leaf of address space `space` at `level`; flushes everything first when full (QEMU). */
  insert(space: number, level: number, entry: IOMMUTLBEntry, did: number, gfn: number, pages: number): void {
    if (this.count >= VTD_IOTLB_MAX_SIZE) this.clear();
    this.put({ entry, did, gfn, pages, tag: space * 4 + level });
  }

  private put(e: VtdIotlbEntry): void {
    let s = slotOf(e.gfn, e.tag);
    const gen = this.gen;
    for (;;) {
      if (this.gens[s] !== gen) {
        this.gens[s] = gen;
        this.gfns[s] = e.gfn;
        this.tags[s] = e.tag;
        this.entries[s] = e;
        this.count++;
        this.perLevel[e.tag & 3]!++;
        return;
      }
      if (this.gfns[s] === e.gfn && this.tags[s] === e.tag) {
        this.entries[s] = e; // replace (g_hash_table_replace)
        return;
      }
      s = (s + 1) & SLOT_MASK;
    }
  }

  clear(): void {
    if (this.count === 0) return;
    this.gen = (this.gen + 1) >>> 0;
    if (this.gen === 0) {
      this.gens.fill(0);
      this.gen = 1;
    }
    this.entries.fill(undefined);
    this.count = 0;
    this.perLevel.fill(0);
  }

  /** Removes the entries `drop` selects (domain- and page-selective invalidation). */
  removeIf(drop: (e: VtdIotlbEntry) => boolean): void {
    const keep: VtdIotlbEntry[] = [];
    let dropped = false;
    for (let s = 0; s < SLOTS; s++) {
      if (this.gens[s] !== this.gen) continue;
      const e = this.entries[s]!;
      if (drop(e)) dropped = true;
      else keep.push(e);
    }
    if (!dropped) return;
    this.clear();
    for (const e of keep) this.put(e);
  }
}
