/**
 * Options of the AMD-Vi model (trace-v1 header `config` of model `amd-vi`).
 * Names mirror QEMU's amd-iommu properties where QEMU has one; `profile`
 * and `npCache` are this model's own.
 */
export type AmdViProfile = 'spec' | 'qemu-7.2';

export interface AmdViConfig {
  /**
   * Which document the model follows where they differ: `spec` (default) is
   * the AMD I/O Virtualization Technology (IOMMU) Specification, 48882;
   * `qemu-7.2` reproduces QEMU 7.2's amd-iommu, bugs included
   * (shared findings: no event log, STATUS not writable, walk deviations...).
   */
  profile: AmdViProfile;
  /** Guest-physical base of the 16 KiB MMIO region (QEMU maps it at 0xfed80000). Informational: offsets are relative to it. */
  mmioBase: bigint;
  /** QEMU's x86-iommu `pt` property. AMD-Vi pass-through is DTE Mode 0, always available: accepted, no effect. */
  pt: boolean;
  /** device-iotlb: INVALIDATE_IOTLB_PAGES is also delivered to DEVIOTLB_UNMAP notifiers (refused without it). */
  deviceIotlb: boolean;
  /** intremap: accepted; interrupt remapping is not modelled (INVALIDATE_INTERRUPT_TABLE is a no-op). */
  interruptRemapping: boolean;
  /**
   * Address/data of the IOMMU's PCI MSI capability when the guest programmed
   * and enabled it; undefined: MSI disabled, no interrupt is sent.
   */
  msiAddr: bigint | undefined;
  msiData: number | undefined;
  /**
   * NpCache (IOMMU capability header bit 26): the guest flushes after every
   * map, so MAP notifiers can be kept coherent (QEMU 10.1's dma-remap). Without
   * it a MAP notifier is refused (C1); UNMAP notifiers are always served.
   */
  npCache: boolean;
}

export const DEFAULT_AMDVI_CONFIG: Readonly<AmdViConfig> = Object.freeze({
  profile: 'spec',
  mmioBase: 0xfed8_0000n,
  pt: true,
  deviceIotlb: false,
  interruptRemapping: false,
  msiAddr: undefined,
  msiData: undefined,
  npCache: false,
});

/** A configuration the model refuses (unknown option, wrong type). */
export class AmdViConfigError extends Error {
  override readonly name = 'AmdViConfigError';
}

function toBig(key: string, v: unknown): bigint {
  if (typeof v === 'bigint' && v >= 0n) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === 'string' && /^0x[0-9a-fA-F]+$/.test(v)) return BigInt(v);
  throw new AmdViConfigError(`amd-vi: ${key} must be a non-negative integer or a 0x hex string (got ${String(v)})`);
}

/** Fills in defaults and validates a header config (hex strings as trace-v1 writes them, or bigints/numbers). */
export function validateAmdViConfig(config: unknown): Readonly<AmdViConfig> {
  if (config === undefined || config === null) config = {};
  if (typeof config !== 'object') throw new AmdViConfigError('amd-vi: config must be an object');
  const cfg: AmdViConfig = { ...DEFAULT_AMDVI_CONFIG };
  for (const [key, v] of Object.entries(config as Record<string, unknown>)) {
    if (v === undefined) continue;
    switch (key) {
      case 'profile':
        if (v !== 'spec' && v !== 'qemu-7.2') throw new AmdViConfigError(`amd-vi: profile must be "spec" or "qemu-7.2" (got ${String(v)})`);
        cfg.profile = v;
        break;
      case 'pt': case 'deviceIotlb': case 'interruptRemapping': case 'npCache':
        if (typeof v !== 'boolean') throw new AmdViConfigError(`amd-vi: ${key} must be a boolean (got ${String(v)})`);
        cfg[key] = v;
        break;
      case 'mmioBase':
        cfg.mmioBase = toBig(key, v);
        break;
      case 'msiAddr':
        cfg.msiAddr = toBig(key, v);
        break;
      case 'msiData': {
        const d = toBig(key, v);
        if (d > 0xffff_ffffn) throw new AmdViConfigError(`amd-vi: msiData must fit 32 bits (got ${String(v)})`);
        cfg.msiData = Number(d);
        break;
      }
      default:
        throw new AmdViConfigError(`amd-vi: unknown option '${key}' (known: ${Object.keys(DEFAULT_AMDVI_CONFIG).join(', ')})`);
    }
  }
  if ((cfg.msiAddr === undefined) !== (cfg.msiData === undefined)) {
    throw new AmdViConfigError('amd-vi: msiAddr and msiData go together (the MSI capability was programmed with both)');
  }
  return Object.freeze(cfg);
}
