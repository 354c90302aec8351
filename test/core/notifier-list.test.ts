import { ContractViolation, IOMMUNotifierFlag as F, NotifierList } from '../../src/core';
import type { ContractRepair, LeafSink, LeafWalker } from '../../src/core';
import { KiB4, MiB2, RefChecker, U64_MAX, copyEvent, entry, map, recorder, refView, short, unmap } from './helpers';
import type { Got } from './helpers';

function setup(mode: 'strict' | 'repair' = 'strict', flags: number = F.ALL, start = 0n, end = U64_MAX) {
  const list = new NotifierList({ mode, name: 'test' });
  const log: Got[] = [];
  const repairs: ContractRepair[] = [];
  list.events.on('repaired', (r) => repairs.push(r));
  const h = list.register(recorder(log, flags, start, end));
  return { list, log, h, repairs, seq: () => log.map(short) };
}

function caught(fn: () => void): ContractViolation {
  try {
    fn();
  } catch (e) {
    if (e instanceof ContractViolation) return e;
    throw e;
  }
  throw new Error('expected a ContractViolation');
}

/** A walker over a fixed list of leaves [iovaPfn, pages, xlatPfn, perm]. */
function walker(leaves: Array<[number, number, number, number]>): LeafWalker {
  return (first: number, last: number, sink: LeafSink) => {
    for (const [s, n, x, p] of leaves) if (s <= last && s + n - 1 >= first) sink(s, n, x, p);
  };
}

describe('C1 registration', () => {
  it('refuses NONE flags and empty ranges', () => {
    const list = new NotifierList();
    expect(caught(() => list.register(recorder([], F.NONE))).rule).toBe('C1');
    const v = caught(() => list.register(recorder([], F.ALL, 0x2000n, 0x1000n)));
    expect(v.rule).toBe('C1');
    expect(v.message).toMatch(/empty range/);
    expect(list.handles).toHaveLength(0);
  });
  it('tells the model when the union of flags changes, and undoes a refused registration', () => {
    const calls: Array<[number, number]> = [];
    const list = new NotifierList({
      notifyFlagChanged: (o, n) => {
        calls.push([o, n]);
        if (n & F.MAP) throw new Error('MAP needs caching mode');
      },
    });
    const u = list.register(recorder([], F.UNMAP));
    list.register(recorder([], F.UNMAP)); // union unchanged: no call
    expect(() => list.register(recorder([], F.ALL))).toThrow('MAP needs caching mode');
    expect(list.handles).toHaveLength(2);
    expect(list.flags).toBe(F.UNMAP);
    expect(calls).toEqual([[0, F.UNMAP], [F.UNMAP, F.ALL]]);
    u.dispose();
    u.dispose(); // twice is harmless
    expect(u.registered).toBe(false);
    expect(list.handles).toHaveLength(1);
  });
  it('reports the flag change on unregistration', () => {
    const calls: Array<[number, number]> = [];
    const list = new NotifierList({ notifyFlagChanged: (o, n) => calls.push([o, n]) });
    const h = list.register(recorder([], F.ALL));
    h.dispose();
    expect(calls).toEqual([[0, F.ALL], [F.ALL, 0]]);
  });
});

