/**
 * virtio-iommu options (named after QEMU's virtio-iommu-pci properties and
 * the trace-v1 header's `config` for model `virtio-iommu`) and the device
 * configuration space (virtio 1.2 section 5.13.4).
 */
import { PAGE_SIZE_4K, U64_MAX, X86_MSI_RANGE } from '../../core/guest-addr';
import type { InclusiveRange } from '../../core/guest-addr';

/** A reserved region reported by PROBE (RESV_MEM property, 5.13.6.8.2). */
export interface ReservedRegion extends InclusiveRange {
  /** `msi`: accesses are MSIs, identity-mapped (RESV_MEM_T_MSI); `reserved`: accesses fault (RESV_MEM_T_RESERVED). */
  subtype: 'msi' | 'reserved';
}

export interface VirtioIommuConfig {
  /** QEMU `boot-bypass` (default true): config.bypass at system reset. */
  bootBypass: boolean;
  /** config.page_size_mask (QEMU: TARGET_PAGE_MASK, 0xfffffffffffff000). */
  pageSizeMask: bigint;
  /** config.input_range (QEMU: the whole 64-bit space). */
  inputRange: InclusiveRange;
  /** config.domain_range (QEMU: [0, 2^32 - 1]). */
  domainRange: { start: number; end: number };
  /** config.probe_size (QEMU: 512). */
  probeSize: number;
  /** PROBE's RESV_MEM properties (QEMU on q35: the MSI window 0xfee00000-0xfeefffff). */
  reservedRegions: ReservedRegion[];
  /** Endpoint ids that exist behind the IOMMU; undefined: every 16-bit requester id. */
  endpoints: number[] | undefined;
  /**
   * `qemu` (default): QEMU 7.2's behaviour where it departs from the virtio
   * spec (the traces are QEMU's); `spec`: the spec's MUSTs and SHOULDs
   * there (each place in device.ts says which document it follows).
   */
  profile: 'qemu' | 'spec';
  /**
   * Fault reports kept for the driver on the request-level interface
   * (`virtioTakeEvent`) before new ones are dropped, as QEMU drops a report
   * when the event queue has no buffer. The virtqueue helper uses the
   * guest's buffers instead.
   */
  eventQueueLimit: number;
}

/** x86's MSI window, the region QEMU 7.2's q35 pre-plug hook always sets. */
export const X86_MSI_REGION: ReservedRegion = { ...X86_MSI_RANGE, subtype: 'msi' };

export const DEFAULT_VIRTIO_IOMMU_CONFIG: Readonly<VirtioIommuConfig> = {
  bootBypass: true,
  pageSizeMask: 0xffff_ffff_ffff_f000n,
  inputRange: { start: 0n, end: U64_MAX },
  domainRange: { start: 0, end: 0xffff_ffff },
  probeSize: 512,
  reservedRegions: [X86_MSI_REGION],
  endpoints: undefined,
  profile: 'qemu',
  eventQueueLimit: 4096,
};

export class VirtioIommuConfigError extends Error {
  override readonly name = 'VirtioIommuConfigError';
}

/** A u64 option: bigint, safe integer or a trace-v1 hex string. */
function u64(name: string, v: unknown): bigint {
  let r: bigint | undefined;
  if (typeof v === 'bigint') r = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) r = BigInt(v);
  else if (typeof v === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) r = BigInt(v);
  if (r === undefined || r < 0n || r > U64_MAX) throw new VirtioIommuConfigError(`${name}: ${String(v)} is not a 64-bit unsigned value`);
  return r;
}

function u32(name: string, v: unknown): number {
  const r = u64(name, v);
  if (r > 0xffff_ffffn) throw new VirtioIommuConfigError(`${name}: ${String(v)} is not a 32-bit unsigned value`);
  return Number(r);
}

function range(name: string, v: unknown): InclusiveRange {
  if (typeof v !== 'object' || v === null) throw new VirtioIommuConfigError(`${name}: expected {start, end}`);
  const o = v as { start?: unknown; end?: unknown };
  const r = { start: u64(`${name}.start`, o.start), end: u64(`${name}.end`, o.end) };
  if (r.start > r.end) throw new VirtioIommuConfigError(`${name}: start is above end`);
  return r;
}

