/**
 * The fuzzer's own picture of what a listener was told, built only from the
 * events it received (never from the notifier list's state), and checked
 * against the contract (../shared/spec/contract.md) as each event arrives:
 * C2 shape, C3 type/perm, C4 invalid -> valid only, C5 whole entries, C6
 * filtering, C10 nothing after removal. A sorted array of disjoint entries
 * (bigint bounds, so any 64-bit event fits); fuzz views hold at most a few
 * thousand entries.
 */
import { IOMMUNotifierFlag as F } from '../src/index';
import type { IOMMUTLBEvent, NotifierHandle } from '../src/index';

/** One entry of a view: [s, e] inclusive, translated to `xl`. */
export interface ShadowEntry { s: bigint; e: bigint; xl: bigint; perm: number }

/** A contiguous run of a view or of page tables: page function pieces, for comparisons that ignore splitting. */
export type Run = ShadowEntry;

export class ShadowView {
  readonly entries: ShadowEntry[] = [];
  removed = false;

  constructor(readonly flags: number, readonly start: bigint, readonly end: bigint) {}

  /** Index of the first entry whose end is >= s. */
  private lowerBound(s: bigint): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid]!.e < s) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /**
   * Checks one delivered event against the contract and applies it. Returns
   * the broken rule and why, or undefined. A violating event still updates
   * the shadow as the listener would take it, so one bug is reported once.
   */
  apply(ev: IOMMUTLBEvent): string | undefined {
    const { type } = ev;
    const { iova, addrMask: mask, translatedAddr: xl, perm } = ev.entry;
    if (this.removed) return 'C10: event after the notifier was removed';
    if ((this.flags & type) === 0) return `C6: type ${type} not in flags ${this.flags}`;
    if ((mask & (mask + 1n)) !== 0n || mask < 0n) return `C2: addrMask 0x${mask.toString(16)} + 1 is not a power of two`;
    if ((iova & mask) !== 0n) return `C2: iova 0x${iova.toString(16)} not aligned to mask 0x${mask.toString(16)}`;
    if (type === F.MAP && (xl & mask) !== 0n) return `C2: translatedAddr 0x${xl.toString(16)} not aligned to mask`;
    if ((type === F.MAP) !== (perm !== 0)) return `C3: type ${type} with perm ${perm}`;
    const s = iova;
    const e = iova + mask;
    if (s < this.start || e > this.end) return `C6: [0x${s.toString(16)}, 0x${e.toString(16)}] not inside the range [0x${this.start.toString(16)}, 0x${this.end.toString(16)}]`;
    // A view is what MAPs and UNMAPs add up to: a listener without both is never told of changes, so C4/C5 do not apply to it.
    if ((this.flags & F.ALL) !== F.ALL) return undefined;
    const i = this.lowerBound(s);
    let j = i;
    while (j < this.entries.length && this.entries[j]!.s <= e) j++;
    if (type === F.MAP) {
      const clash = j > i ? this.entries[i]! : undefined;
      this.entries.splice(i, j - i, { s, e, xl, perm });
      if (clash) return `C4: MAP [0x${s.toString(16)}, 0x${e.toString(16)}] over live [0x${clash.s.toString(16)}, 0x${clash.e.toString(16)}]`;
      return undefined;
    }
    if (type === F.UNMAP) {
      let cut: ShadowEntry | undefined;
      for (let k = i; k < j; k++) {
        const x = this.entries[k]!;
        if (x.s < s || x.e > e) cut = x;
      }
      this.entries.splice(i, j - i);
      if (cut) return `C5: UNMAP [0x${s.toString(16)}, 0x${e.toString(16)}] cuts [0x${cut.s.toString(16)}, 0x${cut.e.toString(16)}]`;
    }
    return undefined;
  }

  /** The view clipped to [lo, hi] as merged runs. */
  runs(lo: bigint, hi: bigint): Run[] {
    const i = this.lowerBound(lo);
    let j = i;
    while (j < this.entries.length && this.entries[j]!.s <= hi) j++;
    return mergeRuns(this.entries.slice(i, j), lo, hi);
  }
}

/** Entries (sorted or not) clipped to [lo, hi], merged where iova, address and perm continue: a page function. */
export function mergeRuns(entries: Iterable<ShadowEntry>, lo: bigint, hi: bigint): Run[] {
  const clipped: Run[] = [];
  for (const x of entries) {
    if (x.e < lo || x.s > hi) continue;
    const s = x.s < lo ? lo : x.s;
    const e = x.e > hi ? hi : x.e;
    clipped.push({ s, e, xl: x.xl + (s - x.s), perm: x.perm });
  }
  clipped.sort((a, b) => (a.s < b.s ? -1 : a.s > b.s ? 1 : 0));
  const out: Run[] = [];
  for (const r of clipped) {
    const last = out[out.length - 1];
    if (last && last.e + 1n === r.s && last.xl + (r.s - last.s) === r.xl && last.perm === r.perm) last.e = r.e;
    else out.push({ ...r });
  }
  return out;
}

/** First difference between two run lists, or undefined when they are the same page function. */
export function diffRuns(got: Run[], want: Run[]): string | undefined {
  const show = (r: Run | undefined) => (r ? `[0x${r.s.toString(16)}, 0x${r.e.toString(16)}] -> 0x${r.xl.toString(16)} perm ${r.perm}` : 'nothing');
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    const g = got[i];
    const w = want[i];
    if (!g || !w || g.s !== w.s || g.e !== w.e || g.xl !== w.xl || g.perm !== w.perm) return `view has ${show(g)} where the tables have ${show(w)}`;
  }
  return undefined;
}

/** A bare notifier the fuzzer registered, with its shadow view. */
export interface RawNotifier { view: ShadowView; handle?: NotifierHandle; sid: number; reenter: boolean; off?: boolean }

/** Unregisters `n` (its shadow stops taking events) and returns `raw` without it. */
export function dropRaw(raw: RawNotifier[], n: RawNotifier): RawNotifier[] {
  n.handle!.dispose();
  n.view.removed = true;
  n.handle = undefined;
  return raw.filter((x) => x !== n);
}
