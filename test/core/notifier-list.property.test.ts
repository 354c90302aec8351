import fc from 'fast-check';
import { IOMMUNotifierFlag as F, NotifierList } from '../../src/core';
import type { IOMMUAccessFlags, IOMMUTLBEvent, LeafSink, NotifierHandle } from '../../src/core';
import { RefChecker, U64_MAX, copyEvent, refView } from './helpers';

/**
 * The notifier list in repair mode, driven by a hostile model (misshapen
 * events, wrong permissions, overlapping MAPs, UNMAPs that cut entries,
 * DEVIOTLB_UNMAPs of any mask, teardowns, syncs and replays against changing
 * tables) and by re-entrant listeners that notify, tear down, sync and
 * dispose from inside their callbacks. Every event a listener receives is
 * checked, as it arrives, against an independent shadow of that listener's
 * view (helpers' RefChecker, written from contract.md): C2 shape, C3 type and
 * permission, C4 invalid -> valid only, C5 whole entries, C6 type and range,
 * C10 nothing after dispose. After each model operation the list's own view
 * of each listener equals the shadow, and when no listener interfered, a sync
 * or replay left the view equal to the tables (C7, C9).
 */

/** The space the model uses: frames [0, SPACE). */
const SPACE = 256;

interface EventSpec {
  type: 1 | 2 | 4;
  pfn: number;
  order: number;
  xlat: number;
  perm: number;
  /** 0: well formed; 1: iova not 4 KiB aligned; 2: size not a power of two; 3: smaller than 4 KiB. */
  odd: number;
}

type ModelOp =
  | { k: 'notify'; ev: EventSpec }
  | { k: 'unmapAll'; a: number; b: number }
  | { k: 'sync'; a: number; b: number; table: number }
  | { k: 'replay'; who: number; table: number };

type Reaction = 'none' | 'remapOnUnmap' | 'coverOnUnmap' | 'unmapAllOnMap' | 'script' | 'dispose';

interface ListenerSpec {
  flags: number;
  whole: boolean;
  a: number;
  b: number;
  /** Range edges in the middle of a page. */
  offset: boolean;
  reaction: Reaction;
  /** Reacts to every `every`-th event it receives. */
  every: number;
}

function toEvent(s: EventSpec): IOMMUTLBEvent {
  const pages = 2 ** s.order;
  const pfn = Math.floor(s.pfn / pages) * pages;
  let iova = BigInt(pfn) << 12n;
  let mask = (BigInt(pages) << 12n) - 1n;
  if (s.odd === 1) iova += 0x800n;
  else if (s.odd === 2) mask = BigInt(pages) * 0x1800n - 1n;
  else if (s.odd === 3) mask = 0x7ffn;
  const xlat = s.type === F.MAP ? (BigInt(Math.floor(s.xlat / pages) * pages) << 12n) + (s.odd === 1 ? 0x800n : 0n) : 0n;
  return { type: s.type, entry: { iova, translatedAddr: xlat, addrMask: mask, perm: s.perm as IOMMUAccessFlags } };
}