/**
 * Options from a trace header's `config` or from code (bigints, numbers or
 * hex strings); missing options take QEMU 7.2's defaults. Throws
 * VirtioIommuConfigError naming the bad option.
 */
export function parseVirtioIommuConfig(raw: unknown): VirtioIommuConfig {
  const c: VirtioIommuConfig = { ...DEFAULT_VIRTIO_IOMMU_CONFIG, reservedRegions: [...DEFAULT_VIRTIO_IOMMU_CONFIG.reservedRegions] };
  if (raw === undefined || raw === null) return c;
  if (typeof raw !== 'object') throw new VirtioIommuConfigError('config: expected an object');
  const o = raw as Record<string, unknown>;
  if (o.bootBypass !== undefined) {
    if (typeof o.bootBypass !== 'boolean') throw new VirtioIommuConfigError('bootBypass: expected a boolean');
    c.bootBypass = o.bootBypass;
  }
  if (o.pageSizeMask !== undefined) {
    c.pageSizeMask = u64('pageSizeMask', o.pageSizeMask);
    // The granule is the lowest set bit; translate() answers in it (QEMU: ctz32).
    const low = c.pageSizeMask & -c.pageSizeMask;
    if (low !== PAGE_SIZE_4K) throw new VirtioIommuConfigError('pageSizeMask: only a 4 KiB granule is supported (lowest set bit 0x1000)');
  }
  if (o.inputRange !== undefined) c.inputRange = range('inputRange', o.inputRange);
  if (o.domainRange !== undefined) {
    const r = range('domainRange', o.domainRange);
    c.domainRange = { start: u32('domainRange.start', r.start), end: u32('domainRange.end', r.end) };
  }
  if (o.probeSize !== undefined) {
    const n = u32('probeSize', o.probeSize);
    if (n > 0x10000) throw new VirtioIommuConfigError('probeSize: at most 65536');
    c.probeSize = n;
  }
  if (o.reservedRegions !== undefined) {
    if (!Array.isArray(o.reservedRegions)) throw new VirtioIommuConfigError('reservedRegions: expected a list');
    c.reservedRegions = o.reservedRegions.map((r: unknown, i: number) => {
      const rr = range(`reservedRegions[${i}]`, r);
      const st = (r as { subtype?: unknown }).subtype ?? 'reserved';
      if (st !== 'msi' && st !== 'reserved') throw new VirtioIommuConfigError(`reservedRegions[${i}].subtype: msi or reserved`);
      return { start: rr.start, end: rr.end, subtype: st };
    });
  }
  if (o.endpoints !== undefined) {
    if (!Array.isArray(o.endpoints)) throw new VirtioIommuConfigError('endpoints: expected a list');
    c.endpoints = o.endpoints.map((e: unknown, i: number) => {
      const n = u32(`endpoints[${i}]`, e);
      if (n > 0xffff) throw new VirtioIommuConfigError(`endpoints[${i}]: not a 16-bit requester id`);
      return n;
    });
  }
  if (o.profile !== undefined) {
    if (o.profile !== 'qemu' && o.profile !== 'spec') throw new VirtioIommuConfigError("profile: 'qemu' or 'spec'");
    c.profile = o.profile;
  }
  if (o.eventQueueLimit !== undefined) {
    if (typeof o.eventQueueLimit !== 'number' || !Number.isInteger(o.eventQueueLimit) || o.eventQueueLimit < 0) {
      throw new VirtioIommuConfigError('eventQueueLimit: a non-negative integer');
    }
    c.eventQueueLimit = o.eventQueueLimit;
  }
  return c;
}

/** Size of struct virtio_iommu_config (5.13.4). */
export const CONFIG_SPACE_SIZE = 40;
/** Offset of config.bypass. */
export const CONFIG_BYPASS = 36;

/** Fills `buf` (40 bytes) with the configuration space (QEMU get_config; reserved bytes 0). */
export function fillConfigSpace(buf: Uint8Array, c: VirtioIommuConfig, bypass: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  buf.fill(0);
  v.setBigUint64(0, c.pageSizeMask, true);
  v.setBigUint64(8, c.inputRange.start, true);
  v.setBigUint64(16, c.inputRange.end, true);
  v.setUint32(24, c.domainRange.start, true);
  v.setUint32(28, c.domainRange.end, true);
  v.setUint32(32, c.probeSize, true);
  buf[CONFIG_BYPASS] = bypass;
}
