import type { BenchFigure, BenchSuite } from './harness';
import { gc, medianMs, opsPerSecond, prng } from './harness';
import { IOMMUNotifierFlag, NotifierList, U64_MAX } from '../src/core';
import type { IOMMUTLBEvent, LeafSink, LeafWalker } from '../src/core';
import { IntervalMap } from '../src/core/interval-map';


/**
 * A list with `listeners` MAP|UNMAP notifiers whose views hold `populated`
 * 4 KiB entries (every even page), and `pairs` MAP/UNMAP pairs of distinct
 * 4 KiB entries on odd pages between them (legal events through the checker).
 */
function notifyWorkload(listeners: number, populated: number, pairs: number, random: boolean): () => void {
  const list = new NotifierList();
  let sink = 0;
  for (let i = 0; i < listeners; i++) {
    const h = list.register({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: U64_MAX, notify: (ev) => { sink += ev.type; } });
    list.replay(h, (first: number, last: number, s: LeafSink) => {
      for (let p = 0; p < populated; p++) if (2 * p >= first && 2 * p <= last) s(2 * p, 1, 0x100000 + p, 3);
    });
  }
  const maps: IOMMUTLBEvent[] = [];
  const unmaps: IOMMUTLBEvent[] = [];
  for (let i = 0; i < pairs; i++) {
    // Odd pages between the view's entries: consecutive (a streaming-DMA
    // pattern: the guest's IOVA allocator hands out neighbouring IOVAs) or
    // scattered over the whole view (cache-unfriendly worst case).
    const pfn = random ? 2 * ((i * 7919) % populated) + 1 : 2 * ((populated >> 1) + i) + 1;
    const iova = BigInt(pfn) << 12n;
    maps.push({ type: IOMMUNotifierFlag.MAP, entry: { iova, translatedAddr: BigInt(0x200000 + i) << 12n, addrMask: 0xfffn, perm: 3 } });
    unmaps.push({ type: IOMMUNotifierFlag.UNMAP, entry: { iova, translatedAddr: 0n, addrMask: 0xfffn, perm: 0 } });
  }
  return () => {
    for (let i = 0; i < pairs; i++) {
      list.notify(maps[i]!);
      list.notify(unmaps[i]!);
    }
    if (sink < 0) throw new Error('unreachable');
  };
}

/** notifyOnePages (the numeric entry point) on the same pattern; the listener reads nothing. */
function notifyOnePagesWorkload(populated: number, pairs: number): () => void {
  const list = new NotifierList();
  let sink = 0;
  const h = list.register({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: U64_MAX, notify: (ev) => { sink += ev.type; } });
  list.replay(h, (first: number, last: number, s: LeafSink) => {
    for (let p = 0; p < populated; p++) if (2 * p >= first && 2 * p <= last) s(2 * p, 1, 0x100000 + p, 3);
  });
  return () => {
    for (let i = 0; i < pairs; i++) {
      const pfn = 2 * ((populated >> 1) + i) + 1;
      list.notifyOnePages(h, IOMMUNotifierFlag.MAP, pfn, 1, 0x200000 + i, 3);
      list.notifyOnePages(h, IOMMUNotifierFlag.UNMAP, pfn, 1, 0, 0);
    }
    if (sink < 0) throw new Error('unreachable');
  };
}

function intervalWorkload(entries: number): () => void {
  const m = new IntervalMap();
  // Populate with every even page in a shuffled order of blocks, as a mix of walks.
  for (let p = 0; p < entries; p++) m.insert(2 * p, 1, p, 3);
  const K = 1024;
  const keys = new Float64Array(K);
  for (let i = 0; i < K; i++) keys[i] = 2 * ((i * 104729) % entries) + 1;
  return () => {
    for (let i = 0; i < K; i++) {
      const k = keys[i]!;
      m.insert(k, 1, k, 1);
      m.seek(k);
      m.removeAtCursor();
    }
  };
}

function viewBytesPerEntry(entries: number): number {
  gc();
  const before = process.memoryUsage();
  const list = new NotifierList();
  const h = list.register({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: U64_MAX, notify: () => {} });
  // A realistic fill: a replay of 10^6 4 KiB leaves, every other page.
  list.replay(h, (first: number, last: number, s: LeafSink) => {
    for (let p = 0; p < entries; p++) if (2 * p >= first && 2 * p <= last) s(2 * p, 1, 0x100000 + p, 3);
  });
  gc();
  const after = process.memoryUsage();
  const bytes = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
  if (list.stats.delivered !== entries) throw new Error('view fill failed');
  return bytes / entries;
}