describe('C2 shape', () => {
  it('delivers aligned power-of-two entries of 4 KiB and 2 MiB', () => {
    const { list, seq } = setup();
    list.notify(map(0x1000n, 0x5000n));
    list.notify(map(0x200000n, 0x400000n, MiB2));
    expect(seq()).toEqual(['MAP 1000+fff->5000/3', 'MAP 200000+1fffff->400000/3']);
  });
  it('strict: refuses a non-power-of-two size, an unaligned iova or translation, and sub-4 KiB entries', () => {
    const { list, log, h } = setup();
    expect(caught(() => list.notify(map(0x1000n, 0x5000n, 0x2fffn))).rule).toBe('C2');
    expect(caught(() => list.notify(map(0x1800n, 0x5000n))).rule).toBe('C2');
    expect(caught(() => list.notify(map(0x2000n, 0x5800n))).rule).toBe('C2');
    const v = caught(() => list.notify(map(0x1000n, 0x5000n, 0x7ffn)));
    expect(v.rule).toBe('C2');
    expect(v.message).toMatch(/4 KiB/);
    expect(v.notifier).toBe(h);
    expect(log).toHaveLength(0);
    expect(list.view(h)).toEqual([]);
  });
  it('repair: splits a misshapen MAP into aligned chunks', () => {
    const { list, seq, repairs } = setup('repair');
    // [0x1000, 0x3fff] -> 0x11000: aligned chunks 4 KiB at 0x1000 and 8 KiB at 0x2000.
    list.notify(map(0x1000n, 0x11000n, 0x2fffn));
    expect(seq()).toEqual(['MAP 1000+fff->11000/3', 'MAP 2000+1fff->12000/3']);
    expect(repairs).toHaveLength(1);
    expect(repairs[0]!.rule).toBe('C2');
    expect(repairs[0]!.delivered).toHaveLength(2);
  });
  it('repair: a MAP smaller than 4 KiB maps no whole page and is dropped', () => {
    const { list, log, repairs } = setup('repair');
    list.notify(map(0x1000n, 0x5000n, 0x7ffn));
    expect(log).toHaveLength(0);
    expect(repairs[0]!.delivered).toEqual([]);
  });
  it('repair: a MAP reaching past the 64-bit IOVA space is dropped, never clamped to the whole space', () => {
    const { list, log, repairs, h } = setup('repair');
    list.notify(map(0n, 0n, (1n << 65n) - 1n));
    list.notify(map(-0x1000n, 0n));
    expect(log).toHaveLength(0);
    expect(list.view(h)).toEqual([]);
    expect(repairs.map((r) => [r.rule, r.delivered.length])).toEqual([['C2', 0], ['C2', 0]]);
  });
  it('DEVIOTLB_UNMAP is not tracked: a small entry is delivered', () => {
    const { list, seq } = setup('strict', F.DEVIOTLB_UNMAP);
    list.notify({ type: F.DEVIOTLB_UNMAP, entry: entry(0x800n, 0n, 0x7ffn, 0) });
    expect(seq()).toEqual(['DEV 800+7ff']);
  });
});

describe('C3 type and permission', () => {
  it('strict: refuses an UNMAP with a perm and a MAP with perm NONE', () => {
    const { list, log } = setup();
    expect(caught(() => list.notify({ type: F.UNMAP, entry: entry(0x1000n, 0n, KiB4, 3) })).rule).toBe('C3');
    expect(caught(() => list.notify({ type: F.MAP, entry: entry(0x1000n, 0x5000n, KiB4, 0) })).rule).toBe('C3');
    expect(log).toHaveLength(0);
  });
  it('repair: an UNMAP with a perm is sent with perm NONE; a MAP with perm NONE becomes an UNMAP', () => {
    const { list, seq, repairs, h } = setup('repair');
    list.notify(map(0x1000n, 0x5000n));
    list.notify({ type: F.UNMAP, entry: entry(0x1000n, 0n, KiB4, 3) });
    list.notify(map(0x2000n, 0x6000n));
    list.notify({ type: F.MAP, entry: entry(0x2000n, 0x6000n, KiB4, 0) });
    expect(seq()).toEqual(['MAP 1000+fff->5000/3', 'UNMAP 1000+fff', 'MAP 2000+fff->6000/3', 'UNMAP 2000+fff']);
    expect(repairs.map((r) => r.rule)).toEqual(['C3', 'C3']);
    expect(list.view(h)).toEqual([]);
  });
});