/** A page table as leaves [pfn, pages, xlatPfn, perm], ascending, from a seed (a few seeds: tables repeat). */
function table(seed: number): Array<[number, number, number, number]> {
  let st = (seed * 0x9e3779b9) >>> 0;
  const rnd = () => {
    st = (st + 0x6d2b79f5) >>> 0;
    let t = st;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const leaves: Array<[number, number, number, number]> = [];
  let p = 0;
  while (p < SPACE) {
    if (rnd() < 0.35) {
      p++;
      continue;
    }
    let o = Math.floor(rnd() * 5);
    while (o > 0 && (p % 2 ** o !== 0 || p + 2 ** o > SPACE)) o--;
    const n = 2 ** o;
    leaves.push([p, n, 0x1000 + n * Math.floor(rnd() * 64), 1 + Math.floor(rnd() * 3)]);
    p += n;
  }
  return leaves;
}

function walker(seed: number) {
  const leaves = table(seed);
  return (first: number, last: number, sink: LeafSink) => {
    for (const [s, n, x, perm] of leaves) if (s <= last && s + n - 1 >= first) sink(s, n, x, perm);
  };
}

/** The table's translation of frame p: [xlatPfn, perm] or undefined. */
function tableAt(seed: number, p: number): [number, number] | undefined {
  const l = table(seed).find(([s, n]) => s <= p && p < s + n);
  return l ? [l[2] + (p - l[0]), l[3]] : undefined;
}

const pfnArb = fc.integer({ min: 0, max: SPACE - 1 });
const eventArb: fc.Arbitrary<EventSpec> = fc.record({
  type: fc.constantFrom(1 as const, 2 as const, 2 as const, 4 as const),
  pfn: pfnArb,
  order: fc.constantFrom(0, 0, 0, 1, 2, 3, 5),
  xlat: fc.integer({ min: 0, max: 4096 }),
  perm: fc.constantFrom(0, 0, 1, 2, 3, 3),
  odd: fc.constantFrom(0, 0, 0, 0, 1, 2, 3),
}).map((e) => {
  // Mostly the right permission for the type; a MAP with perm NONE only in a well-formed shape.
  if (e.type !== F.MAP) return { ...e, perm: e.perm === 3 ? 3 : 0 };
  return e.perm === 0 && e.odd !== 0 ? { ...e, perm: 3 } : e;
});
const rangeArb = fc.tuple(pfnArb, fc.integer({ min: 0, max: 64 })).map(([a, len]) => ({ a, b: Math.min(SPACE - 1, a + len) }));
const opArb: fc.Arbitrary<ModelOp> = fc.oneof(
  { weight: 6, arbitrary: eventArb.map((ev) => ({ k: 'notify' as const, ev })) },
  { weight: 1, arbitrary: rangeArb.map(({ a, b }) => ({ k: 'unmapAll' as const, a, b })) },
  { weight: 2, arbitrary: fc.tuple(rangeArb, fc.integer({ min: 0, max: 5 })).map(([{ a, b }, t]) => ({ k: 'sync' as const, a, b, table: t })) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(3), fc.integer({ min: 0, max: 5 })).map(([who, t]) => ({ k: 'replay' as const, who, table: t })) },
);
const listenerArb: fc.Arbitrary<ListenerSpec> = fc.record({
  flags: fc.constantFrom(F.ALL, F.ALL, F.ALL, F.UNMAP, F.DEVIOTLB_UNMAP, F.ALL | F.DEVIOTLB_UNMAP, F.UNMAP | F.DEVIOTLB_UNMAP),
  whole: fc.boolean(),
  a: pfnArb,
  b: pfnArb,
  offset: fc.boolean(),
  reaction: fc.constantFrom<Reaction>('none', 'remapOnUnmap', 'remapOnUnmap', 'coverOnUnmap', 'coverOnUnmap', 'unmapAllOnMap', 'script', 'script', 'dispose'),
  every: fc.integer({ min: 1, max: 3 }),
});

interface Live {
  spec: ListenerSpec;
  h: NotifierHandle;
  ref: RefChecker;
  seen: number;
  disposed: boolean;
}

