/**
 * AArch64 translation table walks of the SMMUv3 model: stage 1 as QEMU 7.2's
 * smmu_ptw_64 does it (the findings' "Page-table walk"), stage 2 from the
 * architecture (IHI 0070 5.2 STE.S2*, Arm ARM D8 VMSAv8-64 stage 2: SL0 start
 * level, concatenated start tables, S2AP, AF). Internal to the smmuv3 model.
 *
 * Addresses are JS numbers: input addresses are cut to their 48 low bits
 * before a walk (QEMU's IOMMU region is 2^48 bytes; TTBs and descriptor
 * addresses are bits 47:0), so everything stays exact. A walk reads at most
 * one descriptor per level (4 levels, 16 more per stage-2 walk of each of
 * them when nested): looping tables cost no more than any other walk.
 */
import type { GuestMemory } from '../../memory/guest-memory';

export const PTW_OK = 0;
export const PTW_TRANSLATION = 1;
export const PTW_ADDR_SIZE = 2;
export const PTW_ACCESS = 3;
export const PTW_PERMISSION = 4;
export const PTW_WALK_EABT = 5;

/** Fault CLASS of an event record (IHI 0070 7.3.11): CD fetch, TT fetch, input address. */
export const CLASS_CD = 0;
export const CLASS_TT = 1;
export const CLASS_IN = 2;

/** One enabled TTBn of a CD, decoded. */
export interface S1Table {
  disabled: boolean;
  /** T0SZ / T1SZ. */
  tsz: number;
  /** log2 of the granule: 12, 14 or 16. */
  granule: number;
  /** TTBn, bits 47:0 as a number (QEMU extract64(ttb, 0, 48)). */
  ttb: number;
  /** CD.HADn: APTable is ignored. */
  had: boolean;
  /** Precomputed for the walk: start level, and the start table's base (TTB aligned to the table size). */
  start: number;
  root: number;
  /** 2^(64 - tsz): input addresses below it (and below 2^48) select this table when it is TTB0. */
  limit: number;
}

/** The S1Table of a CD's TTBn (the walk's precomputed fields filled in). */
export function s1Table(tsz: number, granule: number, ttb: number, had: boolean): S1Table {
  const start = s1StartLevel(tsz, granule);
  const tableBytes = 2 ** (64 - tsz - levelShift(start, granule) + 3);
  return { disabled: false, tsz, granule, ttb, had, start, root: Math.floor(ttb / tableBytes) * tableBytes, limit: 2 ** (64 - tsz) };
}

/** Stage-2 configuration of an STE, decoded (IHI 0070 5.2). */
export interface S2Config {
  vmid: number;
  granule: number;
  tsz: number;
  /** Start level from S2SL0 (Arm ARM D8.2.6). */
  startLevel: number;
  /** S2TTB as a number. */
  ttb: number;
  /** Effective output size in bits (S2PS capped to OAS). */
  effPs: number;
  affd: boolean;
  record: boolean;
}

/** Where a walk leaves its outcome (reused: no allocation per walk). */
export class WalkResult {
  /** Output address of the leaf, aligned to its size. */
  out = 0;
  /** log2 of the leaf size (12 for a 4 KiB page, 21 for 2 MiB ...). */
  sizeLog2 = 0;
  level = 0;
  /** IOMMUAccessFlags of the leaf: RO (1) or RW (3) at stage 1, S2AP at stage 2. */
  perm = 0;
  /** PTW_* outcome. */
  status = PTW_OK;
  /** WALK_EABT: the descriptor's physical address; stage-2 faults: the IPA. */
  faultAddr = 0;
  /** The fault happened at stage 2. */
  s2 = false;
  /** Fault CLASS (nested: what the stage-2 walk was translating). */
  cls = 0;
}

/** Shift of the address bits a descriptor at `level` resolves (Arm ARM D8.2). */
export function levelShift(level: number, granule: number): number {
  return granule + (3 - level) * (granule - 3);
}

/** Stage-1 start level for TnSZ and granule (QEMU: 4 - (inputsize - 4) / stride). */
export function s1StartLevel(tsz: number, granule: number): number {
  return 4 - Math.floor((64 - tsz - 4) / (granule - 3));
}

const TWO32 = 0x1_0000_0000;

/**
 * Bits 47:shift of a descriptor (QEMU PTE_ADDRESS: higher bits are dropped),
 * with integer operations only (the walk's hot path).
 */
function descAddr(lo: number, hi: number, shift: number): number {
  if (shift >= 32) return ((hi & 0xffff) & ~((1 << (shift - 32)) - 1)) * TWO32;
  return (hi & 0xffff) * TWO32 + ((lo & ~((1 << shift) - 1)) >>> 0);
}

/** Bits [shift, shift + width) of the address hi:lo (32-bit halves), width <= 31. */
function field(hi: number, lo: number, shift: number, width: number): number {
  const mask = (1 << width) - 1;
  if (shift >= 32) return (hi >>> (shift - 32)) & mask;
  if (shift + width <= 32) return (lo >>> shift) & mask;
  return ((lo >>> shift) | (hi << (32 - shift))) & mask;
}

/**
 * Translates a stage-1 table address (an IPA when nested) to the address to
 * read; returns -1 and fills `r` when that failed.
 */
export type FetchTranslate = (ipa: number, cls: number, r: WalkResult) => number;

