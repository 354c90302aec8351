/**
 * MappingStore against a linear scan: disjoint byte intervals (page-aligned,
 * unaligned, several starting in one frame, near 2^64), inserted and removed
 * at random, thousands of them (so the two-level lookup spans many blocks).
 * Every lookup must find the interval holding the address; the QEMU lookup
 * also the one starting at address + 1.
 */
import fc from 'fast-check';
import { MappingStore, splitU64 } from '../../../src/models/virtio-iommu/mappings';
import * as mappings from '../../../src/models/virtio-iommu/mappings';
import { U64_MAX as U64 } from '../../../src/core/guest-addr';


test('lookups agree with a linear scan', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 30 }), (seed) => {
    let s = seed;
    const rnd = () => { s = (s * 48271) % 2147483647; return s / 2147483647; };
    const m = new MappingStore();
    const ref: Array<[bigint, bigint]> = [];
    const base = rnd() < 0.2 ? U64 - 0xff_ffffn : BigInt(Math.floor(rnd() * 2 ** 20)) * 4096n;
    for (let k = 0; k < 2000; k++) {
      const lo = base + BigInt(Math.floor(rnd() * 0x400000));
      const hi = lo + BigInt(rnd() < 0.5 ? Math.floor(rnd() * 64) : Math.floor(rnd() * 0x3000));
      if (hi > U64) continue;
      if (rnd() < 0.2 && ref.length > 0) {
        const idx = Math.floor(rnd() * ref.length);
        const [a] = ref[idx]!;
        const i = m.firstOverlap(a, a);
        expect(m.virtStart(i)).toBe(a);
        m.removeAt(i);
        ref.splice(idx, 1);
        continue;
      }
      const overlaps = ref.some(([a, b]) => a <= hi && lo <= b);
      expect(m.firstOverlap(lo, hi) >= 0).toBe(overlaps);
      if (!overlaps) {
        m.insert(lo, hi, 0n, 3);
        ref.push([lo, hi]);
      }
    }
    expect(m.size).toBe(ref.length);
    for (let k = 0; k < 2000; k++) {
      const x = base + BigInt(Math.floor(rnd() * 0x404000));
      if (x > U64) continue;
      splitU64(x);
      const holder = ref.find(([a, b]) => a <= x && x <= b);
      const i = m.lookup(mappings.splitPfn, mappings.splitOff);
      expect(i < 0 ? undefined : m.virtStart(i)).toBe(holder?.[0]);
      const next = x < U64 ? ref.find(([a]) => a === x + 1n) : undefined;
      const q = m.lookupQemu(mappings.splitPfn, mappings.splitOff);
      expect(q < 0 ? undefined : m.virtStart(q)).toBe((holder ?? next)?.[0]);
    }
  }), { numRuns: 3 });
});
