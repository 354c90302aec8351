/**
 * A minimal VT-d guest driver for tests: it writes legacy-mode root/context
 * entries (VT-d spec 9.1, 9.3) and second-level page tables (9.8) straight
 * into guest RAM, as the guest CPU would, and talks to the IOMMU through
 * registers (10.4) and the invalidation queue (6.5.2: IOTLB invalidate
 * descriptor type 2, invalidation wait descriptor type 5 with status write),
 * the way fixtures/vtd-notify/*.jsonl and test/listeners/e2e-vtd.test.ts do.
 * Everything is composed from the spec's bit positions, never from the model.
 */
import type { GuestMemory } from '../../src/memory/guest-memory';

/** Where the guest's register accesses go (the model, or a TraceRecorder in front of it). */
export interface VtdPort {
  mmioWrite(reg: number, size: 4 | 8, value: bigint): void;
  mmioRead(reg: number, size: 4 | 8): bigint;
}

export const GCMD = 0x18;
export const GSTS = 0x1c;
export const RTADDR = 0x20;
export const FSTS = 0x34;
export const FECTL = 0x38;
export const FEDATA = 0x3c;
export const FEADDR = 0x40;
export const IQH = 0x80;
export const IQT = 0x88;
export const IQA = 0x90;
const TE = 1n << 31n;
const SRTP = 1n << 30n;
const QIE = 1n << 26n;

const ROOT = 0x10_0000;
const CTX = 0x10_1000;
const IQ = 0x11_0000;
const STATUS = 0x11_8000;
const TABLES = 0x20_0000;

export const K4 = 0x1000n;
export const M2 = 0x20_0000n;
export const G1 = 0x4000_0000n;
const ADDR_MASK = 0x000f_ffff_ffff_f000n;
const PS = 1n << 7n;

export interface VtdGuestOptions {
  awBits?: 39 | 48;
  sid?: number;
  did?: number;
}

/** The guest side of one device's domain. */
export class VtdGuest {
  readonly sid: number;
  readonly did: number;
  readonly levels: number;
  private top = 0;
  private nextTable = TABLES;
  private tail = 0;
  private waits = 0;

  constructor(readonly ram: GuestMemory, readonly port: VtdPort, opts: VtdGuestOptions = {}) {
    this.sid = opts.sid ?? 0x20;
    this.did = opts.did ?? 1;
    this.levels = (opts.awBits ?? 39) === 48 ? 4 : 3;
  }

  w64(gpa: number, v: bigint): void {
    if (!this.ram.writeU64(gpa, v)) throw new Error(`guest write at 0x${gpa.toString(16)} is outside RAM`);
  }

  r64(gpa: number): bigint {
    const v = this.ram.readU64(gpa);
    if (v === undefined) throw new Error(`guest read at 0x${gpa.toString(16)} is outside RAM`);
    return v;
  }

  /** A fresh zeroed table page. */
  private table(): number {
    const t = this.nextTable;
    this.nextTable += 0x1000;
    if (!this.ram.write(t, new Uint8Array(0x1000))) throw new Error('guest: out of table memory');
    return t;
  }

  /** Root and context entries, queued invalidation on, a global invalidation, translation on. */
  setup(): void {
    this.top = this.table();
    const bus = this.sid >> 8;
    const devfn = this.sid & 0xff;
    this.w64(ROOT + bus * 16, BigInt(CTX) | 1n); // 9.1: P, CTP
    // 9.3: lo P, TT=0 (untranslated requests only), SLPTPTR; hi AW (1: 39-bit 3-level, 2: 48-bit 4-level), DID 23:8.
    this.w64(CTX + devfn * 16, BigInt(this.top) | 1n);
    this.w64(CTX + devfn * 16 + 8, BigInt(this.levels - 2) | (BigInt(this.did) << 8n));
    this.port.mmioWrite(RTADDR, 8, BigInt(ROOT));
    this.port.mmioWrite(GCMD, 4, SRTP);
    this.port.mmioWrite(IQA, 8, BigInt(IQ)); // QS=0: 256 entries
    this.port.mmioWrite(IQT, 8, 0n);
    this.port.mmioWrite(GCMD, 4, QIE);
    this.submit([0x1n | (1n << 4n), 0n], [0x2n | (1n << 4n), 0n]); // global context-cache and IOTLB
    this.port.mmioWrite(GCMD, 4, TE | QIE);
  }

