/**
 * Second-level translation structures of Intel VT-d as QEMU 7.2 reads them:
 * root and context tables (legacy and scalable mode), the PASID directory and
 * table (RID_PASID), and second-level page tables. Pure functions of guest
 * memory and the model configuration: the device (device.ts) owns the caches
 * and the fault recording, this module only says what the tables say.
 *
 * Fault reasons are the FRCD.FR codes QEMU 7.2 reports (see
 * shared/reference/qemu-7.2-findings.md): 0x1 root not present, 0x2 context not
 * present, 0x3 invalid context, 0x4 beyond AW, 0x5 write / 0x6 read not
 * permitted (also for not-present PTEs), 0x7 paging entry unreadable, 0x8 root
 * read error, 0x9 context read error, 0xa root reserved, 0xb context reserved,
 * 0xc PTE reserved, 0xe interrupt range (legacy), 0x58 invalid PASID entry,
 * 0x87 interrupt range (scalable).
 */
import type { GuestMemory } from '../../memory/guest-memory';
import type { PageWordsSource } from '../../memory/sparse-ram';
import type { LeafSink, LeafWalker } from '../../core/leaf';
import { WalkLimitError, WalkSession } from '../../core/walk-budget';
import type { VtdConfig } from './config';
import {
  LEGACY_CONTEXT_SIZE,
  PASID_DIR_ENTRY_SIZE,
  PASID_ENTRY_SIZE,
  ROOT_ENTRY_SIZE,
  SCALABLE_CONTEXT_SIZE,
  hawHiMask,
  parseLegacyContext,
  parsePasidDirEntry,
  parsePasidEntry,
  parseRootEntry,
  parseScalableContext,
  rootHalfReserved,
  type PasidEntry,
} from './structures';

/** FRCD.FR fault reasons QEMU 7.2 reports for DMA remapping (intel_iommu_internal.h VTDFaultReason). */
export const VtdFaultReason = {
  ROOT_ENTRY_P: 0x1,
  CONTEXT_ENTRY_P: 0x2,
  CONTEXT_ENTRY_INV: 0x3,
  ADDR_BEYOND_MGAW: 0x4,
  WRITE: 0x5,
  READ: 0x6,
  PAGING_ENTRY_INV: 0x7,
  ROOT_TABLE_INV: 0x8,
  CONTEXT_TABLE_INV: 0x9,
  ROOT_ENTRY_RSVD: 0xa,
  CONTEXT_ENTRY_RSVD: 0xb,
  PAGING_ENTRY_RSVD: 0xc,
  CONTEXT_ENTRY_TT: 0xd,
  INTERRUPT_ADDR: 0xe,
  PASID_TABLE_INV: 0x58,
  SM_INTERRUPT_ADDR: 0x87,
} as const;
export type VtdFaultReason = (typeof VtdFaultReason)[keyof typeof VtdFaultReason];

/**
 * Whether FPD can suppress the recording of `reason` (QEMU 7.2
 * `vtd_qualified_faults`): 0x2-0x7, 0xc, 0xd, 0xe and 0x87 are qualified; root
 * faults (0x1, 0x8, 0xa), context read/reserved faults (0x9, 0xb) and 0x58 are
 * always recorded.
 */
export function isQualifiedFault(reason: number): boolean {
  return (reason >= 0x2 && reason <= 0x7) || reason === 0xc || reason === 0xd || reason === 0xe || reason === 0x87;
}

/** A resolved device context: what a translation of this device needs. */
export interface VtdContext {
  /** Domain id (legacy context DID, or PASID entry DID in scalable mode). */
  did: number;
  /** Pass-through (legacy TT=2, scalable PGTT=4): iova = gpa. */
  passThrough: boolean;
  /** Legacy TT=1 (device-TLB allowed) is translated like TT=0. */
  /** Guest-physical address of the second-level root table (SLPTPTR). */
  slptptr: number;
  /** Second-level paging levels: 3 or 4. */
  levels: 3 | 4;
  /** Fault processing disable (context FPD, or PASID dir/entry FPD in scalable mode). */
  fpd: boolean;
  /** PASID the context was resolved for (scalable mode: the RID_PASID); undefined in legacy mode. */
  pasid: number | undefined;
  /**
   * Scalable mode: what QEMU 7.2 keeps of the context entry in its context
   * cache. 7.2 caches only the context entry and re-reads the PASID directory
   * and PASID entry on every IOTLB miss (PASID-cache invalidation is a no-op
   * there): `refreshPasid` does that re-read. Undefined in legacy mode.
   */
  scalable?: VtdScalableContext;
}

/** The scalable-mode context entry fields a PASID lookup needs. */
export interface VtdScalableContext {
  /** PASID directory pointer (context val0 bits 63:12). */
  pasidDir: number;
  /** RID_PASID (context val1 bits 19:0). */
  ridPasid: number;
  /** FPD of the context entry itself. */
  contextFpd: boolean;
}

