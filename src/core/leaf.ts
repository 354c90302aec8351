/**
 * The page-table side of a sync, in page frame numbers (`addr / 4096`), which
 * are exact JS numbers over the whole 64-bit space. A model's page walker
 * reports leaves through a `LeafSink` without building bigint entries, so a
 * sync that finds nothing to change allocates nothing per page.
 */

/** Size of the frames the notifier list counts in: 4 KiB. */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

/**
 * Receives one valid leaf translation: `pages` (a power of two) 4 KiB frames
 * starting at frame `iovaPfn`, translated to frame `xlatPfn`, with `perm`
 * (never NONE). `iovaPfn` and `xlatPfn` are aligned to `pages`.
 */
export type LeafSink = (iovaPfn: number, pages: number, xlatPfn: number, perm: number) => void;

/**
 * Reports every valid leaf translation that intersects frames
 * [firstPfn, lastPfn], whole (a 2 MiB leaf is reported whole even when the
 * range covers only part of it), in ascending IOVA order, without overlaps.
 * Invalid (not present) entries are not reported.
 */
export type LeafWalker = (firstPfn: number, lastPfn: number, sink: LeafSink) => void;
