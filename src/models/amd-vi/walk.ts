/**
 * AMD-Vi host page-table walks (v1 format, spec 48882 "I/O Page Tables for
 * Host Translations"): the translation of one access, in the spec's and in
 * QEMU 7.2's reading, and the LeafWalker the notifier sync uses. Page-table
 * entries are read as two 32-bit halves (no bigint on the hot path); table
 * addresses (bits 51:12) are exact numbers. Internal.
 *
 * Entry: bit 0 PR, 11:9 NextLevel, 51:12 address, 58:52 reserved, 61 IR,
 * 62 IW. The table at level L is indexed by iova bits 12+9(L-1)+8 : 12+9(L-1).
 */
import type { GuestMemory } from '../../memory/guest-memory';
import type { PageWordsSource } from '../../memory/sparse-ram';
import type { LeafSink, LeafWalker } from '../../core/leaf';
import { WalkLimitError } from '../../core/walk-budget';
import type { WalkSession } from '../../core/walk-budget';
import type { Dte } from './structures';
import { EVENT, EVF } from './regs';

const TWO_32 = 4294967296;

/** Steps a QEMU 7.2 walk may take before the model gives up on it (QEMU follows NextLevel as written and can loop forever). */
export const QEMU_WALK_STEP_LIMIT = 64;

/** The outcome of one walk, written into a reused object (no allocation per walk). */
export interface WalkResult {
  ok: boolean;
  /** ok: translated page base (aligned to 2^shift), page size log2, permission the result carries. */
  xlat: number;
  shift: number;
  perm: number;
  /** !ok: event code (EVENT.*), 0 when the access fails without any fault (QEMU: zero entry, mode 7). */
  code: number;
  /** !ok: event flags (EVF.*). */
  flags: number;
  /** !ok: event address for hardware errors (the entry's physical address); NaN: the iova. */
  eventAddr: number;
  /** !ok: a guest error worth reporting (the walk hit the model's step bound). */
  runaway: boolean;
}

export function newWalkResult(): WalkResult {
  return { ok: false, xlat: 0, shift: 12, perm: 0, code: 0, flags: 0, eventAddr: NaN, runaway: false };
}

/** Iova bits [s, s+9) as a table index, from the 64-bit iova's halves. */
export function indexAt(lo: number, hi: number, s: number): number {
  if (s >= 32) return (hi >>> (s - 32)) & 511;
  if (s + 9 <= 32) return (lo >>> s) & 511;
  return ((lo >>> s) | (hi << (32 - s))) & 511;
}

/** Whether any iova bit in [from, to) is set (0 <= from, to <= 64). */
export function bitsSet(lo: number, hi: number, from: number, to: number): boolean {
  if (from >= to) return false;
  if (from < 32) {
    const t = to < 32 ? to : 32;
    if ((lo & maskBits(from, t)) !== 0) return true;
  }
  if (to > 32) {
    const f = from > 32 ? from - 32 : 0;
    if ((hi & maskBits(f, to - 32)) !== 0) return true;
  }
  return false;
}

function maskBits(f: number, t: number): number {
  const n = t - f;
  return n >= 32 ? -1 : ((((1 << n) >>> 0) - 1) << f) | 0;
}

/** The entry `readPte` read last (module scratch: no allocation per entry). */
let eLo = 0;
let eHi = 0;

/**
 * Reads entry `idx` of the 4 KiB-aligned table at `table` into eLo/eHi:
 * through the table page's word array when the memory has one (SparseRam),
 * else word by word. False when it is outside RAM.
 */
function readPte(mem: GuestMemory, pw: PageWordsSource | undefined, table: number, idx: number): boolean {
  if (pw !== undefined) {
    const words = pw.pageWords(table);
    if (words !== undefined) {
      eLo = words[idx * 2]!;
      eHi = words[idx * 2 + 1]!;
      return true;
    }
  }
  const gpa = table + idx * 8;
  eLo = mem.readU32(gpa);
  if (eLo < 0) return false;
  eHi = mem.readU32(gpa + 4);
  return eHi >= 0;
}

