/**
 * virtio-iommu request layouts (virtio 1.2 section 5.13.6): the head, the
 * five request bodies and the tail, all little-endian.
 *
 * Decoded with a DataView rather than binary-parser (which
 * src/models/intel-vtd/structures.ts uses for VT-d's bit-packed table
 * entries): these are flat structs of whole le32/le64 fields at fixed
 * offsets, so a DataView reads them in a few lines, allocates no parser
 * object per request, and lets a short body be detected by length before
 * anything is read (QEMU's `iov_to_buf` length check, S_INVAL).
 */

/** Request types (5.13.6). */
export const VIRTIO_IOMMU_T_ATTACH = 1;
export const VIRTIO_IOMMU_T_DETACH = 2;
export const VIRTIO_IOMMU_T_MAP = 3;
export const VIRTIO_IOMMU_T_UNMAP = 4;
export const VIRTIO_IOMMU_T_PROBE = 5;

/** Request status codes (5.13.6, tail.status). */
export const VirtioIommuStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
  DEVERR: 3,
  INVAL: 4,
  RANGE: 5,
  NOENT: 6,
  FAULT: 7,
  NOMEM: 8,
} as const;
export type VirtioIommuStatus = (typeof VirtioIommuStatus)[keyof typeof VirtioIommuStatus];

/** ATTACH flags (5.13.6.3). */
export const VIRTIO_IOMMU_ATTACH_F_BYPASS = 1;

/** MAP flags (5.13.6.5). */
export const VIRTIO_IOMMU_MAP_F_READ = 1;
export const VIRTIO_IOMMU_MAP_F_WRITE = 2;
export const VIRTIO_IOMMU_MAP_F_MMIO = 4;
export const VIRTIO_IOMMU_MAP_F_MASK = 7;

/** Feature bits (5.13.3). */
export const VirtioIommuFeature = {
  INPUT_RANGE: 0,
  DOMAIN_RANGE: 1,
  MAP_UNMAP: 2,
  BYPASS: 3,
  PROBE: 4,
  MMIO: 5,
  BYPASS_CONFIG: 6,
} as const;

/** Sizes: head and tail, and each request without its tail (QEMU's `sizeof(req) - sizeof(tail)`). */
export const HEAD_SIZE = 4;
export const TAIL_SIZE = 4;
export const ATTACH_SIZE = 20;
export const DETACH_SIZE = 20;
export const MAP_SIZE = 36;
/** UNMAP includes its reserved[4]. */
export const UNMAP_SIZE = 28;
/** PROBE: head, endpoint, reserved[64]. */
export const PROBE_SIZE = 72;

export interface AttachRequest { domain: number; endpoint: number; flags: number; reserved: number }
export interface DetachRequest { domain: number; endpoint: number }
export interface MapRequest { domain: number; virtStart: bigint; virtEnd: bigint; physStart: bigint; flags: number }
export interface UnmapRequest { domain: number; virtStart: bigint; virtEnd: bigint }
export interface ProbeRequest { endpoint: number }

function view(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

/** The request type (head.type), or undefined when the readable part is shorter than the head. */
export function requestType(data: Uint8Array): number | undefined {
  return data.length >= HEAD_SIZE ? data[0] : undefined;
}

/** ATTACH body, or undefined when short. `reserved` is nonzero when any reserved byte is. */
export function decodeAttach(data: Uint8Array): AttachRequest | undefined {
  if (data.length < ATTACH_SIZE) return undefined;
  const v = view(data);
  return { domain: v.getUint32(4, true), endpoint: v.getUint32(8, true), flags: v.getUint32(12, true), reserved: v.getUint32(16, true) };
}

export function decodeDetach(data: Uint8Array): DetachRequest | undefined {
  if (data.length < DETACH_SIZE) return undefined;
  const v = view(data);
  return { domain: v.getUint32(4, true), endpoint: v.getUint32(8, true) };
}

export function decodeMap(data: Uint8Array): MapRequest | undefined {
  if (data.length < MAP_SIZE) return undefined;
  const v = view(data);
  return {
    domain: v.getUint32(4, true),
    virtStart: v.getBigUint64(8, true),
    virtEnd: v.getBigUint64(16, true),
    physStart: v.getBigUint64(24, true),
    flags: v.getUint32(32, true),
  };
}

export function decodeUnmap(data: Uint8Array): UnmapRequest | undefined {
  if (data.length < UNMAP_SIZE) return undefined;
  const v = view(data);
  return { domain: v.getUint32(4, true), virtStart: v.getBigUint64(8, true), virtEnd: v.getBigUint64(16, true) };
}

export function decodeProbe(data: Uint8Array): ProbeRequest | undefined {
  if (data.length < PROBE_SIZE) return undefined;
  return { endpoint: view(data).getUint32(4, true) };
}

/** Request encoders (drivers, tests, the conformance adapter, benches): head + body, tail excluded. */
export function encodeAttach(domain: number, endpoint: number, flags = 0): Uint8Array {
  const b = new Uint8Array(ATTACH_SIZE);
  const v = view(b);
  b[0] = VIRTIO_IOMMU_T_ATTACH;
  v.setUint32(4, domain, true);
  v.setUint32(8, endpoint, true);
  v.setUint32(12, flags, true);
  return b;
}

export function encodeDetach(domain: number, endpoint: number): Uint8Array {
  const b = new Uint8Array(DETACH_SIZE);
  const v = view(b);
  b[0] = VIRTIO_IOMMU_T_DETACH;
  v.setUint32(4, domain, true);
  v.setUint32(8, endpoint, true);
  return b;
}

export function encodeMap(domain: number, virtStart: bigint, virtEnd: bigint, physStart: bigint, flags: number): Uint8Array {
  const b = new Uint8Array(MAP_SIZE);
  const v = view(b);
  b[0] = VIRTIO_IOMMU_T_MAP;
  v.setUint32(4, domain, true);
  v.setBigUint64(8, virtStart, true);
  v.setBigUint64(16, virtEnd, true);
  v.setBigUint64(24, physStart, true);
  v.setUint32(32, flags, true);
  return b;
}

export function encodeUnmap(domain: number, virtStart: bigint, virtEnd: bigint): Uint8Array {
  const b = new Uint8Array(UNMAP_SIZE);
  const v = view(b);
  b[0] = VIRTIO_IOMMU_T_UNMAP;
  v.setUint32(4, domain, true);
  v.setBigUint64(8, virtStart, true);
  v.setBigUint64(16, virtEnd, true);
  return b;
}

export function encodeProbe(endpoint: number): Uint8Array {
  const b = new Uint8Array(PROBE_SIZE);
  b[0] = VIRTIO_IOMMU_T_PROBE;
  view(b).setUint32(4, endpoint, true);
  return b;
}
