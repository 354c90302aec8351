/**
 * Register offsets, identification values, command opcodes and event types
 * of the SMMUv3 (IHI 0070 chapters 4, 6 and 7), with QEMU 7.2's values where
 * the architecture leaves a choice. Internal to the smmuv3 model.
 */
import type { SmmuStage } from './config';

export const R = {
  IDR0: 0x00, IDR5: 0x14, IIDR: 0x18, AIDR: 0x1c,
  CR0: 0x20, CR0ACK: 0x24, CR1: 0x28, CR2: 0x2c, STATUSR: 0x40, GBPA: 0x44,
  IRQ_CTRL: 0x50, IRQ_CTRL_ACK: 0x54, GERROR: 0x60, GERRORN: 0x64,
  GERROR_IRQ_CFG0: 0x68, GERROR_IRQ_CFG1: 0x70, GERROR_IRQ_CFG2: 0x74,
  STRTAB_BASE: 0x80, STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90, CMDQ_PROD: 0x98, CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0, EVENTQ_PROD: 0xa8, EVENTQ_CONS: 0xac,
  EVENTQ_IRQ_CFG0: 0xb0, EVENTQ_IRQ_CFG1: 0xb8, EVENTQ_IRQ_CFG2: 0xbc,
  IDREGS: 0xfd0,
} as const;

/** Size of the MMIO region (two 64 KiB pages; page 1 aliases page 0 in QEMU). */
export const MMIO_SIZE = 0x20000;

/** PIDR4..7, PIDR0..3, CIDR0..3 at 0xfd0..0xffc, one byte per register (QEMU: an MMU-600 signature). */
export const ID_REGS = [0x04, 0, 0, 0, 0x84, 0xb4, 0xf0, 0x10, 0x0d, 0xf0, 0x05, 0xb1] as const;

/** IDR1: SIDSIZE 16, EVENTQS 19, CMDQS 19 (QEMU SMMU_IDR1_SIDSIZE, SMMU_EVENTQS, SMMU_CMDQS). */
export const SIDSIZE = 16;
export const QUEUE_LOG2_MAX = 19;
/** IDR5.OAS = 4 (44 bits). */
export const OAS_ENC = 4;
export const OAS_BITS = 44;

/**
 * IDR0 of a configuration. Stage 1 is QEMU 7.2's 0x0d40101a: S1P, TTF=2,
 * COHACC, ASID16, TTENDIAN=2, STALL_MODEL=1, TERM_MODEL=1, ST_LEVEL=1.
 * Stage 2 and nested as QEMU 9 (S2P, and VMID16 which it sets for every
 * configuration from 8.1 on; 7.2 did not set it).
 */
export function idr0(stage: SmmuStage): number {
  const common = (2 << 2) | (1 << 4) | (1 << 12) | (2 << 21) | (1 << 24) | (1 << 26) | (1 << 27);
  if (stage === '1') return (common | 0b10) >>> 0;
  const vmid16 = 1 << 18;
  return (common | vmid16 | (stage === 'nested' ? 0b11 : 0b01)) >>> 0;
}
export const IDR1 = (SIDSIZE | (QUEUE_LOG2_MAX << 21) | (QUEUE_LOG2_MAX << 16)) >>> 0;
/** IDR3: HAD, BBML=2, RIL. */
export const IDR3 = (1 << 2) | (2 << 11) | (1 << 10);
/** IDR5: OAS=44 bits, GRAN4K, GRAN16K, GRAN64K. */
export const IDR5 = OAS_ENC | (1 << 4) | (1 << 5) | (1 << 6);
export const AIDR = 1;

/** CR0 bits QEMU does not acknowledge (SMMU_CR0_RESERVED). */
export const CR0_RESERVED = 0xffff_fc20;
export const CR0_SMMUEN = 1 << 0;
export const CR0_EVENTQEN = 1 << 2;
export const CR0_CMDQEN = 1 << 3;

export const IRQ_CTRL_GERROR_IRQEN = 1 << 0;
export const IRQ_CTRL_EVENTQ_IRQEN = 1 << 2;

export const GERROR_CMDQ_ERR = 1 << 0;
export const GERROR_EVENTQ_ABT_ERR = 1 << 2;

export const GBPA_ABORT = 1 << 20;
export const GBPA_UPDATE = 1 << 31;
/** QEMU 8.1+ GBPA reset value (SHCFG = 0b01). */
export const GBPA_RESET = 0x1000;

/** Queue and table base address bits 51:6 (the findings: QEMU drops bit 5 for CMDQ_BASE too). */
export const BASE_ADDR_MASK = 0x000f_ffff_ffff_ffc0n;

/** Command opcodes (IHI 0070 4.1). */
export const CMD = {
  PREFETCH_CONFIG: 0x01, PREFETCH_ADDR: 0x02, CFGI_STE: 0x03, CFGI_STE_RANGE: 0x04, CFGI_CD: 0x05, CFGI_CD_ALL: 0x06,
  TLBI_NH_ALL: 0x10, TLBI_NH_ASID: 0x11, TLBI_NH_VA: 0x12, TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18, TLBI_EL3_VA: 0x1a, TLBI_EL2_ALL: 0x20, TLBI_EL2_ASID: 0x21, TLBI_EL2_VA: 0x22, TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28, TLBI_S2_IPA: 0x2a, TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40, PRI_RESP: 0x41, RESUME: 0x44, STALL_TERM: 0x45, SYNC: 0x46,
} as const;

export const CERROR_ILL = 1;
export const CERROR_ABT = 2;

/** Event record types (IHI 0070 7.3). */
export const EVT = {
  F_UUT: 0x01, C_BAD_STREAMID: 0x02, F_STE_FETCH: 0x03, C_BAD_STE: 0x04, F_BAD_ATS_TREQ: 0x05, F_STREAM_DISABLED: 0x06,
  F_TRANS_FORBIDDEN: 0x07, C_BAD_SUBSTREAMID: 0x08, F_CD_FETCH: 0x09, C_BAD_CD: 0x0a, F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10, F_ADDR_SIZE: 0x11, F_ACCESS: 0x12, F_PERMISSION: 0x13, F_TLB_CONFLICT: 0x20, F_CFG_CONFLICT: 0x21,
} as const;

/** The wired interrupts of the `virt` machine (GIC SPI 74 + index). */
export type SmmuIrqLine = 'eventq' | 'priq' | 'cmdqSync' | 'gerror';
export const IRQ_SPI: Readonly<Record<SmmuIrqLine, number>> = { eventq: 74, priq: 75, cmdqSync: 76, gerror: 77 };