describe('C4 invalid -> valid only', () => {
  it('legal: a change sent as UNMAP then MAP', () => {
    const { list, seq, h } = setup();
    list.notify(map(0x1000n, 0x5000n));
    list.notify(unmap(0x1000n));
    list.notify(map(0x1000n, 0x6000n, KiB4, 1));
    expect(seq()).toEqual(['MAP 1000+fff->5000/3', 'UNMAP 1000+fff', 'MAP 1000+fff->6000/1']);
    expect(list.view(h)).toEqual([entry(0x1000n, 0x6000n, KiB4, 1)]);
  });
  it('strict: refuses an in-place change, naming the conflicting entry', () => {
    const { list, log, h } = setup();
    list.notify(map(0x1000n, 0x5000n));
    const v = caught(() => list.notify(map(0x1000n, 0x6000n)));
    expect(v.rule).toBe('C4');
    expect(v.conflicting).toEqual(entry(0x1000n, 0x5000n, KiB4, 3));
    expect(v.event).toEqual(map(0x1000n, 0x6000n));
    expect(v.message).toMatch(/UNMAP of the old entry, then MAP/);
    expect(log).toHaveLength(1);
    expect(list.view(h)).toEqual([entry(0x1000n, 0x5000n, KiB4, 3)]);
  });
  it('strict: refuses a duplicate MAP and a 2 MiB MAP over a 4 KiB entry', () => {
    const { list, log } = setup();
    list.notify(map(0x1000n, 0x5000n));
    expect(caught(() => list.notify(map(0x1000n, 0x5000n))).message).toMatch(/identical/);
    expect(caught(() => list.notify(map(0n, 0x400000n, MiB2))).rule).toBe('C4');
    expect(log).toHaveLength(1);
  });
  it('repair: an in-place change becomes UNMAP (whole) + MAP; a duplicate is dropped', () => {
    const { list, seq, repairs, h } = setup('repair');
    list.notify(map(0x1000n, 0x5000n));
    list.notify(map(0x3000n, 0x7000n));
    list.notify(map(0x1000n, 0x5000n)); // duplicate
    list.notify(map(0n, 0x400000n, MiB2)); // covers both 4 KiB entries
    expect(seq()).toEqual([
      'MAP 1000+fff->5000/3', 'MAP 3000+fff->7000/3',
      'UNMAP 1000+fff', 'UNMAP 3000+fff', 'MAP 0+1fffff->400000/3',
    ]);
    expect(repairs.map((r) => [r.rule, r.delivered.length])).toEqual([['C4', 0], ['C4', 3]]);
    expect(list.stats).toEqual({ delivered: 5, violations: 2, repairs: 2 });
    expect(list.view(h)).toEqual([entry(0n, 0x400000n, MiB2, 3)]);
  });
});

describe('C5 UNMAP covers whole entries', () => {
  it('legal: one UNMAP covering several entries, and an UNMAP of nothing', () => {
    const { list, seq, h } = setup();
    list.notify(map(0x1000n, 0x5000n));
    list.notify(map(0x3000n, 0x7000n));
    list.notify(unmap(0n, MiB2));
    list.notify(unmap(0x800000n));
    expect(seq()).toEqual(['MAP 1000+fff->5000/3', 'MAP 3000+fff->7000/3', 'UNMAP 0+1fffff', 'UNMAP 800000+fff']);
    expect(list.view(h)).toEqual([]);
  });
  it('strict: refuses an UNMAP that cuts a 2 MiB entry', () => {
    const { list, h } = setup();
    list.notify(map(0x200000n, 0x400000n, MiB2));
    const v = caught(() => list.notify(unmap(0x201000n)));
    expect(v.rule).toBe('C5');
    expect(v.conflicting).toEqual(entry(0x200000n, 0x400000n, MiB2, 3));
    expect(list.view(h)).toHaveLength(1);
  });
  it('repair: widens a cutting UNMAP to the whole entry', () => {
    const { list, seq, repairs, h } = setup('repair');
    list.notify(map(0x200000n, 0x400000n, MiB2));
    list.notify(unmap(0x201000n));
    expect(seq()).toEqual(['MAP 200000+1fffff->400000/3', 'UNMAP 200000+1fffff']);
    expect(repairs[0]!.rule).toBe('C5');
    expect(list.view(h)).toEqual([]);
  });
  it('a MAP notifier without UNMAP: UNMAPs are not delivered but leave its view', () => {
    const { list, seq, h } = setup('strict', F.MAP);
    list.notify(map(0x200000n, 0x400000n, MiB2));
    list.notify(unmap(0x201000n)); // not delivered; the whole entry leaves the view
    expect(list.view(h)).toEqual([]);
    list.notify(map(0x201000n, 0x9000n)); // so this is not a C4 violation
    expect(seq()).toEqual(['MAP 200000+1fffff->400000/3', 'MAP 201000+fff->9000/3']);
  });
  it('notifyOne: an UNMAP stated as received by a notifier without UNMAP is C6, and the view keeps its entry', () => {
    const { list, h } = setup('strict', F.MAP);
    list.notify(map(0x200000n, 0x400000n, MiB2));
    expect(() => list.notifyOne(h, unmap(0x200000n, MiB2))).toThrow(expect.objectContaining({ rule: 'C6' }));
    expect(list.view(h).map((e) => e.iova)).toEqual([0x200000n]);
  });
});

