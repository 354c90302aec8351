/**
 * MMIO register map and field encodings of the AMD IOMMU (spec 48882,
 * "MMIO Registers" and "Commands" / "Event Log" chapters). Internal.
 */
import { X86_MSI_RANGE } from '../../core/guest-addr';

/** Size of the MMIO region (QEMU AMDVI_MMIO_SIZE). */
export const MMIO_SIZE = 0x4000;

export const REG = {
  DEVTAB_BASE: 0x0000,
  CMD_BASE: 0x0008,
  EVT_BASE: 0x0010,
  CONTROL: 0x0018,
  EXCL_BASE: 0x0020,
  EXCL_LIMIT: 0x0028,
  EXT_FEATURES: 0x0030,
  PPR_BASE: 0x0038,
  CMD_HEAD: 0x2000,
  CMD_TAIL: 0x2008,
  EVT_HEAD: 0x2010,
  EVT_TAIL: 0x2018,
  STATUS: 0x2020,
  PPR_HEAD: 0x2030,
  PPR_TAIL: 0x2038,
} as const;

/** CONTROL bits acted on. */
export const CTRL = {
  IOMMU_EN: 1 << 0,
  EVENT_LOG_EN: 1 << 2,
  EVENT_INT_EN: 1 << 3,
  COM_WAIT_INT_EN: 1 << 4,
  CMD_BUF_EN: 1 << 12,
} as const;

/** STATUS bits. */
export const STATUS = {
  EVENT_OVERFLOW: 1 << 0,
  EVENT_LOG_INT: 1 << 1,
  COM_WAIT_INT: 1 << 2,
  EVENT_LOG_RUN: 1 << 3,
  CMD_BUF_RUN: 1 << 4,
  /** Write-1-to-clear bits (spec): EventOverflow, EventLogInt, ComWaitInt, PprOverflow, PprInt. */
  RW1C: 0x67,
} as const;

/**
 * EXT_FEATURES as QEMU 7.2 reports it (0x29d3: PreFSup, PPRSup, GTSup, IASup,
 * GASup, HESup, HATS=2 (6 levels), GATS=2). Both profiles report it: a guest
 * reads HATS from it to pick its page-table depth.
 */
export const EXT_FEATURES = 0x29d3n;

/**
 * IOMMU capability header (PCI config 0x40): capability id 0x0f, type 3,
 * IotlbSup, HtTunnel, EFRSup, CapExt; NpCache (bit 26) per profile/config.
 */
export const CAP_HEADER_BASE = 0x1b03_000f;
export const CAP_NPCACHE = 1 << 26;

/** Head/tail pointer field (bits 18:4). */
export const PTR_MASK = 0x7fff0;
/** Bits 51:12 (table / buffer base, PTE address). */
export const ADDR_MASK_51_12 = 0x000f_ffff_ffff_f000n;

/** Command opcodes (bits 63:60 of the first quadword). */
export const CMD = {
  COMPLETION_WAIT: 1,
  INVALIDATE_DEVTAB_ENTRY: 2,
  INVALIDATE_IOMMU_PAGES: 3,
  INVALIDATE_IOTLB_PAGES: 4,
  INVALIDATE_INTERRUPT_TABLE: 5,
  PREFETCH_IOMMU_PAGES: 6,
  COMPLETE_PPR_REQUEST: 7,
  INVALIDATE_IOMMU_ALL: 8,
} as const;

/** Event codes (bits 63:60 of the first quadword of an event-log entry); also the model's fault reasons. */
export const EVENT = {
  ILLEGAL_DEV_TABLE_ENTRY: 1,
  IO_PAGE_FAULT: 2,
  DEV_TAB_HARDWARE_ERROR: 3,
  PAGE_TAB_HARDWARE_ERROR: 4,
  ILLEGAL_COMMAND_ERROR: 5,
  COMMAND_HARDWARE_ERROR: 6,
} as const;

/**
 * Event flags (bits 59:48 of the first quadword, i.e. dword 1 bits 27:16):
 * I interrupt request, PR translation present, RW write, PE permission
 * error, RZ reserved bit / invalid level, TR translation request.
 */
export const EVF = {
  I: 1 << 3,
  PR: 1 << 4,
  RW: 1 << 5,
  PE: 1 << 6,
  RZ: 1 << 7,
  TR: 1 << 8,
} as const;

/** The x86 interrupt window (core X86_MSI_RANGE) as numbers for the hot path: never translated (write-only identity). */
export const INT_WINDOW_FIRST = Number(X86_MSI_RANGE.start);
export const INT_WINDOW_LAST = Number(X86_MSI_RANGE.end);