/** The page-words capability of `mem`, if it has one. */
export function pageWordsOf(mem: GuestMemory): PageWordsSource | undefined {
  return typeof (mem as Partial<PageWordsSource>).pageWords === 'function' ? (mem as GuestMemory & PageWordsSource) : undefined;
}

/** Address bits 51:12 of an entry. */
function entryAddr(lo: number, hi: number): number {
  return ((lo & 0xffff_f000) >>> 0) + (hi & 0xfffff) * TWO_32;
}

/** Number of consecutive one bits of `addr` from bit 12 up (the NextLevel=7 size encoding). */
function onesFrom12(addr: number): number {
  let a = Math.floor(addr / 4096);
  let n = 0;
  while (a % 2 === 1) {
    n++;
    a = (a - 1) / 2;
  }
  return n;
}

/** `addr` with its low `shift` bits cleared. */
function alignDown(addr: number, shift: number): number {
  if (shift >= 52) return 0;
  if (shift < 31) return addr - (addr % (1 << shift));
  const size = 2 ** shift;
  return addr - (addr % size);
}

function fail(out: WalkResult, code: number, flags: number, eventAddr = NaN): WalkResult {
  out.ok = false;
  out.code = code;
  out.flags = flags;
  out.eventAddr = eventAddr;
  out.runaway = false;
  return out;
}

function succeed(out: WalkResult, xlat: number, shift: number, perm: number): WalkResult {
  out.ok = true;
  out.xlat = xlat;
  out.shift = shift;
  out.perm = perm;
  return out;
}

/**
 * The walk as the AMD spec defines it, for a DTE with V=1, TV=1 and Mode 1-6.
 * Faults (IO_PAGE_FAULT unless said otherwise):
 * - iova bits above the Mode's range set;
 * - an entry with PR=0 (flags without PR);
 * - reserved bits 58:52 set, a NextLevel not below the current level, or a
 *   NextLevel=7 size outside the level's range (RZ);
 * - iova bits of skipped levels set (spec: they must be zero);
 * - the AND of IR/IW over the DTE and every entry lacks the access (PE);
 * - an entry outside RAM: PAGE_TAB_HARDWARE_ERROR at the entry's address.
 * At most Mode steps: NextLevel must decrease, so no table loop is followed.
 */
export function walkSpec(mem: GuestMemory, pw: PageWordsSource | undefined, dte: Dte, lo: number, hi: number, access: number, out: WalkResult): WalkResult {
  const rw = access & 2 ? EVF.RW : 0;
  let level = dte.mode;
  if (bitsSet(lo, hi, 12 + 9 * level, 64)) return fail(out, EVENT.IO_PAGE_FAULT, rw);
  let table = dte.root;
  let perm = dte.perm;
  for (;;) {
    const s = 12 + 9 * (level - 1);
    const idx = indexAt(lo, hi, s);
    // The hot path reads the table page's words directly; readPte is the general form.
    const words = pw === undefined ? undefined : pw.pageWords(table);
    let pLo: number;
    let pHi: number;
    if (words !== undefined) {
      pLo = words[idx * 2]!;
      pHi = words[idx * 2 + 1]!;
    } else {
      if (!readPte(mem, undefined, table, idx)) return fail(out, EVENT.PAGE_TAB_HARDWARE_ERROR, rw, table + idx * 8);
      pLo = eLo;
      pHi = eHi;
    }
    if ((pLo & 1) === 0) return fail(out, EVENT.IO_PAGE_FAULT, rw);
    if ((pHi & 0x07f0_0000) !== 0) return fail(out, EVENT.IO_PAGE_FAULT, rw | EVF.PR | EVF.RZ);
    perm &= (pHi >>> 29) & 3;
    const next = (pLo >>> 9) & 7;
    const addr = entryAddr(pLo, pHi);
    let shift: number;
    if (next === 0) {
      shift = s;
    } else if (next === 7) {
      // Spec "Page Size Encodings": a size above this level's page and below the next level's.
      shift = 13 + onesFrom12(addr);
      if (shift <= s || shift >= s + 9) return fail(out, EVENT.IO_PAGE_FAULT, rw | EVF.PR | EVF.RZ);
    } else {
      if (next >= level) return fail(out, EVENT.IO_PAGE_FAULT, rw | EVF.PR | EVF.RZ);
      if (bitsSet(lo, hi, 12 + 9 * next, s)) return fail(out, EVENT.IO_PAGE_FAULT, rw | EVF.PR);
      table = addr;
      level = next;
      continue;
    }
    if ((perm & access) !== access) return fail(out, EVENT.IO_PAGE_FAULT, rw | EVF.PR | EVF.PE);
    return succeed(out, alignDown(addr, shift), shift, perm);
  }
}

