/**
 * The IOTLB as QEMU 7.2 keeps it (`s->iotlb`): entries keyed by source id,
 * PASID and the frame number of the leaf at its level (1: 4 KiB, 2: 2 MiB,
 * 3: 1 GiB), looked up level 1 first; at most 1024 entries, the whole table
 * flushed when an insert finds it full (VTD_IOTLB_MAX_SIZE). Internal.
 *
 * Each address space (sid, PASID) owns one `Map`, keyed by
 * `frame-of-leaf-base * 4 + level` (exact: frames of a 48-bit space are below
 * 2^36); the global count enforces the cap across all of them.
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
}

/** One address space's entries, with a count per level so a lookup skips empty levels. */
export class VtdIotlbTable {
  readonly map = new Map<number, VtdIotlbEntry>();
  /** Entries at level 1, 2, 3 (index 0 unused). */
  readonly perLevel = [0, 0, 0, 0];
}

const PAGES_L2 = 512;
const PAGES_L3 = 512 * 512;

export class VtdIotlb {
  private count = 0;
  private readonly tables = new Set<VtdIotlbTable>();

  get size(): number {
    return this.count;
  }

  /** The entry covering 4 KiB frame `pfn` (levels 1, 2, 3 in turn, as vtd_lookup_iotlb). */
  lookup(table: VtdIotlbTable, pfn: number): VtdIotlbEntry | undefined {
    const n = table.perLevel;
    let e: VtdIotlbEntry | undefined;
    if (n[1]! > 0 && (e = table.map.get(pfn * 4 + 1)) !== undefined) return e;
    if (n[2]! > 0 && (e = table.map.get((pfn - (pfn % PAGES_L2)) * 4 + 2)) !== undefined) return e;
    if (n[3]! > 0) return table.map.get((pfn - (pfn % PAGES_L3)) * 4 + 3);
    return undefined;
  }

  insert(table: VtdIotlbTable, level: number, e: VtdIotlbEntry): void {
    if (this.count >= VTD_IOTLB_MAX_SIZE) this.clear();
    const key = e.gfn * 4 + level;
    if (!table.map.has(key)) {
      this.count++;
      table.perLevel[level]!++;
    }
    table.map.set(key, e);
    this.tables.add(table);
  }

  clear(): void {
    for (const t of this.tables) {
      t.map.clear();
      t.perLevel.fill(0);
    }
    this.tables.clear();
    this.count = 0;
  }

  /** Removes the entries `drop` selects (domain- and page-selective invalidation). */
  removeIf(drop: (e: VtdIotlbEntry) => boolean): void {
    for (const t of this.tables) {
      for (const [key, e] of t.map) {
        if (drop(e)) {
          t.map.delete(key);
          t.perLevel[key & 3]!--;
          this.count--;
        }
      }
      if (t.map.size === 0) this.tables.delete(t);
    }
  }
}
