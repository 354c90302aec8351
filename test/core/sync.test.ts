import fc from 'fast-check';
import { IOMMUNotifierFlag as F, NotifierList } from '../../src/core';
import type { IOMMUTLBEntry, LeafSink, LeafWalker, NotifierHandle } from '../../src/core';
import { RefChecker, U64_MAX, map, recorder, short } from './helpers';
import type { Got } from './helpers';

type Leaf = [number, number, number, number]; // iovaPfn, pages, xlatPfn, perm

const SPACE = 2048; // frames in the generated page tables

function walker(leaves: Leaf[], calls?: { n: number }): LeafWalker {
  return (first: number, last: number, sink: LeafSink) => {
    if (calls) calls.n++;
    for (const [s, n, x, p] of leaves) if (s <= last && s + n - 1 >= first) sink(s, n, x, p);
  };
}

/** Frame -> [xlat frame, perm] for the frames [base, base + SPACE), from leaves or view entries. */
type Frames = Map<number, string>;
function tableFrames(leaves: Leaf[]): Frames {
  const m: Frames = new Map();
  for (const [s, n, x, p] of leaves) for (let i = 0; i < n; i++) m.set(s + i, `${x + i}/${p}`);
  return m;
}
function viewFrames(view: IOMMUTLBEntry[], base: number): Frames {
  const m: Frames = new Map();
  for (const e of view) {
    const s = Number(e.iova >> 12n);
    const n = Number((e.addrMask + 1n) >> 12n);
    const x = Number(e.translatedAddr >> 12n);
    for (let i = Math.max(0, base - s); i < n && s + i < base + SPACE; i++) m.set(s + i, `${x + i}/${e.perm}`);
  }
  return m;
}

/** Random page tables: disjoint aligned leaves of 4 KiB .. 2 MiB in SPACE frames from `base`. */
const leavesArb = fc
  .array(fc.record({ s: fc.integer({ min: 0, max: SPACE - 1 }), o: fc.constantFrom(0, 0, 0, 0, 1, 2, 3, 9), x: fc.integer({ min: 0, max: 2 ** 20 }), p: fc.integer({ min: 1, max: 3 }) }), { maxLength: 40 })
  .map((raw) => {
    const out: Array<[number, number, number, number]> = [];
    for (const { s, o, x, p } of raw) {
      const n = 2 ** o;
      const st = Math.floor(s / n) * n;
      if (out.some(([s2, n2]) => s2 <= st + n - 1 && st <= s2 + n2 - 1)) continue;
      out.push([st, n, x * n, p]);
    }
    return out.sort((a, b) => a[0] - b[0]);
  });

const frameArb = fc.integer({ min: 0, max: SPACE - 1 });
const subArb = fc.constantFrom(0n, 0n, 0n, 0x800n, 0xfffn);
const notifierArb = fc.record({ f: fc.constantFrom(F.ALL, F.ALL, F.MAP, F.UNMAP), a: frameArb, b: frameArb, sa: subArb, sb: subArb, whole: fc.boolean() });
const stepArb = fc.record({ leaves: leavesArb, a: frameArb, b: frameArb, sa: subArb, sb: subArb });

interface Watched {
  h: NotifierHandle;
  flags: number;
  start: bigint;
  end: bigint;
  inLo: number;
  inHi: number;
  ref: RefChecker;
  log: Got[];
}