describe('C6 filtering', () => {
  // The VT-d split around the interrupt window: two notifiers of one listener.
  const lowEnd = 0xfedfffffn;
  const highStart = 0xfef00000n;
  function split(mode: 'strict' | 'repair') {
    const list = new NotifierList({ mode });
    const log: Got[] = [];
    const repairs: ContractRepair[] = [];
    list.events.on('repaired', (r) => repairs.push(r));
    const lo = list.register(recorder(log, F.ALL, 0n, lowEnd));
    const hi = list.register(recorder(log, F.ALL, highStart, U64_MAX));
    return { list, log, lo, hi, repairs };
  }
  it('delivers only to notifiers whose range holds the event, and nothing outside every range', () => {
    const { list, log, lo } = split('strict');
    list.notify(map(0xfee00000n, 0x1000n)); // in the hole
    list.notify(map(0x1000n, 0x2000n));
    expect(log.map((g) => g.id)).toEqual([lo.id]);
  });
  it('strict: an event crossing range edges is refused for both, with the second in `others`', () => {
    const { list, log } = split('strict');
    const v = caught(() => list.notify(map(0xfec00000n, 0x40000000n, 0x3fffffn)));
    expect(v.rule).toBe('C6');
    expect(v.others).toHaveLength(1);
    expect(v.others[0]!.rule).toBe('C6');
    expect(log).toHaveLength(0);
  });
  it('repair: crops into aligned chunks inside each range', () => {
    const { list, log, lo, hi, repairs } = split('repair');
    list.notify(map(0xfec00000n, 0x40000000n, 0x3fffffn));
    expect(log.map((g) => [g.id, short(g)])).toEqual([
      [lo.id, 'MAP fec00000+1fffff->40000000/3'],
      [hi.id, 'MAP fef00000+fffff->40300000/3'],
    ]);
    expect(repairs.map((r) => r.rule)).toEqual(['C6', 'C6']);
  });
  it('filters by type and iommuIdx', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const u = list.register(recorder(log, F.UNMAP));
    const m = list.register(recorder(log, F.ALL, 0n, U64_MAX, { iommuIdx: 1 }));
    list.notify(map(0x1000n, 0x2000n));
    list.notify(map(0x3000n, 0x2000n), 0);
    list.notify(unmap(0x1000n), 1);
    expect(log.map((g) => [g.id, short(g)])).toEqual([[m.id, 'MAP 1000+fff->2000/3'], [m.id, 'UNMAP 1000+fff']]);
    expect(u.registered).toBe(true);
  });
  it('notifyOne: a type the notifier did not ask for, or an event outside its range, is C6', () => {
    const { list, h } = setup('strict', F.ALL, 0x100000n, 0x1fffffn);
    expect(caught(() => list.notifyOne(h, map(0x1000n, 0n))).rule).toBe('C6');
    expect(caught(() => list.notifyOne(h, { type: F.DEVIOTLB_UNMAP, entry: entry(0x100000n, 0n, KiB4, 0) })).rule).toBe('C6');
    list.notifyOne(h, map(0x100000n, 0n));
    expect(list.view(h)).toHaveLength(1);
  });
  it('crops a DEVIOTLB_UNMAP to the range (QEMU notify_iommu_one), in the fewest aligned power-of-two blocks', () => {
    const { list, seq } = setup('strict', F.DEVIOTLB_UNMAP, 0x1000n, 0x2fffn);
    list.notify({ type: F.DEVIOTLB_UNMAP, entry: entry(0n, 0n, 0x3fffn, 0) });
    // The crop [0x1000, 0x2fff] is 8 KiB at an address aligned to 4 KiB only: two 4 KiB blocks (C6, C2).
    expect(seq()).toEqual(['DEV 1000+fff', 'DEV 2000+fff']);
  });
  it('notifier ranges that are not page aligned: only whole pages inside can be mapped', () => {
    const { list, log } = setup('strict', F.ALL, 0x1800n, 0x37ffn);
    expect(caught(() => list.notify(map(0x1000n, 0n))).rule).toBe('C6');
    list.notify(map(0x2000n, 0n));
    expect(log).toHaveLength(1);
  });
});