/**
 * The walk as QEMU 7.2's amdvi_page_walk does it (shared findings "Page
 * walk"), for a DTE with TV=1 and Mode 1-6: PR and IR/IW are checked on the
 * DTE and each directory entry against the access (a write checks IW only,
 * even for a read-write request), not on the leaf, whose IR/IW become the
 * result's permission (perm NONE: the access fails, nothing cached); an
 * all-zero entry or an entry outside RAM fails without a walk fault;
 * NextLevel is followed as written (bits of skipped levels and above the
 * Mode ignored). A NextLevel not below the current level is followed too,
 * which in QEMU can loop forever: the model stops after
 * QEMU_WALK_STEP_LIMIT steps (`runaway`).
 */
export function walkQemu72(mem: GuestMemory, pw: PageWordsSource | undefined, dte: Dte, lo: number, hi: number, access: number, out: WalkResult): WalkResult {
  const perms = access & 2 ? 2 : 1;
  const rw = access & 2 ? EVF.RW : 0;
  let level = dte.mode;
  let present = true; // DTE V, checked by the caller
  let ePerm = dte.perm;
  let addr = dte.root;
  let pLo = 0;
  let pHi = 0;
  let oldLevel = level;
  for (let steps = 0; ; steps++) {
    if (steps === QEMU_WALK_STEP_LIMIT) {
      fail(out, 0, 0);
      out.runaway = true;
      return out;
    }
    if (!present || (perms & ePerm) !== perms) return fail(out, EVENT.IO_PAGE_FAULT, rw | EVF.I);
    const idx = indexAt(lo, hi, 12 + 9 * (level - 1));
    // Unreadable, or all ones (QEMU's in-band read-error value): a page-table hardware error.
    if (!readPte(mem, pw, addr, idx) || (eLo === 0xffff_ffff && eHi === 0xffff_ffff)) return fail(out, EVENT.PAGE_TAB_HARDWARE_ERROR, 0, addr + idx * 8);
    pLo = eLo;
    pHi = eHi;
    if (pLo === 0 && pHi === 0) return fail(out, 0, 0);
    oldLevel = level;
    level = (pLo >>> 9) & 7;
    present = (pLo & 1) !== 0;
    ePerm = (pHi >>> 29) & 3;
    addr = entryAddr(pLo, pHi);
    if (level === 0 || level === 7) break;
  }
  // NextLevel=7: size by the first zero address bit from bit 12; else the level of the table holding the leaf.
  const shift = level === 7 ? 13 + onesFrom12(addr) : oldLevel * 9 + 3;
  const perm = (pHi >>> 29) & 3;
  if (perm === 0) return fail(out, 0, 0);
  return succeed(out, alignDown(addr, shift), shift, perm);
}

/** Pages covered by one entry at level L (512^(L-1)). */
const LEVEL_PAGES = [0, 1, 512, 512 ** 2, 512 ** 3, 512 ** 4, 512 ** 5];