function run(base: number, notifiers: Array<{ f: number; a: number; b: number; sa: bigint; sb: bigint; whole: boolean }>, steps: Array<{ leaves: Leaf[]; a: number; b: number; sa: bigint; sb: bigint }>, replayFirst: boolean): void {
  const list = new NotifierList({ mode: 'strict' });
  const B = BigInt(base);
  const ws: Watched[] = notifiers.map((n) => {
    const [a, b] = n.a <= n.b ? [n.a, n.b] : [n.b, n.a];
    const start = n.whole ? 0n : ((B + BigInt(a)) << 12n) + n.sa;
    const end = n.whole ? U64_MAX : ((B + BigInt(b)) << 12n) + (a === b && n.sb < n.sa ? n.sa : n.sb);
    const log: Got[] = [];
    const ref = new RefChecker(start, end, n.f);
    const h = list.register(recorder(log, n.f, start, end, {
      notify(ev, handle) {
        const g = { id: handle.id, type: ev.type, iova: ev.entry.iova, translatedAddr: ev.entry.translatedAddr, addrMask: ev.entry.addrMask, perm: ev.entry.perm };
        log.push(g);
        if (n.f === F.ALL) ref.feed(g); // throws on any C2..C6 violation
        else if (!(ev.type & n.f)) throw new Error('C6: type not asked for');
      },
    }));
    const inLo = Number((start + 4095n) >> 12n);
    const inHi = Number((end + 1n) >> 12n) - 1;
    return { h, flags: n.f, start, end, inLo, inHi, ref, log };
  });
  const errors: unknown[] = [];
  list.events.on('listenerError', (e) => errors.push(e));
  let leaves: Leaf[] = [];
  for (let si = 0; si < steps.length; si++) {
    const st = steps[si]!;
    leaves = st.leaves.map(([s, n, x, p]) => [s + base, n, x, p] as Leaf);
    const [a, b] = st.a <= st.b ? [st.a + base, st.b + base] : [st.b + base, st.a + base];
    const before = ws.map((w) => list.view(w.h));
    for (const w of ws) w.log.length = 0;
    if (si === 0 && replayFirst) {
      for (const w of ws) list.replay(w.h, walker(leaves));
      const tf = tableFrames(leaves);
      for (const w of ws) {
        if (!(w.flags & F.MAP)) continue;
        const v = list.view(w.h);
        const vf = viewFrames(v, base);
        for (let f = base; f < base + SPACE; f++) {
          if (vf.get(f) !== (f >= w.inLo && f <= w.inHi ? tf.get(f) : undefined)) throw new Error(`replay: frame ${f} is ${vf.get(f)}, tables say ${tf.get(f)}`);
        }
        // C7: exactly one MAP per leaf inside the range (no merging), chunks at the edges.
        for (const e of v) expect(leaves.some(([s, n]) => BigInt(s) << 12n <= e.iova && e.iova + e.addrMask <= (BigInt(s + n) << 12n) - 1n)).toBe(true);
      }
      continue;
    }
    const calls = { n: 0 };
    list.sync((BigInt(a) << 12n) + st.sa, (BigInt(b) << 12n) + (a === b && st.sb < st.sa ? st.sa : st.sb), walker(leaves, calls));
    expect(errors).toEqual([]);
    expect(calls.n).toBeLessThanOrEqual(3);
    const tf = tableFrames(leaves);
    ws.forEach((w, wi) => {
      const after = list.view(w.h);
      const af = viewFrames(after, base);
      const of = viewFrames(before[wi]!, base);
      const old = before[wi]!;
      if (w.flags & F.MAP) {
        if (w.flags & F.UNMAP) expect(after).toEqual(w.ref.view.map((e) => ({ iova: e.iova, translatedAddr: e.xlat, addrMask: e.last - e.iova, perm: e.perm })));
        // ... one entry never spans two leaves ...
        for (const e of after) {
          const s = Number(e.iova >> 12n);
          const l = Number((e.iova + e.addrMask) >> 12n);
          if (l < a || s > b) continue;
          expect(leaves.some(([ls, ln]) => ls <= s && l <= ls + ln - 1)).toBe(true);
        }
        // ... identical entries are left alone ...
        const unmapped = w.log.filter((g) => g.type === F.UNMAP);
        for (const e of old) {
          const s = Number(e.iova >> 12n);
          const n = Number((e.addrMask + 1n) >> 12n);
          const x = Number(e.translatedAddr >> 12n);
          if (leaves.some(([ls, ln, lx, lp]) => ls === s && ln === n && lx === x && lp === e.perm)) {
            expect(unmapped.some((g) => g.iova <= e.iova + e.addrMask && e.iova <= g.iova + g.addrMask)).toBe(false);
          }
        }
        // ... and outside R widened to the blocks crossing its edges, nothing changes.
        const crossing = (f: number) => [
          ...old.map((e) => [Number(e.iova >> 12n), Number((e.iova + e.addrMask) >> 12n)]),
          ...leaves.map(([s, n]) => [s, s + n - 1]),
        ].filter(([s, l]) => s! <= f && f <= l!);
        let lo = a;
        let hi = b;
        for (const [s] of crossing(a)) lo = Math.min(lo, s!);
        for (const [, l] of crossing(b)) hi = Math.max(hi, l!);
        // C9: in R widened to whole blocks, the view equals the tables (frame by frame).
        for (let f = lo; f <= hi; f++) {
          if (af.get(f) !== (f >= w.inLo && f <= w.inHi ? tf.get(f) : undefined)) throw new Error(`C9: frame ${f} is ${af.get(f)}, tables say ${tf.get(f)}`);
        }
        for (let f = base; f < base + SPACE; f++) {
          if ((f < lo || f > hi) && af.get(f) !== of.get(f)) throw new Error(`frame ${f} outside the widened range changed`);
        }
      } else {
        // UNMAP-only: aligned chunks covering exactly R ∩ the range, in 4 KiB frames.
        const lo = Math.max(a, w.inLo);
        const hi = Math.min(b, w.inHi);
        let p = lo;
        for (const g of w.log) {
          expect(g.type).toBe(F.UNMAP);
          expect(g.iova & g.addrMask).toBe(0n);
          expect((g.addrMask + 1n) & g.addrMask).toBe(0n);
          expect(Number(g.iova >> 12n)).toBe(p);
          p += Number((g.addrMask + 1n) >> 12n);
        }
        expect(p).toBe(lo <= hi ? hi + 1 : lo);
      }
    });
  }
}

