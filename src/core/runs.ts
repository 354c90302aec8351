/**
 * A translation as a function IOVA -> (address, perm), in maximal runs, so
 * that two lists of entries split or merged differently compare equal
 * (trace-v1 `view.expect`: "compared page by page as a function from IOVA to
 * (address, perm)"). Cost is per entry, never per page.
 */
import { permToString } from './access';
import type { IOMMUAccessFlags } from './access';

/** [start, end] (inclusive) -> xlat at start, perm (never NONE). */
export interface TranslationRun {
  start: bigint;
  end: bigint;
  xlat: bigint;
  perm: number;
}

/**
 * Appends [start, end] -> xlat, perm to `runs` (ascending, not overlapping
 * the last run), merging it into the last run when it continues it.
 */
export function appendRun(runs: TranslationRun[], start: bigint, end: bigint, xlat: bigint, perm: number): void {
  const last = runs[runs.length - 1];
  if (last && last.end + 1n === start && last.perm === perm && last.xlat + (start - last.start) === xlat) last.end = end;
  else runs.push({ start, end, xlat, perm });
}

/**
 * The first IOVA where two maximal run lists differ, described (`at iova
 * 0x..: expected <address perm | nothing>, got ...`); undefined when they are
 * the same translation.
 */
export function firstDifference(want: readonly TranslationRun[], got: readonly TranslationRun[]): string | undefined {
  const n = Math.max(want.length, got.length);
  for (let i = 0; i < n; i++) {
    const a = want[i];
    const b = got[i];
    let at: bigint;
    if (a === undefined) at = b!.start;
    else if (b === undefined) at = a.start;
    else if (a.start !== b.start) at = a.start < b.start ? a.start : b.start;
    else if (a.xlat !== b.xlat || a.perm !== b.perm) at = a.start;
    else if (a.end !== b.end) at = (a.end < b.end ? a.end : b.end) + 1n;
    else continue;
    const say = (runs: readonly TranslationRun[]) => {
      const r = runs.find((x) => x.start <= at && at <= x.end);
      return r ? `0x${(r.xlat + (at - r.start)).toString(16)} ${permToString(r.perm as IOMMUAccessFlags)}` : 'nothing';
    };
    return `at iova 0x${at.toString(16)}: expected ${say(want)}, got ${say(got)}`;
  }
  return undefined;
}
