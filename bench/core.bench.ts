import type { BenchFigure, BenchSuite } from './harness';
import { gc, opsPerSecond } from './harness';
import { IOMMUNotifierFlag, NotifierList } from '../src/core';
import type { IOMMUTLBEvent, LeafSink } from '../src/core';
import { IntervalMap } from '../src/core/interval-map';

const U64_MAX = (1n << 64n) - 1n;

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
  return figures;
};