describe('sync helper (C4, C5, C9) and replay (C7)', () => {
  it('property: the emitted sequence is legal and leaves each view equal to the tables in R', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0, 2 ** 52 - SPACE),
        fc.array(notifierArb, { minLength: 1, maxLength: 3 }),
        fc.array(stepArb, { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (base, ns, steps, replayFirst) => run(base, ns, steps, replayFirst),
      ),
      { numRuns: 150 },
    );
  });

  it('a changed entry is unmapped then mapped; identical ones are left alone', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const h = list.register(recorder(log));
    list.replay(h, walker([[1, 1, 10, 3], [2, 1, 11, 3], [3, 1, 12, 3]]));
    log.length = 0;
    list.sync(0n, 0x3fffn, walker([[1, 1, 10, 3], [2, 1, 20, 3], [3, 1, 12, 1]]));
    expect(log.map(short)).toEqual(['UNMAP 2000+fff', 'MAP 2000+fff->14000/3', 'UNMAP 3000+fff', 'MAP 3000+fff->c000/1']);
  });

  it('a 2 MiB entry replaced by 4 KiB pages is unmapped whole first, even from a 4 KiB invalidation', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const h = list.register(recorder(log));
    list.replay(h, walker([[512, 512, 1024, 3]]));
    log.length = 0;
    // Only the page 0x201000 is invalidated, but the 2 MiB entry covering it is now 512 pages (two present).
    list.sync(0x201000n, 0x201fffn, walker([[512, 1, 1024, 3], [513, 1, 1025, 3]]));
    expect(log.map(short)).toEqual(['UNMAP 200000+1fffff', 'MAP 200000+fff->400000/3', 'MAP 201000+fff->401000/3']);
    // The reverse: 4 KiB pages become one 2 MiB leaf.
    log.length = 0;
    list.sync(0x200000n, 0x200fffn, walker([[512, 512, 2048, 1]]));
    expect(log.map(short)).toEqual(['UNMAP 200000+fff', 'UNMAP 201000+fff', 'MAP 200000+1fffff->800000/1']);
  });

  it('costs O(entries), not O(range): a sync of the whole 64-bit space with a few leaves', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const h = list.register(recorder(log));
    const calls = { n: 0 };
    const leaves: Leaf[] = [[0, 1, 1, 3], [2 ** 52 - 512, 512, 0, 3]];
    list.sync(0n, U64_MAX, walker(leaves, calls));
    expect(log.map(short)).toEqual(['MAP 0+fff->1000/3', 'MAP fffffffffe00000+1fffff->0/3'.replace('fffffffffe00000', 'ffffffffffe00000')]);
    expect(calls.n).toBe(3);
    expect(list.view(h)).toHaveLength(2);
  });

  it('a walker that throws leaves every view as delivered and propagates the error', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const h = list.register(recorder(log));
    list.notify(map(0x1000n, 0x5000n));
    let n = 0;
    const guard: LeafWalker = (first, last, sink) => {
      if (++n === 3) throw new Error('runaway walk');
      walker([[1, 1, 6, 3]])(first, last, sink);
    };
    expect(() => list.sync(0n, 0xffffn, guard)).toThrow('runaway walk');
    expect(log).toHaveLength(1);
    expect(list.view(h)).toEqual([{ iova: 0x1000n, translatedAddr: 0x5000n, addrMask: 0xfffn, perm: 3 }]);
  });

  it('refuses a walker that reports misshapen or unordered leaves, before delivering anything', () => {
    const list = new NotifierList({ name: 'vtd sid 0x10' });
    const log: Got[] = [];
    const h = list.register(recorder(log));
    expect(() => list.replay(h, walker([[1, 2, 0, 3]]))).toThrow(/vtd sid 0x10: page walker reported a misshapen leaf/);
    expect(() => list.replay(h, walker([[4, 1, 0, 3], [2, 1, 0, 3]]))).toThrow(/out of order/);
    expect(log).toHaveLength(0);
  });

  it('a sync of a large unchanged view sends nothing; changes among many identical leaves send exactly them, in IOVA order', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const h = list.register(recorder(log));
    // 20 000 4 KiB leaves in runs of 64 (more than fill many B+tree leaves and inner nodes).
    const leaves: Leaf[] = [];
    for (let r = 0; r < 313; r++) for (let i = 0; i < 64; i++) leaves.push([r * 4096 + i, 1, 0x10000 + leaves.length, 3]);
    list.replay(h, walker(leaves));
    expect(log).toHaveLength(leaves.length);
    log.length = 0;
    list.sync(0n, U64_MAX, walker(leaves));
    expect(log).toEqual([]);
    // One leaf changes translation, one disappears, one appears in a gap, one 2 MiB block appears at the end.
    const next = leaves.map((l) => [...l] as Leaf);
    next[5000]![2] = 7;
    next.splice(12000, 1);
    const gap = Math.floor(leaves[15000]![0] / 4096) * 4096 + 100;
    next.push([gap, 1, 9, 1], [2 ** 40, 512, 0, 3]);
    next.sort((l, r) => l[0] - r[0]);
    list.sync(0n, U64_MAX, walker(next));
    const at = (k: number) => (BigInt(leaves[k]![0]) << 12n).toString(16);
    expect(log.map(short)).toEqual([
      `UNMAP ${at(5000)}+fff`, `MAP ${at(5000)}+fff->7000/3`,
      `UNMAP ${at(12000)}+fff`,
      `MAP ${(BigInt(gap) << 12n).toString(16)}+fff->9000/1`,
      'MAP 10000000000000+1fffff->0/3', // frame 2^40 = byte 2^52
    ]);
    expect(list.view(h)).toHaveLength(next.length);
  });

  it('a listener that notifies from inside a sync cannot make the other deliveries illegal', () => {
    const list = new NotifierList();
    const logs: Got[][] = [[], []];
    const refs = [new RefChecker(0n, U64_MAX), new RefChecker(0n, U64_MAX)];
    let nested = false;
    const hs = [0, 1].map((k) => list.register({
      flags: F.ALL, start: 0n, end: U64_MAX,
      notify(ev, handle) {
        const g = { id: handle.id, type: ev.type, iova: ev.entry.iova, translatedAddr: ev.entry.translatedAddr, addrMask: ev.entry.addrMask, perm: ev.entry.perm };
        logs[k]!.push(g);
        refs[k]!.feed(g);
        // The first notifier maps page 6 elsewhere while the sync is delivering page 5.
        if (k === 0 && ev.type === F.MAP && ev.entry.iova === 0x5000n && !nested) {
          nested = true;
          list.notify(map(0x6000n, 0x99000n));
        }
      },
    }));
    const errors: unknown[] = [];
    list.events.on('listenerError', (e) => errors.push(e));
    list.sync(0n, 0xffffn, walker([[5, 1, 0x50, 3], [6, 1, 0x60, 3]]));
    expect(errors).toEqual([]);
    const want = [
      { iova: 0x5000n, translatedAddr: 0x50000n, addrMask: 0xfffn, perm: 3 },
      { iova: 0x6000n, translatedAddr: 0x60000n, addrMask: 0xfffn, perm: 3 },
    ];
    for (const h of hs) expect(list.view(h)).toEqual(want);
    expect(logs[0]!.map(short)).toEqual(['MAP 5000+fff->50000/3', 'MAP 6000+fff->99000/3', 'UNMAP 6000+fff', 'MAP 6000+fff->60000/3']);
  });

  it('a walker that notifies during the walk cannot make the sync deliver illegal events', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const ref = new RefChecker(0n, U64_MAX);
    const h = list.register(recorder(log, F.ALL, 0n, U64_MAX, {
      notify(ev, handle) {
        const g = { id: handle.id, type: ev.type, iova: ev.entry.iova, translatedAddr: ev.entry.translatedAddr, addrMask: ev.entry.addrMask, perm: ev.entry.perm };
        log.push(g);
        ref.feed(g);
      },
    }));
    list.replay(h, walker([[4, 1, 0x40, 3], [5, 1, 0x50, 3]]));
    let calls = 0;
    const noisy: LeafWalker = (first, last, sink) => {
      // The third call is the walk proper (after the two edge probes).
      if (++calls === 3) {
        list.notify(map(0x6000n, 0x99000n));
        list.notify({ type: F.UNMAP, entry: { iova: 0x4000n, translatedAddr: 0n, addrMask: 0xfffn, perm: 0 } });
      }
      walker([[4, 1, 0x40, 3], [5, 1, 0x50, 3], [6, 1, 0x60, 3]])(first, last, sink);
    };
    list.sync(0n, 0xffffn, noisy);
    // Every event was legal (ref.feed throws otherwise) and the list's view is what was delivered.
    expect(list.view(h)).toEqual(ref.view.map((e) => ({ iova: e.iova, translatedAddr: e.xlat, addrMask: e.last - e.iova, perm: e.perm })));
    expect(list.view(h).map((e) => e.iova)).toContain(0x6000n);
  });

  it('a replay started by the walker during a sync does not disturb the sync', () => {
    const list = new NotifierList();
    const refs = [new RefChecker(0n, U64_MAX), new RefChecker(0n, U64_MAX)];
    const hs = [0, 1].map((k) => list.register({
      flags: F.ALL, start: 0n, end: U64_MAX,
      notify(ev, handle) {
        refs[k]!.feed({ id: handle.id, type: ev.type, iova: ev.entry.iova, translatedAddr: ev.entry.translatedAddr, addrMask: ev.entry.addrMask, perm: ev.entry.perm });
      },
    }));
    const tables: Leaf[] = [[1, 1, 0x10, 3], [2, 1, 0x20, 1], [8, 8, 0x80, 3]];
    let calls = 0;
    const walk: LeafWalker = (first, last, sink) => {
      // During the walk proper (after the two edge probes), halfway through the leaves.
      const inner = ++calls === 3;
      for (const [s, n, x, p] of tables) {
        if (s > last || s + n - 1 < first) continue;
        if (inner && s === 2) list.replay(hs[1]!, walker(tables));
        sink(s, n, x, p);
      }
    };
    list.sync(0n, 0xfffffn, walk);
    const want = tables.map(([s, n, x, p]) => ({ iova: BigInt(s) << 12n, translatedAddr: BigInt(x) << 12n, addrMask: (BigInt(n) << 12n) - 1n, perm: p }));
    for (const h of hs) expect(list.view(h)).toEqual(want);
  });

  it('UNMAP-only notifiers get one UNMAP per aligned chunk of the invalidated range', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    list.register(recorder(log, F.UNMAP));
    list.sync(0x1000n, 0x4fffn, walker([]));
    expect(log.map(short)).toEqual(['UNMAP 1000+fff', 'UNMAP 2000+1fff', 'UNMAP 4000+fff']);
  });
});
