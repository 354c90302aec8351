/**
 * Binary layouts of the VT-d translation structures that are read on a
 * context-cache miss (root entry, legacy and scalable-mode context entries,
 * PASID directory and PASID table entries), decoded with binary-parser.
 *
 * All structures are little-endian arrays of 64-bit words (VT-d spec 9.1-9.6).
 * binary-parser bit fields read big-endian words, so each 64-bit word is
 * parsed as two little-endian u32 halves (`<word>Lo` = bits 31:0, `<word>Hi`
 * = bits 63:32) and the fields are taken from those halves by the decoders
 * below; every field keeps numbers (no bigint) so addresses stay exact JS
 * numbers. Internal to the intel-vtd model.
 */
import { Parser } from 'binary-parser';

/** Two u32 halves of one 64-bit word. */
interface Word64 {
  lo: number;
  hi: number;
}

/**
 * A parser for `words` consecutive little-endian 64-bit words, as flat u32
 * fields lo0, hi0, lo1, hi1, ... (one result object per parse).
 */
function wordsParser(words: number): Parser {
  let p = new Parser().endianness('little');
  for (let i = 0; i < words; i++) p = p.uint32le(`lo${i}`).uint32le(`hi${i}`);
  return p;
}

type Words = Record<string, number>;

const LO = ['lo0', 'lo1', 'lo2', 'lo3'] as const;
const HI = ['hi0', 'hi1', 'hi2', 'hi3'] as const;

function word(r: Words, i: 0 | 1 | 2 | 3): Word64 {
  return { lo: r[LO[i]]!, hi: r[HI[i]]! };
}

/**
 * One-entry memo around a decoder: QEMU 7.2 re-reads PASID entries on every
 * IOTLB miss in scalable mode, and guests rarely change them, so decoding the
 * same bytes again returns the previous (read-only) result instead of running
 * the parser. `key` covers any other input of the decoder (aw-bits).
 */
function memoized<T>(size: number, decode: (bytes: Uint8Array, key: number) => T): (bytes: Uint8Array, key?: number) => Readonly<T> {
  const last = new Uint8Array(size);
  let lastKey = -1;
  let result: T | undefined;
  return (bytes, key = 0) => {
    if (result !== undefined && key === lastKey) {
      let same = true;
      for (let i = 0; i < size; i++) {
        if (bytes[i] !== last[i]) {
          same = false;
          break;
        }
      }
      if (same) return result;
    }
    last.set(bytes.subarray(0, size));
    lastKey = key;
    result = decode(bytes, key);
    return result;
  };
}

/** A 64-bit word value as a number: exact below 2^53, and at or above 2^53 (outside RAM) whenever the word is. */
export function wordValue(lo: number, hi: number): number {
  return hi * 0x1_0000_0000 + (lo >>> 0);
}

/** Bits 63:12 of a word (a 4 KiB-aligned pointer), as a number (see `wordValue`). */
export function pointer(w: Word64): number {
  return wordValue((w.lo & 0xffff_f000) >>> 0, w.hi);
}

/** The upper-half mask of HAW (host address width = aw-bits): bits aw-1..32. */
export function hawHiMask(awBits: number): number {
  return (2 ** (awBits - 32) - 1) >>> 0;
}

// --- Root entry (spec 9.1 legacy, 9.2 scalable): 128 bits ------------------------------------

const rootEntryParser = wordsParser(2);

export interface RootEntry {
  /** Legacy: P/CTP; scalable: LP/LCTP (devfn 0..127). */
  lo: Word64;
  /** Legacy: reserved; scalable: UP/UCTP (devfn 128..255). */
  hi: Word64;
}

export const parseRootEntry = memoized(16, (bytes): RootEntry => {
  const r = rootEntryParser.parse(bytes) as Words;
  return { lo: word(r, 0), hi: word(r, 1) };
});

/**
 * Reserved bits of one root-entry half (QEMU VTD_ROOT_ENTRY_RSVD): bits 11:1
 * and bits at or above HAW. Legacy mode also requires the whole high word to
 * be zero.
 */
export function rootHalfReserved(w: Word64, awBits: number): boolean {
  return (w.lo & 0xffe) !== 0 || (w.hi & ~hawHiMask(awBits)) !== 0;
}

// --- Legacy context entry (spec 9.3): 128 bits --------------------------------------------------

const legacyContextParser = wordsParser(2);

export interface LegacyContextEntry {
  present: boolean;
  fpd: boolean;
  /** Translation type, lo bits 3:2. */
  tt: number;
  /** Second-level page-table pointer, lo bits 63:12. */
  slptptr: number;
  /** Address width, hi bits 2:0: levels = aw + 2. */
  aw: number;
  /** Domain id, hi bits 23:8. */
  did: number;
  /** Reserved bits set: lo 11:4 and above HAW, hi bit 7 and 63:24 (QEMU VTD_CONTEXT_ENTRY_RSVD_LO/HI). */
  reserved: boolean;
}