function runCampaign(specs: ListenerSpec[], ops: ModelOp[], script: ModelOp[]): void {
  const list = new NotifierList({ mode: 'repair', name: 'campaign' });
  const broken: string[] = [];
  list.events.on('listenerError', (e) => broken.push(`listener threw: ${String(e)}`));
  let budget = 0;
  let depth = 0;
  let scriptAt = 0;
  let interfered = false;

  const apply = (op: ModelOp): void => {
    switch (op.k) {
      case 'notify':
        list.notify(toEvent(op.ev));
        break;
      case 'unmapAll':
        list.unmapAll(BigInt(op.a) << 12n, (BigInt(op.b) << 12n) | 0xfffn);
        break;
      case 'sync':
        list.sync(BigInt(op.a) << 12n, (BigInt(op.b) << 12n) | 0xfffn, walker(op.table));
        break;
      case 'replay': {
        const l = lives[op.who % lives.length]!;
        if (l.h.registered) list.replay(l.h, walker(op.table));
        break;
      }
    }
  };

  /** A model action from inside a callback (bounded: each top-level operation has a budget). */
  const nested = (fn: () => void): void => {
    if (budget <= 0 || depth >= 3) return;
    budget--;
    depth++;
    interfered = true;
    try {
      fn();
    } finally {
      depth--;
    }
  };

  const lives: Live[] = specs.map((spec) => {
    let start = 0n;
    let end = U64_MAX;
    if (!spec.whole) {
      const a = Math.min(spec.a, spec.b);
      let b = Math.max(spec.a, spec.b);
      if (spec.offset && a === b) b++;
      start = (BigInt(a) << 12n) + (spec.offset ? 0x800n : 0n);
      end = (BigInt(b) << 12n) + (spec.offset ? 0x7ffn : 0xfffn);
    }
    const live = { spec, ref: new RefChecker(start, end, spec.flags), seen: 0, disposed: false } as Live;
    live.h = list.register({
      flags: spec.flags, start, end,
      notify(ev, h) {
        if (live.disposed) broken.push(`C10: #${h.id} received an event after dispose`);
        const g = copyEvent(ev, h);
        try {
          live.ref.feed(g);
        } catch (e) {
          broken.push(`#${h.id} (flags ${spec.flags}, [${start.toString(16)}, ${end.toString(16)}]): ${(e as Error).message}`);
        }
        if (++live.seen % spec.every !== 0) return;
        const pages = (g.addrMask + 1n) >> 12n;
        switch (spec.reaction) {
          case 'remapOnUnmap':
            // Maps the range it was just told is gone (legal for this listener: it is empty now).
            if (g.type === F.UNMAP && pages >= 1n) {
              nested(() => list.notify({ type: F.MAP, entry: { iova: g.iova, translatedAddr: 0x4000_0000n + g.iova, addrMask: g.addrMask, perm: 3 } }));
            }
            break;
          case 'coverOnUnmap':
            // Maps an aligned block twice the size around the range it lost.
            if (g.type === F.UNMAP && pages >= 1n && g.addrMask < 0x3fffffn) {
              const mask = g.addrMask * 2n + 1n;
              nested(() => list.notify({ type: F.MAP, entry: { iova: g.iova & ~mask, translatedAddr: 0x8000_0000n, addrMask: mask, perm: 1 } }));
            }
            break;
          case 'unmapAllOnMap':
            if (g.type === F.MAP) nested(() => list.unmapAll(g.iova & ~0x7fffn, g.iova | 0x7fffn));
            break;
          case 'script': {
            const op = script[scriptAt++ % Math.max(1, script.length)];
            if (op) nested(() => apply(op));
            break;
          }
          case 'dispose':
            live.disposed = true;
            h.dispose();
            break;
          case 'none':
            break;
        }
      },
    });
    return live;
  });

  for (const op of ops) {
    budget = 6;
    interfered = false;
    apply(op);
    expect(broken).toEqual([]);
    for (const l of lives) {
      if (!l.h.registered || !(l.spec.flags & F.MAP)) continue;
      // The list's view of each listener is exactly what it delivered.
      expect(list.view(l.h)).toEqual(refView(l.ref));
      if (interfered || (op.k !== 'sync' && op.k !== 'replay')) continue;
      if (op.k === 'replay' && lives[op.who % lives.length] !== l) continue;
      // Coherence (C9 after a sync of [a, b]; C7 after a replay of the whole range), page by page.
      const a = op.k === 'sync' ? op.a : 0;
      const b = op.k === 'sync' ? op.b : SPACE - 1;
      for (let p = a; p <= b; p++) {
        const pa = BigInt(p) << 12n;
        if (pa < l.ref.start || pa + 0xfffn > l.ref.end) continue;
        expect([p, l.ref.at(p)]).toEqual([p, tableAt(op.table, p)]);
      }
    }
  }
}

describe('notifier list in repair mode under a hostile model and re-entrant listeners', () => {
  it('property: every delivered event keeps C2-C6 and C10 against an independent shadow of each view', () => {
    fc.assert(
      fc.property(
        fc.array(listenerArb, { minLength: 1, maxLength: 4 }),
        fc.array(opArb, { minLength: 1, maxLength: 40 }),
        fc.array(opArb, { maxLength: 8 }),
        (specs, ops, script) => runCampaign(specs, ops, script),
      ),
      { numRuns: 400 },
    );
  });
});