/**
 * Stage-1 walk of `ia` (the input address, bits 47:0) for a write (`write`)
 * or a read, as QEMU 7.2: invalid or reserved descriptors are translation
 * faults, APTable[1] makes writes fault unless HAD, only AP[2] is checked and
 * only for writes, AF is ignored, leaf permission RO when AP[2] else RW.
 */
export function walkS1(mem: GuestMemory, tt: S1Table, ia: number, write: boolean, r: WalkResult, fetch?: FetchTranslate): number {
  const g = tt.granule;
  const stride = g - 3;
  const inputsize = 64 - tt.tsz;
  // QEMU iova_level_offset: the input address is cut to inputsize bits (TTB1 addresses have ones above).
  const hi = (ia / TWO32) & (inputsize >= 64 ? -1 : inputsize > 32 ? (1 << (inputsize - 32)) - 1 : 0);
  const lo = inputsize >= 32 ? ia >>> 0 : (ia >>> 0) & ((1 << inputsize) - 1);
  let level = tt.start;
  let base = tt.root;
  r.s2 = false;
  r.cls = 0;
  while (level <= 3) {
    const shift = g + (3 - level) * stride;
    const descIpa = base + field(hi, lo, shift, stride) * 8;
    let desc = descIpa;
    if (fetch !== undefined) {
      desc = fetch(descIpa, CLASS_TT, r);
      if (desc < 0) return r.status;
    }
    const dlo = mem.readU32(desc);
    const dhi = dlo < 0 ? -1 : mem.readU32(desc + 4);
    if (dhi < 0) {
      r.faultAddr = desc;
      r.cls = CLASS_TT;
      return (r.status = PTW_WALK_EABT);
    }
    const type = dlo & 3;
    if ((type & 1) === 0 || (level === 3 && type === 1)) break;
    if (level < 3 && type === 3) {
      // APTable[1] (bit 62): no write access below (QEMU: unless CD.HADn).
      if (write && (dhi & 0x4000_0000) !== 0 && !tt.had) return (r.status = PTW_PERMISSION);
      base = descAddr(dlo, dhi, g);
      level++;
      continue;
    }
    // A page (level 3) or a block (QEMU 7.2 takes a block at any level < 3).
    const ap = (dlo >>> 6) & 3;
    if (write && (ap & 2) !== 0) return (r.status = PTW_PERMISSION);
    r.out = descAddr(dlo, dhi, shift);
    r.sizeLog2 = shift;
    r.level = level;
    r.perm = ap & 2 ? 1 : 3;
    return (r.status = PTW_OK);
  }
  return (r.status = PTW_TRANSLATION);
}

/**
 * Stage-2 walk of IPA `ipa` (Arm ARM D8, IHI 0070 5.2): an IPA at or above
 * 2^(64 - S2T0SZ) is a translation fault; the start level's index covers the
 * concatenated tables; AF = 0 without S2AFFD is an access fault (before
 * permission); S2AP[0] allows reads, S2AP[1] writes; an output address at or
 * above 2^effPs is an address size fault. `r.perm` is S2AP as access flags.
 * Faults set `r.s2` and `r.faultAddr` = IPA (WALK_EABT: the descriptor).
 */
export function walkS2(mem: GuestMemory, s2: S2Config, ipa: number, access: number, r: WalkResult): number {
  const g = s2.granule;
  const stride = g - 3;
  const inputsize = 64 - s2.tsz;
  let level = s2.startLevel;
  r.s2 = true;
  r.faultAddr = ipa;
  if (ipa >= 2 ** inputsize) return (r.status = PTW_TRANSLATION);
  // Start table(s): index bits from inputsize down to the level's shift, concatenated tables included.
  const startShift = levelShift(level, g);
  const tableBytes = 2 ** Math.max(3, inputsize - startShift + 3);
  let base = Math.floor(s2.ttb / tableBytes) * tableBytes;
  const hi = (ipa / TWO32) >>> 0;
  const lo = ipa >>> 0;
  let first = true;
  while (level <= 3) {
    const shift = levelShift(level, g);
    // The start level indexes every bit above it (concatenated tables); deeper levels `stride` bits.
    const idx = first ? Math.floor(ipa / 2 ** shift) : field(hi, lo, shift, stride);
    first = false;
    const desc = base + idx * 8;
    const dlo = mem.readU32(desc);
    const dhi = dlo < 0 ? -1 : mem.readU32(desc + 4);
    if (dhi < 0) {
      r.faultAddr = desc;
      return (r.status = PTW_WALK_EABT);
    }
    const type = dlo & 3;
    if ((type & 1) === 0 || (level === 3 && type === 1)) break;
    if (level < 3 && type === 3) {
      base = descAddr(dlo, dhi, g);
      level++;
      continue;
    }
    if ((dlo & 0x400) === 0 && !s2.affd) return (r.status = PTW_ACCESS);
    const s2ap = (dlo >>> 6) & 3;
    if ((access & ~s2ap & 3) !== 0) return (r.status = PTW_PERMISSION);
    const out = descAddr(dlo, dhi, shift);
    if (out >= 2 ** s2.effPs) return (r.status = PTW_ADDR_SIZE);
    r.out = out;
    r.sizeLog2 = shift;
    r.level = level;
    r.perm = s2ap;
    return (r.status = PTW_OK);
  }
  return (r.status = PTW_TRANSLATION);
}