/** Why a context could not be resolved. */
export interface VtdContextFault {
  reason: number;
  /** FPD suppresses recording of this fault (qualified fault and FPD set where QEMU reads it). */
  suppressed: boolean;
}

export type VtdContextResult = VtdContext | VtdContextFault;

export function isContextFault(r: VtdContextResult): r is VtdContextFault {
  return (r as VtdContextFault).reason !== undefined;
}

function contextFault(reason: number, fpd = false): VtdContextFault {
  return { reason, suppressed: fpd && isQualifiedFault(reason) };
}

/** Scratch space for one table entry (at most the 64-byte PASID entry), with a view per entry size. */
const scratch = new Uint8Array(PASID_ENTRY_SIZE);
const views = new Map<number, Uint8Array>(
  [PASID_DIR_ENTRY_SIZE, ROOT_ENTRY_SIZE, SCALABLE_CONTEXT_SIZE, PASID_ENTRY_SIZE].map((n) => [n, scratch.subarray(0, n)]),
);

/**
 * Reads `size` bytes of a table entry into the shared scratch view, or
 * undefined when any byte is outside RAM (QEMU's dma_memory_read fails as a
 * whole). The view is only valid until the next read: parse it at once.
 */
function readEntry(mem: GuestMemory, gpa: number, size: number): Uint8Array | undefined {
  const bytes = views.get(size)!;
  return mem.read(gpa, bytes) ? bytes : undefined;
}

/**
 * Second-level paging levels the model supports (CAP.SAGAW, QEMU
 * `vtd_is_level_supported`): 3 always, 4 with aw-bits=48. AW=0 (2-level) and
 * AW >= 3 are invalid.
 */
function supportedLevels(cfg: VtdConfig, aw: number): 3 | 4 | undefined {
  if (aw === 1) return 3;
  if (aw === 2 && cfg.awBits === 48) return 4;
  return undefined;
}

/** A valid PASID entry and the FPD of its directory entry. */
interface PasidLookup {
  pe: PasidEntry;
  dirFpd: boolean;
}

/**
 * The PASID entry of `pasid` under the PASID directory at `dir`, checked as
 * QEMU 7.2 `vtd_get_pe_from_pasid_table` does: directory entry read and P,
 * PASID entry read (64 bytes), PGTT (1/2/3, 4 only with pt), AW supported,
 * P. Every failure is 0x58 in 7.2 (never qualified), so the order among them
 * does not show; undefined then.
 *
 * The same reads serve QEMU's `vtd_ce_get_pasid_fpd`, which looks at the
 * directory entry's FPD before its P and at the PASID entry's FPD before its
 * P: whenever the entry is valid, FPD = directory FPD || entry FPD; whenever
 * it is not, the fault is 0x58 whatever FPD says.
 */
function lookupPasid(mem: GuestMemory, cfg: VtdConfig, dir: number, pasid: number): PasidLookup | undefined {
  const dirBytes = readEntry(mem, dir + ((pasid >>> 6) & 0x3fff) * PASID_DIR_ENTRY_SIZE, PASID_DIR_ENTRY_SIZE);
  if (dirBytes === undefined) return undefined;
  const de = parsePasidDirEntry(dirBytes);
  if (!de.present) return undefined;
  const peBytes = readEntry(mem, de.table + (pasid & 0x3f) * PASID_ENTRY_SIZE, PASID_ENTRY_SIZE);
  if (peBytes === undefined) return undefined;
  const pe = parsePasidEntry(peBytes);
  const typeOk = pe.pgtt === 1 || pe.pgtt === 2 || pe.pgtt === 3 || (pe.pgtt === 4 && cfg.passThrough);
  if (!typeOk || supportedLevels(cfg, pe.aw) === undefined || !pe.present) return undefined;
  return { pe, dirFpd: de.fpd };
}

/**
 * Resolves the context of requester `sid` (bus << 8 | devfn) from the root
 * table at `rootTable` (RTADDR latched at SRTP; `scalableRoot` = RTADDR.TTM
 * bit 10 with scalable mode on). `pasid` selects a PASID entry in scalable
 * mode (default: the context's RID_PASID).
 *
 * Order of checks (QEMU 7.2 `vtd_dev_to_context_entry`, then the FPD lookup
 * of `vtd_do_iommu_translate`): root entry read (0x8), root P of the half
 * devfn selects (0x1), root reserved bits (0xa), context entry read (0x9),
 * context P (0x2), context reserved bits (0xb); legacy: AW supported (0x3),
 * TT supported (0x3); scalable: the RID_PASID's directory and PASID entries
 * (0x58). FPD is the context entry's bit 1, read even when P is clear; in
 * scalable mode, when that is clear, also the PASID directory entry's FPD
 * (even if not present) or the PASID entry's. `scalableRoot` only counts with
 * `cfg.scalableMode` (QEMU ignores RTADDR.TTM otherwise).
 *
 * Never throws for guest data: tables outside RAM give the read-error reasons.
 * A PASID other than the RID_PASID whose entry is invalid gives 0x58 (QEMU 7.2
 * goes on with an unchecked entry there; x-pasid-mode is not modelled).
 */
