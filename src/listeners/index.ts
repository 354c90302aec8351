/**
 * Listeners: host-side consumers of IOMMU notifications. They import only
 * from src/core, never a model.
 * - `VfioListener` over a `VfioContainer` (simulated VFIO type1 v2 host DMA backend).
 * - `VhostListener` (a vhost device IOTLB).
 */
export {
  VfioContainer, VfioDevice, VfioError, VfioUnwindError, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_ENTRY_LIMIT, X86_MSI_WINDOW,
} from './vfio-container';
export type {
  VfioContainerOptions, VfioContainerEvents, VfioContainerStats, VfioDeviceOptions, VfioDmaAccess, VfioDmaMap,
  VfioDmaUnmap, VfioDmaMapping, VfioIommuInfo, VfioIovaRange, VfioReservedRegion, HostMapping, VfioOp, VfioMapRefusal,
  VfioErrorDetail, VfioDmaRange, VfioVaddrUnmap,
} from './vfio-container';
export { SimHostDomain, HostDomainError, ERRNO, IOMMU_READ, IOMMU_WRITE } from './host-domain';
export type { HostIommuDomain, SimHostDomainOptions, VfioErrno } from './host-domain';
export { VfioListener } from './vfio-listener';
export type {
  VfioListenerOptions, VfioListenerEvents, VfioListenerStats, VfioListenerError, VfioConsistencyDiff,
  VfioConsistencyReport, GuestTranslations,
} from './vfio-listener';
export { VhostListener, VhostError, VHOST_MAX_IOTLB_ENTRIES } from './vhost-listener';
export type {
  VhostIotlbEntry, VhostIotlbMsg, VhostMissHandler, VhostListenerOptions, VhostListenerEvents, VhostListenerStats,
  VhostTranslation, VhostAccessFailure,
} from './vhost-listener';
export type { NotifierSource } from './source';
