/**
 * AMD I/O Virtualization Technology (AMD-Vi) IOMMU model: MMIO registers,
 * device table, host page-table walks (levels 1-6, skip levels, NextLevel=7
 * large pages), IOTLB, command buffer, event log, MSI, and IOMMU notifiers
 * kept coherent with the tables when NpCache is advertised. `profile: 'spec'`
 * (default) follows the AMD IOMMU Specification 48882; `profile: 'qemu-7.2'`
 * reproduces QEMU 7.2's amd-iommu, whose traces the fixtures hold. The only
 * module of the model other layers import.
 *
 * ```ts
 * const iommu = createAmdVi({ npCache: true }, ram);
 * iommu.mmioWrite(0x00, 8, devtab);                // device table base
 * iommu.mmioWrite(0x08, 8, cmdbuf | (8n << 56n));  // command buffer, 256 entries
 * iommu.mmioWrite(0x18, 8, 0x1005n);               // IommuEn, EventLogEn, CmdBufEn
 * ```
 */
import type { MmioIOMMUModel } from '../../core/model';
import type { ModelAddressSpace } from '../../core/address-spaces';
import type { DmaReadResult, DmaResult } from '../../memory/dma';
import type { GuestMemory } from '../../memory/guest-memory';
import { validateAmdViConfig } from './config';
import type { AmdViConfig } from './config';
import { AmdViDevice } from './device';
import type { AmdViLimits } from './device';

export { DEFAULT_AMDVI_CONFIG, AmdViConfigError, validateAmdViConfig } from './config';
export type { AmdViConfig, AmdViProfile } from './config';
export { AMDVI_SYNC_WALK_BUDGET } from './device';
export type { AmdViLimits } from './device';

/** An AMD-Vi IOMMU model. */
export interface AmdVi extends MmioIOMMUModel {
  readonly kind: 'amd-vi';
  /** The validated configuration (defaults filled in). */
  readonly config: Readonly<AmdViConfig>;
  /** The IOMMU capability header (PCI config 0x40); NpCache is bit 26. */
  readonly capabilityHeader: number;
  /** A device (DeviceID `sid`) reads `len` bytes at `iova`, page by page (trace-v1 `dma.read`). */
  dmaRead(sid: number, iova: bigint, len: number): DmaReadResult;
  /** A device writes `data` at `iova` (trace-v1 `dma.write`). */
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): DmaResult;
  /** Programs the MSI capability of the IOMMU's PCI function (undefined: disabled, no interrupt is sent). */
  setMsi(address: bigint | undefined, data?: number): void;
  addressSpace(sid: number, pasid?: number): ModelAddressSpace;
}

/**
 * Creates an AMD-Vi model over guest memory `mem`. `config` is a trace-v1
 * header config (hex strings accepted) or typed options; throws
 * AmdViConfigError when invalid. `limits` overrides the notifier-sync work
 * bound (default AMDVI_SYNC_WALK_BUDGET entries per guest action).
 */
export function createAmdVi(config: Partial<AmdViConfig> | Record<string, unknown> | undefined, mem: GuestMemory, limits?: AmdViLimits): AmdVi {
  return new AmdViDevice(validateAmdViConfig(config), mem, limits);
}