export function resolveContext(
  mem: GuestMemory, cfg: VtdConfig, rootTable: number, scalableRoot: boolean, sid: number, pasid?: number,
): VtdContextResult {
  const sm = scalableRoot && cfg.scalableMode;
  const bus = (sid >>> 8) & 0xff;
  const devfn = sid & 0xff;

  const reBytes = readEntry(mem, rootTable + bus * ROOT_ENTRY_SIZE, ROOT_ENTRY_SIZE);
  if (reBytes === undefined) return contextFault(VtdFaultReason.ROOT_TABLE_INV);
  const re = parseRootEntry(reBytes);
  // Scalable root entries hold two context-table pointers: LCTP for devfn 0..127, UCTP for 128..255.
  const upper = sm && devfn > 127;
  const half = upper ? re.hi : re.lo;
  if ((half.lo & 1) === 0) return contextFault(VtdFaultReason.ROOT_ENTRY_P);
  const rootReserved = sm
    ? rootHalfReserved(re.lo, cfg.awBits) || rootHalfReserved(re.hi, cfg.awBits)
    : (re.hi.lo | re.hi.hi) !== 0 || rootHalfReserved(re.lo, cfg.awBits);
  if (rootReserved) return contextFault(VtdFaultReason.ROOT_ENTRY_RSVD);
  const ctp = half.hi * 0x1_0000_0000 + ((half.lo & 0xffff_f000) >>> 0);

  if (!sm) {
    const ceBytes = readEntry(mem, ctp + devfn * LEGACY_CONTEXT_SIZE, LEGACY_CONTEXT_SIZE);
    if (ceBytes === undefined) return contextFault(VtdFaultReason.CONTEXT_TABLE_INV);
    const ce = parseLegacyContext(ceBytes, cfg.awBits);
    if (!ce.present) return contextFault(VtdFaultReason.CONTEXT_ENTRY_P, ce.fpd);
    if (ce.reserved) return contextFault(VtdFaultReason.CONTEXT_ENTRY_RSVD, ce.fpd);
    const levels = supportedLevels(cfg, ce.aw);
    if (levels === undefined) return contextFault(VtdFaultReason.CONTEXT_ENTRY_INV, ce.fpd);
    // TT: 0 translate, 1 translate + device-TLB (ECAP.DT), 2 pass-through (ECAP.PT), 3 reserved.
    const ttOk = ce.tt === 0 || (ce.tt === 1 && cfg.deviceIotlb) || (ce.tt === 2 && cfg.passThrough);
    if (!ttOk) return contextFault(VtdFaultReason.CONTEXT_ENTRY_INV, ce.fpd);
    return { did: ce.did, passThrough: ce.tt === 2, slptptr: ce.slptptr, levels, fpd: ce.fpd, pasid: undefined };
  }

  const ceBytes = readEntry(mem, ctp + (devfn & 0x7f) * SCALABLE_CONTEXT_SIZE, SCALABLE_CONTEXT_SIZE);
  if (ceBytes === undefined) return contextFault(VtdFaultReason.CONTEXT_TABLE_INV);
  const ce = parseScalableContext(ceBytes, cfg.awBits);
  if (!ce.present) return contextFault(VtdFaultReason.CONTEXT_ENTRY_P, ce.fpd);
  if (ce.reserved) return contextFault(VtdFaultReason.CONTEXT_ENTRY_RSVD, ce.fpd);
  const scalable: VtdScalableContext = { pasidDir: ce.pasidDir, ridPasid: ce.ridPasid, contextFpd: ce.fpd };
  const effective = pasid ?? ce.ridPasid;
  // A present scalable context needs a valid RID_PASID entry (vtd_ce_rid2pasid_check).
  if (effective !== ce.ridPasid && lookupPasid(mem, cfg, ce.pasidDir, ce.ridPasid) === undefined) {
    return contextFault(VtdFaultReason.PASID_TABLE_INV);
  }
  return fromPasid(mem, cfg, scalable, effective);
}

/**
 * The translation fields of `pasid` under a scalable context entry, as QEMU
 * 7.2 reads them on each IOTLB miss (`vtd_ce_get_pasid_fpd`, then the PASID
 * entry for PGTT, SLPTPTR, AW and DID): FPD from the context entry, else the
 * PASID directory entry, else the PASID entry.
 */
function fromPasid(mem: GuestMemory, cfg: VtdConfig, scalable: VtdScalableContext, pasid: number): VtdContextResult {
  const found = lookupPasid(mem, cfg, scalable.pasidDir, pasid);
  if (found === undefined) return contextFault(VtdFaultReason.PASID_TABLE_INV);
  const { pe } = found;
  // PGTT 1/2/3 all walk the second-level pointer in QEMU 7.2; 4 is pass-through.
  return {
    did: pe.did,
    passThrough: pe.pgtt === 4,
    slptptr: pe.slptptr,
    levels: supportedLevels(cfg, pe.aw)!,
    fpd: scalable.contextFpd || found.dirFpd || pe.fpd,
    pasid,
    scalable,
  };
}

