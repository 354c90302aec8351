import fc from 'fast-check';
import { VfioContainer, VfioError, SimHostDomain } from '../../src/listeners';
import { K4, pageSet } from './helpers';

/** The type1 v2 rules (vtd-facts.md §10) over a plain list of mappings: the oracle. */
interface RefMap { iova: bigint; size: bigint; vaddr: bigint }

type Op = { kind: 'map'; page: number; pages: number; vpage: number } | { kind: 'unmap'; page: number; pages: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('map' as const), page: fc.nat(63), pages: fc.integer({ min: 1, max: 8 }), vpage: fc.nat(1000) }),
  fc.record({ kind: fc.constant('unmap' as const), page: fc.nat(63), pages: fc.integer({ min: 1, max: 16 }) }),
);

describe('VfioContainer against the type1 v2 rules (property)', () => {
  test('EEXIST, bisect EINVAL and unmapped sizes follow the rules; every domain equals the mapping list', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 10, maxLength: 60 }), (ops) => {
      const d4k = new SimHostDomain({ name: '4k' });
      const d2m = new SimHostDomain({ name: '4k+2m', pgsizeBitmap: (1n << 12n) | (1n << 21n) });
      const c = new VfioContainer({ domains: [d4k, d2m] });
      let ref: RefMap[] = [];
      for (const op of ops) {
        const iova = BigInt(op.page) * K4;
        const size = BigInt(op.pages) * K4;
        const end = iova + size;
        if (op.kind === 'map') {
          const overlaps = ref.some((m) => m.iova < end && iova < m.iova + m.size);
          let errno: string | undefined;
          try {
            c.mapDma({ iova, size, vaddr: BigInt(op.vpage) * K4, read: true, write: op.page % 2 === 0 });
          } catch (e) {
            if (!(e instanceof VfioError)) throw e;
            errno = e.errno;
          }
          expect(errno).toBe(overlaps ? 'EEXIST' : undefined);
          if (!overlaps) ref.push({ iova, size, vaddr: BigInt(op.vpage) * K4 });
        } else {
          const bisects = ref.some((m) => (m.iova < iova && iova < m.iova + m.size) || (m.iova < end && end < m.iova + m.size));
          let result: bigint | string;
          try {
            result = c.unmapDma({ iova, size }).unmapped;
          } catch (e) {
            if (!(e instanceof VfioError)) throw e;
            result = e.errno;
          }
          if (bisects) {
            expect(result).toBe('EINVAL');
          } else {
            const gone = ref.filter((m) => m.iova >= iova && m.iova + m.size <= end);
            expect(result).toBe(gone.reduce((s, m) => s + m.size, 0n));
            ref = ref.filter((m) => !gone.includes(m));
          }
        }
        const expected = pageSet(ref.map((m) => ({ ...m, read: true, write: m.iova / K4 % 2n === 0n })));
        expect(pageSet(c.mappings())).toEqual(expected);
        expect(pageSet(d4k.mappings())).toEqual(expected);
        expect(pageSet(d2m.mappings())).toEqual(expected);
        expect(c.getInfo().dma_avail).toBe(65535 - ref.length);
      }
    }), { numRuns: 200 });
  });
});
