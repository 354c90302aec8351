import fc from 'fast-check';
import { IntervalMap, LEAF } from '../../src/core/interval-map';

interface Ref { s: number; n: number; x: number; perm: number }

function contents(m: IntervalMap): Ref[] {
  const out: Ref[] = [];
  m.forEach((s, n, x, perm) => out.push({ s, n, x, perm }));
  return out;
}

describe('IntervalMap', () => {
  it('inserts, finds, iterates and removes', () => {
    const m = new IntervalMap();
    m.insert(512, 512, 1024, 3);
    m.insert(0, 1, 7, 1);
    m.insert(2 ** 52 - 1, 1, 5, 2);
    expect(m.size).toBe(3);
    expect(m.seek(700)).toBe(true);
    expect([m.curStart, m.curPages, m.curXlat, m.curPerm, m.curEnd]).toEqual([512, 512, 1024, 3, 1023]);
    expect(m.seek(1)).toBe(true);
    expect(m.curStart).toBe(512);
    expect(m.seek(2 ** 52 - 1)).toBe(true);
    expect(m.curStart).toBe(2 ** 52 - 1);
    expect(m.next()).toBe(false);
    expect(m.remove(512)).toBe(true);
    expect(m.remove(512)).toBe(false);
    expect(contents(m)).toEqual([{ s: 0, n: 1, x: 7, perm: 1 }, { s: 2 ** 52 - 1, n: 1, x: 5, perm: 2 }]);
  });

  it('holds an entry covering the whole 64-bit space', () => {
    const m = new IntervalMap();
    m.insert(0, 2 ** 52, 0, 3);
    expect(m.seek(2 ** 52 - 1)).toBe(true);
    expect(m.curEnd).toBe(2 ** 52 - 1);
  });

  it('keeps order through many ascending inserts and removals (splits, merges, root collapse)', () => {
    const m = new IntervalMap();
    const N = 20000;
    for (let i = 0; i < N; i++) m.insert(i * 2, 1, i, 3);
    expect(m.size).toBe(N);
    for (let i = 0; i < N; i += 3) expect(m.remove(i * 2)).toBe(true);
    const left = contents(m).map((r) => r.s);
    const want: number[] = [];
    for (let i = 0; i < N; i++) if (i % 3 !== 0) want.push(i * 2);
    expect(left).toEqual(want);
    for (const s of want) expect(m.remove(s)).toBe(true);
    expect(m.size).toBe(0);
    expect(m.seek(0)).toBe(false);
    m.insert(4, 4, 8, 1);
    expect(contents(m)).toEqual([{ s: 4, n: 4, x: 8, perm: 1 }]);
  });

  it('property: behaves like a sorted list of disjoint aligned intervals', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('ins' as const), s: fc.integer({ min: 0, max: 4095 }), o: fc.constantFrom(0, 0, 0, 1, 2, 4, 6) }),
      fc.record({ k: fc.constant('del' as const), s: fc.integer({ min: 0, max: 4095 }), o: fc.constant(0) }),
      fc.record({ k: fc.constant('seek' as const), s: fc.integer({ min: 0, max: 4200 }), o: fc.constant(0) }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 600 }), fc.constantFrom(0, 2 ** 52 - 8192), (ops, base) => {
      const m = new IntervalMap();
      let ref: Ref[] = [];
      for (const o of ops) {
        const n = 2 ** o.o;
        const s = base + Math.floor(o.s / n) * n;
        if (o.k === 'ins') {
          if (ref.some((r) => r.s <= s + n - 1 && s <= r.s + r.n - 1)) continue;
          m.insert(s, n, s + 7 * n, 1 + (s % 3));
          ref.push({ s, n, x: s + 7 * n, perm: 1 + (s % 3) });
          ref.sort((a, b) => a.s - b.s);
        } else if (o.k === 'del') {
          const hit = ref.find((r) => r.s === s);
          expect(m.remove(s)).toBe(hit !== undefined);
          ref = ref.filter((r) => r.s !== s);
        } else {
          const want = ref.find((r) => r.s + r.n - 1 >= s);
          expect(m.seek(s)).toBe(want !== undefined);
          if (want) expect(m.curStart).toBe(want.s);
        }
        expect(m.size).toBe(ref.length);
      }
      expect(contents(m)).toEqual(ref);
    }), { numRuns: 200 });
  });

  it('property: a deep tree (full leaves, several inner levels) stays ordered under inserts next to full leaves and removals', () => {
    // 40 000 entries on even frames fill 2 500 leaves: inner nodes on two levels.
    const N = 40000;
    const m = new IntervalMap();
    const present = new Uint8Array(2 * N + 2);
    for (let i = 0; i < N; i++) {
      m.insert(2 * i, 1, i, 3);
      present[2 * i] = 1;
    }
    // Frames right after the last entry of a full leaf (odd frames 2 * k * LEAF - 1) are the interesting ones.
    const frame = fc.oneof(fc.integer({ min: 1, max: N / LEAF - 1 }).map((k) => 2 * k * LEAF - 1), fc.integer({ min: 0, max: 2 * N }));
    const op = fc.record({ ins: fc.boolean(), f: frame });
    fc.assert(fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      for (const { ins, f } of ops) {
        if (ins && !present[f]) {
          m.insert(f, 1, f, 1);
          present[f] = 1;
        } else if (!ins) {
          expect(m.remove(f)).toBe(present[f] === 1);
          present[f] = 0;
        }
        // The frame and its neighbours are found where a sorted list says.
        for (const q of [f - 1, f, f + 1]) {
          let want = q < 0 ? 0 : q;
          while (want < present.length && !present[want]) want++;
          expect(m.seek(q)).toBe(want < present.length);
          if (want < present.length) expect(m.curStart).toBe(want);
        }
      }
    }), { numRuns: 60 });
    const all: number[] = [];
    m.forEach((st) => all.push(st));
    const want: number[] = [];
    present.forEach((v, i) => { if (v) want.push(i); });
    expect(all).toEqual(want);
  });

  it('finds an entry that starts before a leaf separator and extends past it', () => {
    const m = new IntervalMap();
    for (let i = 0; i < LEAF; i++) m.insert(i, 1, 0, 1); // one full leaf
    m.insert(1100, 1, 0, 1); // appended: a new leaf, separator 1100
    m.insert(1200, 1, 0, 1);
    m.remove(1100); // the separator stays 1100
    m.insert(1088, 16, 0, 3); // [1088, 1103] routes left of the separator but covers 1100..1103
    expect(m.seek(1101)).toBe(true);
    expect([m.curStart, m.curEnd]).toEqual([1088, 1103]);
    expect(m.seek(1104)).toBe(true);
    expect(m.curStart).toBe(1200);
    expect(m.seek(1201)).toBe(false);
  });
});
