/**
 * Options of the VT-d model, named after QEMU's intel-iommu properties
 * (trace-v1 header `config`). Defaults follow QEMU 7.2 as the reference
 * traces were captured (aw-bits=39, everything else off, pt on).
 */
export interface VtdConfig {
  /** aw-bits: 39 (3-level) or 48 (4-level). */
  awBits: 39 | 48;
  /** caching-mode: CAP.CM; needed for MAP notifiers. */
  cachingMode: boolean;
  /** x-scalable-mode: ECAP.SMTS/SRS/SLTS, scalable root/context/PASID tables, 256-bit descriptors. */
  scalableMode: boolean;
  /** device-iotlb: ECAP.DT, context TT=1, device-IOTLB descriptors to DEVIOTLB_UNMAP notifiers. */
  deviceIotlb: boolean;
  /** intremap: ECAP.IR (register state, SIRTP/IRE, IEC descriptor). */
  interruptRemapping: boolean;
  /** pt: ECAP.PT (pass-through contexts). QEMU's default is on. */
  passThrough: boolean;
}

export const DEFAULT_VTD_CONFIG: Readonly<VtdConfig> = Object.freeze({
  awBits: 39,
  cachingMode: false,
  scalableMode: false,
  deviceIotlb: false,
  interruptRemapping: false,
  passThrough: true,
});