/**
 * Re-reads the PASID directory and PASID entry of a scalable-mode context
 * (QEMU 7.2 does on every IOTLB miss, while the context entry itself comes
 * from the context cache): returns the context with fresh DID, SLPTPTR,
 * levels, pass-through and FPD, or 0x58 (never suppressed) when the PASID
 * entry is no longer valid. A legacy context is returned unchanged.
 *
 * Cached context entry with FPD set: QEMU 7.2's cached path
 * (vtd_do_iommu_translate) calls vtd_ce_get_pasid_fpd only when the context
 * FPD is clear, and the walk reads the PASID entry ignoring its validity
 * (vtd_get_iova_pgtbl_base / vtd_get_domain_id drop the error). So a PASID
 * entry made not present or given a bad PGTT after the context was cached
 * still translates with its SLPTPTR, AW and DID, as second level (QEMU
 * capture fixtures/qemu-vtd-extra/sm-fpd-cached-context-pasid.jsonl; the
 * spec would fault). When the directory entry is not present or the AW is
 * unsupported QEMU walks uninitialised or unusable values: 0x58 is kept.
 */
export function refreshPasid(mem: GuestMemory, cfg: VtdConfig, ctx: VtdContext): VtdContextResult {
  if (ctx.scalable === undefined) return ctx;
  const pasid = ctx.pasid ?? ctx.scalable.ridPasid;
  const res = fromPasid(mem, cfg, ctx.scalable, pasid);
  if (!isContextFault(res) || !ctx.scalable.contextFpd) return res;
  const dirBytes = readEntry(mem, ctx.scalable.pasidDir + ((pasid >>> 6) & 0x3fff) * PASID_DIR_ENTRY_SIZE, PASID_DIR_ENTRY_SIZE);
  if (dirBytes === undefined) return res;
  const de = parsePasidDirEntry(dirBytes);
  if (!de.present) return res;
  const peBytes = readEntry(mem, de.table + (pasid & 0x3f) * PASID_ENTRY_SIZE, PASID_ENTRY_SIZE);
  if (peBytes === undefined) return res;
  const pe = parsePasidEntry(peBytes);
  const levels = supportedLevels(cfg, pe.aw);
  if (levels === undefined) return res;
  return { did: pe.did, passThrough: false, slptptr: pe.slptptr, levels, fpd: true, pasid, scalable: ctx.scalable };
}

/** A leaf found by `walkSecondLevel`: `pages` 4 KiB frames at `iovaPfn` -> `xlatPfn`, with the AND of R/W down the walk. */
export interface VtdLeaf {
  iovaPfn: number;
  pages: number;
  xlatPfn: number;
  /** IOMMUAccessFlags: bit 0 read, bit 1 write. */
  perm: number;
  /** Level of the leaf: 1 (4K), 2 (2M), 3 (1G). */
  level: number;
}

/** Frames covered by one entry at level L: 512^(L-1) (index 0 unused). */
const LEVEL_PAGES: readonly number[] = [0, 1, 512, 512 * 512, 512 * 512 * 512];
const TWO_POW_32 = 0x1_0000_0000;
const TWO_POW_20 = 0x10_0000;
/** 1 / 4096, exact. */
const PAGE_SCALE = 2 ** -12;
/** Frames per level-4 entry (2^27) and its reciprocal (exact: a power of two). */
const PFN_HI_UNIT = 2 ** 27;
const PFN_HI_SCALE = 2 ** -27;
/** Interrupt address range 0xfee00000-0xfeefffff in frames. */
const INTR_FIRST_PFN = 0xfee00;
const INTR_LAST_PFN = 0xfeeff;

/**
 * Reserved-bit masks of second-level entries (QEMU 7.2 `vtd_init`:
 * VTD_SPTE_PAGE_Lx_RSVD_MASK / VTD_SPTE_LPAGE_Lx_RSVD_MASK), as lo/hi u32
 * halves per level (index = level). With IGN = bits 63, 61:52 and
 * H = ~(HAW | IGN): non-leaf L2/L3 0x800|H, L4 0x880|H (PS reserved), 4K leaf
 * 0x800|H, 2M leaf 0x1ff800|H, 1G leaf 0x3ffff800|H; with device-iotlb TM
 * (bit 62) is allowed in leaves; with x-scalable-mode SNP (bit 11) is allowed
 * in leaves.
 */
interface ReservedMasks {
  lo: Int32Array;
  hi: Int32Array;
  largeLo: Int32Array;
  largeHi: Int32Array;
  /** Upper-half mask of the output address (HAW). */
  hawHi: number;
  /** IOVA frame limits 2^(min(AGAW, aw-bits) - 12) of 3- and 4-level contexts (QEMU `vtd_iova_limit`; AGAW 39 / 48). */
  limit3: number;
  limit4: number;
}

