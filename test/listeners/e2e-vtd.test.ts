/**
 * End to end: the VT-d model driven by guest actions (page tables written into
 * SparseRam, invalidations through the invalidation queue) with both
 * listeners attached. After every step the host state must equal the guest's
 * page tables, which this test keeps independently (`Guest.leaves`); the
 * tables are written by the package's guest-side builder (VtdGuest), whose
 * words follow the VT-d spec's formats (root/context entries 9.1/9.3,
 * second-level entries 9.8, descriptors 6.5.2) and are checked against them
 * in test/models/intel-vtd/guest-tables.test.ts; it shares nothing with the
 * model's decoder.
 */
import { createIntelVtd, VtdDescriptor, VtdGuest } from '../../src/models/intel-vtd';
import type { IntelVtd, VtdDescriptorWords } from '../../src/models/intel-vtd';
import { SparseRam } from '../../src/memory';
import { NotifierList } from '../../src/core/notifier-list';
import { ContractViolation } from '../../src/core/errors';
import { IOMMUAccessFlags } from '../../src/core/access';
import { IOMMUNotifierFlag } from '../../src/core/tlb-entry';
import { isFault } from '../../src/core/model';
import type { IOMMUTLBEntry } from '../../src/core/tlb-entry';
import type { LeafWalker } from '../../src/core/leaf';
import { VfioContainer, VfioListener, VhostListener, SimHostDomain } from '../../src/listeners';
import type { VfioDevice } from '../../src/listeners';

const { NONE, RO, WO, RW } = IOMMUAccessFlags;
const { MAP, UNMAP } = IOMMUNotifierFlag;
const K4 = 0x1000n;
const M2 = 0x200000n;
const HVA = 0x7f00_0000_0000n;
const SID = 0x0010; // 00:02.0
const DID = 1;

// Register offsets (VT-d spec 10.4) and bits the test itself uses.
const GCMD = 0x18;
const GSTS = 0x1c;
const TE = 1n << 31n;
const QIE = 1n << 26n;

/**
 * The guest: the package's VT-d guest driver (VtdGuest: root/context tables,
 * second-level tables in RAM, invalidations through the queue with a wait;
 * its words are checked against the spec layouts in guest-tables.test.ts),
 * plus the test's own record of the leaves it wrote, which is what the host
 * must end up equal to.
 */
class Guest {
  /** Leaf translations the guest has written: iova -> [size, gpa, perm]. */
  readonly leaves = new Map<bigint, [bigint, bigint, IOMMUAccessFlags]>();
  readonly driver: VtdGuest;

  constructor(ram: SparseRam, vtd: IntelVtd) {
    this.driver = new VtdGuest(ram, vtd, {
      sid: SID, did: DID, awBits: 39,
      layout: { root: 0x10_0000, context: 0x10_1000, tables: 0x10_2000, queue: 0x20_0000, status: 0x30_0000 },
    });
  }

  map4k(iova: bigint, gpa: bigint, perm: IOMMUAccessFlags): void {
    this.driver.map(iova, gpa, K4, perm);
    this.leaves.set(iova, [K4, gpa, perm]);
  }

  unmap4k(iova: bigint): void {
    this.driver.unmap(iova, K4);
    this.leaves.delete(iova);
  }

  map2m(iova: bigint, gpa: bigint, perm: IOMMUAccessFlags): void {
    this.driver.map(iova, gpa, M2, perm);
    this.leaves.set(iova, [M2, gpa, perm]);
  }

  unmap2m(iova: bigint): void {
    this.driver.unmap(iova, M2);
    this.leaves.delete(iova);
  }

  /** The guest's translations, as entries (ascending). */
  entries(): IOMMUTLBEntry[] {
    return [...this.leaves].sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([iova, [size, gpa, perm]]) => ({ iova, addrMask: size - 1n, translatedAddr: gpa, perm }));
  }

  /** The guest's tables as a walker (for a list driven without the model). */
  walker(): LeafWalker {
    return (first, last, sink) => {
      for (const e of this.entries()) {
        const pfn = Number(e.iova >> 12n);
        const pages = Number((e.addrMask + 1n) >> 12n);
        if (pfn + pages - 1 >= first && pfn <= last) sink(pfn, pages, Number(e.translatedAddr >> 12n), e.perm);
      }
    };
  }

  /** Queues descriptors then a wait descriptor (SW); throws when the wait did not complete. */
  submit(...descs: VtdDescriptorWords[]): void {
    this.driver.submit(...descs);
  }

  static iotlbDomain(): VtdDescriptorWords { return VtdDescriptor.iotlbDomain(DID); }
  /** Page-selective: 2^am pages at addr. */
  static iotlbPage(addr: bigint, am: number): VtdDescriptorWords { return VtdDescriptor.iotlbPage(DID, addr, am); }
}

