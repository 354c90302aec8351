import { SimHostDomain, HostDomainError } from '../../src/listeners';
import { K4, M2 } from './helpers';

describe('SimHostDomain (a host IOMMU page table)', () => {
  test('map picks the largest page size that iova, address and length allow', () => {
    const d = new SimHostDomain();
    d.map(M2 - K4, 0x4000_0000n - K4, M2 + 2n * K4, 3);
    expect(d.mappings().map((m) => [m.iova, m.size])).toEqual([[M2 - K4, K4], [M2, M2], [2n * M2, K4]]);
    // Misaligned physical address: no superpage.
    const e = new SimHostDomain();
    e.map(M2, 0x4000_1000n, M2, 1);
    expect(e.mappings()).toHaveLength(512);
  });

  test('unmap removes whole pages from iova on: a 4 KiB request takes a 2 MiB page, a hole stops it', () => {
    const d = new SimHostDomain();
    d.map(M2, 0x4000_0000n, M2, 3);
    d.map(2n * M2, 0x5000_0000n, K4, 3);
    expect(d.unmap(M2 + K4, K4)).toBe(0n); // inside a superpage, not at its start
    expect(d.unmap(M2, K4)).toBe(M2);
    expect(d.translate(M2 + 8n)).toBeUndefined();
    expect(d.unmap(2n * M2, 4n * K4)).toBe(K4);
    expect(d.mappings()).toEqual([]);
  });

  test('a map over a mapped page fails with EEXIST and maps nothing', () => {
    const d = new SimHostDomain({ pgsizeBitmap: 1n << 12n });
    d.map(0x3000n, 0n, K4, 3);
    let err: unknown;
    try { d.map(0x1000n, 0n, 4n * K4, 3); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(HostDomainError);
    expect((err as HostDomainError).errno).toBe('EEXIST');
    expect(d.mappings()).toEqual([{ iova: 0x3000n, size: K4, paddr: 0n, prot: 3 }]);
  });
});