/**
 * A LeafWalker over the tables of `dte` (V=1, TV=1, Mode 1-6) for the
 * notifier sync and replay: reports every translation the spec's walk would
 * give, as whole leaves with the AND of IR/IW over the levels (a leaf whose
 * AND is NONE is no translation). Entries that the spec walk faults on
 * (PR=0, reserved bits, upward NextLevel, bad NextLevel=7 size, unreadable)
 * are skipped, and only the canonical IOVAs are reported (skipped-level and
 * above-Mode bits zero): in the QEMU 7.2 profile the aliases those bits
 * create translate in DMA but are never notified.
 *
 * A NextLevel=7 page spans several replicated entries: it is reported once,
 * from the first of its entries the walk reads, and its other entries are not
 * read.
 *
 * Work: every entry read is charged to the guest action's `session`
 * (src/core/walk-budget.ts; no memo, no leaf bound); the entry that would
 * pass its work bound is not read: the walk marks the session exhausted and
 * throws WalkLimitError, before the notifier list delivers anything (the
 * address space abandons the sync: ModelAddressSpace.safely). A walk of an
 * action whose bound is already spent throws at once. `what` names the walk
 * in that error. Depth is at most 6 (NextLevel must decrease), so a table
 * that points at itself costs its entries once per level.
 */
export function syncWalker(mem: GuestMemory, dte: Dte, session: WalkSession, what: string): LeafWalker {
  const pw = pageWordsOf(mem);
  /** Last frame reported in this walk: a NextLevel=7 entry that disagrees with an earlier leaf (bad replication) is skipped. */
  let prevEnd = -1;
  const walkTable = (table: number, level: number, base: number, first: number, last: number, perm: number, sink: LeafSink): void => {
    const span = LEVEL_PAGES[level]!;
    const s = 12 + 9 * (level - 1);
    let i = Math.floor((first - base) / span);
    const iLast = Math.min(511, Math.floor((last - base) / span));
    for (; i <= iLast; i++) {
      if (session.work + 1 > session.workBudget) {
        session.exhausted = true;
        throw new WalkLimitError(`${what} read more than ${session.workBudget} entries in one guest action (looping or aliased tables?)`);
      }
      session.work++;
      if (!readPte(mem, pw, table, i)) continue;
      const pLo = eLo;
      const pHi = eHi;
      if ((pLo & 1) === 0 || (pHi & 0x07f0_0000) !== 0) continue;
      const p = perm & (pHi >>> 29) & 3;
      if (p === 0) continue;
      const next = (pLo >>> 9) & 7;
      const addr = entryAddr(pLo, pHi);
      const entryBase = base + i * span;
      if (next === 0) {
        // A large leaf (level > 1): the address bits below its size are ignored, as the DMA walk's alignDown does.
        sink(entryBase, span, Math.floor(alignDown(addr, s) / 4096), p);
        prevEnd = entryBase + span - 1;
      } else if (next === 7) {
        const shift = 13 + onesFrom12(addr);
        if (shift <= s || shift >= s + 9) continue;
        const pages = 2 ** (shift - 12);
        const start = entryBase - (entryBase % pages);
        if (start <= prevEnd) continue;
        sink(start, pages, Math.floor(alignDown(addr, shift) / 4096), p);
        prevEnd = start + pages - 1;
        // The other replicated entries of this page: skip them.
        i = (start + pages - base) / span - 1;
      } else if (next < level) {
        // Skipped levels: only the sub-block whose skipped iova bits are zero translates.
        const childLast = entryBase + LEVEL_PAGES[next]! * 512 - 1;
        const f = first > entryBase ? first : entryBase;
        const l = last < childLast ? last : childLast;
        if (f <= l) walkTable(addr, next, entryBase, f, l, p, sink);
      }
    }
  };
  return (firstPfn, lastPfn, sink) => {
    if (session.exhausted) throw new WalkLimitError('AMD-Vi: the walk bound of this guest action is already spent');
    // Canonical IOVAs of the Mode: below 2^(12 + 9 Mode) (all 2^52 frames for Mode 6).
    const top = dte.mode === 6 ? 2 ** 52 : 512 ** dte.mode;
    const first = Math.max(0, Math.ceil(firstPfn));
    const last = Math.min(top - 1, Math.floor(lastPfn));
    if (first > last) return;
    prevEnd = -1;
    walkTable(dte.root, dte.mode, 0, first, last, dte.perm, sink);
  };
}