describe('C7 replay', () => {
  it('delivers the valid translations as MAPs, split at the range edges, and nothing the second time', () => {
    const { list, seq, h } = setup('strict', F.ALL, 0x1000n, 0x3fffffn);
    const walk = walker([[0, 512, 1024, 3], [512, 512, 2048, 1], [2048, 1, 7, 2]]);
    list.replay(h, walk);
    // Leaf [0, 511] is cut by the range start 0x1000: aligned chunks of frames 1..511.
    const expected = [
      'MAP 1000+fff->401000/3', 'MAP 2000+1fff->402000/3', 'MAP 4000+3fff->404000/3', 'MAP 8000+7fff->408000/3',
      'MAP 10000+ffff->410000/3', 'MAP 20000+1ffff->420000/3', 'MAP 40000+3ffff->440000/3', 'MAP 80000+7ffff->480000/3',
      'MAP 100000+fffff->500000/3', 'MAP 200000+1fffff->800000/1',
    ];
    expect(seq()).toEqual(expected);
    list.replay(h, walk);
    expect(seq()).toEqual(expected);
  });
  it('sends nothing to a notifier without MAP', () => {
    const { list, log, h } = setup('strict', F.UNMAP);
    list.replay(h, walker([[0, 1, 1, 3]]));
    expect(log).toHaveLength(0);
  });
});

describe('C8 teardown', () => {
  it('unmaps whole entries for MAP notifiers and the range for UNMAP-only ones', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const m = list.register(recorder(log, F.ALL));
    const u = list.register(recorder(log, F.UNMAP, 0n, 0xffffffffn));
    list.notify(map(0x200000n, 0x400000n, MiB2));
    list.notify(map(0x5000n, 0x1000n));
    // Range [0x1000, 0x201fff] cuts the 2 MiB entry: it is unmapped whole.
    list.unmapAll(0x1000n, 0x201fffn);
    const mine = log.filter((g) => g.id === m.id && g.type === F.UNMAP);
    const covered = (a: bigint, last: bigint) => mine.some((g) => g.iova <= a && last <= g.iova + g.addrMask);
    expect(covered(0x200000n, 0x3fffffn)).toBe(true);
    expect(covered(0x5000n, 0x5fffn)).toBe(true);
    expect(list.view(m)).toEqual([]);
    const theirs = log.filter((g) => g.id === u.id).map(short);
    // MAPs are not for u; its UNMAPs cover [0x1000, 0x201fff] in aligned chunks.
    expect(theirs[0]).toBe('UNMAP 1000+fff');
    expect(theirs[theirs.length - 1]).toBe('UNMAP 200000+1fff');
  });
  it('unmaps the whole 64-bit space by default, including the last page', () => {
    const { list, seq, h } = setup();
    list.notify(map(U64_MAX - 0xfffn, 0x1000n));
    list.unmapAll();
    expect(list.view(h)).toEqual([]);
    expect(seq()).toEqual(['MAP fffffffffffff000+fff->1000/3', 'UNMAP 0+ffffffffffffffff']);
  });
});

describe('C10 and listener errors', () => {
  it('a notifier disposed during delivery gets nothing more; one registered during delivery waits for the next event', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    let b: ReturnType<NotifierList['register']> | undefined;
    let late: ReturnType<NotifierList['register']> | undefined;
    list.register(recorder(log, F.ALL, 0n, U64_MAX, {
      notify: () => {
        b?.dispose();
        late ??= list.register(recorder(log));
      },
    }));
    b = list.register(recorder(log));
    list.notify(map(0x1000n, 0x2000n));
    expect(log).toHaveLength(0);
    list.notify(map(0x2000n, 0x2000n));
    expect(log.map((g) => g.id)).toEqual([late!.id]);
    expect(caught(() => list.notifyOne(b!, map(0x3000n, 0n))).rule).toBe('C10');
  });
  it('a listener that notifies from its callback does not disturb the event in flight', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    let nested = false;
    list.register(recorder(log, F.ALL, 0n, U64_MAX, {
      notify: () => {
        if (!nested) {
          nested = true;
          list.notify(map(0x9000n, 0x3000n, KiB4, 1));
        }
      },
    }));
    const b = list.register(recorder(log));
    list.notify(map(0x1000n, 0x2000n));
    // b got the nested event first (delivered during a's callback), then the outer one intact.
    expect(log.map(short)).toEqual(['MAP 9000+fff->3000/1', 'MAP 1000+fff->2000/3']);
    expect(list.view(b)).toHaveLength(2);
  });
  it('a throwing listener does not stop the others; its view is still updated', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const errors: unknown[] = [];
    list.events.on('listenerError', (e) => errors.push(e));
    const bad = list.register(recorder([], F.ALL, 0n, U64_MAX, { notify: () => { throw new Error('boom'); } }));
    list.register(recorder(log));
    list.notify(map(0x1000n, 0x2000n));
    expect(errors).toEqual([new Error('boom')]);
    expect(log).toHaveLength(1);
    expect(list.view(bad)).toHaveLength(1);
  });
  it('a listener that disposes itself in the middle of a repaired sequence gets nothing more', () => {
    const list = new NotifierList({ mode: 'repair' });
    const log: Got[] = [];
    const h = list.register(recorder(log, F.ALL, 0n, U64_MAX, {
      notify(ev, handle) {
        log.push({ id: handle.id, type: ev.type, iova: ev.entry.iova, translatedAddr: 0n, addrMask: ev.entry.addrMask, perm: 0 });
        if (ev.type === F.UNMAP) handle.dispose();
      },
    }));
    list.notify(map(0x1000n, 0x5000n));
    list.notify(map(0x1000n, 0x6000n)); // repaired into UNMAP + MAP: the MAP is not delivered
    expect(log.map((g) => g.type)).toEqual([F.MAP, F.UNMAP]);
    expect(h.registered).toBe(false);
  });
});