/**
 * The page tables of the VT-d `syncDomain1e6Ms` bench, as a prebuilt leaf
 * list: `pages` 4 KiB leaves in runs of 64 contiguous pages at random
 * 256 KiB-aligned IOVAs of a 48-bit space, in ascending order.
 */
function syncLayoutWalker(pages: number): LeafWalker {
  const rnd = prng(pages);
  const runs = Math.ceil(pages / 64);
  const used = new Set<number>();
  const slots: number[] = [];
  for (let r = 0; r < runs; r++) {
    let slot: number;
    do slot = Math.floor(rnd() * 2 ** 30); while (used.has(slot));
    used.add(slot);
    slots.push(slot);
  }
  slots.sort((x, y) => x - y);
  const s = new Float64Array(pages);
  const x = new Float64Array(pages);
  for (let r = 0, k = 0; r < runs; r++) {
    const n = Math.min(64, pages - r * 64);
    for (let i = 0; i < n; i++, k++) {
      s[k] = slots[r]! * 64 + i;
      x[k] = 0x100_0000 + k;
    }
  }
  return (first: number, last: number, sink: LeafSink) => {
    // Binary search for the first leaf ending at or after `first` (all leaves are 4 KiB).
    let lo = 0;
    let hi = pages;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid]! < first) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < pages && s[i]! <= last; i++) sink(s[i]!, 1, x[i]!, 3);
  };
}

/** The core's part of `syncDomain1e6Ms`: sync of the whole space against a view that already equals the tables. */
function syncNoChange(pages: number): number {
  const walk = syncLayoutWalker(pages);
  const list = new NotifierList();
  let changed = 0;
  const h = list.register({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: U64_MAX, notify: () => { changed++; } });
  list.replay(h, walk);
  if (changed !== pages) throw new Error('bench: replay failed');
  changed = 0;
  gc();
  const ms = medianMs(() => list.sync(0n, U64_MAX, walk), 7);
  if (changed !== 0) throw new Error('bench: the sync changed the view');
  return ms;
}

/** Figures of the core area. */
export const suite: BenchSuite = () => {
  const figures: BenchFigure[] = [];
  const PAIRS = 4096;
  figures.push({
    key: 'notifyPerSec1', label: 'notify() deliveries/s, 1 MAP|UNMAP notifier, view of 10^5, MAP/UNMAP pairs of 4096 distinct neighbouring 4 KiB',
    value: opsPerSecond(notifyWorkload(1, 100_000, PAIRS, false), 2 * PAIRS, 1500), unit: 'notif/s', target: '>= 5e6',
  });
  figures.push({
    key: 'notifyPerSec1Random', label: 'same, pairs scattered over the whole view (cache-unfriendly)',
    value: opsPerSecond(notifyWorkload(1, 100_000, PAIRS, true), 2 * PAIRS, 1500), unit: 'notif/s',
  });
  figures.push({
    key: 'notifyPerSec8', label: 'deliveries/s (notify() calls/s x 8), 8 notifiers, same workload',
    value: opsPerSecond(notifyWorkload(8, 100_000, PAIRS, false), 2 * PAIRS * 8, 1500), unit: 'notif/s',
  });
  figures.push({
    key: 'notifyOnePagesPerSec', label: 'notifyOnePages() deliveries/s (numeric entry point), same workload as notifyPerSec1',
    value: opsPerSecond(notifyOnePagesWorkload(100_000, PAIRS), 2 * PAIRS, 1500), unit: 'notif/s',
  });
  figures.push({
    key: 'intervalOpsPerSec1e3', label: 'interval-map ops/s (insert, seek, remove) at 10^3 entries',
    value: opsPerSecond(intervalWorkload(1000), 3 * 1024, 1000), unit: 'ops/s',
  });
  figures.push({
    key: 'intervalOpsPerSec1e6', label: 'interval-map ops/s (insert, seek, remove) at 10^6 entries',
    value: opsPerSecond(intervalWorkload(1_000_000), 3 * 1024, 1000), unit: 'ops/s',
  });
  figures.push({
    key: 'viewBytesPerEntry', label: 'heap + array-buffer bytes per entry, one view of 10^6 4 KiB entries',
    value: viewBytesPerEntry(1_000_000), unit: 'B/entry', target: '<= 64',
  });
  figures.push({
    key: 'syncNoChange1e6Ms', label: 'sync() of the whole space, 10^6 4 KiB leaves (runs of 64 at random 256 KiB IOVAs), view already equal (core part of syncDomain1e6Ms)',
    value: syncNoChange(1_000_000), unit: 'ms',
  });
  return figures;
};
