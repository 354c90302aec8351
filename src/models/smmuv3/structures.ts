/**
 * Binary layouts of the SMMUv3 configuration structures read on a
 * configuration-cache miss: the Stream Table Entry (IHI 0070 5.2), the
 * level-1 Stream Table Descriptor (5.1) and the Context Descriptor (5.4),
 * decoded with binary-parser into plain field objects. Internal to the
 * smmuv3 model.
 *
 * Each structure is little-endian; binary-parser's bit fields read
 * big-endian words, so the structures are parsed as little-endian u32 words
 * (`w0` = bits 31:0 of the first doubleword, `w1` = bits 63:32, ...) and
 * fields are extracted from those words, named as in IHI 0070. Addresses
 * are bigint here (exact over 64 bits: an event record reports a fetch
 * address as the guest wrote it); the walk converts them to numbers.
 */
import { Parser } from 'binary-parser';

type Words = Record<string, number>;

/** A parser of `n` consecutive little-endian u32 words w0..w(n-1). */
function wordsParser(n: number): Parser {
  let p = new Parser().endianness('little');
  for (let i = 0; i < n; i++) p = p.uint32le(`w${i}`);
  return p;
}

const steParser = wordsParser(16);
const cdParser = wordsParser(16);
const l1stdParser = wordsParser(2);

function words(p: Parser, bytes: Uint8Array): number[] {
  const r = p.parse(bytes) as Words;
  const out: number[] = [];
  for (let i = 0; r[`w${i}`] !== undefined; i++) out.push(r[`w${i}`]! >>> 0);
  return out;
}

const bits = (w: number, lo: number, n: number): number => (n === 32 ? w >>> lo : (w >>> lo) & ((1 << n) - 1) >>> 0);
const u64 = (lo: number, hi: number): bigint => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

/** Stream Table Entry fields (IHI 0070 5.2) the model uses. */
export interface Ste {
  v: boolean;
  /** Config[2:0]: 0b0xx abort, 0b100 bypass, bit 0 stage 1, bit 1 stage 2. */
  config: number;
  s1Fmt: number;
  /** S1ContextPtr[51:6] (QEMU takes bits 47:6 of the word pair, see below). */
  s1ContextPtr: bigint;
  s1CdMax: number;
  s1Stalld: boolean;
  s2Vmid: number;
  s2T0sz: number;
  s2Sl0: number;
  s2Tg: number;
  s2Ps: number;
  s2Aa64: boolean;
  s2Endi: boolean;
  s2Affd: boolean;
  s2S: boolean;
  s2R: boolean;
  /** S2TTB[51:4]. */
  s2Ttb: bigint;
}

/** Decodes a 64-byte STE. */
export function parseSte(bytes: Uint8Array): Ste {
  const w = words(steParser, bytes);
  const w0 = w[0]!, w1 = w[1]!, w2 = w[2]!, w4 = w[4]!, w5 = w[5]!, w6 = w[6]!, w7 = w[7]!;
  return {
    v: (w0 & 1) === 1,
    config: bits(w0, 1, 3),
    s1Fmt: bits(w0, 4, 2),
    // QEMU STE_CTXPTR: bits 47:32 of the high word, 31:6 of the low one (IHI 0070: [51:6]).
    s1ContextPtr: u64((w0 & 0xffff_ffc0) >>> 0, w1 & 0xffff),
    s1CdMax: bits(w1, 27, 5),
    s1Stalld: bits(w2, 27, 1) === 1,
    s2Vmid: bits(w4, 0, 16),
    s2T0sz: bits(w5, 0, 6),
    s2Sl0: bits(w5, 6, 2),
    s2Tg: bits(w5, 14, 2),
    s2Ps: bits(w5, 16, 3),
    s2Aa64: bits(w5, 19, 1) === 1,
    s2Endi: bits(w5, 20, 1) === 1,
    s2Affd: bits(w5, 21, 1) === 1,
    s2S: bits(w5, 25, 1) === 1,
    s2R: bits(w5, 26, 1) === 1,
    s2Ttb: u64((w6 & 0xffff_fff0) >>> 0, w7 & 0xf_ffff),
  };
}

/** Level-1 Stream Table Descriptor (IHI 0070 5.1). */
export interface L1Std {
  span: number;
  /** L2Ptr: QEMU keeps bits 63:5 of the descriptor. */
  l2Ptr: bigint;
}

export function parseL1Std(bytes: Uint8Array): L1Std {
  const w = words(l1stdParser, bytes);
  return { span: bits(w[0]!, 0, 5), l2Ptr: u64((w[0]! & ~0x1f) >>> 0, w[1]!) };
}

/** One translation table half of a CD (TTB0 / TTB1). */
export interface CdTable {
  tsz: number;
  tg: number;
  epd: boolean;
  /** TTBn[51:4] (QEMU: bits 50:4). */
  ttb: bigint;
  had: boolean;
}

/** Context Descriptor fields (IHI 0070 5.4) the model uses. */
export interface Cd {
  v: boolean;
  endi: boolean;
  ips: number;
  affd: boolean;
  tbi: number;
  aa64: boolean;
  hd: boolean;
  ha: boolean;
  s: boolean;
  r: boolean;
  a: boolean;
  asid: number;
  tt: [CdTable, CdTable];
}

export function parseCd(bytes: Uint8Array): Cd {
  const w = words(cdParser, bytes);
  const w0 = w[0]!, w1 = w[1]!;
  const table = (i: 0 | 1): CdTable => {
    const lo = w[2 + 2 * i]!;
    const hi = w[3 + 2 * i]!;
    return {
      tsz: bits(w0, 16 * i, 6),
      tg: bits(w0, 16 * i + 6, 2),
      epd: bits(w0, 16 * i + 14, 1) === 1,
      ttb: u64((lo & 0xffff_fff0) >>> 0, hi & 0x7_ffff),
      had: bits(lo, 1, 1) === 1,
    };
  };
  return {
    v: bits(w0, 31, 1) === 1,
    endi: bits(w0, 15, 1) === 1,
    ips: bits(w1, 0, 3),
    affd: bits(w1, 3, 1) === 1,
    tbi: bits(w1, 6, 2),
    aa64: bits(w1, 9, 1) === 1,
    hd: bits(w1, 10, 1) === 1,
    ha: bits(w1, 11, 1) === 1,
    s: bits(w1, 12, 1) === 1,
    r: bits(w1, 13, 1) === 1,
    a: bits(w1, 14, 1) === 1,
    asid: bits(w1, 16, 16),
    tt: [table(0), table(1)],
  };
}

/** IDR5.OAS / CD.IPS / STE.S2PS encoding -> bits (IHI 0070 6.3.6). */
export function oasBits(enc: number): number {
  return [32, 36, 40, 42, 44, 48, 52][enc] ?? 52;
}

/**
 * Granule size (log2) of a CD's TGn, or 0 when reserved: TG0 encodes 4K/64K/16K
 * as 0/1/2, TG1 16K/4K/64K as 1/2/3 (IHI 0070 5.4, as the Arm ARM TCR_EL1).
 */
export function tgToGranule(tg: number, ttbSel: 0 | 1): number {
  if (ttbSel === 0) return [12, 16, 14, 0][tg] ?? 0;
  return [0, 14, 12, 16][tg] ?? 0;
}