describe('the whole 64-bit space', () => {
  it('maps and unmaps the last page and a 2^64 entry', () => {
    const { list, seq, h } = setup();
    list.notify(map(U64_MAX - 0xfffn, 0xfffffffffffff000n));
    expect(list.view(h)).toEqual([entry(U64_MAX - 0xfffn, 0xfffffffffffff000n, KiB4, 3)]);
    expect(caught(() => list.notify(map(0n, 0n, U64_MAX))).rule).toBe('C4');
    list.notify(unmap(U64_MAX - 0xfffn));
    list.notify(map(0n, 0n, U64_MAX));
    expect(list.view(h)).toEqual([entry(0n, 0n, U64_MAX, 3)]);
    expect(caught(() => list.notify(unmap(1n << 63n, (1n << 63n) - 1n))).rule).toBe('C5');
    list.notify(unmap(0n, U64_MAX));
    expect(seq()).toEqual([
      'MAP fffffffffffff000+fff->fffffffffffff000/3', 'UNMAP fffffffffffff000+fff',
      'MAP 0+ffffffffffffffff->0/3', 'UNMAP 0+ffffffffffffffff',
    ]);
  });
  it('refuses entries beyond 2^64 (C2)', () => {
    const { list } = setup();
    expect(caught(() => list.notify(map(U64_MAX - 0xfffn, 0n, 0x1fffn))).rule).toBe('C2');
  });
});

describe('notifyOnePages (numeric entry point)', () => {
  it('delivers a MAP whose bigint entry is computed on read, and copies by spread', () => {
    const list = new NotifierList();
    const copies: unknown[] = [];
    const h = list.register({ flags: F.ALL, start: 0n, end: U64_MAX, notify: (ev) => copies.push({ type: ev.type, ...ev.entry }) });
    list.notifyOnePages(h, F.MAP, 0x200, 0x200, 0x400, 3);
    list.notifyOnePages(h, F.UNMAP, 0x200, 0x200, 0, 0);
    expect(copies).toEqual([
      { type: F.MAP, iova: 0x200000n, translatedAddr: 0x400000n, addrMask: MiB2, perm: 3 },
      { type: F.UNMAP, iova: 0x200000n, translatedAddr: 0n, addrMask: MiB2, perm: 0 },
    ]);
  });
  it('checks the same rules', () => {
    const list = new NotifierList();
    const h = list.register(recorder([]));
    list.notifyOnePages(h, F.MAP, 1, 1, 5, 3);
    const v = caught(() => list.notifyOnePages(h, F.MAP, 1, 1, 6, 3));
    expect(v.rule).toBe('C4');
    expect(v.event!.entry).toEqual(entry(0x1000n, 0x6000n, KiB4, 3)); // a copy, not the reused event
    expect(caught(() => list.notifyOnePages(h, F.MAP, 3, 2, 6, 3)).rule).toBe('C2');
    expect(caught(() => list.notifyOnePages(h, F.UNMAP, 8, 1, 0, 1)).rule).toBe('C3');
    expect(list.stats).toEqual({ delivered: 1, violations: 3, repairs: 0 });
  });
});

