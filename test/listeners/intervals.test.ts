import fc from 'fast-check';
import { SpanList, diffSpans } from '../../src/listeners/intervals';
import type { Span } from '../../src/listeners/intervals';

/** Disjoint spans over pages 0..63 (unit = 1), built from a list of (start, length, addr, prot). */
const spansArb: fc.Arbitrary<Span[]> = fc.array(
  fc.record({ start: fc.nat(63), len: fc.integer({ min: 1, max: 8 }), addr: fc.nat(200), prot: fc.integer({ min: 1, max: 3 }) }),
  { maxLength: 12 },
).map((raw) => {
  const out: Span[] = [];
  for (const r of raw) {
    const s = { start: BigInt(r.start), end: BigInt(Math.min(r.start + r.len, 64)), addr: BigInt(r.addr), prot: r.prot };
    if (!out.some((o) => o.start < s.end && s.start < o.end)) out.push(s);
  }
  return out.sort((a, b) => (a.start < b.start ? -1 : 1));
});

/** Unit -> "addr/prot" of a span list. */
function units(spans: readonly Span[]): Map<number, string> {
  const m = new Map<number, string>();
  for (const s of spans) for (let x = s.start; x < s.end; x++) m.set(Number(x), `${s.addr + (x - s.start)}/${s.prot}`);
  return m;
}

const clone = (s: Span, start: bigint, end: bigint): Span => ({ start, end, addr: s.addr + (start - s.start), prot: s.prot });

describe('intervals (internal)', () => {
  test('SpanList.cut removes exactly [start, end) and reports the bytes removed', () => {
    fc.assert(fc.property(spansArb, fc.nat(63), fc.integer({ min: 1, max: 20 }), (spans, a, len) => {
      const list = new SpanList<Span>();
      for (const s of spans) list.insert({ ...s });
      const before = units(spans);
      const removed = list.cut(BigInt(a), BigInt(a + len), clone);
      const want = new Map([...before].filter(([x]) => x < a || x >= a + len));
      expect(units(list.toArray())).toEqual(want);
      expect(removed).toBe(BigInt(before.size - want.size));
      // find() and the order agree with the units.
      for (let x = 0; x < 64; x++) expect(list.find(BigInt(x)) !== undefined).toBe(want.has(x));
    }));
  });

  test('diffSpans finds exactly the units where the two maps differ, in maximal runs', () => {
    fc.assert(fc.property(spansArb, spansArb, (host, guest) => {
      const h = units(host);
      const g = units(guest);
      const diffs = diffSpans(host, guest, 0n, 64n);
      const covered = new Set<number>();
      for (const d of diffs) {
        for (let x = d.start; x <= d.last; x++) {
          covered.add(Number(x));
          // Each unit of a run: the sides the run reports are what the maps hold.
          const off = x - d.start;
          expect(h.get(Number(x))).toBe(d.host && `${d.host.addr + off}/${d.host.prot}`);
          expect(g.get(Number(x))).toBe(d.guest && `${d.guest.addr + off}/${d.guest.prot}`);
        }
      }
      const differing = new Set([...Array(64).keys()].filter((x) => h.get(x) !== g.get(x)));
      expect(covered).toEqual(differing);
      // Runs are maximal: two adjacent runs could not be one.
      for (let i = 1; i < diffs.length; i++) {
        const p = diffs[i - 1]!;
        const d = diffs[i]!;
        if (p.last + 1n !== d.start) continue;
        const cont = (a: typeof p.host, b: typeof p.host): boolean =>
          a === undefined ? b === undefined : b !== undefined && a.prot === b.prot && a.addr + (d.start - p.start) === b.addr;
        expect(cont(p.host, d.host) && cont(p.guest, d.guest)).toBe(false);
      }
    }));
  });

  test('SpanList stays ordered and searchable across chunk splits and merges (thousands of spans)', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(2999)), { minLength: 2000, maxLength: 4000 }), (ops) => {
      const list = new SpanList<Span>();
      const model = new Map<number, Span>();
      for (const [add, unit] of ops) {
        const present = model.get(unit);
        if (add && present === undefined) {
          const s = { start: BigInt(unit), end: BigInt(unit + 1), addr: BigInt(unit * 7), prot: 3 };
          list.insert(s);
          model.set(unit, s);
        } else if (!add && present !== undefined) {
          if (!list.delete(present)) throw new Error(`delete of ${unit} failed`);
          model.delete(unit);
        }
      }
      const want = [...model.keys()].sort((a, b) => a - b);
      expect(list.length).toBe(want.length);
      expect(list.toArray().map((s) => Number(s.start))).toEqual(want);
      expect([...list].length).toBe(want.length);
      const probes = [...Array(3000).keys()].filter((x) => x % 7 === 0);
      expect(probes.map((x) => list.find(BigInt(x)) === model.get(x)).every(Boolean)).toBe(true);
      expect(list.overlapping(100n, 200n).map((s) => Number(s.start))).toEqual(want.filter((u) => u >= 100 && u < 200));
    }), { numRuns: 10 });
  });
});
