/**
 * PROBE properties (virtio 1.2 section 5.13.6.8): the device fills
 * probe_size bytes with properties, then zeros. QEMU 7.2 reports one
 * RESV_MEM property per reserved region and nothing else.
 */
import type { ReservedRegion } from './config';

export const VIRTIO_IOMMU_PROBE_T_RESV_MEM = 1;
export const VIRTIO_IOMMU_RESV_MEM_T_RESERVED = 0;
export const VIRTIO_IOMMU_RESV_MEM_T_MSI = 1;
/** struct virtio_iommu_probe_resv_mem: head (type le16, length le16) + subtype, reserved[3], start le64, end le64. */
export const RESV_MEM_PROPERTY_SIZE = 24;

/**
 * Writes the RESV_MEM properties of `regions` into `out` (probe_size bytes,
 * zero-filled). Returns false when they do not fit (QEMU: -ENOSPC, S_INVAL).
 */
export function fillProbeProperties(out: Uint8Array, regions: readonly ReservedRegion[]): boolean {
  if (regions.length * RESV_MEM_PROPERTY_SIZE > out.length) return false;
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let at = 0;
  for (const r of regions) {
    v.setUint16(at, VIRTIO_IOMMU_PROBE_T_RESV_MEM, true);
    // length counts the bytes after the property head.
    v.setUint16(at + 2, RESV_MEM_PROPERTY_SIZE - 4, true);
    out[at + 4] = r.subtype === 'msi' ? VIRTIO_IOMMU_RESV_MEM_T_MSI : VIRTIO_IOMMU_RESV_MEM_T_RESERVED;
    v.setBigUint64(at + 8, r.start, true);
    v.setBigUint64(at + 16, r.end, true);
    at += RESV_MEM_PROPERTY_SIZE;
  }
  return true;
}
