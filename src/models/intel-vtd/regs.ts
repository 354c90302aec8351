/**
 * The VT-d register file: offsets and bits named as the VT-d specification
 * names them (chapter 11), and the per-byte register storage QEMU uses
 * (value, writable mask, write-1-to-clear mask, write-only mask; see
 * shared/reference/vtd-facts.md §2). Internal to the intel-vtd model.
 */
import { U64_MAX } from '../../core/guest-addr';
import type { VtdConfig } from './config';

/** Size of the register block: FRCD0 at 0x220 is the last register (QEMU DMAR_REG_SIZE). */
export const DMAR_REG_SIZE = 0x230;

export const DMAR_VER_REG = 0x00;
export const DMAR_CAP_REG = 0x08;
export const DMAR_ECAP_REG = 0x10;
export const DMAR_GCMD_REG = 0x18;
export const DMAR_GSTS_REG = 0x1c;
export const DMAR_RTADDR_REG = 0x20;
export const DMAR_CCMD_REG = 0x28;
export const DMAR_FSTS_REG = 0x34;
export const DMAR_FECTL_REG = 0x38;
export const DMAR_FEDATA_REG = 0x3c;
export const DMAR_FEADDR_REG = 0x40;
export const DMAR_FEUADDR_REG = 0x44;
export const DMAR_PMEN_REG = 0x64;
export const DMAR_IQH_REG = 0x80;
export const DMAR_IQT_REG = 0x88;
export const DMAR_IQA_REG = 0x90;
export const DMAR_ICS_REG = 0x9c;
export const DMAR_IECTL_REG = 0xa0;
export const DMAR_IEDATA_REG = 0xa4;
export const DMAR_IEADDR_REG = 0xa8;
export const DMAR_IEUADDR_REG = 0xac;
export const DMAR_IQERCD_REG = 0xb0;
export const DMAR_IRTA_REG = 0xb8;
/** ECAP.IRO = 0xf: the IOTLB registers are at IRO * 16. */
export const VTD_IRO = 0x0f;
export const DMAR_IVA_REG = VTD_IRO * 16;
export const DMAR_IOTLB_REG = DMAR_IVA_REG + 8;
/** CAP.FRO = 0x22: the fault recording registers are at FRO * 16. */
export const VTD_FRO = 0x22;
export const DMAR_FRCD_REG = VTD_FRO * 16;
/** CAP.NFR + 1: QEMU implements one fault recording register. */
export const DMAR_FRCD_REG_NR = 1;

// GCMD / GSTS (spec 11.4.4, 11.4.5): command bit n reports in status bit n.
export const VTD_GCMD_TE = 0x8000_0000;
export const VTD_GCMD_SRTP = 0x4000_0000;
export const VTD_GCMD_SFL = 0x2000_0000;
export const VTD_GCMD_EAFL = 0x1000_0000;
export const VTD_GCMD_WBF = 0x0800_0000;
export const VTD_GCMD_QIE = 0x0400_0000;
export const VTD_GCMD_IRE = 0x0200_0000;
export const VTD_GCMD_SIRTP = 0x0100_0000;
export const VTD_GCMD_CFI = 0x0080_0000;
export const VTD_GSTS_TES = VTD_GCMD_TE;
export const VTD_GSTS_RTPS = VTD_GCMD_SRTP;
export const VTD_GSTS_QIES = VTD_GCMD_QIE;
export const VTD_GSTS_IRES = VTD_GCMD_IRE;
export const VTD_GSTS_IRTPS = VTD_GCMD_SIRTP;

/** RTADDR.TTM bit 10: scalable-mode root table (honoured with x-scalable-mode only). */
export const VTD_RTADDR_SMT = 1n << 10n;

// CCMD (spec 11.4.7).
export const VTD_CCMD_ICC = 1n << 63n;
export const VTD_CCMD_CIRG_SHIFT = 61n;
export const VTD_CCMD_CAIG_SHIFT = 59n;
export const VTD_CCMD_CAIG_MASK = 3n << VTD_CCMD_CAIG_SHIFT;

// IOTLB register (spec 11.4.8.1) and IVA (11.4.8.2).
export const VTD_TLB_IVT = 1n << 63n;
export const VTD_TLB_IIRG_SHIFT = 60n;
export const VTD_TLB_IAIG_SHIFT = 57n;
export const VTD_TLB_IAIG_MASK = 3n << VTD_TLB_IAIG_SHIFT;

// FSTS (spec 11.4.9.1).
export const VTD_FSTS_PFO = 0x1;
export const VTD_FSTS_PPF = 0x2;
export const VTD_FSTS_IQE = 0x10;
export const VTD_FSTS_FRI_SHIFT = 8;
export const VTD_FSTS_FRI_MASK = 0xff00;

// FECTL / IECTL (11.4.9.2, 11.4.10.5).
export const VTD_CTL_IM = 0x8000_0000;
export const VTD_CTL_IP = 0x4000_0000;

/** ICS.IWC (11.4.10.4). */
export const VTD_ICS_IWC = 0x1;

/** IQA.DW bit 11 (256-bit descriptors), IQA.QS bits 2:0. */
export const VTD_IQA_DW = 1n << 11n;
export const VTD_IQA_QS = 7n;

// CAP / ECAP fields (spec 11.4.2, 11.4.3; values as QEMU 7.2 reports them).
export const VTD_CAP_CM = 1n << 7n;
export const VTD_MAMV = 18;
export const VTD_ECAP_QI = 1n << 1n;
export const VTD_ECAP_DT = 1n << 2n;
export const VTD_ECAP_IR = 1n << 3n;
export const VTD_ECAP_PT = 1n << 6n;
export const VTD_ECAP_MHMV = 15n << 20n;
export const VTD_ECAP_SRS = 1n << 31n;
export const VTD_ECAP_SMTS = 1n << 43n;
export const VTD_ECAP_SLTS = 1n << 46n;