export const parseLegacyContext = memoized(16, (bytes, awBits): LegacyContextEntry => {
  const r = legacyContextParser.parse(bytes) as Words;
  const lo = word(r, 0);
  const hi = word(r, 1);
  return {
    present: (lo.lo & 1) !== 0,
    fpd: (lo.lo & 2) !== 0,
    tt: (lo.lo >>> 2) & 3,
    slptptr: pointer(lo),
    aw: hi.lo & 7,
    did: (hi.lo >>> 8) & 0xffff,
    reserved:
      (lo.lo & 0xff0) !== 0 || (lo.hi & ~hawHiMask(awBits)) !== 0 || (hi.lo & 0xff00_0080) !== 0 || hi.hi !== 0,
  };
});

// --- Scalable-mode context entry (spec 9.4): 256 bits -------------------------------------------

const scalableContextParser = wordsParser(4);

export interface ScalableContextEntry {
  present: boolean;
  fpd: boolean;
  /** PASID directory pointer, val0 bits 63:12. */
  pasidDir: number;
  /** RID_PASID, val1 bits 19:0. */
  ridPasid: number;
  /** Reserved bits set: val0 8:5 and above HAW, val1 63:21, all of val2/val3 (QEMU VTD_SM_CONTEXT_ENTRY_RSVD_*). */
  reserved: boolean;
}

export const parseScalableContext = memoized(32, (bytes, awBits): ScalableContextEntry => {
  const r = scalableContextParser.parse(bytes) as Words;
  const w0 = word(r, 0);
  const w1 = word(r, 1);
  const w2 = word(r, 2);
  const w3 = word(r, 3);
  return {
    present: (w0.lo & 1) !== 0,
    fpd: (w0.lo & 2) !== 0,
    pasidDir: pointer(w0),
    ridPasid: w1.lo & 0xfffff,
    reserved:
      (w0.lo & 0x1e0) !== 0 ||
      (w0.hi & ~hawHiMask(awBits)) !== 0 ||
      (w1.lo & 0xffe0_0000) !== 0 ||
      w1.hi !== 0 ||
      (w2.lo | w2.hi | w3.lo | w3.hi) !== 0,
  };
});

// --- PASID directory entry (spec 9.5): 64 bits --------------------------------------------------

const pasidDirParser = wordsParser(1);

export interface PasidDirEntry {
  present: boolean;
  fpd: boolean;
  /** PASID table pointer, bits 63:12. */
  table: number;
}

export const parsePasidDirEntry = memoized(8, (bytes): PasidDirEntry => {
  const w0 = word(pasidDirParser.parse(bytes) as Words, 0);
  return { present: (w0.lo & 1) !== 0, fpd: (w0.lo & 2) !== 0, table: pointer(w0) };
});

// --- PASID table entry (spec 9.6): 512 bits; QEMU 7.2 looks at val0 and val1 only -------------

/** Parses the first two words (val0, val1); the caller reads all 64 bytes, as QEMU does. */
const pasidEntryParser = wordsParser(2);

export interface PasidEntry {
  present: boolean;
  fpd: boolean;
  /** Address width, val0 bits 4:2: second-level levels = aw + 2. */
  aw: number;
  /** PASID-granular translation type, val0 bits 8:6 (1 first-level, 2 second-level, 3 nested, 4 pass-through). */
  pgtt: number;
  /** Second-level page-table pointer, val0 bits 63:12 (QEMU 7.2 neither masks it with HAW nor checks it). */
  slptptr: number;
  /** Domain id, val1 bits 15:0. */
  did: number;
}

export const parsePasidEntry = memoized(16, (bytes): PasidEntry => {
  const r = pasidEntryParser.parse(bytes) as Words;
  const w0 = word(r, 0);
  const w1 = word(r, 1);
  return {
    present: (w0.lo & 1) !== 0,
    fpd: (w0.lo & 2) !== 0,
    aw: (w0.lo >>> 2) & 7,
    pgtt: (w0.lo >>> 6) & 7,
    slptptr: pointer(w0),
    did: w1.lo & 0xffff,
  };
});

/** Entry sizes in bytes. */
export const ROOT_ENTRY_SIZE = 16;
export const LEGACY_CONTEXT_SIZE = 16;
export const SCALABLE_CONTEXT_SIZE = 32;
export const PASID_DIR_ENTRY_SIZE = 8;
export const PASID_ENTRY_SIZE = 64;