function buildMasks(awBits: number, deviceIotlb: boolean, scalableMode: boolean): ReservedMasks {
  const hawHi = hawHiMask(awBits);
  const IGN_HI = 0xbff0_0000;
  const TM_HI = 0x4000_0000;
  const h = ~(hawHi | IGN_HI);
  const hLeaf = deviceIotlb ? ~(hawHi | IGN_HI | TM_HI) : h;
  const snp = scalableMode ? 0 : 0x800;
  const lo = new Int32Array(5);
  const hi = new Int32Array(5);
  const largeLo = new Int32Array(5);
  const largeHi = new Int32Array(5);
  lo[0] = -1;
  hi[0] = -1;
  lo[1] = snp;
  hi[1] = hLeaf;
  lo[2] = 0x800;
  hi[2] = h;
  lo[3] = 0x800;
  hi[3] = h;
  lo[4] = 0x880;
  hi[4] = h;
  largeLo[2] = 0x1ff000 | snp;
  largeHi[2] = hLeaf;
  largeLo[3] = 0x3ffff000 | snp;
  largeHi[3] = hLeaf;
  return { lo, hi, largeLo, largeHi, hawHi, limit3: 2 ** (39 - 12), limit4: 2 ** (Math.min(48, awBits) - 12) };
}

/** One mask set per (awBits, deviceIotlb, scalableMode), built on first use. */
const maskCache: Array<ReservedMasks | undefined> = [undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined];

function masksFor(cfg: VtdConfig): ReservedMasks {
  const key = (cfg.awBits === 48 ? 1 : 0) | (cfg.deviceIotlb ? 2 : 0) | (cfg.scalableMode ? 4 : 0);
  let m = maskCache[key];
  if (m === undefined) {
    m = buildMasks(cfg.awBits, cfg.deviceIotlb, cfg.scalableMode);
    maskCache[key] = m;
  }
  return m;
}

/** Whether `gpa` is a multiple of 4096 (a multiply and a floor: `%` of a double is a library call). */
function isPageAligned(gpa: number): boolean {
  return Math.floor(gpa * PAGE_SCALE) * 4096 === gpa;
}

/** The page-words capability of `mem` (SparseRam has it), or undefined: walkers then read word by word. */
function pageWordsOf(mem: GuestMemory): PageWordsSource | undefined {
  return typeof (mem as Partial<PageWordsSource>).pageWords === 'function' ? (mem as GuestMemory & PageWordsSource) : undefined;
}

/**
 * Translates one IOVA (as a page frame number) through the second-level
 * tables of `ctx` for an access (`write` true for a write, false for a read;
 * QEMU checks read when the request has no permission). Returns the leaf, or
 * a fault reason (0x3, 0x4, 0x5, 0x6, 0x7, 0xc, 0xe / 0x87). `out` is filled to
 * avoid allocation on the hot path; the return value is 0 on success.
 *
 * As QEMU 7.2 `vtd_iova_to_slpte`: IOVA beyond 2^min(AGAW, aw-bits) -> 0x4;
 * per level an unreadable entry (outside RAM, or all ones, which QEMU cannot
 * tell from a failed read) -> 0x3 at the top level, 0x7 below; the requested
 * permission is checked before the reserved bits (a not-present entry is
 * 0x5/0x6); reserved bits -> 0xc; leaf at level 1 or PS at level 2/3; a leaf
 * whose output range meets 0xfee00000-0xfeefffff -> 0xe, or 0x87 with
 * x-scalable-mode (QEMU tests the configuration, not the root table mode).
 * `perm` is the AND of R/W over the levels walked. A pass-through context
 * gives the identity 4 KiB page with RW. Allocation-free, no bigint.
 */
