/**
 * Arm SMMUv3, as QEMU 7.2's `smmuv3` on the `virt` machine presents it
 * (stage 1; registers, linear and 2-level stream tables, STE/CD decoding,
 * AArch64 walks, command and event queues, IOTLB), with stage 2 and nested
 * translation from the architecture (IHI 0070) under `stage: "2"` /
 * `"nested"`. The only module of the model other layers import.
 *
 * ```ts
 * const smmu = createSmmuV3({}, ram);
 * smmu.events.on('irq', ({ line }) => ...);           // wired interrupts: eventq, cmdqSync, gerror
 * smmu.mmioWrite(0x80, 8, strtab); smmu.mmioWrite(0x88, 4, 5n); // STRTAB_BASE(_CFG)
 * smmu.addressSpace(0x08).registerNotifier({ flags: IOMMUNotifierFlag.UNMAP, start: 0n, end: 2n ** 64n - 1n, notify });
 * ```
 */
import type { GuestMemory } from '../../memory/guest-memory';
import { parseSmmuV3Config } from './config';
import type { SmmuV3Config } from './config';
import { SmmuV3Device } from './device';

export { DEFAULT_SMMUV3_CONFIG, SmmuV3ConfigError, parseSmmuV3Config } from './config';
export type { SmmuStage, SmmuV3Config } from './config';
export { SmmuV3Device } from './device';
export type { SmmuIrq, SmmuV3Events } from './device';
export { EVT as SMMU_EVT, CMD as SMMU_CMD, IRQ_SPI as SMMU_IRQ_SPI } from './regs';
export type { SmmuIrqLine } from './regs';

/** An SMMUv3 instance (MmioIOMMUModel with dmaRead/dmaWrite and typed `irq` events). */
export type SmmuV3 = SmmuV3Device;

/**
 * Creates an SMMUv3 over guest memory `mem` (stream table, CDs, page
 * tables, queues and DMA go through it). `config` takes SmmuV3Config values
 * or a trace header's `config`; missing options are QEMU 7.2's. Throws
 * SmmuV3ConfigError for a bad option.
 */
export function createSmmuV3(config: Partial<SmmuV3Config> | Record<string, unknown> | undefined, mem: GuestMemory): SmmuV3 {
  return new SmmuV3Device(parseSmmuV3Config(config), mem);
}
