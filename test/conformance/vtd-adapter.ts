/**
 * The conformance adapter of the project's VT-d model: real legacy-mode
 * tables in a SparseRam, invalidations through the invalidation queue
 * (VtdGuest), listeners on the device's address space.
 *
 * Its capabilities: the IOVA width is the unit's aw-bits; the interrupt
 * window 0xfee00000-0xfeefffff is never translated (VT-d 3.14), so the kit
 * keeps its IOVAs clear of it; translation can be turned off (GCMD.TE).
 * MAP notifiers need caching mode (C1); with `cachingMode: false` the unit
 * serves UNMAP notifiers only, and the adapter says so. DEVIOTLB_UNMAP
 * notifiers need device-iotlb (ECAP.DT), refused without it (C1).
 */
import type { ConformanceAdapter } from '../../src/conformance';
import { X86_MSI_RANGE } from '../../src/core';
import { SparseRam } from '../../src/memory';
import { createIntelVtd } from '../../src/models/intel-vtd';
import type { IntelVtd } from '../../src/models/intel-vtd';
import { VtdGuest } from './vtd-guest';

export interface VtdCtx {
  ram: SparseRam;
  vtd: IntelVtd;
  guest: VtdGuest;
}

export function vtdAdapter(awBits: 39 | 48, opts: { cachingMode?: boolean; deviceIotlb?: boolean } = {}): ConformanceAdapter<VtdCtx> {
  const cachingMode = opts.cachingMode ?? true;
  const deviceIotlb = opts.deviceIotlb ?? false;
  return {
    capabilities: { mapNotifiers: cachingMode, devIotlbUnmap: deviceIotlb, iovaBits: awBits, reservedIova: [X86_MSI_RANGE], mapping: 'tables' },
    create: () => {
      // 3-level tables (aw 39) reach 2^39, 4-level (aw 48) 2^48.
      const ram = new SparseRam([{ base: 0, size: 0x1000_0000 }]);
      const vtd = createIntelVtd({ awBits, cachingMode, deviceIotlb }, ram);
      const guest = new VtdGuest(ram, vtd, { awBits, sid: 0x20 });
      guest.setup();
      return { ram, vtd, guest };
    },
    map: (c, iova, gpa, size, perm) => c.guest.map(iova, gpa, size, perm),
    unmap: (c, iova, size) => c.guest.unmap(iova, size),
    invalidate: (c, iova, size) => c.guest.invalidate(iova, size),
    registerNotifier: (c, n, notify) => {
      const h = c.vtd.addressSpace(c.guest.sid).registerNotifier({ ...n, notify: (e) => notify(e) });
      return { unregister: () => h.dispose() };
    },
    translate: (c, iova, access) => c.vtd.translate(c.guest.sid, iova, access),
    disableTranslation: (c) => c.guest.disableTranslation(),
    enableTranslation: (c) => c.guest.enableTranslation(),
  };
}
