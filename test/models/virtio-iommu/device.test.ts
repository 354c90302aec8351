/**
 * The virtio-iommu model's behaviour beyond the captures: what the findings
 * (QEMU 7.2) and the virtio 1.2 spec (section 5.13, profile 'spec') say,
 * device errors, reset, and the notifiers (contract C1, C2, C7, C8).
 * Expected values come from those documents, never from the model's output.
 */
import { IOMMUAccessFlags } from '../../../src/core/access';
import { isFault } from '../../../src/core/model';
import { U64_MAX } from '../../../src/core/guest-addr';
import type { IOMMUTLBEvent } from '../../../src/core/tlb-entry';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import { SparseRam } from '../../../src/memory/sparse-ram';
import {
  createVirtioIommu, decodeFaultReport, encodeAttach, encodeDetach, encodeMap, encodeProbe, encodeUnmap, VirtioIommuStatus as S,
} from '../../../src/models/virtio-iommu';
import type { VirtioIommu } from '../../../src/models/virtio-iommu';

const EP = 0x20;
const EP2 = 0x28;
const ram = new SparseRam([{ base: 0, size: 1 << 20 }]);
const RW = 3;

function make(extra: Record<string, unknown> = {}): VirtioIommu {
  return createVirtioIommu({ bootBypass: false, endpoints: ['0x20', '0x28', '0x30'], ...extra }, ram);
}

function status(dev: VirtioIommu, req: Uint8Array, writable = 4): number | undefined {
  return dev.virtioRequest(req, writable)[0];
}

interface Got { type: string; iova: bigint; mask: bigint; xl: bigint; perm: number }
function listen(dev: VirtioIommu, sid: number, flags: number = IOMMUNotifierFlag.ALL, start = 0n, end = U64_MAX): Got[] {
  const got: Got[] = [];
  dev.addressSpace(sid).registerNotifier({
    flags, start, end,
    notify: (e: IOMMUTLBEvent) => got.push({ type: e.type === 2 ? 'MAP' : 'UNMAP', iova: e.entry.iova, mask: e.entry.addrMask, xl: e.entry.translatedAddr, perm: e.entry.perm }),
  });
  return got;
}

function view(dev: VirtioIommu, sid: number): bigint[] {
  const list = dev.addressSpace(sid).notifiers;
  return list.view(list.handles[0]!).map((e) => e.iova);
}