describe('re-entrant listeners (issue 13)', () => {
  /**
   * A MAP|UNMAP listener whose events an independent RefChecker follows (what
   * it finds wrong is collected in `broken`), and which calls `react` once,
   * from inside the first UNMAP it receives.
   */
  function reentrant(list: NotifierList, react: () => void) {
    const ref = new RefChecker(0n, U64_MAX);
    const broken: string[] = [];
    let fired = false;
    const h = list.register({
      flags: F.ALL, start: 0n, end: U64_MAX,
      notify(ev, handle) {
        try {
          ref.feed(copyEvent(ev, handle));
        } catch (e) {
          broken.push((e as Error).message);
        }
        if (ev.type === F.UNMAP && !fired) {
          fired = true;
          react();
        }
      },
    });
    return { h, ref, broken, fired: () => fired };
  }

  it('repair: an in-place change whose UNMAP makes the listener map the range again sends no MAP over that entry (C4)', () => {
    const list = new NotifierList({ mode: 'repair' });
    // Legal: the UNMAP left [0x1000, 0x1fff] empty in this listener's view.
    const { h, ref, broken, fired } = reentrant(list, () => list.notify(map(0x1000n, 0x7000n)));
    const repairs: ContractRepair[] = [];
    list.events.on('repaired', (r) => repairs.push(r));
    list.notify(map(0x1000n, 0x5000n));
    list.notify(map(0x1000n, 0x6000n)); // an in-place change: repaired into UNMAP, then MAP
    expect(broken).toEqual([]);
    expect(fired()).toBe(true);
    expect(repairs.map((r) => r.rule)).toEqual(['C4']);
    expect(list.view(h)).toEqual(refView(ref));
    expect(list.view(h)).toHaveLength(1);
  });

  for (const mode of ['strict', 'repair'] as const) {
    it(`${mode}: unmapAll never cuts an entry a listener mapped from inside an earlier UNMAP of the teardown (C5, C8)`, () => {
      const list = new NotifierList({ mode });
      // After the UNMAP of frame 1, [0, 0x3fff] is empty: mapping it is legal.
      const { h, ref, broken, fired } = reentrant(list, () => list.notify(map(0n, 0x40000n, 0x3fffn)));
      list.notify(map(0x1000n, 0x5000n));
      list.notify(map(0x4000n, 0x9000n));
      // [0x1000, 0x7fff] in aligned blocks: frame 1, frames 2-3, frames 4-7; the entry
      // mapped during the first UNMAP covers frames 0-3 and so contains the second block.
      list.unmapAll(0x1000n, 0x7fffn);
      expect(fired()).toBe(true);
      expect(broken).toEqual([]);
      expect(list.view(h)).toEqual(refView(ref));
      // C8: nothing the listener holds in the range survives the teardown.
      expect(list.view(h)).toEqual([]);
    });
  }

  it('repair: a MAP with perm NONE reaches UNMAP-only (vhost-like) listeners as an UNMAP (C3)', () => {
    const list = new NotifierList({ mode: 'repair' });
    const log: Got[] = [];
    const m = list.register(recorder(log, F.ALL));
    const u = list.register(recorder(log, F.UNMAP));
    list.notify(map(0x2000n, 0x6000n));
    list.notify({ type: F.MAP, entry: entry(0x2000n, 0x6000n, KiB4, 0) });
    const unmaps = (id: number) => log.filter((g) => g.id === id && g.type === F.UNMAP);
    const covers = (gs: Got[]) => gs.some((g) => g.iova <= 0x2000n && 0x2fffn <= g.iova + g.addrMask && g.perm === 0);
    expect(covers(unmaps(m.id))).toBe(true);
    expect(covers(unmaps(u.id))).toBe(true);
    expect(log.filter((g) => g.id === u.id && g.type !== F.UNMAP)).toEqual([]);
    expect(list.view(m)).toEqual([]);
  });

  it('strict: a MAP with perm NONE is a C3 violation even when only UNMAP-only listeners hear it', () => {
    const list = new NotifierList();
    const log: Got[] = [];
    const u = list.register(recorder(log, F.UNMAP));
    const v = caught(() => list.notify({ type: F.MAP, entry: entry(0x2000n, 0x6000n, KiB4, 0) }));
    expect(v.rule).toBe('C3');
    expect(v.notifier).toBe(u);
    expect(log).toEqual([]);
  });
});

