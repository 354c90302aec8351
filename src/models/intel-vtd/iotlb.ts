/**
 * The IOTLB as QEMU 7.2 keeps it (`s->iotlb`): entries keyed by address space
 * (source id and PASID), level (1: 4 KiB, 2: 2 MiB, 3: 1 GiB) and the 4 KiB
 * frame number of the leaf's first page, looked up level 1 first; at most
 * 1024 entries, the whole table flushed when an insert finds it full
 * (VTD_IOTLB_MAX_SIZE). Internal.
 *
 * Hot path: an open-addressing hash table over typed arrays (frame numbers of
 * a 64-bit space do not fit a small integer, and a `Map` keyed by such
 * doubles allocates on every insert); an insert stores numbers and the
 * translation's reference, and allocates nothing. Slots carry a generation
 * stamp, so a flush is O(1); removal rebuilds the table, which holds at most
 * 1024 entries.
 */
import type { IOMMUTLBEntry } from '../../core/tlb-entry';

/** VTD_IOTLB_MAX_SIZE. */
export const VTD_IOTLB_MAX_SIZE = 1024;

/** What `removeIf` shows of one cached entry. */
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

/** The mutable form of VtdIotlbEntry that `removeIf` fills per slot. */
interface SlotView {
  entry: IOMMUTLBEntry;
  did: number;
  gfn: number;
  pages: number;
  tag: number;
}

export class VtdIotlb {
  private readonly gfns = new Float64Array(SLOTS);
  private readonly tags = new Int32Array(SLOTS);
  private readonly gens = new Uint32Array(SLOTS);
  private readonly dids = new Int32Array(SLOTS);
  private readonly pages = new Int32Array(SLOTS);
  private readonly entries: Array<IOMMUTLBEntry | undefined> = new Array<IOMMUTLBEntry | undefined>(SLOTS).fill(undefined);
  /** Slots whose stamp equals `gen` are occupied. */
  private gen = 1;
  private count = 0;
  /** Entries per level (index 1..3), so a lookup skips levels nothing is cached at. */
  private readonly perLevel = new Int32Array(4);

  get size(): number {
    return this.count;
  }

  /** The slot holding (gfn, tag), or -1. */
  private find(gfn: number, tag: number): number {
    let s = slotOf(gfn, tag);
    const gen = this.gen;
    for (;;) {
      if (this.gens[s] !== gen) return -1;
      if (this.gfns[s] === gfn && this.tags[s] === tag) return s;
      s = (s + 1) & SLOT_MASK;
    }
  }

  /** The translation of address space `space` covering 4 KiB frame `pfn` (levels 1, 2, 3 in turn, as vtd_lookup_iotlb). */
  lookup(space: number, pfn: number): IOMMUTLBEntry | undefined {
    const n = this.perLevel;
    const base = space * 4;
    let s = -1;
    if (n[1]! > 0) s = this.find(pfn, base + 1);
    if (s < 0 && n[2]! > 0) s = this.find(pfn - (pfn % PAGES_L2), base + 2);
    if (s < 0 && n[3]! > 0) s = this.find(pfn - (pfn % PAGES_L3), base + 3);
    return s < 0 ? undefined : this.entries[s];
  }

  /** Caches a leaf of address space `space` at `level`; flushes everything first when full (QEMU). */
  insert(space: number, level: number, entry: IOMMUTLBEntry, did: number, gfn: number, pages: number): void {
    if (this.count >= VTD_IOTLB_MAX_SIZE) this.clear();
    this.put(gfn, space * 4 + level, entry, did, pages);
  }

  private put(gfn: number, tag: number, entry: IOMMUTLBEntry, did: number, pages: number): void {
    let s = slotOf(gfn, tag);
    const gen = this.gen;
    for (;;) {
      if (this.gens[s] !== gen) {
        this.gens[s] = gen;
        this.gfns[s] = gfn;
        this.tags[s] = tag;
        this.count++;
        this.perLevel[tag & 3]!++;
        break;
      }
      if (this.gfns[s] === gfn && this.tags[s] === tag) break; // replace (g_hash_table_replace)
      s = (s + 1) & SLOT_MASK;
    }
    this.entries[s] = entry;
    this.dids[s] = did;
    this.pages[s] = pages;
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

  /**
   * Removes the entries `drop` selects (domain- and page-selective
   * invalidation). `drop` sees each entry through one reused object, valid
   * only during its call.
   */
  removeIf(drop: (e: VtdIotlbEntry) => boolean): void {
    const view = this.view;
    const keep = this.keep;
    let kept = 0;
    let dropped = false;
    for (let s = 0; s < SLOTS; s++) {
      if (this.gens[s] !== this.gen) continue;
      view.entry = this.entries[s]!;
      view.did = this.dids[s]!;
      view.gfn = this.gfns[s]!;
      view.pages = this.pages[s]!;
      view.tag = this.tags[s]!;
      if (drop(view)) dropped = true;
      else keep[kept++] = s;
    }
    if (!dropped) return;
    // Re-insert the kept entries into a fresh generation (their old slots may
    // sit behind dropped ones on a probe run); put overwrites slots, so copy
    // them aside first.
    const gfns = this.keepGfns;
    const tags = this.keepTags;
    const dids = this.keepDids;
    const pages = this.keepPages;
    const entries = this.keepEntries;
    for (let k = 0; k < kept; k++) {
      const s = keep[k]!;
      gfns[k] = this.gfns[s]!;
      tags[k] = this.tags[s]!;
      dids[k] = this.dids[s]!;
      pages[k] = this.pages[s]!;
      entries[k] = this.entries[s];
    }
    this.clear();
    for (let k = 0; k < kept; k++) {
      this.put(gfns[k]!, tags[k]!, entries[k]!, dids[k]!, pages[k]!);
      entries[k] = undefined;
    }
  }

  /** removeIf's scratch: the object `drop` sees, and the kept entries (at most the cap). */
  private readonly view: SlotView = { entry: { iova: 0n, translatedAddr: 0n, addrMask: 0n, perm: 0 }, did: 0, gfn: 0, pages: 0, tag: 0 };
  private readonly keep = new Int32Array(VTD_IOTLB_MAX_SIZE);
  private readonly keepGfns = new Float64Array(VTD_IOTLB_MAX_SIZE);
  private readonly keepTags = new Int32Array(VTD_IOTLB_MAX_SIZE);
  private readonly keepDids = new Int32Array(VTD_IOTLB_MAX_SIZE);
  private readonly keepPages = new Int32Array(VTD_IOTLB_MAX_SIZE);
  private readonly keepEntries: Array<IOMMUTLBEntry | undefined> = new Array<IOMMUTLBEntry | undefined>(VTD_IOTLB_MAX_SIZE).fill(undefined);
}
