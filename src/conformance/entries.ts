/**
 * The kit's own bookkeeping of translations: a small sorted list of
 * non-overlapping entries [iova, last] -> xlat with perm. It models both the
 * guest's page tables (from the adapter calls the kit made) and each
 * listener's view (from the events it received). It is deliberately separate
 * from the core's IntervalMap: the kit checks implementations built on the
 * core, so it must not share their code. Sizes stay small (scenarios create
 * tens to hundreds of entries), so linear scans are fine.
 */

/** One translation: [iova, last] (inclusive) -> xlat, perm (1 r, 2 w, 3 rw). */
export interface KitEntry {
  iova: bigint;
  last: bigint;
  xlat: bigint;
  perm: number;
}

import { hex } from '../core/guest-addr';
import { appendRun, firstDifference } from '../core/runs';
import type { TranslationRun } from '../core/runs';

export class EntrySet {
  private list: KitEntry[] = [];

  get entries(): readonly KitEntry[] {
    return this.list;
  }

  get size(): number {
    return this.list.length;
  }

  clear(): void {
    this.list = [];
  }

  copy(): EntrySet {
    const c = new EntrySet();
    c.list = this.list.map((e) => ({ ...e }));
    return c;
  }

  /** Entries that intersect [lo, hi]. */
  overlapping(lo: bigint, hi: bigint): KitEntry[] {
    return this.list.filter((e) => e.iova <= hi && e.last >= lo);
  }

  /** Removes entries that intersect [lo, hi] (whole). */
  removeOverlapping(lo: bigint, hi: bigint): void {
    this.list = this.list.filter((e) => !(e.iova <= hi && e.last >= lo));
  }

  /** Removes entries wholly inside [lo, hi]. */
  removeContained(lo: bigint, hi: bigint): void {
    this.list = this.list.filter((e) => !(e.iova >= lo && e.last <= hi));
  }

  /** Adds an entry; the caller made room. */
  add(e: KitEntry): void {
    let i = this.list.length;
    while (i > 0 && this.list[i - 1]!.iova > e.iova) i--;
    this.list.splice(i, 0, e);
  }

  /** Maximal runs of the translation, clipped to [lo, hi]. */
  runs(lo: bigint, hi: bigint): TranslationRun[] {
    const out: TranslationRun[] = [];
    for (const e of this.list) {
      if (e.last < lo || e.iova > hi) continue;
      const start = e.iova < lo ? lo : e.iova;
      appendRun(out, start, e.last > hi ? hi : e.last, e.xlat + (start - e.iova), e.perm);
    }
    return out;
  }

  /** Whether this set translates every page of [lo, hi] exactly as `other` does. */
  covers(other: KitEntry, lo: bigint, hi: bigint): boolean {
    const want = [{ start: lo, end: hi, xlat: other.xlat + (lo - other.iova), perm: other.perm }];
    return firstDifference(want, this.runs(lo, hi)) === undefined;
  }
}

const PERM = ['none', 'r', 'w', 'rw'];
/** Compares two sets inside [lo, hi]. */
export function diffSets(want: EntrySet, got: EntrySet, lo: bigint, hi: bigint): string | undefined {
  return firstDifference(want.runs(lo, hi), got.runs(lo, hi));
}

export function describeEntry(e: KitEntry): string {
  return `[${hex(e.iova)}, ${hex(e.last)}] -> ${hex(e.xlat)} ${PERM[e.perm] ?? e.perm}`;
}