describe('DEVIOTLB_UNMAP shape (issue 13)', () => {
  it('a crop that is not an aligned power of two is delivered as the fewest aligned blocks covering it exactly (C6)', () => {
    const { list, seq, repairs } = setup('strict', F.DEVIOTLB_UNMAP, 0x1000n, 0x6fffn);
    list.notify({ type: F.DEVIOTLB_UNMAP, entry: entry(0n, 0n, 0xffffn, 0) });
    // [0x1000, 0x6fff]: frames 1 and 6 are only 4 KiB-aligned at their edges, and
    // [0x2000, 0x5fff] is 16 KiB not aligned to 16 KiB: four blocks at least.
    expect(seq()).toEqual(['DEV 1000+fff', 'DEV 2000+1fff', 'DEV 4000+1fff', 'DEV 6000+fff']);
    // A legal event cropped by the list is not a violation.
    expect(repairs).toEqual([]);
    expect(list.stats.violations).toBe(0);
  });

  it('repair: a mask like 0x1234 is delivered as aligned power-of-two blocks, and counted once', () => {
    const { list, seq, repairs } = setup('repair', F.DEVIOTLB_UNMAP);
    list.notify({ type: F.DEVIOTLB_UNMAP, entry: entry(0n, 0n, 0x1234n, 0) });
    // [0, 0x1234] is 0x1235 bytes from an address aligned to everything: one block per set bit, largest first.
    expect(seq()).toEqual(['DEV 0+fff', 'DEV 1000+1ff', 'DEV 1200+1f', 'DEV 1220+f', 'DEV 1230+3', 'DEV 1234+0']);
    expect(repairs.map((r) => [r.rule, r.delivered.length])).toEqual([['C2', 6]]);
    expect(list.stats).toEqual({ delivered: 6, violations: 1, repairs: 1 });
  });

  it('repair: an unaligned DEVIOTLB_UNMAP crossing the range edge is cropped, then split', () => {
    const { list, seq } = setup('repair', F.DEVIOTLB_UNMAP, 0n, 0x2fffn);
    list.notify({ type: F.DEVIOTLB_UNMAP, entry: entry(0x800n, 0n, 0x3fffn, 0) });
    // [0x800, 0x47ff] cropped to [0x800, 0x2fff].
    expect(seq()).toEqual(['DEV 800+7ff', 'DEV 1000+fff', 'DEV 2000+fff']);
  });
});

describe('large views (issue 13)', () => {
  it('unmapAll after a sync that replaced one 1 GiB leaf by 511 x 512 4 KiB leaves empties the view (no TypeError from the tree)', () => {
    // The reported layout: a second-level table whose 511 level-2 slots all
    // point to one level-1 table, replacing a 1 GiB leaf between other mappings.
    const G = 1 << 18; // frames in 1 GiB
    const before: Array<[number, number, number, number]> = [];
    for (let i = 0; i < 5000; i++) before.push([i, 1, 0x100000 + i, 3]);
    const after: Array<[number, number, number, number]> = [];
    for (let i = 0; i < 100; i++) after.push([2 * G + i, 1, 0x200000 + i, 3]);
    const aliased: Array<[number, number, number, number]> = [];
    for (let slot = 0; slot < 511; slot++) for (let i = 0; i < 512; i++) aliased.push([G + slot * 512 + i, 1, 0x300000 + i, 1]);
    const list = new NotifierList({ name: 'test' });
    let maps = 0;
    let unmaps = 0;
    const h = list.register({ flags: F.ALL, start: 0n, end: U64_MAX, notify: (ev) => { if (ev.type === F.MAP) maps++; else unmaps++; } });
    list.replay(h, walker([...before, [G, G, G, 3], ...after]));
    list.sync(BigInt(G) << 12n, (BigInt(2 * G) << 12n) - 1n, walker([...before, ...aliased, ...after]));
    const total = before.length + aliased.length + after.length;
    expect(list.view(h)).toHaveLength(total);
    expect([maps, unmaps]).toEqual([before.length + 1 + after.length + aliased.length, 1]);
    list.unmapAll();
    expect(list.view(h)).toEqual([]);
    // The list can still be used: a replay maps everything again.
    list.replay(h, walker([...before, ...aliased, ...after]));
    expect(list.view(h)).toHaveLength(total);
  });
});