describe('requests (QEMU 7.2 profile)', () => {
  test('translate: 4 KiB entries, mapping permission, faults with the findings\' reasons and flags', () => {
    const dev = make();
    expect(status(dev, encodeAttach(1, EP))).toBe(S.OK);
    expect(status(dev, encodeMap(1, 0x10000n, 0x1ffffn, 0x200000n, 1))).toBe(S.OK);
    const t = dev.translate(EP, 0x10abcn, IOMMUAccessFlags.RO);
    expect(isFault(t)).toBe(false);
    if (!isFault(t)) expect([t.iova, t.translatedAddr, t.addrMask, t.perm]).toEqual([0x10000n, 0x200000n, 0xfffn, IOMMUAccessFlags.RO]);
    // Write to a read-only mapping: reason MAPPING (2), flags WRITE|ADDRESS (0x102), exact address.
    expect(isFault(dev.translate(EP, 0x10004n, IOMMUAccessFlags.WO))).toBe(true);
    expect(decodeFaultReport(dev.virtioTakeEvent()!)).toEqual({ reason: 2, flags: 0x102, endpoint: EP, address: 0x10004n });
    // Never attached, bypass off: UNKNOWN (0), ADDRESS only.
    dev.translate(EP2, 0x5000n, IOMMUAccessFlags.RO);
    expect(decodeFaultReport(dev.virtioTakeEvent()!)).toEqual({ reason: 0, flags: 0x100, endpoint: EP2, address: 0x5000n });
    // Named by an ATTACH that failed (bypass flag mismatch): in the tree, no domain: DOMAIN (1).
    expect(status(dev, encodeAttach(1, EP2, 1))).toBe(S.INVAL);
    dev.translate(EP2, 0x5001n, IOMMUAccessFlags.RO);
    expect(decodeFaultReport(dev.virtioTakeEvent()!)).toEqual({ reason: 1, flags: 0x100, endpoint: EP2, address: 0x5001n });
    expect(dev.virtioTakeEvent()).toBeUndefined();
  });

  test('off-by-one lookup: the byte before a mapping translates to phys - 1 (findings, probe); the spec profile faults', () => {
    for (const profile of ['qemu', 'spec'] as const) {
      const dev = make({ profile });
      status(dev, encodeAttach(1, EP));
      status(dev, encodeMap(1, 0x20000n, 0x20fffn, 0x300000n, RW));
      const t = dev.translate(EP, 0x1ffffn, IOMMUAccessFlags.RO);
      if (profile === 'qemu') {
        expect(isFault(t)).toBe(false);
        if (!isFault(t)) expect((t.translatedAddr & ~t.addrMask) | (0x1ffffn & t.addrMask)).toBe(0x2fffffn);
      } else {
        expect(isFault(t)).toBe(true);
      }
    }
  });

  test('unaligned phys_start loses its sub-page offset (findings "Granule")', () => {
    const dev = make();
    status(dev, encodeAttach(1, EP));
    expect(status(dev, encodeMap(1, 0x40800n, 0x40fffn, 0x90100n, RW))).toBe(S.OK);
    const t = dev.translate(EP, 0x40800n, IOMMUAccessFlags.WO);
    if (isFault(t)) throw new Error('fault');
    // QEMU: translated = 0x90100, of which the memory core keeps the page; the access lands at 0x90800.
    expect((t.translatedAddr & ~t.addrMask) | (0x40800n & t.addrMask)).toBe(0x90800n);
  });

  test('the MSI reserved region is identity for an attached endpoint; a RESERVED region faults', () => {
    const dev = make({ reservedRegions: [{ start: '0xfee00000', end: '0xfeefffff', subtype: 'msi' }, { start: '0x80000', end: '0x80fff', subtype: 'reserved' }] });
    status(dev, encodeAttach(1, EP));
    const t = dev.translate(EP, 0xfee0_1004n, IOMMUAccessFlags.WO);
    expect(!isFault(t) && t.translatedAddr === 0xfee0_1000n).toBe(true);
    expect(isFault(dev.translate(EP, 0x80010n, IOMMUAccessFlags.RO))).toBe(true);
    expect(decodeFaultReport(dev.virtioTakeEvent()!)).toMatchObject({ reason: 2, flags: 0x100 });
  });

  test('PROBE: RESV_MEM property per region, zeros to probe_size, tail after it', () => {
    const dev = make();
    const out = dev.virtioRequest(encodeProbe(EP), 516);
    expect(out.length).toBe(516);
    expect(Buffer.from(out.subarray(0, 24)).toString('hex')).toBe('0100140001000000' + '0000e0fe00000000' + 'ffffeffe00000000');
    expect(out.subarray(24, 516).every((b) => b === 0)).toBe(true);
    expect(dev.virtioRequest(encodeProbe(0x99), 516)[512]).toBe(S.NOENT);
  });

  test('UNMAP: removes covered mappings in order and stops at a partly covered one with S_RANGE (QEMU); spec removes nothing', () => {
    for (const profile of ['qemu', 'spec'] as const) {
      const dev = make({ profile });
      status(dev, encodeAttach(1, EP));
      status(dev, encodeMap(1, 0x1000n, 0x1fffn, 0x1000n, RW));
      status(dev, encodeMap(1, 0x2000n, 0x3fffn, 0x2000n, RW));
      expect(status(dev, encodeUnmap(1, 0x0n, 0x2fffn))).toBe(S.RANGE);
      const left = dev.domainMappings(1)!.list().map((m) => m.virtStart);
      expect(left).toEqual(profile === 'qemu' ? [0x2000n] : [0x1000n, 0x2000n]);
    }
  });

  test('spec profile: ATTACH reserved bits, unaligned MAP, reversed MAP, unknown type', () => {
    const qemu = make();
    const spec = make({ profile: 'spec' });
    const att = encodeAttach(1, EP);
    att[16] = 1; // reserved
    expect(status(qemu, att)).toBe(S.OK);
    expect(status(spec, att)).toBe(S.INVAL);
    status(spec, encodeAttach(1, EP));
    expect(status(qemu, encodeMap(1, 0x1800n, 0x27ffn, 0x5000n, RW))).toBe(S.OK);
    expect(status(spec, encodeMap(1, 0x1800n, 0x27ffn, 0x5000n, RW))).toBe(S.RANGE);
    expect(status(qemu, encodeMap(1, 0x9000n, 0x8fffn, 0x5000n, RW))).toBe(S.OK);
    expect(status(spec, encodeMap(1, 0x9000n, 0x8fffn, 0x5000n, RW))).toBe(S.INVAL);
    const unknown = Uint8Array.of(9, 0, 0, 0);
    expect(Array.from(qemu.virtioRequest(unknown, 4))).toEqual([S.UNSUPP, 0, 0, 0]);
    expect(spec.virtioRequest(unknown, 4).length).toBe(0);
    // Endpoint ids: QEMU looks devices up by bits 15:0.
    expect(qemu.virtioRequest(encodeProbe(0x10020), 516)[512]).toBe(S.OK);
    expect(spec.virtioRequest(encodeProbe(0x10020), 516)[512]).toBe(S.NOENT);
  });
});

