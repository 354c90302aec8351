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

export type VtdIotlbTable = Map<number, VtdIotlbEntry>;

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
    if (table.size === 0) return undefined;
    return table.get(pfn * 4 + 1)
      ?? table.get((pfn - (pfn % PAGES_L2)) * 4 + 2)
      ?? table.get((pfn - (pfn % PAGES_L3)) * 4 + 3);
  }

  insert(table: VtdIotlbTable, level: number, e: VtdIotlbEntry): void {
    if (this.count >= VTD_IOTLB_MAX_SIZE) this.clear();
    const key = e.gfn * 4 + level;
    if (!table.has(key)) this.count++;
    table.set(key, e);
    this.tables.add(table);
  }

  clear(): void {
    for (const t of this.tables) t.clear();
    this.tables.clear();
    this.count = 0;
  }

  /** Removes the entries `drop` selects (domain- and page-selective invalidation). */
  removeIf(drop: (e: VtdIotlbEntry) => boolean): void {
    for (const t of this.tables) {
      for (const [key, e] of t) {
        if (drop(e)) {
          t.delete(key);
          this.count--;
        }
      }
      if (t.size === 0) this.tables.delete(t);
    }
  }

  /** Forgets one address space's table (its entries leave the count). */
  dropTable(table: VtdIotlbTable): void {
    if (!this.tables.has(table)) return;
    this.count -= table.size;
    table.clear();
    this.tables.delete(table);
  }
}
