/**
 * Intel VT-d, as QEMU 7.2's intel-iommu device behaves (registers, queued and
 * register-based invalidation, context cache and IOTLB, fault recording,
 * second-level translation, notifier synchronisation). The only module of the
 * model other layers import.
 *
 * ```ts
 * const vtd = createIntelVtd({ awBits: 48, cachingMode: true }, ram);
 * vtd.events.on('msi', (m) => ...);
 * vtd.mmioWrite(0x20, 8, rootTable); vtd.mmioWrite(0x18, 4, 0x4000_0000n); // SRTP
 * vtd.addressSpace(0x20).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: 2n ** 64n - 1n, notify });
 * ```
 */
import type { IOMMUAddressSpace, MmioIOMMUModel } from '../../core/model';
import type { DmaReadResult, DmaResult } from '../../memory/dma';
import type { GuestMemory } from '../../memory/guest-memory';
import { DEFAULT_VTD_CONFIG } from './config';
import type { VtdConfig } from './config';
import { VtdDevice } from './device';
import type { VtdLimits } from './device';

export { DEFAULT_VTD_CONFIG } from './config';
export type { VtdConfig } from './config';
export { VTD_SYNC_WALK_BUDGET, VTD_SYNC_LEAF_BUDGET } from './device';
export type { VtdLimits } from './device';
export { VtdEntry, VtdDescriptor, VtdGuestReg, VtdGuestTables, VtdInvalidationQueue, VtdGuest } from './guest-tables';
export type {
  VtdSlpteFields, VtdRootFields, VtdScalableRootFields, VtdLegacyContextFields, VtdScalableContextFields, VtdPasidDirFields,
  VtdPasidEntryFields, VtdDescriptorWords, VtdMmioPort, VtdGuestLayout, VtdGuestOptions,
} from './guest-tables';

/** An Intel VT-d IOMMU model. */
export interface IntelVtd extends MmioIOMMUModel {
  readonly kind: 'intel-vtd';
  /** The validated configuration (defaults filled in). */
  readonly config: Readonly<VtdConfig>;
  /**
   * A device (requester id `sid`, optional PASID in scalable mode) reads `len`
   * bytes at `iova`: page by page in ascending order, a faulting page reads as
   * zeros and later pages are still read (trace-v1 `dma.read`).
   */
  dmaRead(sid: number, iova: bigint, len: number, pasid?: number): DmaReadResult;
  /** A device writes `data` at `iova`: bytes of faulting pages are dropped, the others land (trace-v1 `dma.write`). */
  dmaWrite(sid: number, iova: bigint, data: Uint8Array, pasid?: number): DmaResult;
  /** The address space of (sid, PASID); without `scalableMode` the PASID is ignored. */
  addressSpace(sid: number, pasid?: number): IOMMUAddressSpace;
}

/** A configuration QEMU would refuse (vtd_decide_config). */
export class VtdConfigError extends Error {
  override readonly name = 'VtdConfigError';
}

const BOOLEAN_OPTIONS = ['cachingMode', 'scalableMode', 'deviceIotlb', 'interruptRemapping', 'passThrough'] as const;

/**
 * Fills in defaults and validates as QEMU's vtd_decide_config: aw-bits must be
 * 39 or 48; every other option is a boolean; unknown options are refused.
 * (Scalable mode needs dma-drain, which is always on here; x-pasid-mode is not
 * modelled.)
 */
export function validateVtdConfig(config: Partial<VtdConfig>): Readonly<VtdConfig> {
  if (config === null || typeof config !== 'object') throw new VtdConfigError('intel-vtd: config must be an object');
  for (const key of Object.keys(config)) {
    if (!(key in DEFAULT_VTD_CONFIG)) {
      throw new VtdConfigError(`intel-vtd: unknown option '${key}' (known: ${Object.keys(DEFAULT_VTD_CONFIG).join(', ')})`);
    }
  }
  const cfg: VtdConfig = { ...DEFAULT_VTD_CONFIG };
  for (const [k, v] of Object.entries(config)) {
    if (v !== undefined) (cfg as unknown as Record<string, unknown>)[k] = v;
  }
  if (cfg.awBits !== 39 && cfg.awBits !== 48) {
    throw new VtdConfigError(`intel-vtd: awBits must be 39 or 48 (got ${String(cfg.awBits)}), as QEMU's aw-bits`);
  }
  for (const k of BOOLEAN_OPTIONS) {
    if (typeof cfg[k] !== 'boolean') throw new VtdConfigError(`intel-vtd: ${k} must be a boolean (got ${String(cfg[k])})`);
  }
  return Object.freeze(cfg);
}

/**
 * Creates a VT-d model over guest memory `mem` (tables, queue and DMA go
 * through it). Throws VtdConfigError for an invalid configuration. `limits`
 * overrides the work bound of one guest action (an MMIO write, or a notifier
 * registration, with every sync or replay it causes): defaults
 * VTD_SYNC_WALK_BUDGET table entries, VTD_SYNC_LEAF_BUDGET leaves. Syncs
 * past it are abandoned and reported as `syncIncomplete` (see VtdLimits).
 */
export function createIntelVtd(config: Partial<VtdConfig>, mem: GuestMemory, limits?: VtdLimits): IntelVtd {
  return new VtdDevice(validateVtdConfig(config), mem, limits);
}
