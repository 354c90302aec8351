/**
 * The virtio-iommu model (virtio 1.2 section 5.13; QEMU 7.2's
 * virtio-iommu-pci by default, `profile: 'spec'` for the spec where QEMU
 * departs). The emulator owns the virtio transport and hands the model each
 * request (`virtioRequest`), the config space accesses and the negotiated
 * features; `VirtioIommuQueues` serves split virtqueues from guest memory
 * for emulators without a virtio layer.
 *
 * ```ts
 * const viommu = createVirtioIommu({ bootBypass: false, endpoints: [0x20] }, ram);
 * viommu.virtioRequest(encodeAttach(1, 0x20), 4);            // -> [S_OK, 0, 0, 0]
 * viommu.virtioRequest(encodeMap(1, 0x10000n, 0x1ffffn, 0x200000n, 3), 4);
 * viommu.translate(0x20, 0x10040n, IOMMUAccessFlags.RO);      // -> 0x200000 page, RW
 * ```
 */
import type { VirtioIommuModel } from '../../core/model';
import type { GuestMemory } from '../../memory/guest-memory';
import { parseVirtioIommuConfig } from './config';
import type { VirtioIommuConfig } from './config';
import { VirtioIommuDevice } from './device';

export { DEFAULT_VIRTIO_IOMMU_CONFIG, VirtioIommuConfigError, X86_MSI_REGION, parseVirtioIommuConfig } from './config';
export type { ReservedRegion, VirtioIommuConfig } from './config';
export { VirtioIommuDevice } from './device';
export {
  VirtioIommuStatus, VirtioIommuFeature, VIRTIO_IOMMU_ATTACH_F_BYPASS, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE,
  VIRTIO_IOMMU_MAP_F_MMIO, encodeAttach, encodeDetach, encodeMap, encodeUnmap, encodeProbe,
} from './requests';
export {
  decodeFaultReport, VIRTIO_IOMMU_FAULT_R_UNKNOWN, VIRTIO_IOMMU_FAULT_R_DOMAIN, VIRTIO_IOMMU_FAULT_R_MAPPING,
  VIRTIO_IOMMU_FAULT_F_READ, VIRTIO_IOMMU_FAULT_F_WRITE, VIRTIO_IOMMU_FAULT_F_ADDRESS,
} from './events';
export type { VirtioIommuFaultReport } from './events';
export { SplitVirtqueue, VirtioIommuQueues, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT } from './virtqueue';
export type { SplitQueueLayout, DescriptorChain } from './virtqueue';
export type { VirtioMapping } from './mappings';

/** A virtio-iommu instance: the request interface, translate() and the notifier address spaces. */
export type VirtioIommu = VirtioIommuDevice & VirtioIommuModel;

/**
 * Creates a virtio-iommu. `config` takes VirtioIommuConfig values or a
 * trace header's `config` (hex strings); missing options are QEMU 7.2's
 * defaults. Throws VirtioIommuConfigError for a bad option. `mem` is the
 * guest memory DMA goes to (the model itself reads none: requests come
 * through the emulator's transport or VirtioIommuQueues).
 */
export function createVirtioIommu(config: Partial<VirtioIommuConfig> | Record<string, unknown> | undefined, mem: GuestMemory): VirtioIommu {
  void mem;
  return new VirtioIommuDevice(parseVirtioIommuConfig(config));
}