describe('device errors and reset', () => {
  test('short head or tail, short PROBE buffer: NEEDS_RESET, later requests ignored until virtio.reset', () => {
    for (const bad of [[Uint8Array.of(1, 0), 4], [encodeAttach(1, EP), 2], [encodeProbe(EP), 100]] as const) {
      const dev = make();
      const errors: string[] = [];
      dev.events.on('guestError', (m) => errors.push(m));
      expect(dev.virtioRequest(bad[0], bad[1]).length).toBe(0);
      expect(dev.needsReset).toBe(true);
      expect(errors.length).toBe(1);
      expect(dev.virtioRequest(encodeAttach(1, EP), 4).length).toBe(0);
      dev.virtioReset();
      expect(dev.needsReset).toBe(false);
      expect(status(dev, encodeAttach(1, EP))).toBe(S.OK);
    }
  });

  test('config: bypass writable only with BYPASS_CONFIG and 0/1; reads past the space are all ones', () => {
    const dev = make();
    expect(dev.virtioConfigRead(0x24, 1)).toBe(0n);
    dev.virtioConfigWrite(0x24, 1, 1n);
    expect(dev.needsReset).toBe(true);
    expect(dev.virtioConfigRead(0x24, 1)).toBe(0n);
    const ok = make();
    ok.virtioFeatures(1n << 6n);
    ok.virtioConfigWrite(0x24, 1, 1n);
    expect(ok.virtioConfigRead(0x24, 1)).toBe(1n);
    ok.virtioConfigWrite(0x24, 1, 2n);
    expect(ok.needsReset).toBe(true);
    expect(ok.virtioConfigRead(0x28, 4)).toBe(0xffff_ffffn);
    expect(ok.virtioConfigRead(0x0, 8)).toBe(0xffff_ffff_ffff_f000n);
  });

  test('device reset keeps bypass, drops domains and endpoints; system reset restores boot-bypass', () => {
    const dev = make();
    dev.virtioFeatures(1n << 6n);
    dev.virtioConfigWrite(0x24, 1, 1n);
    status(dev, encodeAttach(1, EP));
    status(dev, encodeMap(1, 0x1000n, 0x1fffn, 0x1000n, RW));
    dev.virtioReset();
    expect(dev.domainIds()).toEqual([]);
    expect(dev.virtioConfigRead(0x24, 1)).toBe(1n);
    expect(status(dev, encodeMap(1, 0x1000n, 0x1fffn, 0x1000n, RW))).toBe(S.NOENT);
    // Unattached with bypass 1: identity.
    const t = dev.translate(EP, 0x7000n, IOMMUAccessFlags.RW);
    expect(!isFault(t) && t.translatedAddr === 0x7000n).toBe(true);
    dev.reset();
    expect(dev.virtioConfigRead(0x24, 1)).toBe(0n);
  });

  test('fault reports beyond the event queue limit are dropped (QEMU: no buffer), the fault still fails the access', () => {
    const dev = make({ eventQueueLimit: 2 });
    for (let i = 0; i < 3; i++) expect(isFault(dev.translate(EP, BigInt(i), IOMMUAccessFlags.RO))).toBe(true);
    expect(dev.virtioTakeEvent()).toBeDefined();
    expect(dev.virtioTakeEvent()).toBeDefined();
    expect(dev.virtioTakeEvent()).toBeUndefined();
  });
});