/**
 * CAP as QEMU 7.2 computes it: ND=6 (16-bit domain ids), CM, SAGAW (39-bit
 * always, 48-bit with aw-bits=48), MGAW = aw-1, FRO=0x22, SLLPS 2M+1G, PSI,
 * NFR=0, MAMV=18, DWD+DRD (dma-drain, QEMU's default).
 */
export function computeCap(cfg: VtdConfig): bigint {
  let cap = 6n // ND
    | (BigInt(VTD_FRO) << 24n)
    | (3n << 34n) // SLLPS: 2 MiB and 1 GiB
    | (1n << 39n) // PSI
    | (BigInt(VTD_MAMV) << 48n)
    | (1n << 54n) | (1n << 55n); // DWD, DRD
  cap |= (cfg.awBits === 48 ? 0x6n : 0x2n) << 8n; // SAGAW
  cap |= BigInt(cfg.awBits - 1) << 16n; // MGAW
  if (cfg.cachingMode) cap |= VTD_CAP_CM;
  return cap;
}

/** ECAP as QEMU 7.2 computes it (EIM off: QEMU's default under TCG). */
export function computeEcap(cfg: VtdConfig): bigint {
  let ecap = VTD_ECAP_QI | (BigInt(VTD_IRO) << 8n);
  if (cfg.passThrough) ecap |= VTD_ECAP_PT;
  if (cfg.deviceIotlb) ecap |= VTD_ECAP_DT;
  if (cfg.interruptRemapping) ecap |= VTD_ECAP_IR | VTD_ECAP_MHMV;
  if (cfg.scalableMode) ecap |= VTD_ECAP_SRS | VTD_ECAP_SMTS | VTD_ECAP_SLTS;
  return ecap;
}

const M64 = U64_MAX; // register values are 64 bits wide

/**
 * Byte-wise register storage, as QEMU keeps it: a guest write stores
 * `(old & ~wmask) | (val & wmask)` and then clears `w1cmask & val`; a guest
 * read masks out the write-only bits. The `*Raw` accessors are the device's
 * own view (no masks).
 */
export class RegisterFile {
  readonly csr = new Uint8Array(DMAR_REG_SIZE);
  readonly wmask = new Uint8Array(DMAR_REG_SIZE);
  readonly w1cmask = new Uint8Array(DMAR_REG_SIZE);
  readonly womask = new Uint8Array(DMAR_REG_SIZE);
  private readonly csrView = new DataView(this.csr.buffer);
  private readonly wView = new DataView(this.wmask.buffer);
  private readonly w1cView = new DataView(this.w1cmask.buffer);
  private readonly woView = new DataView(this.womask.buffer);

  clear(): void {
    this.csr.fill(0); this.wmask.fill(0); this.w1cmask.fill(0); this.womask.fill(0);
  }

  defineLong(off: number, value: number, wmask: number, w1c: number): void {
    this.csrView.setUint32(off, value >>> 0, true);
    this.wView.setUint32(off, wmask >>> 0, true);
    this.w1cView.setUint32(off, w1c >>> 0, true);
  }

  defineLongWo(off: number, womask: number): void {
    this.woView.setUint32(off, womask >>> 0, true);
  }

  defineQuad(off: number, value: bigint, wmask: bigint, w1c: bigint): void {
    this.csrView.setBigUint64(off, value & M64, true);
    this.wView.setBigUint64(off, wmask & M64, true);
    this.w1cView.setBigUint64(off, w1c & M64, true);
  }

  defineQuadWo(off: number, womask: bigint): void {
    this.woView.setBigUint64(off, womask & M64, true);
  }

  getLongRaw(off: number): number { return this.csrView.getUint32(off, true); }
  setLongRaw(off: number, v: number): void { this.csrView.setUint32(off, v >>> 0, true); }
  getQuadRaw(off: number): bigint { return this.csrView.getBigUint64(off, true); }
  setQuadRaw(off: number, v: bigint): void { this.csrView.setBigUint64(off, v & M64, true); }

  /** Clears then sets bits of a 32-bit register (QEMU vtd_set_clear_mask_long). */
  setClearLong(off: number, clear: number, set: number): void {
    this.setLongRaw(off, (this.getLongRaw(off) & ~clear) | set);
  }

  setClearQuad(off: number, clear: bigint, set: bigint): void {
    this.setQuadRaw(off, (this.getQuadRaw(off) & ~clear) | set);
  }

  /** Guest read of 4 bytes (write-only bits read as 0). */
  getLong(off: number): number {
    return (this.getLongRaw(off) & ~this.woView.getUint32(off, true)) >>> 0;
  }

  getQuad(off: number): bigint {
    return this.getQuadRaw(off) & ~this.woView.getBigUint64(off, true);
  }

  /** Guest write of 4 bytes through the masks; returns the old value. */
  setLong(off: number, val: number): number {
    const old = this.getLongRaw(off);
    const w = this.wView.getUint32(off, true);
    const c = this.w1cView.getUint32(off, true);
    this.setLongRaw(off, ((old & ~w) | (val & w)) & ~(c & val));
    return old;
  }

  setQuad(off: number, val: bigint): bigint {
    const old = this.getQuadRaw(off);
    const w = this.wView.getBigUint64(off, true);
    const c = this.w1cView.getBigUint64(off, true);
    this.setQuadRaw(off, ((old & ~w) | (val & w)) & ~(c & val));
    return old;
  }
}