export function walkSecondLevel(
  mem: GuestMemory, cfg: VtdConfig, ctx: VtdContext, iovaPfn: number, write: boolean, out: VtdLeaf,
): number {
  if (ctx.passThrough) {
    out.iovaPfn = iovaPfn;
    out.pages = 1;
    out.xlatPfn = iovaPfn;
    out.perm = 3;
    out.level = 1;
    return 0;
  }
  const levels = ctx.levels;
  const m = masksFor(cfg);
  // Written so that NaN fails too.
  if (!(iovaPfn >= 0 && iovaPfn < (levels === 4 ? m.limit4 : m.limit3))) return VtdFaultReason.ADDR_BEYOND_MGAW;
  const need = write ? 2 : 1;
  // Split the frame number so every index is an int32 operation: bits 35:27
  // (the level-4 index, < 512 after the limit check) and bits 26:0.
  const pfnHi = Math.floor(iovaPfn * PFN_HI_SCALE);
  const pfnLo = iovaPfn - pfnHi * PFN_HI_UNIT;
  // One page lookup per level instead of two word reads, when the memory can
  // (tables below the top one are 4 KiB aligned by construction).
  const pw = isPageAligned(ctx.slptptr) ? pageWordsOf(mem) : undefined;
  let table = ctx.slptptr;
  let level: number = levels;
  let perm = 3;
  for (;;) {
    const idx = level === 1 ? pfnLo & 511 : level === 2 ? (pfnLo >>> 9) & 511 : level === 3 ? pfnLo >>> 18 : pfnHi | 0;
    let lo: number;
    let hi: number;
    const words = pw === undefined ? undefined : pw.pageWords(table);
    if (words !== undefined) {
      lo = words[idx * 2]!;
      hi = words[idx * 2 + 1]!;
    } else {
      const gpa = table + idx * 8;
      lo = mem.readU32(gpa);
      hi = lo < 0 ? -1 : mem.readU32(gpa + 4);
    }
    // `(lo & hi) === -1`: the entry reads as all ones, QEMU's read-error marker.
    if (hi < 0 || (lo & hi) === -1) {
      return level === levels ? VtdFaultReason.CONTEXT_ENTRY_INV : VtdFaultReason.PAGING_ENTRY_INV;
    }
    perm &= lo;
    if ((lo & need) === 0) return write ? VtdFaultReason.WRITE : VtdFaultReason.READ;
    let leaf = level === 1;
    if ((level === 2 || level === 3) && (lo & 0x80) !== 0) {
      if (((lo & m.largeLo[level]!) | (hi & m.largeHi[level]!)) !== 0) return VtdFaultReason.PAGING_ENTRY_RSVD;
      leaf = true;
    } else if (((lo & m.lo[level]!) | (hi & m.hi[level]!)) !== 0) {
      return VtdFaultReason.PAGING_ENTRY_RSVD;
    }
    if (leaf) {
      const pages = LEVEL_PAGES[level]!;
      // Output address bits 12..HAW-1; large leaves have their low frame bits reserved (zero).
      const xlatPfn = (hi & m.hawHi) * TWO_POW_20 + (lo >>> 12);
      if (xlatPfn <= INTR_LAST_PFN && xlatPfn + pages - 1 >= INTR_FIRST_PFN) {
        return cfg.scalableMode ? VtdFaultReason.SM_INTERRUPT_ADDR : VtdFaultReason.INTERRUPT_ADDR;
      }
      // iovaPfn aligned down to the leaf (pages - 1 < 2^27, so only pfnLo has bits to clear).
      out.iovaPfn = pfnHi * PFN_HI_UNIT + (pfnLo & ~(pages - 1));
      out.pages = pages;
      out.xlatPfn = xlatPfn;
      out.perm = perm;
      out.level = level;
      return 0;
    }
    table = (hi & m.hawHi) * TWO_POW_32 + ((lo & 0xffff_f000) >>> 0);
    level--;
  }
}

/**
 * The first slot in [i, iLast] of a table (as words, slot i at 2i) whose low
 * word has R or W in `perm`, or -1: the scan over mostly empty tables, kept
 * apart so it compiles to a tight int32 loop.
 */
function nextPresent(words: Uint32Array, i: number, iLast: number, perm: number): number {
  for (let j = i | 0; j <= iLast; j++) {
    if ((words[j * 2]! & perm) !== 0) return j;
  }
  return -1;
}

/** A second-level LeafWalker that also tells how many table entries its last call read. */
export interface VtdLeafWalker extends LeafWalker {
  /** Table entries read from guest memory by the last call. */
  readonly visited: number;
}

/** Work units charged for a memoised table whose whole subtree is known to hold no leaf. */
const EMPTY_SUBTREE_WORK = 1;

/**
 * A LeafWalker over the second-level tables of `ctx`, for the notifier sync:
 * reports every valid leaf intersecting the range, whole, in order; skips
 * unreadable and reserved entries silently (as QEMU's vtd_page_walk does);
 * clips to 2^min(AGAW, awBits). Its work is bounded by `budget`: a session
 * shared with the other walks of one guest action (see WalkSession), or
 * a number of work units for each call on its own (a fresh session per
 * call, no leaf bound). Over the bound it throws `WalkLimitError` before
 * reading the table that would pass it.
 *
 * As QEMU 7.2 `vtd_page_walk_level`: an entry is valid when R or W survives
 * the AND with its parents; valid non-leaf entries are descended into (depth
 * is bounded by the level count, so a table pointing at itself cannot loop);
 * leaves report the ANDed permission. Walks `ctx.slptptr` even for a
 * pass-through context, as QEMU does. Cost: the entries in the range's slots
 * of every distinct table descended into, plus the valid entries of tables
 * met again (memo), plus the leaves.
 *
 * Hot path (a domain sync scans millions of mostly empty slots): with a
 * memory that has `pageWords` (SparseRam), each table is scanned through one
 * word array of its page, testing the low word of each slot against the
 * parents' R|W; other memories fill a per-level scratch copy of the slots in
 * range first (the low word, and the high word only of a slot that passes).
 */
