/**
 * A hostile guest gets a modelled outcome, never an exception or unbounded
 * work (guest-memory reads counted through CountingMemory, not time): level
 * loops, NextLevel skipping upward, tail pointers past the buffer, device
 * table size overflow, aliased tables under a notifier sync, and random
 * garbage everywhere (fast-check).
 */
import fc from 'fast-check';
import { IOMMUAccessFlags } from '../../../src/core/access';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import type { AmdViProfile } from '../../../src/models/amd-vi';
import { AmdGuest, CMDBUF, DEVTAB, STORE, completionWait, invPages, pte } from './guest';

const { RO, WO } = IOMMUAccessFlags;
const profiles: AmdViProfile[] = ['spec', 'qemu-7.2'];

function guestErrors(g: AmdGuest): string[] {
  const out: string[] = [];
  g.iommu.events.on('guestError', (m) => out.push(m));
  return out;
}

describe.each(profiles)('profile %s', (profile) => {
  test('a table whose entry points back at itself (level loop) fails the access in bounded reads', () => {
    const g = new AmdGuest({ profile });
    const errors = guestErrors(g);
    const root = g.alloc();
    g.write64(root, pte(root, 4)); // level-4 entry naming a level-4 table: itself
    g.setDte(0x20, { mode: 4, root, domid: 1 });
    g.bringUp();
    const before = g.mem.reads;
    expect(g.iommu.translate(0x20, 0x1000n, RO)).toMatchObject({ fault: true });
    // spec: NextLevel must go down (one entry read); QEMU 7.2 follows it: the model's step bound.
    expect(g.mem.reads - before).toBeLessThanOrEqual(profile === 'spec' ? 4 : 2 * 64 + 4);
    if (profile === 'qemu-7.2') expect(errors.join()).toMatch(/loop/);
  });

  test('a NextLevel that skips upward (level 2 entry naming level 4) is bounded', () => {
    const g = new AmdGuest({ profile });
    const root = g.alloc();
    const l3 = g.alloc();
    const l2 = g.alloc();
    g.write64(root, pte(l3, 3));
    g.write64(l3, pte(l2, 2));
    g.write64(l2, pte(root, 4));
    g.setDte(0x20, { mode: 4, root, domid: 1 });
    g.bringUp();
    const before = g.mem.reads;
    expect(g.iommu.translate(0x20, 0n, WO)).toMatchObject({ fault: true });
    expect(g.mem.reads - before).toBeLessThanOrEqual(2 * 64 + 4);
  });

  test('a command tail past the buffer runs nothing and is reported (QEMU 7.2 would loop forever)', () => {
    const g = new AmdGuest({ profile });
    const errors = guestErrors(g);
    g.bringUp();
    g.write64(CMDBUF, completionWait(STORE, 1n)[0]);
    g.write64(CMDBUF + 8, 1n);
    const before = g.mem.reads;
    g.iommu.mmioWrite(0x2008, 8, 0x7_fff0n);
    expect(g.mem.reads - before).toBe(0);
    expect(g.read64(STORE)).toBe(0n);
    expect(errors.join()).toMatch(/tail/);
  });

  test('a device table at the top of the address space, or a DeviceID beyond its Size: the access fails', () => {
    const g = new AmdGuest({ profile });
    g.bringUp();
    g.iommu.mmioWrite(0x00, 8, 0x000f_ffff_ffff_f000n | 0x1ffn); // 2 MiB table ending at 2^52: outside RAM
    expect(g.iommu.translate(0xffff, 0x1000n, RO)).toMatchObject({ fault: true, reason: 3 });
    g.iommu.mmioWrite(0x00, 8, BigInt(DEVTAB)); // Size 0: 128 entries
    g.setDte(0x80, { mode: 0, perm: 3 }); // the slot past the end, written anyway
    const r = g.iommu.translate(0x80, 0x1000n, RO);
    // spec: DeviceID beyond the table; QEMU 7.2 never checks the Size (findings) and reads the slot.
    if (profile === 'spec') expect(r).toMatchObject({ fault: true, reason: 1 });
    else expect(r).toMatchObject({ translatedAddr: 0x1000n });
  });

  test('random garbage in the DTE, the tables, the commands and the registers: never an exception, bounded reads', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 15 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), { minLength: 1, maxLength: 40 }),
      fc.array(fc.tuple(fc.constantFrom(0x0, 0x8, 0x10, 0x18, 0x20, 0x28, 0x2000, 0x2008, 0x2010, 0x2018, 0x2020, 0x3ffc), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), { maxLength: 6 }),
      fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { maxLength: 8 }),
      (words, writes, iovas) => {
        const g = new AmdGuest({ profile, npCache: true });
        g.bringUp();
        const root = g.alloc();
        // Garbage entries in one table that DTEs, directory entries and commands all point into.
        words.forEach(([slot, v], i) => {
          g.write64(root + slot * 8, v);
          g.write64(DEVTAB + 0x20 * 32 + (i % 4) * 8, i === 0 ? (v & ~0xfff_ffff_f000n) | BigInt(root) : v);
          g.write64(CMDBUF + (i % 16) * 8, v);
        });
        g.iommu.addressSpace(0x20).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: (1n << 64n) - 1n, notify: () => undefined });
        for (const [reg, v] of writes) g.iommu.mmioWrite(reg, reg === 0x3ffc ? 4 : 8, v);
        g.iommu.mmioWrite(0x2008, 8, 0x80n);
        for (const iova of iovas) {
          const before = g.mem.reads;
          g.iommu.translate(0x20, iova, RO);
          expect(g.mem.reads - before).toBeLessThanOrEqual(2 * 64 + 4);
        }
      },
    ), { numRuns: 150 });
  });
});

test('aliased tables under a notifier sync: bounded work, syncIncomplete reported, no exception', () => {
  const limit = 20_000;
  const g = new AmdGuest({ npCache: true }, { syncWalkBudget: limit });
  const incomplete: number[] = [];
  g.iommu.events.on('syncIncomplete', (sid) => incomplete.push(sid));
  // Mode 6: every slot of each directory level points at the one table of the next level: 512^6 leaves.
  const tables = [0, 0, 0, 0, 0, 0].map(() => g.alloc());
  for (let l = 6; l >= 1; l--) {
    const t = tables[6 - l]!;
    for (let i = 0; i < 512; i++) g.write64(t + i * 8, l === 1 ? pte(0x40_0000, 0) : pte(tables[7 - l]!, l - 1));
  }
  g.setDte(0x20, { mode: 6, root: tables[0]!, domid: 1 });
  g.bringUp();
  let maps = 0;
  const before = g.mem.reads;
  g.iommu.addressSpace(0x20).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: (1n << 64n) - 1n, notify: () => { maps++; } });
  expect(g.mem.reads - before).toBeLessThanOrEqual(2 * limit + 64);
  expect(incomplete).toEqual([0x20]);
  // The replay was cut at the bound: nothing delivered, the view stays as it was (empty), as in every model (core GuestActions).
  expect(maps).toBe(0);
  expect(g.iommu.addressSpace(0x20).notifiers.handles.every((h) => g.iommu.addressSpace(0x20).notifiers.view(h).length === 0)).toBe(true);
  // (two 32-bit reads per entry.) An invalidation is one guest action with its own budget: bounded again, reported again.
  const before2 = g.mem.reads;
  expect(g.run(invPages(1, 'all'))).toBe(true);
  expect(g.mem.reads - before2).toBeLessThanOrEqual(2 * limit + 64);
  expect(incomplete).toEqual([0x20, 0x20]);
});