interface Rig {
  ram: SparseRam;
  vtd: IntelVtd;
  guest: Guest;
  container: VfioContainer;
  vfio: VfioListener;
  vhost: VhostListener;
  nic: VfioDevice;
  errors: string[];
}

/** Boots the guest's IOMMU (SRTP, QI, global invalidations, TE) with some mappings, then attaches both listeners. */
function boot(): Rig {
  const ram = new SparseRam([{ base: 0, size: 0x4000_0000 }]);
  const vtd = createIntelVtd({ cachingMode: true, awBits: 39 }, ram);
  const errors: string[] = [];
  vtd.events.on('guestError', (m) => errors.push(`guestError: ${m}`));
  const guest = new Guest(ram, vtd);
  guest.driver.setup(); // root/context, SRTP, QI, global invalidations, TE
  guest.map4k(0x1000n, 0x500_0000n, RW);
  guest.map4k(0x2000n, 0x500_1000n, RO);
  guest.submit(Guest.iotlbDomain());
  expect(vtd.mmioRead(GSTS, 4) & (TE | QIE)).toBe(TE | QIE);

  const container = new VfioContainer({ domains: [new SimHostDomain({ name: 'host-a' }), new SimHostDomain({ name: 'host-b' })] });
  const vfio = new VfioListener(container, { gpaToVaddr: (gpa) => HVA + gpa });
  vfio.events.on('dmaError', (e) => errors.push(`dmaError: ${e.error.message}`));
  const vhost = new VhostListener({
    miss: (iova, perm) => {
      const r = vtd.translate(SID, iova, perm);
      return isFault(r) ? undefined : r;
    },
    gpaToUaddr: (gpa) => HVA + gpa,
  });
  const as = vtd.addressSpace(SID);
  vfio.attach(as);
  vhost.attach(as);
  const nic = container.openDevice('0000:00:02.0');
  return { ram, vtd, guest, container, vfio, vhost, nic, errors };
}

/** After every step: the host equals the guest's tables, and every device path agrees with the IOMMU. */
function expectHostEqualsGuest(rig: Rig, probes: bigint[] = []): void {
  const { guest, container, vfio, vhost, nic, vtd } = rig;
  const want = guest.entries();
  // One host mapping per guest leaf (C9), at the leaf's HVA, in every domain.
  const expected = want.map((e) => ({
    iova: e.iova, size: e.addrMask + 1n, vaddr: HVA + e.translatedAddr, read: (e.perm & RO) !== 0, write: (e.perm & WO) !== 0,
  }));
  expect(container.mappings()).toEqual(expected);
  expect(container.hostMappings(0)).toEqual(expected);
  expect(container.hostMappings(1)).toEqual(expected);
  expect(vfio.check(want)).toEqual({ ok: true, stale: [], missing: [], mismatched: [] });
  // The device IOTLB holds nothing the guest does not map now.
  for (const t of vhost.entries()) {
    const leaf = guest.leaves.get(t.iova);
    expect(leaf).toBeDefined();
    expect([t.size, t.uaddr, t.perm]).toEqual([leaf![0], HVA + leaf![1], leaf![2]]);
  }
  // Device accesses: the emulated IOMMU, the assigned device and vhost agree.
  for (const iova of [...guest.leaves.keys(), ...probes]) {
    for (const write of [false, true]) {
      const perm = write ? WO : RO;
      const r = vtd.translate(SID, iova + 8n, perm);
      const host = nic.dma(iova + 8n, 8n, write);
      const v = vhost.translate(iova + 8n, perm);
      // A translation without the access's permission fails the access (QEMU checks perm after an IOTLB hit).
      if (isFault(r) || (r.perm & perm) !== perm) {
        expect(host.ok).toBe(false);
        expect(v).toBeUndefined();
      } else {
        const addr = HVA + r.translatedAddr + ((iova + 8n) & r.addrMask);
        expect(host).toEqual({ ok: true, hostAddr: addr });
        expect(v?.uaddr).toBe(addr);
      }
    }
  }
  expect(rig.errors).toEqual([]);
}

