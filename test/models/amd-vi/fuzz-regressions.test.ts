/**
 * Regressions found by `npm run fuzz -- --model amd-vi`:
 * - a large leaf (NextLevel 0 above level 1, 48882 "I/O Page Table Entry")
 *   whose address has bits set below its size: the DMA walk ignores them
 *   (the page starts at the aligned address), but the notifier walk handed
 *   the unaligned frame to the notifier list, which threw out of the guest's
 *   MMIO write ("misshapen leaf"). Replay and sync must report the aligned
 *   leaf, as translate() does.
 * - INVALIDATE_DEVTAB_ENTRY unmapped an UNMAP-only notifier's whole range in
 *   aligned blocks of its byte range, so a range not on page boundaries got
 *   sub-page UNMAPs (C2: an UNMAP covers at least one 4 KiB page) that the
 *   notifier list refused as violations. Only whole pages inside the range
 *   are unmapped (C6), as the core's teardown does.
 */
import { IOMMUAccessFlags } from '../../../src/core/access';
import { isFault } from '../../../src/core/model';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import type { IOMMUTLBEvent } from '../../../src/core/tlb-entry';
import { AmdGuest, invDevtab, invPages, pte } from './guest';

const SID = 0x20;

describe.each(['spec', 'qemu-7.2'] as const)('profile %s', (profile) => {
  test('a 2 MiB leaf with address bits below 2 MiB: translate and the MAP notifier agree on the aligned page', () => {
    const g = new AmdGuest({ profile, npCache: true });
    const root = g.alloc();
    const l2 = g.alloc();
    g.setDte(SID, { mode: 3, root, domid: 3 });
    g.bringUp();
    g.write64(root, pte(l2, 2));
    g.write64(l2 + 8, pte(0x80_0000 + 0x5000, 0)); // 2 MiB leaf at iova 0x20_0000, address not 2 MiB aligned
    const t = g.iommu.translate(SID, 0x20_1234n, IOMMUAccessFlags.RO);
    expect(isFault(t)).toBe(false);
    if (isFault(t)) return;
    expect(t.translatedAddr + (0x20_1234n & t.addrMask)).toBe(0x80_1234n);
    const events: IOMMUTLBEvent[] = [];
    // Registration replays the tables (C7); the invalidation syncs them (C9): neither throws.
    const h = g.iommu.addressSpace(SID).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: 2n ** 64n - 1n, notify: (e) => events.push(e) });
    expect(g.run(invPages(3, 'all'))).toBe(true);
    expect(g.iommu.addressSpace(SID).notifiers.view(h).map((e) => [e.iova, e.addrMask, e.translatedAddr])).toEqual([[0x20_0000n, 0x1f_ffffn, 0x80_0000n]]);
  });
});

test('INVALIDATE_DEVTAB_ENTRY: an UNMAP-only notifier on a range off page boundaries gets whole pages only', () => {
  const g = new AmdGuest();
  g.setDte(SID, { mode: 3, root: g.alloc(), domid: 3 });
  g.bringUp();
  const got: IOMMUTLBEvent[] = [];
  const violations: string[] = [];
  const as = g.iommu.addressSpace(SID);
  as.notifiers.events.on('violation', (v) => violations.push(v.message));
  as.registerNotifier({ flags: IOMMUNotifierFlag.UNMAP, start: 0x17_f0a3n, end: 0x20_2fffn, notify: (e) => got.push({ type: e.type, entry: { ...e.entry } }) });
  expect(g.run(invDevtab(SID))).toBe(true);
  expect(violations).toEqual([]);
  expect(got.length).toBeGreaterThan(0);
  for (const e of got) {
    expect(e.entry.addrMask).toBeGreaterThanOrEqual(0xfffn);
    expect(e.entry.iova).toBeGreaterThanOrEqual(0x18_0000n);
    expect(e.entry.iova + e.entry.addrMask).toBeLessThanOrEqual(0x20_2fffn);
  }
  // Every whole page of the range is covered.
  const pages = got.reduce((a, e) => a + (e.entry.addrMask + 1n) / 0x1000n, 0n);
  expect(pages).toBe((0x20_3000n - 0x18_0000n) / 0x1000n);
});
