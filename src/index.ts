/**
 * viommu: an emulated guest IOMMU (Intel VT-d first, as QEMU 7.2's
 * intel-iommu behaves) with a notifier list that enforces the IOMMU notifier
 * contract. This module only re-exports the public surface:
 * - the core contract types and `NotifierList` (src/core),
 * - guest memory (`GuestMemory`, `SparseRam`, page-by-page DMA helpers),
 * - the Intel VT-d model (`createIntelVtd`) and its guest-side table
 *   builder (`VtdGuest`, `VtdGuestTables`, `VtdEntry`, ...), for tests and
 *   conformance adapters,
 * - the Arm SMMUv3 model (`createSmmuV3`),
 * - the AMD-Vi model (`createAmdVi`),
 * - the virtio-iommu model (`createVirtioIommu`) and a split-virtqueue helper
 *   for emulators without a virtio layer of their own.
 * Traces are `viommu/trace`, listeners `viommu/listeners`, the conformance
 * kit `viommu/conformance`.
 */
export * from './core';
export * from './memory';
export { createIntelVtd, validateVtdConfig, VtdConfigError, DEFAULT_VTD_CONFIG, VTD_SYNC_WALK_BUDGET, VTD_SYNC_LEAF_BUDGET } from './models/intel-vtd';
export type { IntelVtd, VtdConfig, VtdLimits } from './models/intel-vtd';
export { VtdEntry, VtdDescriptor, VtdGuestReg, VtdGuestTables, VtdInvalidationQueue, VtdGuest } from './models/intel-vtd';
export type {
  VtdSlpteFields, VtdRootFields, VtdScalableRootFields, VtdLegacyContextFields, VtdScalableContextFields, VtdPasidDirFields,
  VtdPasidEntryFields, VtdDescriptorWords, VtdMmioPort, VtdGuestLayout, VtdGuestOptions,
} from './models/intel-vtd';
export {
  createVirtioIommu, parseVirtioIommuConfig, VirtioIommuConfigError, DEFAULT_VIRTIO_IOMMU_CONFIG,
  SplitVirtqueue, VirtioIommuQueues, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT,
} from './models/virtio-iommu';
export type {
  VirtioIommu, VirtioIommuConfig, ReservedRegion, VirtioIommuFaultReport, VirtioMapping, SplitQueueLayout, DescriptorChain,
} from './models/virtio-iommu';
export { createSmmuV3, SmmuV3ConfigError, DEFAULT_SMMUV3_CONFIG, SMMU_EVT, SMMU_CMD, SMMU_IRQ_SPI } from './models/smmuv3';
export type { SmmuV3, SmmuV3Config, SmmuStage, SmmuV3Events, SmmuIrq, SmmuIrqLine } from './models/smmuv3';
export { createAmdVi, DEFAULT_AMDVI_CONFIG, AmdViConfigError, validateAmdViConfig, AMDVI_SYNC_WALK_BUDGET } from './models/amd-vi';
export type { AmdVi, AmdViConfig, AmdViProfile, AmdViLimits } from './models/amd-vi';
