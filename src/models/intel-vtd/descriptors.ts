/**
 * Invalidation-queue descriptors (VT-d spec 6.5.2), decoded with binary-parser
 * and checked the way QEMU 7.2 checks them (reserved-bit masks of
 * `intel_iommu_internal.h` 7.2, see vtd-facts.md §7). Internal to the model.
 */
import { Parser } from 'binary-parser';
import { hex } from '../../core/guest-addr';
import { VTD_MAMV } from './regs';

/** The raw words of one descriptor: 128-bit (lo, hi) or 256-bit (plus v2, v3). */
interface RawDescriptor {
  lo: bigint;
  hi: bigint;
  v2?: bigint;
  v3?: bigint;
}

const desc128 = new Parser().endianness('little').uint64le('lo').uint64le('hi');
const desc256 = new Parser().endianness('little').uint64le('lo').uint64le('hi').uint64le('v2').uint64le('v3');

/** Descriptor types (bits 3:0 of the low word; QEMU 7.2 ignores bits 11:9). */
export const VTD_INV_DESC = {
  CC: 0x1,
  IOTLB: 0x2,
  DEVICE: 0x3,
  IEC: 0x4,
  WAIT: 0x5,
  PIOTLB: 0x6,
  PC: 0x7,
} as const;

/** Context-cache invalidation granularity (G, bits 5:4). */
export const VTD_CC_G = { GLOBAL: 1, DOMAIN: 2, DEVICE: 3 } as const;
/** IOTLB invalidation granularity (G, bits 5:4). */
export const VTD_IOTLB_G = { GLOBAL: 1, DOMAIN: 2, PAGE: 3 } as const;

// QEMU 7.2 reserved masks (a set bit makes the descriptor invalid).
const CC_RSVD_LO = 0xfffc_0000_0000_ffc0n;
const IOTLB_RSVD_LO = 0xffff_ffff_0000_ff00n;
const IOTLB_RSVD_HI = 0xf80n;
const DEVICE_RSVD_LO = 0xffff_0000_ffe0_fff8n;
const DEVICE_RSVD_HI = 0xffen;
const WAIT_RSVD_LO = 0xffff_ff80n;
const WAIT_RSVD_HI = 0x3n;

export type VtdInvDescriptor =
  | { type: 'context-cache'; granularity: 1 | 2 | 3; did: number; sid: number; fm: number }
  | { type: 'iotlb'; granularity: 1 | 2 | 3; did: number; dr: boolean; dw: boolean; addr: bigint; am: number; ih: boolean }
  | { type: 'device-iotlb'; sid: number; s: boolean; addr: bigint }
  | { type: 'iec'; global: boolean; index: number; im: number }
  | { type: 'wait'; iflag: boolean; sw: boolean; fn: boolean; statusData: number; statusAddr: bigint }
  | { type: 'pasid-iotlb' }
  /** Granularity (bits 5:4: 0 domain, 1 PASID, 3 global) and DID (31:16): the model uses them for notifiers only. */
  | { type: 'pasid-cache'; granularity: number; did: number }
  /** Not a valid descriptor: the queue stops with IQE. `why` is for the guestError message. */
  | { type: 'invalid'; why: string };

/** Parses `bytes` (16 or 32 bytes, little-endian) into its raw words. */
export function parseRawDescriptor(bytes: Uint8Array): RawDescriptor {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return (bytes.byteLength >= 32 ? desc256.parse(buf) : desc128.parse(buf)) as RawDescriptor;
}


/**
 * Decodes and validates one descriptor as QEMU 7.2 does. In a 256-bit queue
 * the upper words are not checked (7.2; 10.2 requires them zero).
 */
export function decodeDescriptor(raw: RawDescriptor): VtdInvDescriptor {
  const { lo, hi } = raw;
  const type = Number(lo & 0xfn);
  const g = Number((lo >> 4n) & 3n);
  const words = `lo=${hex(lo)} hi=${hex(hi)}`;
  switch (type) {
    case VTD_INV_DESC.CC: {
      if ((lo & CC_RSVD_LO) !== 0n || hi !== 0n) return { type: 'invalid', why: `context-cache descriptor with reserved bits set (${words})` };
      if (g === 0) return { type: 'invalid', why: `context-cache descriptor with invalid granularity 0 (${words})` };
      return {
        type: 'context-cache', granularity: g as 1 | 2 | 3,
        did: Number((lo >> 16n) & 0xffffn), sid: Number((lo >> 32n) & 0xffffn), fm: Number((lo >> 48n) & 3n),
      };
    }
    case VTD_INV_DESC.IOTLB: {
      if ((lo & IOTLB_RSVD_LO) !== 0n || (hi & IOTLB_RSVD_HI) !== 0n) return { type: 'invalid', why: `IOTLB descriptor with reserved bits set (${words})` };
      if (g === 0) return { type: 'invalid', why: `IOTLB descriptor with invalid granularity 0 (${words})` };
      const am = Number(hi & 0x3fn);
      if (g === VTD_IOTLB_G.PAGE && am > VTD_MAMV) return { type: 'invalid', why: `IOTLB page-selective descriptor with AM ${am} > MAMV ${VTD_MAMV} (${words})` };
      return {
        type: 'iotlb', granularity: g as 1 | 2 | 3, did: Number((lo >> 16n) & 0xffffn),
        dr: (lo & 0x80n) !== 0n, dw: (lo & 0x40n) !== 0n,
        addr: hi & ~0xfffn, am, ih: (hi & 0x40n) !== 0n,
      };
    }
    case VTD_INV_DESC.DEVICE: {
      if ((lo & DEVICE_RSVD_LO) !== 0n || (hi & DEVICE_RSVD_HI) !== 0n) return { type: 'invalid', why: `device-IOTLB descriptor with reserved bits set (${words})` };
      return { type: 'device-iotlb', sid: Number((lo >> 32n) & 0xffffn), s: (hi & 1n) !== 0n, addr: hi & ~0xfffn };
    }
    case VTD_INV_DESC.IEC:
      // QEMU 7.2 checks no reserved bits in the IEC descriptor.
      return { type: 'iec', global: (lo & 0x10n) === 0n, index: Number((lo >> 32n) & 0xffffn), im: Number((lo >> 27n) & 0x1fn) };
    case VTD_INV_DESC.WAIT: {
      if ((lo & WAIT_RSVD_LO) !== 0n || (hi & WAIT_RSVD_HI) !== 0n) return { type: 'invalid', why: `wait descriptor with reserved bits set (${words})` };
      const iflag = (lo & 0x10n) !== 0n;
      const sw = (lo & 0x20n) !== 0n;
      if (!iflag && !sw) return { type: 'invalid', why: `wait descriptor with neither SW nor IF (${words})` };
      return { type: 'wait', iflag, sw, fn: (lo & 0x40n) !== 0n, statusData: Number(lo >> 32n), statusAddr: hi };
    }
    // QEMU 7.2 accepts the scalable-mode PASID descriptors and does nothing with them.
    case VTD_INV_DESC.PIOTLB: return { type: 'pasid-iotlb' };
    case VTD_INV_DESC.PC: return { type: 'pasid-cache', granularity: g, did: Number((lo >> 16n) & 0xffffn) };
    default:
      return { type: 'invalid', why: `unknown descriptor type ${type} (${words})` };
  }
}
