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

  test('a huge map over a sparse table checks overlap by the table, not frame by frame (hostile 2^46-byte leaf)', () => {
    const d = new SimHostDomain();
    const G1 = 1n << 30n;
    d.map(5n * G1 + 7n * K4, 0x9000_0000n, K4, 1); // one 4 KiB page deep inside the huge range
    let err: unknown;
    try { d.map(0n, 0n, 1n << 46n, 3); } catch (e) { err = e; }
    expect((err as HostDomainError).errno).toBe('EEXIST');
    expect((err as Error).message).toContain((5n * G1 + 7n * K4).toString(16));
    expect(d.mappings()).toHaveLength(1);
    // Without the overlap the same map succeeds, in 1 GiB pages: 2^16 of them, not 2^34 frames.
    d.unmap(5n * G1 + 7n * K4, K4);
    d.map(0n, 0n, 1n << 46n, 3);
    expect(d.mappings()).toHaveLength(1 << 16);
    expect(d.translate((1n << 46n) - 8n)).toEqual({ paddr: (1n << 46n) - 8n, prot: 3 });
  });
});