  /** Fault events to the MSI at `addr`/`data`, unmasked (FECTL.IM clear). */
  enableFaultEvents(addr: number, data: number): void {
    this.port.mmioWrite(FEDATA, 4, BigInt(data));
    this.port.mmioWrite(FEADDR, 4, BigInt(addr));
    this.port.mmioWrite(FECTL, 4, 0n);
  }

  disableTranslation(): void {
    this.port.mmioWrite(GCMD, 4, QIE);
  }

  enableTranslation(): void {
    this.port.mmioWrite(GCMD, 4, TE | QIE);
  }

  private leafLevel(size: bigint): number {
    if (size === K4) return 1;
    if (size === M2) return 2;
    if (size === G1) return 3;
    throw new Error(`guest: no leaf of size 0x${size.toString(16)}`);
  }

  private slot(table: number, level: number, iova: bigint): number {
    return table + Number((iova >> BigInt(12 + 9 * (level - 1))) & 0x1ffn) * 8;
  }

  /**
   * Writes a leaf of `size` at `iova` -> `gpa`, replacing whatever was there:
   * a larger leaf on the way down becomes a fresh (empty) table, a table
   * below the leaf's slot is dropped.
   */
  map(iova: bigint, gpa: bigint, size: bigint, perm: number): void {
    const leaf = this.leafLevel(size);
    let table = this.top;
    for (let level = this.levels; level > leaf; level--) {
      const s = this.slot(table, level, iova);
      const pte = this.r64(s);
      if ((pte & 3n) === 0n || (level > 1 && (pte & PS) !== 0n)) {
        const t = this.table();
        this.w64(s, BigInt(t) | 3n);
        table = t;
      } else {
        table = Number(pte & ADDR_MASK);
      }
    }
    this.w64(this.slot(table, leaf, iova), gpa | BigInt(perm) | (leaf > 1 ? PS : 0n));
  }

  /** Clears the slot of a leaf (or table) of `size` at `iova`; nothing when the path is absent. */
  unmap(iova: bigint, size: bigint): void {
    const leaf = this.leafLevel(size);
    let table = this.top;
    for (let level = this.levels; level > leaf; level--) {
      const pte = this.r64(this.slot(table, level, iova));
      if ((pte & 3n) === 0n) return;
      if ((pte & PS) !== 0n) throw new Error(`guest: unmap of 0x${size.toString(16)} at 0x${iova.toString(16)} inside a larger leaf`);
      table = Number(pte & ADDR_MASK);
    }
    this.w64(this.slot(table, leaf, iova), 0n);
  }

  /** Page-selective (2^am pages; above MAMV 18 domain-selective), domain-selective or global IOTLB invalidation, then a wait. */
  invalidate(iova: bigint, size: bigint | 'domain' | 'global'): void {
    const did = BigInt(this.did) << 16n;
    if (size === 'global') return this.submit([0x2n | (1n << 4n), 0n]);
    if (size === 'domain') return this.submit([0x2n | (2n << 4n) | did, 0n]);
    let am = 0;
    while ((K4 << BigInt(am)) < size) am++;
    if (am > 18) return this.submit([0x2n | (2n << 4n) | did, 0n]);
    const addr = iova & ~((K4 << BigInt(am)) - 1n);
    this.submit([0x2n | (3n << 4n) | did, addr | BigInt(am)]);
  }

  /** Queues descriptors and a wait descriptor with status write (SW, bit 5), moves the tail, checks the status. */
  submit(...descs: Array<[bigint, bigint]>): void {
    const status = ++this.waits;
    descs.push([0x5n | 0x20n | (BigInt(status) << 32n), BigInt(STATUS)]);
    for (const [lo, hi] of descs) {
      this.w64(IQ + this.tail * 16, lo);
      this.w64(IQ + this.tail * 16 + 8, hi);
      this.tail = (this.tail + 1) % 256;
    }
    this.port.mmioWrite(IQT, 8, BigInt(this.tail) << 4n);
    const got = this.ram.readU32(STATUS);
    if (got !== status) throw new Error(`guest: invalidation wait did not complete (status ${got}, expected ${status})`);
  }
}
