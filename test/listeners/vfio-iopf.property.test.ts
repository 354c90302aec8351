/**
 * Seed 001 against a model: IOPF mode with VFIO_DMA_UNMAP_FLAG_VADDR /
 * MAP_FLAG_VADDR. The model is a plain list of user mappings with their
 * vaddr and whether it is valid; the rules come from Linux
 * (vfio_dma_do_map/unmap) and the IOPF contract: after memory is
 * invalidated, no domain translates an IOVA backed by it until a device
 * faults it in, and a device access always reaches the mapping's current
 * memory or faults.
 */
import fc from 'fast-check';
import { VfioContainer, VfioError, SimHostDomain, VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_UNMAP_FLAG_VADDR } from '../../src/listeners';
import { K4 } from './helpers';

/** `earlier`: vaddr bases the mapping had before a MAP|VADDR (Linux: the new vaddr must be the same memory, so the IOMMU keeps the old pages). */
interface RefMap { page: number; pages: number; vpage: number; valid: boolean; earlier: number[] }

type Op =
  | { kind: 'map'; page: number; pages: number; vpage: number }
  | { kind: 'unmap'; page: number; pages: number }
  | { kind: 'invalidate'; vpage: number; pages: number }
  | { kind: 'dropVaddr'; page: number; pages: number }
  | { kind: 'setVaddr'; page: number; pages: number; vpage: number }
  | { kind: 'dma'; page: number; domain: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('map' as const), page: fc.nat(31), pages: fc.integer({ min: 1, max: 4 }), vpage: fc.nat(15) }),
  fc.record({ kind: fc.constant('unmap' as const), page: fc.nat(31), pages: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('invalidate' as const), vpage: fc.nat(15), pages: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('dropVaddr' as const), page: fc.nat(31), pages: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('setVaddr' as const), page: fc.nat(31), pages: fc.integer({ min: 1, max: 4 }), vpage: fc.nat(15) }),
  fc.record({ kind: fc.constant('dma' as const), page: fc.nat(31), domain: fc.nat(1) }),
);

const B = (n: number): bigint => BigInt(n) * K4;
const VBASE = 0x10000000;

function errno(fn: () => unknown): string | undefined {
  try { fn(); } catch (e) { if (e instanceof VfioError) return e.errno; throw e; }
  return undefined;
}

describe('IOPF mode and FLAG_VADDR against a model (property)', () => {
  test('errnos, unmapped sizes and what devices reach follow the model', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 5, maxLength: 50 }), (ops) => {
      const domains = [new SimHostDomain({ name: 'd0', pgsizeBitmap: 1n << 12n }), new SimHostDomain({ name: 'd1' })];
      const c = new VfioContainer({ domains, hostMemory: 'iopf' });
      const devs = [c.openDevice('a', { domain: 0 }), c.openDevice('b', { domain: 1 })];
      let ref: RefMap[] = [];
      const at = (p: number): RefMap | undefined => ref.find((m) => m.page <= p && p < m.page + m.pages);
      for (const op of ops) {
        if (op.kind === 'map') {
          const clash = ref.some((m) => m.page < op.page + op.pages && op.page < m.page + m.pages);
          expect(errno(() => c.mapDma({ iova: B(op.page), size: B(op.pages), vaddr: B(VBASE + op.vpage), read: true, write: true })))
            .toBe(clash ? 'EEXIST' : undefined);
          if (!clash) ref.push({ page: op.page, pages: op.pages, vpage: VBASE + op.vpage, valid: true, earlier: [] });
        } else if (op.kind === 'unmap' || op.kind === 'dropVaddr') {
          const end = op.page + op.pages;
          const bisect = ref.some((m) => (m.page < op.page && op.page < m.page + m.pages) || (m.page < end && end < m.page + m.pages));
          const hit = ref.filter((m) => m.page >= op.page && m.page < end);
          const flags = op.kind === 'dropVaddr' ? VFIO_DMA_UNMAP_FLAG_VADDR : 0;
          const already = op.kind === 'dropVaddr' && hit.some((m) => !m.valid);
          let got: bigint | undefined;
          const e = errno(() => { got = c.unmapDma({ iova: B(op.page), size: B(op.pages), flags }).unmapped; });
          expect(e).toBe(bisect || already ? 'EINVAL' : undefined);
          if (e === undefined) {
            expect(got).toBe(B(hit.reduce((n, m) => n + m.pages, 0)));
            if (op.kind === 'unmap') ref = ref.filter((m) => !hit.includes(m));
            else for (const m of hit) m.valid = false;
          }
        } else if (op.kind === 'setVaddr') {
          const m = ref.find((r) => r.page < op.page + op.pages && op.page < r.page + r.pages);
          const want = m === undefined ? 'ENOENT' : m.page === op.page && m.pages === op.pages && !m.valid ? undefined : 'EINVAL';
          expect(errno(() => c.mapDma({ iova: B(op.page), size: B(op.pages), vaddr: B(VBASE + op.vpage), read: false, write: false, flags: VFIO_DMA_MAP_FLAG_VADDR })))
            .toBe(want);
          if (want === undefined && m !== undefined) { m.earlier.push(m.vpage); m.vpage = VBASE + op.vpage; m.valid = true; }
        } else if (op.kind === 'invalidate') {
          const lo = VBASE + op.vpage;
          const hi = lo + op.pages;
          c.invalidateVaddr(B(lo), B(op.pages));
          // No domain translates an IOVA whose (valid) memory lies in the invalidated range.
          for (const m of ref) {
            if (!m.valid) continue;
            for (let i = 0; i < m.pages; i++) {
              if (m.vpage + i >= lo && m.vpage + i < hi) for (const d of domains) expect(d.translate(B(m.page + i))).toBeUndefined();
            }
          }
        } else {
          const m = at(op.page);
          const r = devs[op.domain]!.dma(B(op.page), 8n, false);
          if (m === undefined) {
            expect(r).toMatchObject({ ok: false, reason: 'unmapped' });
          } else if (r.ok) {
            // The mapping's memory, or one it had before a MAP|VADDR (still in the IOMMU, as in Linux).
            const bases = [m.vpage, ...m.earlier].map((v) => B(v + op.page - m.page));
            expect(bases).toContain(r.hostAddr);
          } else {
            // Only a mapping without a valid vaddr may fault for good.
            expect(m.valid).toBe(false);
          }
        }
      }
      // The domains never map what the user does not.
      for (const d of domains) for (const h of d.mappings()) expect(at(Number(h.iova / K4))).toBeDefined();
    }), { numRuns: 300 });
  });
});