describe('e2e: VT-d model + vfio-like and vhost-like listeners', () => {
  test('guest map, DMA, change, invalidate, unmap, disable: host state equals the guest after every step', () => {
    const rig = boot();
    const { guest, container, vhost } = rig;
    // Attach replayed the two boot mappings.
    expectHostEqualsGuest(rig, [0x3000n]);

    // Map a 4 KiB page and a 2 MiB page; page-selective invalidations (AM 0 and AM 9).
    guest.map4k(0x3000n, 0x500_2000n, RW);
    guest.map2m(M2, 0x600_0000n, RW);
    guest.submit(Guest.iotlbPage(0x3000n, 0), Guest.iotlbPage(M2, 9));
    expectHostEqualsGuest(rig, [M2 + 0x1234_0n, 4n * M2]);
    expect(vhost.stats().misses).toBeGreaterThan(0);

    // Change a live mapping (other page, read-only): UNMAP then MAP on the host; vhost drops its entry.
    const before = vhost.stats().invalidations;
    guest.map4k(0x1000n, 0x501_0000n, RO);
    guest.submit(Guest.iotlbPage(0x1000n, 0));
    expect(vhost.stats().invalidations).toBeGreaterThan(before);
    expectHostEqualsGuest(rig);

    // Unmap a 4 KiB page: the device loses it on the host and in vhost.
    guest.unmap4k(0x2000n);
    guest.submit(Guest.iotlbPage(0x2000n, 0));
    expectHostEqualsGuest(rig, [0x2000n]);
    expect(rig.nic.dma(0x2000n, 8n, false)).toEqual({ ok: false, iova: 0x2000n, reason: 'unmapped' });

    // Several changes, one domain-selective invalidation.
    for (let i = 0n; i < 4n; i++) guest.map4k(0x40_0000n + i * K4, 0x700_0000n + i * K4, RW);
    guest.unmap2m(M2);
    guest.map4k(0x3000n, 0x502_0000n, WO);
    guest.submit(Guest.iotlbDomain());
    expectHostEqualsGuest(rig, [M2, 0x3000n]);

    // A 2 MiB region turned into 4 KiB pages (PSI over the 2 MiB).
    guest.map2m(3n * M2, 0x800_0000n, RW);
    guest.submit(Guest.iotlbPage(3n * M2, 9));
    expectHostEqualsGuest(rig);
    guest.unmap2m(3n * M2);
    guest.map4k(3n * M2, 0x800_0000n, RW);
    guest.map4k(3n * M2 + K4, 0x800_1000n, RO);
    guest.submit(Guest.iotlbPage(3n * M2, 9));
    expectHostEqualsGuest(rig, [3n * M2 + 2n * K4]);
    expect(container.stats().errors).toEqual({});

    // Disable translation: every host mapping goes (C8), and vhost drops its IOTLB.
    rig.vtd.mmioWrite(GCMD, 4, QIE);
    expect(container.mappings()).toEqual([]);
    expect(container.hostMappings(0)).toEqual([]);
    expect(vhost.entries()).toEqual([]);
    expect(rig.vfio.check([]).ok).toBe(true);
    // With translation off the device reaches guest memory untranslated (identity), no longer through the old tables.
    expect(vhost.translate(0x1008n, RO)?.uaddr).toBe(HVA + 0x1008n);
    expect(container.stats()).toMatchObject({ hostErrors: 0, mappings: 0, dmaAvail: 65535 });
  });

  test('a second container attached later gets the current state by replay', () => {
    const rig = boot();
    rig.guest.map2m(M2, 0x600_0000n, RO);
    rig.guest.submit(Guest.iotlbPage(M2, 9));
    const late = new VfioContainer();
    const vfio2 = new VfioListener(late, { gpaToVaddr: (gpa) => HVA + gpa });
    vfio2.attach(rig.vtd.addressSpace(SID));
    expect(vfio2.check(rig.guest.entries())).toEqual({ ok: true, stale: [], missing: [], mismatched: [] });
    expect(late.mappings()).toEqual(rig.container.mappings());
  });

  test('strict: a broken notification sequence is refused before it reaches the container', () => {
    const rig = boot();
    const list = rig.vtd.addressSpace(SID).notifiers;
    const hostBefore = rig.container.mappings();
    // A model bug: the guest moved iova 0x1000, the model sends a bare MAP (C4) ...
    rig.guest.map4k(0x1000n, 0x900_0000n, RW);
    expect(() => list.notify({ type: MAP, entry: { iova: 0x1000n, addrMask: 0xfffn, translatedAddr: 0x900_0000n, perm: RW } }))
      .toThrow(ContractViolation);
    // ... and an UNMAP of half a page pair that cuts nothing but is misaligned (C2).
    expect(() => list.notify({ type: UNMAP, entry: { iova: 0x1800n, addrMask: 0xfffn, translatedAddr: 0n, perm: NONE } }))
      .toThrow(ContractViolation);
    expect(rig.container.mappings()).toEqual(hostBefore);
    expect(rig.vfio.stats()).toMatchObject({ mapErrors: 0, unmapErrors: 0 });
    // The guest's own invalidation then brings the host in line.
    rig.guest.submit(Guest.iotlbPage(0x1000n, 0));
    expectHostEqualsGuest(rig);
  });

  test('repair: the broken sequence is made legal, the container stays consistent, `repaired` is seen', () => {
    const rig = boot();
    rig.guest.map2m(M2, 0x600_0000n, RW);
    rig.guest.submit(Guest.iotlbPage(M2, 9));
    // A second listener pair on a repair-mode list driven as a buggy model would drive it.
    const list = new NotifierList({ mode: 'repair', name: 'buggy model' });
    const repaired: string[] = [];
    list.events.on('repaired', (r) => repaired.push(r.rule));
    const container = new VfioContainer();
    const vfio = new VfioListener(container, { gpaToVaddr: (gpa) => HVA + gpa });
    const errors: string[] = [];
    vfio.events.on('dmaError', (e) => errors.push(e.error.message));
    const handles = vfio.attach(list, rig.guest.walker());
    expect(vfio.check(rig.guest.entries()).ok).toBe(true);

    // In-place change sent as a bare MAP (C4): delivered as UNMAP + MAP.
    rig.guest.map4k(0x1000n, 0x900_0000n, RW);
    list.notify({ type: MAP, entry: { iova: 0x1000n, addrMask: 0xfffn, translatedAddr: 0x900_0000n, perm: RW } });
    expect(vfio.check(rig.guest.entries()).ok).toBe(true);

    // The guest breaks the 2 MiB page up and unmaps one 4 KiB of it; the model sends only that
    // 4 KiB UNMAP (C5): widened to the whole 2 MiB entry, so nothing stale stays on the host.
    rig.guest.unmap2m(M2);
    for (let off = K4; off < M2; off += K4) rig.guest.map4k(M2 + off, 0x600_0000n + off, RW);
    list.notify({ type: UNMAP, entry: { iova: M2, addrMask: 0xfffn, translatedAddr: 0n, perm: NONE } });
    const report = vfio.check(rig.guest.entries());
    expect(report.stale).toEqual([]);
    expect(report.mismatched).toEqual([]);
    // Host = what the list says it delivered.
    expect(container.mappings().map((m) => [m.iova, m.size])).toEqual(handles.flatMap((h) => list.view(h)).map((e) => [e.iova, e.addrMask + 1n]));
    // The next sync (the guest's invalidation) restores full equality.
    list.sync(M2, 2n * M2 - 1n, rig.guest.walker());
    expect(vfio.check(rig.guest.entries())).toEqual({ ok: true, stale: [], missing: [], mismatched: [] });
    expect(repaired).toEqual(['C4', 'C5']);
    expect(errors).toEqual([]);
  });

  test('without enforcement the same bug is damage: EEXIST, and the device keeps reaching the old page', () => {
    const rig = boot();
    // A listener fed directly (no contract checks) the bare MAP of a changed mapping.
    const container = new VfioContainer();
    const vfio = new VfioListener(container, { gpaToVaddr: (gpa) => HVA + gpa });
    const errors: string[] = [];
    vfio.events.on('dmaError', (e) => errors.push(e.error.errno));
    let notify!: (e: { type: 0x1 | 0x2 | 0x4; entry: IOMMUTLBEntry }) => void;
    vfio.attach({
      registerNotifier: (n) => {
        const handle = { id: 1, notifier: n, registered: true, dispose: () => undefined };
        // One notifier per side of the MSI window: replay each its own range; the test's MAP goes below it.
        if (n.start === 0n) notify = (e) => n.notify(e, handle);
        for (const e of rig.guest.entries()) if (e.iova >= n.start && e.iova + e.addrMask <= n.end) n.notify({ type: MAP, entry: e }, handle);
        return handle;
      },
    });
    rig.guest.map4k(0x1000n, 0x900_0000n, RW);
    notify({ type: MAP, entry: { iova: 0x1000n, addrMask: 0xfffn, translatedAddr: 0x900_0000n, perm: RW } });
    expect(errors).toEqual(['EEXIST']);
    const dev = container.openDevice('victim');
    expect(dev.dma(0x1008n, 8n, true)).toEqual({ ok: true, hostAddr: HVA + 0x500_0008n });
    expect(vfio.check(rig.guest.entries()).mismatched.length).toBeGreaterThan(0);
  });
});
