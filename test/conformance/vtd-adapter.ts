/**
 * The conformance adapter of the project's VT-d model: real legacy-mode
 * tables in a SparseRam, invalidations through the invalidation queue
 * (VtdGuest), listeners on the device's address space.
 */
import type { ConformanceAdapter } from '../../src/conformance';
import { SparseRam } from '../../src/memory';
import { createIntelVtd } from '../../src/models/intel-vtd';
import type { IntelVtd } from '../../src/models/intel-vtd';
import { VtdGuest } from './vtd-guest';

export interface VtdCtx {
  ram: SparseRam;
  vtd: IntelVtd;
  guest: VtdGuest;
}

export function vtdAdapter(awBits: 39 | 48): ConformanceAdapter<VtdCtx> {
  return {
    create: ({ cachingMode }) => {
      // 4-level tables reach 2^48; the kit stays below 2^39 with aw 39.
      const ram = new SparseRam([{ base: 0, size: 0x1000_0000 }]);
      const vtd = createIntelVtd({ awBits, cachingMode }, ram);
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
