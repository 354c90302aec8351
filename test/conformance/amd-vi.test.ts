/**
 * The AMD-Vi model runs the conformance kit (viommu/conformance): with
 * NpCache the full kit (MAP|UNMAP listeners, 4-level tables, both profiles);
 * without it the UNMAP-only capability (a MAP registration must be refused).
 * The guest side writes AMD v1 page tables and invalidates through the
 * command buffer (test/models/amd-vi/guest.ts).
 */
import { describeIommuConformance } from '../../src/conformance';
import { X86_MSI_RANGE } from '../../src/core/guest-addr';
import type { ConformanceAdapter } from '../../src/conformance';
import { AmdGuest, RadixTable, invAll, invPages } from '../models/amd-vi/guest';
import type { AmdViProfile } from '../../src/models/amd-vi';

const SID = 0x20;
const DOMID = 7;

interface Ctx { g: AmdGuest; t: RadixTable }

function amdAdapter(profile: AmdViProfile, npCache: boolean): ConformanceAdapter<Ctx> {
  return {
    capabilities: {
      mapNotifiers: npCache,
      iovaBits: 48,
      devIotlbUnmap: false,
      // Never translated: the x86 interrupt window.
      reservedIova: [X86_MSI_RANGE],
    },
    create: () => {
      const g = new AmdGuest({ profile, npCache });
      const t = new RadixTable(g, 4);
      g.setDte(SID, { mode: 4, root: t.root, perm: 3, domid: DOMID });
      g.bringUp();
      return { g, t };
    },
    map: ({ t }, iova, gpa, size, perm) => t.map(iova, gpa, size, perm),
    unmap: ({ t }, iova, size) => t.unmap(iova, size),
    invalidate: ({ g }, iova, size) => {
      const ok = size === 'global' ? g.run(invAll()) : size === 'domain' ? g.run(invPages(DOMID, 'all')) : g.run(invPages(DOMID, iova, size));
      if (!ok) throw new Error('amd-vi adapter: the invalidation did not complete');
    },
    registerNotifier: ({ g }, n, notify) => {
      const h = g.iommu.addressSpace(SID).registerNotifier({ ...n, notify });
      return { unregister: () => h.dispose() };
    },
    translate: ({ g }, iova, access) => g.iommu.translate(SID, iova, access),
    disableTranslation: ({ g }) => g.iommu.mmioWrite(0x18, 8, 0x1004n),
    enableTranslation: ({ g }) => g.iommu.mmioWrite(0x18, 8, 0x1005n),
  };
}

describeIommuConformance('amd-vi spec, NpCache', amdAdapter('spec', true), { numRuns: 20 });
describeIommuConformance('amd-vi qemu-7.2, NpCache', amdAdapter('qemu-7.2', true), { numRuns: 10 });
describeIommuConformance('amd-vi spec, UNMAP only', amdAdapter('spec', false), { numRuns: 10 });