export function secondLevelWalker(mem: GuestMemory, cfg: VtdConfig, ctx: VtdContext, budget: number | WalkSession): VtdLeafWalker {
  const m = masksFor(cfg);
  const limitPfn = ctx.levels === 4 ? m.limit4 : m.limit3;
  const hawHi = m.hawHi;
  const pw = pageWordsOf(mem);
  /** Scratch copies of one table per level, for memories without pageWords or a misaligned top table. */
  const scratch: Array<Uint32Array | undefined> = [undefined, undefined, undefined, undefined, undefined];
  const shared = typeof budget === 'number' ? undefined : budget;
  const s: WalkSession = shared ?? new WalkSession(budget as number);
  let visited = 0;

  const overWork = (): WalkLimitError => {
    s.exhausted = true;
    return new WalkLimitError(
      `VT-d second-level walk of domain ${ctx.did} (SLPTPTR 0x${ctx.slptptr.toString(16)}) read more than ${s.workBudget} table entries in one guest action`,
    );
  };
  const overLeaves = (): WalkLimitError => {
    s.exhausted = true;
    return new WalkLimitError(`VT-d second-level walk of domain ${ctx.did} reported more than ${s.leafBudget} leaves in one guest action`);
  };
  /** Charges `n` entries read from guest memory. */
  const read = (n: number): void => {
    s.work += n;
    if (s.work > s.workBudget) throw overWork();
    visited += n;
  };

  /** The slots [iFirst, iLast] of the table at `table` as words (slot i at 2i, 2i + 1); unreadable slots read as not present. */
  const tableWords = (table: number, level: number, iFirst: number, iLast: number, perm: number): Uint32Array => {
    if (pw !== undefined && isPageAligned(table)) {
      const words = pw.pageWords(table);
      if (words !== undefined) return words;
    }
    let words = scratch[level];
    if (words === undefined) {
      words = new Uint32Array(1024);
      scratch[level] = words;
    }
    for (let i = iFirst; i <= iLast; i++) {
      const gpa = table + i * 8;
      let lo = mem.readU32(gpa);
      let hi = 0;
      if (lo < 0) lo = 0;
      else if ((lo & perm) !== 0) {
        hi = mem.readU32(gpa + 4);
        if (hi < 0) lo = hi = 0;
      }
      words[i * 2] = lo;
      words[i * 2 + 1] = hi;
    }
    return words;
  };

  /**
   * What a present slot (words lo, hi) at `level` is: 0 skipped (unreadable
   * or reserved bits), 1 a table to descend into, 2 a leaf (QEMU
   * vtd_page_walk_level: vtd_slpte_nonzero_rsvd, vtd_is_last_slpte).
   */
  const kindOf = (lo: number, hi: number, level: number): number => {
    if ((lo & hi) === -1) return 0;
    if ((level === 2 || level === 3) && (lo & 0x80) !== 0) {
      return ((lo & m.largeLo[level]!) | (hi & m.largeHi[level]!)) !== 0 ? 0 : 2;
    }
    if (((lo & m.lo[level]!) | (hi & m.hi[level]!)) !== 0) return 0;
    return level === 1 ? 2 : 1;
  };

  const leafOut = (sink: LeafSink, iovaPfn: number, pages: number, xlatPfn: number, perm: number): void => {
    if (++s.leaves > s.leafBudget) throw overLeaves();
    sink(iovaPfn, pages, xlatPfn, perm);
  };

  const walkTable = (table: number, level: number, base: number, first: number, last: number, perm: number, sink: LeafSink): void => {
    const span = LEVEL_PAGES[level]!;
    const whole = first === base && last === base + 512 * span - 1;
    // Table addresses are below 2^52 (HAW), so the key is an exact number.
    const id = s.node(table * 16 + level * 4 + perm);
    if (id < 0) {
      walkWords(table, level, base, first, last, perm, sink);
      return;
    }
    if (whole) {
      const known = s.count[id]!;
      if (known === 0) {
        s.work += EMPTY_SUBTREE_WORK;
        if (s.work > s.workBudget) throw overWork();
        return;
      }
      if (known > 0 && s.leaves + known > s.leafBudget) throw overLeaves();
    }
    const leavesBefore = s.leaves;
    if (s.start[id]! < 0 && whole && s.seen[id] === 1 && s.poolRoom) decode(id, table, level, perm);
    if (s.start[id]! >= 0) walkDecoded(id, level, base, first, last, sink);
    else {
      s.seen[id] = 1;
      walkWords(table, level, base, first, last, perm, sink);
    }
    if (whole) s.count[id] = s.leaves - leavesBefore;
  };

  /** First visit of a table: scans its slots in range from guest memory. */
  const walkWords = (table: number, level: number, base: number, first: number, last: number, perm: number, sink: LeafSink): void => {
    const span = LEVEL_PAGES[level]!;
    // Slot indexes are 0..511: `| 0` keeps them (and the scan) in int32.
    const iFirst = Math.floor((first - base) / span) | 0;
    const iLast = Math.floor((last - base) / span) | 0;
    read(iLast - iFirst + 1);
    const words = tableWords(table, level, iFirst, iLast, perm);
    // Reserved-bit masks of this level, hoisted out of the scan.
    const rsvdLo = m.lo[level]!;
    const rsvdHi = m.hi[level]!;
    const largeLo = m.largeLo[level]!;
    const largeHi = m.largeHi[level]!;
    const psLeaf = level === 2 || level === 3;
    for (let i = nextPresent(words, iFirst, iLast, perm); i >= 0; i = nextPresent(words, i + 1, iLast, perm)) {
      const lo = words[i * 2]!;
      const hi = words[i * 2 + 1]!;
      if ((lo & hi) === -1) continue;
      let leaf = level === 1;
      if (psLeaf && (lo & 0x80) !== 0) {
        if (((lo & largeLo) | (hi & largeHi)) !== 0) continue;
        leaf = true;
      } else if (((lo & rsvdLo) | (hi & rsvdHi)) !== 0) {
        continue;
      }
      const p = perm & lo & 3;
      const entryBase = base + i * span;
      if (leaf) leafOut(sink, entryBase, span, (hi & hawHi) * TWO_POW_20 + (lo >>> 12), p);
      else descend((hi & hawHi) * TWO_POW_32 + ((lo & 0xffff_f000) >>> 0), level, entryBase, span, first, last, p, sink);
    }
  };

  /** A table met again: iterates its decoded valid entries in range, at this IOVA base. */
  const walkDecoded = (id: number, level: number, base: number, first: number, last: number, sink: LeafSink): void => {
    const span = LEVEL_PAGES[level]!;
    const iFirst = Math.floor((first - base) / span) | 0;
    const iLast = Math.floor((last - base) / span) | 0;
    const end = s.end[id]!;
    for (let k = s.start[id]!; k < end; k += 2) {
      // Re-read the pool each time: a nested walk may have grown it.
      const tag = s.pool[k]!;
      const i = tag >>> 3;
      if (i < iFirst) continue;
      if (i > iLast) break;
      s.work += 1;
      if (s.work > s.workBudget) throw overWork();
      const value = s.pool[k + 1]!;
      const entryBase = base + i * span;
      if ((tag & 4) !== 0) leafOut(sink, entryBase, span, value, tag & 3);
      else descend(value, level, entryBase, span, first, last, tag & 3, sink);
    }
  };

  const descend = (next: number, level: number, entryBase: number, span: number, first: number, last: number, p: number, sink: LeafSink): void => {
    const entryLast = entryBase + span - 1;
    walkTable(next, level - 1, entryBase, first > entryBase ? first : entryBase, last < entryLast ? last : entryLast, p, sink);
  };

  /** Reads the whole table once and keeps its valid entries (second whole visit of a table: aliasing or a shared domain). */
  const decode = (id: number, table: number, level: number, perm: number): void => {
    read(512);
    const words = tableWords(table, level, 0, 511, perm);
    s.start[id] = s.poolLen;
    for (let i = nextPresent(words, 0, 511, perm); i >= 0; i = nextPresent(words, i + 1, 511, perm)) {
      const lo = words[i * 2]!;
      const hi = words[i * 2 + 1]!;
      const kind = kindOf(lo, hi, level);
      if (kind === 0) continue;
      const p = perm & lo & 3;
      if (kind === 2) s.push(i * 8 + 4 + p, (hi & hawHi) * TWO_POW_20 + (lo >>> 12));
      else s.push(i * 8 + p, (hi & hawHi) * TWO_POW_32 + ((lo & 0xffff_f000) >>> 0));
    }
    s.end[id] = s.poolLen;
  };

  let busy = false;
  const walker = ((firstPfn: number, lastPfn: number, sink: LeafSink): void => {
    // A sink that walks again with this walker gets a fresh one: the scratch tables are in use.
    if (busy) return secondLevelWalker(mem, cfg, ctx, budget)(firstPfn, lastPfn, sink);
    visited = 0;
    if (shared === undefined) s.reset();
    else if (s.exhausted) throw new WalkLimitError('VT-d: the walk bound of this guest action is already spent');
    const first = firstPfn > 0 ? Math.ceil(firstPfn) : 0;
    const last = lastPfn < limitPfn - 1 ? Math.floor(lastPfn) : limitPfn - 1;
    // QEMU: a start beyond the IOVA limit walks nothing; the end is clipped to the limit.
    if (!(first <= last)) return;
    busy = true;
    try {
      walkTable(ctx.slptptr, ctx.levels, 0, first, last, 3, sink);
    } finally {
      busy = false;
    }
  }) as VtdLeafWalker;
  Object.defineProperty(walker, 'visited', { get: () => visited, enumerable: true });
  return walker;
}