describe('notifiers', () => {
  test('C1: DEVIOTLB_UNMAP refused, MAP served without any caching mode', () => {
    const dev = make();
    expect(() => listen(dev, EP, IOMMUNotifierFlag.DEVIOTLB_UNMAP)).toThrow(/DEVIOTLB/);
    expect(() => listen(dev, EP, IOMMUNotifierFlag.MAP)).not.toThrow();
  });

  test('MAP splits into aligned power-of-two blocks on both sides (C2); UNMAP removes whole entries', () => {
    const dev = make();
    status(dev, encodeAttach(1, EP));
    const got = listen(dev, EP);
    // 3 pages at 0x3000 -> 0x11000: IOVA split 0x3000(1) + 0x4000(2); 0x12000 is 8 KiB aligned.
    status(dev, encodeMap(1, 0x3000n, 0x5fffn, 0x11000n, RW));
    expect(got).toEqual([
      { type: 'MAP', iova: 0x3000n, mask: 0xfffn, xl: 0x11000n, perm: 3 },
      { type: 'MAP', iova: 0x4000n, mask: 0x1fffn, xl: 0x12000n, perm: 3 },
    ]);
    // 2 pages at 0x8000 -> 0x21000: the translated side is only 4 KiB aligned: two 4 KiB entries.
    got.length = 0;
    status(dev, encodeMap(1, 0x8000n, 0x9fffn, 0x21000n, 1));
    expect(got.map((g) => [g.iova, g.mask, g.xl, g.perm])).toEqual([[0x8000n, 0xfffn, 0x21000n, 1], [0x9000n, 0xfffn, 0x22000n, 1]]);
    got.length = 0;
    expect(status(dev, encodeUnmap(1, 0x3000n, 0x5fffn))).toBe(S.OK);
    expect(got.every((g) => g.type === 'UNMAP')).toBe(true);
    expect(view(dev, EP)).toEqual([0x8000n, 0x9000n]);
  });

  test('MMIO and no-permission mappings are not sent as MAPs (QEMU notify_map)', () => {
    const dev = make();
    status(dev, encodeAttach(1, EP));
    const got = listen(dev, EP);
    status(dev, encodeMap(1, 0x1000n, 0x1fffn, 0x1000n, 7));
    status(dev, encodeMap(1, 0x2000n, 0x2fffn, 0x2000n, 0));
    expect(got).toEqual([]);
  });

  test('C7 replay on registration and on ATTACH; C8 on DETACH, domain destruction by re-ATTACH, and reset', () => {
    const dev = make();
    status(dev, encodeAttach(1, EP));
    status(dev, encodeMap(1, 0x10000n, 0x10fffn, 0x50000n, RW));
    const got = listen(dev, EP);
    expect(got).toEqual([{ type: 'MAP', iova: 0x10000n, mask: 0xfffn, xl: 0x50000n, perm: 3 }]);
    const got2 = listen(dev, EP2);
    expect(status(dev, encodeAttach(1, EP2))).toBe(S.OK);
    expect(got2).toEqual([{ type: 'MAP', iova: 0x10000n, mask: 0xfffn, xl: 0x50000n, perm: 3 }]);
    got.length = 0;
    expect(status(dev, encodeDetach(1, EP))).toBe(S.OK);
    // C8: UNMAPs (of any legal shape: whole entries) leave the view empty.
    expect(got.length).toBeGreaterThan(0);
    expect(got.every((g) => g.type === 'UNMAP' && g.iova <= 0x10000n && g.iova + g.mask >= 0x10fffn)).toBe(true);
    expect(view(dev, EP)).toEqual([]);
    // EP2 alone in domain 1: re-ATTACH to 1 frees and recreates it (QEMU 7.2): the mapping is gone.
    got2.length = 0;
    expect(status(dev, encodeAttach(1, EP2))).toBe(S.OK);
    expect(got2.map((g) => g.type)).toEqual(['UNMAP']);
    expect(view(dev, EP2)).toEqual([]);
    status(dev, encodeMap(1, 0x20000n, 0x20fffn, 0x60000n, RW));
    got2.length = 0;
    dev.virtioReset();
    expect(got2.map((g) => g.type)).toEqual(['UNMAP']);
    expect(view(dev, EP2)).toEqual([]);
  });

  test('notifier ranges: MAPs are cropped to the frames inside the range (C6)', () => {
    const dev = make();
    status(dev, encodeAttach(1, EP));
    const got = listen(dev, EP, IOMMUNotifierFlag.ALL, 0x5000n, 0x6fffn);
    status(dev, encodeMap(1, 0x0n, 0xffffn, 0x100000n, RW));
    expect(got).toEqual([{ type: 'MAP', iova: 0x5000n, mask: 0xfffn, xl: 0x105000n, perm: 3 }, { type: 'MAP', iova: 0x6000n, mask: 0xfffn, xl: 0x106000n, perm: 3 }]);
  });

  test('an alias endpoint id (bits above 15) does not reach the device\'s listeners', () => {
    const dev = make();
    status(dev, encodeAttach(1, EP));
    const got = listen(dev, EP);
    expect(status(dev, encodeAttach(2, 0x10000 | EP))).toBe(S.OK);
    status(dev, encodeMap(2, 0x1000n, 0x1fffn, 0x1000n, RW));
    expect(got).toEqual([]);
    // DMA of EP still goes through domain 1 (no mapping there).
    expect(isFault(dev.translate(EP, 0x1000n, IOMMUAccessFlags.RO))).toBe(true);
  });
});
