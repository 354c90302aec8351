/**
 * The guest side of Intel VT-d, for tests, benches and conformance adapters:
 * what a guest driver writes into its RAM (root and context tables, PASID
 * directory and table, second-level page tables, invalidation descriptors)
 * and how it talks to the unit (registers, the invalidation queue). One
 * builder, so that nobody hand-builds VT-d tables again (issue 8).
 *
 * Every field is composed from the bit positions of the VT-d specification
 * (Intel VT-d 9.1-9.8 structures, 6.5.2 descriptors, 11.4 registers; digest
 * in shared/reference/vtd-facts.md §2, §4, §7), never from the model's
 * decoders (structures.ts, descriptors.ts): a test that builds tables here
 * and translates through the model checks the model against the spec.
 *
 * ```ts
 * const guest = new VtdGuest(ram, vtd, { awBits: 48, sid: 0x20 });
 * guest.setup();                                   // root/context, queue, TE on
 * guest.map(0x1000n, 0x5000n, 0x1000n, 3);         // a 4 KiB RW leaf
 * guest.invalidate(0x1000n, 0x1000n);              // page-selective IOTLB + wait
 * ```
 */
import type { GuestMemory } from '../../memory/guest-memory';

const bit = (n: number): bigint => 1n << BigInt(n);
const big = (v: number | bigint): bigint => BigInt(v);
/** Bits 63:12 of an address field (the low 12 bits of a table or page pointer are flags). */
const ADDR_63_12 = ~0xfffn;

/** Second-level paging entry fields (9.8): R 0, W 1, PS 7, address 63:12. */
export interface VtdSlpteFields {
  r?: boolean;
  w?: boolean;
  /** Page size: a leaf at level 2 (2 MiB) or 3 (1 GiB). */
  ps?: boolean;
  /** Next table or page (4 KiB aligned; low bits dropped). */
  addr?: number | bigint;
  /** Raw bits ORed in (reserved or ignored bits under test). */
  extra?: bigint;
}

/** Legacy root entry fields (9.1): lo P 0, CTP 63:12; hi reserved. */
export interface VtdRootFields {
  /** Default true. */
  present?: boolean;
  ctp?: number | bigint;
  extraLo?: bigint;
  hi?: bigint;
}

/** Scalable-mode root entry fields (9.2): lo LP 0 / LCTP 63:12 (devfn 0..127), hi UP 0 / UCTP 63:12 (devfn 128..255); an absent pointer is not present. */
export interface VtdScalableRootFields {
  lctp?: number | bigint;
  uctp?: number | bigint;
  extraLo?: bigint;
  extraHi?: bigint;
}

/** Legacy context entry fields (9.3): lo P 0, FPD 1, TT 3:2, SLPTPTR 63:12; hi AW 2:0, DID 23:8. */
export interface VtdLegacyContextFields {
  /** Default true. */
  present?: boolean;
  fpd?: boolean;
  /** Translation type: 0 untranslated via the second level, 1 with device-TLB, 2 pass-through. Default 0. */
  tt?: number;
  slptptr?: number | bigint;
  /** Levels - 2: 1 = 3-level (39-bit), 2 = 4-level (48-bit). Default 1. */
  aw?: number;
  did?: number;
  extraLo?: bigint;
  extraHi?: bigint;
}

/** Scalable-mode context entry fields (9.4): val0 P 0, FPD 1, PASID directory pointer 63:12; val1 RID_PASID 19:0; val2, val3 reserved. */
export interface VtdScalableContextFields {
  /** Default true. */
  present?: boolean;
  fpd?: boolean;
  pasidDir?: number | bigint;
  ridPasid?: number;
  /** Raw bits ORed into val0..val3. */
  extra?: [bigint, bigint, bigint, bigint];
}

/** PASID directory entry fields (9.5): P 0, FPD 1, PASID table pointer 63:12. */
export interface VtdPasidDirFields {
  /** Default true. */
  present?: boolean;
  fpd?: boolean;
  table?: number | bigint;
}

/** PASID table entry fields (9.6): val0 P 0, FPD 1, AW 4:2, PGTT 8:6, SLPTPTR 63:12; val1 DID 15:0. */
export interface VtdPasidEntryFields {
  /** Default true. */
  present?: boolean;
  fpd?: boolean;
  /** Levels - 2, as in the legacy context. Default 1. */
  aw?: number;
  /** 1 first-level, 2 second-level (default), 3 nested, 4 pass-through. */
  pgtt?: number;
  slptptr?: number | bigint;
  did?: number;
}

/** Encoders of the VT-d translation structures: the 64-bit words of each entry, low word first. */
export const VtdEntry = {
  slpte(f: VtdSlpteFields): bigint {
    return (f.r ? bit(0) : 0n) | (f.w ? bit(1) : 0n) | (f.ps ? bit(7) : 0n) | (big(f.addr ?? 0) & ADDR_63_12) | (f.extra ?? 0n);
  },
  root(f: VtdRootFields): [bigint, bigint] {
    return [((f.present ?? true) ? bit(0) : 0n) | (big(f.ctp ?? 0) & ADDR_63_12) | (f.extraLo ?? 0n), f.hi ?? 0n];
  },
  scalableRoot(f: VtdScalableRootFields): [bigint, bigint] {
    const lo = f.lctp === undefined ? 0n : bit(0) | (big(f.lctp) & ADDR_63_12);
    const hi = f.uctp === undefined ? 0n : bit(0) | (big(f.uctp) & ADDR_63_12);
    return [lo | (f.extraLo ?? 0n), hi | (f.extraHi ?? 0n)];
  },
  legacyContext(f: VtdLegacyContextFields): [bigint, bigint] {
    const lo = ((f.present ?? true) ? bit(0) : 0n) | (f.fpd ? bit(1) : 0n) | (big(f.tt ?? 0) << 2n)
      | (big(f.slptptr ?? 0) & ADDR_63_12) | (f.extraLo ?? 0n);
    return [lo, big(f.aw ?? 1) | (big(f.did ?? 0) << 8n) | (f.extraHi ?? 0n)];
  },
  scalableContext(f: VtdScalableContextFields): [bigint, bigint, bigint, bigint] {
    const x = f.extra ?? [0n, 0n, 0n, 0n];
    return [
      ((f.present ?? true) ? bit(0) : 0n) | (f.fpd ? bit(1) : 0n) | (big(f.pasidDir ?? 0) & ADDR_63_12) | x[0],
      big(f.ridPasid ?? 0) | x[1],
      x[2],
      x[3],
    ];
  },
  pasidDir(f: VtdPasidDirFields): bigint {
    return ((f.present ?? true) ? bit(0) : 0n) | (f.fpd ? bit(1) : 0n) | (big(f.table ?? 0) & ADDR_63_12);
  },
  /** The 8 words (64 bytes) of a PASID entry; words 2..7 zero (no first level). */
  pasidEntry(f: VtdPasidEntryFields): bigint[] {
    const val0 = ((f.present ?? true) ? bit(0) : 0n) | (f.fpd ? bit(1) : 0n) | (big(f.aw ?? 1) << 2n)
      | (big(f.pgtt ?? 2) << 6n) | (big(f.slptptr ?? 0) & ADDR_63_12);
    return [val0, big(f.did ?? 0), 0n, 0n, 0n, 0n, 0n, 0n];
  },
} as const;

/** A 128-bit invalidation descriptor: [bits 63:0, bits 127:64]. */
export type VtdDescriptorWords = [bigint, bigint];

/** Encoders of the invalidation descriptors (6.5.2; type in bits 3:0, granularity G in 5:4). */
export const VtdDescriptor = {
  /** Context-cache (type 1), global. */
  contextGlobal: (): VtdDescriptorWords => [0x1n | (1n << 4n), 0n],
  /** Context-cache, domain-selective (DID 31:16). */
  contextDomain: (did: number): VtdDescriptorWords => [0x1n | (2n << 4n) | (big(did) << 16n), 0n],
  /** Context-cache, device-selective (SID 47:32, function mask FM 49:48). */
  contextDevice: (did: number, sid: number, fm = 0): VtdDescriptorWords =>
    [0x1n | (3n << 4n) | (big(did) << 16n) | (big(sid) << 32n) | (big(fm) << 48n), 0n],
  /** IOTLB (type 2), global. */
  iotlbGlobal: (): VtdDescriptorWords => [0x2n | (1n << 4n), 0n],
  /** IOTLB, domain-selective. */
  iotlbDomain: (did: number): VtdDescriptorWords => [0x2n | (2n << 4n) | (big(did) << 16n), 0n],
  /** IOTLB, page-selective: 2^am pages at `addr` (hi: ADDR 63:12, IH 6, AM 5:0). */
  iotlbPage: (did: number, addr: bigint, am = 0, ih = false): VtdDescriptorWords =>
    [0x2n | (3n << 4n) | (big(did) << 16n), addr | (ih ? bit(6) : 0n) | big(am)],
  /** Device-TLB (type 3): SID 47:32; hi ADDR 63:12, S 0. */
  deviceIotlb: (sid: number, addr: bigint, s = false): VtdDescriptorWords => [0x3n | (big(sid) << 32n), addr | (s ? 1n : 0n)],
  /** Interrupt entry cache (type 4): G 4 (0 global), IIDX 47:32. */
  iec: (global = true, index = 0): VtdDescriptorWords => [0x4n | (global ? 0n : bit(4)) | (big(index) << 32n), 0n],
  /** Invalidation wait (type 5): IF 4, SW 5, FN 6, status data 63:32; hi status address. */
  wait: (f: { sw?: boolean; iflag?: boolean; fn?: boolean; data?: number; addr?: bigint }): VtdDescriptorWords => [
    0x5n | (f.iflag ? bit(4) : 0n) | (f.sw ? bit(5) : 0n) | (f.fn ? bit(6) : 0n) | (big(f.data ?? 0) << 32n),
    f.addr ?? 0n,
  ],
} as const;

/** Where a guest driver's register accesses go: the model, or a trace recorder in front of it. */
export interface VtdMmioPort {
  mmioWrite(offset: number, size: 4 | 8, value: bigint): void;
  mmioRead(offset: number, size: 4 | 8): bigint;
}

/** Register offsets and GCMD bits a guest driver uses (11.4; vtd-facts §2). */
export const VtdGuestReg = {
  GCMD: 0x18, GSTS: 0x1c, RTADDR: 0x20, FSTS: 0x34, FECTL: 0x38, FEDATA: 0x3c, FEADDR: 0x40,
  IQH: 0x80, IQT: 0x88, IQA: 0x90,
  /** GCMD/GSTS bits: translation enable 31, set root table pointer 30, queued invalidation enable 26. */
  TE: bit(31), SRTP: bit(30), QIE: bit(26),
} as const;

/** Index of `iova`'s slot in a level-`level` table (9.8: bits 12 + 9 (L - 1) and up, 9 of them). */
function slotIndex(iova: number, level: number): number {
  return Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512;
}

/**
 * Table pages in guest RAM, with the spec's offsets: root entry at bus * 16,
 * legacy context at devfn * 16, scalable context at (devfn & 0x7f) * 32
 * (the root's lo half serves devfn 0..127, hi 128..255), PASID directory
 * entry at (pasid >> 6) * 8, PASID entry at (pasid & 0x3f) * 64, paging
 * entry at index * 8. Pages come from a bump allocator over [`firstPage`,
 * `end`).
 */
export class VtdGuestTables {
  private next: number;

  constructor(readonly mem: GuestMemory, firstPage = 0x10_0000, readonly end = Infinity) {
    this.next = firstPage;
  }

  /** Pages the allocator can still hand out (a fuzzer stops mapping when it runs low). */
  get pagesLeft(): number {
    return Math.max(0, Math.floor((this.end - this.next) / 0x1000));
  }

  /** A fresh zeroed 4 KiB page. Throws past `end` or outside RAM (a test bug). */
  page(): number {
    const p = this.next;
    if (p + 0x1000 > this.end) throw new Error(`vtd guest tables: no table page left below 0x${this.end.toString(16)}`);
    this.next += 0x1000;
    if (!this.mem.write(p, new Uint8Array(0x1000))) throw new Error(`vtd guest tables: page at 0x${p.toString(16)} is outside RAM`);
    return p;
  }

  /** Writes 64-bit words (little endian) at `gpa`; throws if the memory refuses. */
  write(gpa: number, ...words: bigint[]): void {
    for (let i = 0; i < words.length; i++) {
      if (!this.mem.writeU64(gpa + i * 8, BigInt.asUintN(64, words[i]!))) {
        throw new Error(`vtd guest tables: write at 0x${(gpa + i * 8).toString(16)} is outside RAM`);
      }
    }
  }

  /** The root entry of `bus` (words from VtdEntry.root or scalableRoot). */
  root(root: number, bus: number, words: [bigint, bigint]): void {
    this.write(root + bus * 16, ...words);
  }

  legacyContext(table: number, devfn: number, f: VtdLegacyContextFields): void {
    this.write(table + devfn * 16, ...VtdEntry.legacyContext(f));
  }

  scalableContext(table: number, devfn: number, f: VtdScalableContextFields): void {
    this.write(table + (devfn & 0x7f) * 32, ...VtdEntry.scalableContext(f));
  }

  pasidDir(dir: number, pasid: number, f: VtdPasidDirFields): void {
    this.write(dir + (pasid >> 6) * 8, VtdEntry.pasidDir(f));
  }

  pasidEntry(table: number, pasid: number, f: VtdPasidEntryFields): void {
    this.write(table + (pasid & 0x3f) * 64, ...VtdEntry.pasidEntry(f));
  }

  /** Paging entry `index` of `table`. */
  pte(table: number, index: number, value: bigint): void {
    this.write(table + index * 8, value);
  }

  /**
   * Maps `iova` to `addr` with a leaf at `leafLevel` (1 = 4 KiB, 2 = 2 MiB
   * with PS, 3 = 1 GiB with PS) in the `levels`-level tree at `top`,
   * replacing what was there: a missing directory entry, or a large leaf on
   * the way down, becomes a fresh empty table entered with R+W (or
   * `dirPerm`). IOVAs below 2^53.
   */
  map(
    top: number,
    levels: number,
    iova: bigint,
    addr: bigint,
    opts: { leafLevel?: number; r?: boolean; w?: boolean; extra?: bigint; dirPerm?: { r: boolean; w: boolean } } = {},
  ): void {
    const leafLevel = opts.leafLevel ?? 1;
    const n = Number(iova);
    let table = top;
    for (let level = levels; level > leafLevel; level--) {
      const slot = table + slotIndex(n, level) * 8;
      const lo = this.mem.readU32(slot);
      const hi = this.mem.readU32(slot + 4);
      if (lo < 0 || hi < 0) throw new Error(`vtd guest tables: table entry at 0x${slot.toString(16)} is outside RAM`);
      if ((lo & 3) === 0 || (lo & 0x80) !== 0) {
        table = this.page();
        this.write(slot, VtdEntry.slpte({ ...(opts.dirPerm ?? { r: true, w: true }), addr: table }));
      } else {
        // Address bits 51:12 (a guest's tables live below 2^52).
        table = (hi & 0xf_ffff) * 2 ** 32 + ((lo & ~0xfff) >>> 0);
      }
    }
    this.pte(table, slotIndex(n, leafLevel), VtdEntry.slpte({
      r: opts.r ?? true, w: opts.w ?? true, ps: leafLevel > 1, addr, extra: opts.extra,
    }));
  }

  /**
   * Clears the entry of a leaf at `leafLevel` for `iova` (or the table
   * entry in its slot); false when a directory on the way is not present.
   * Throws when `iova` lies inside a larger leaf.
   */
  unmap(top: number, levels: number, iova: bigint, leafLevel = 1): boolean {
    const n = Number(iova);
    let table = top;
    for (let level = levels; level > leafLevel; level--) {
      const slot = table + slotIndex(n, level) * 8;
      const lo = this.mem.readU32(slot);
      if (lo < 0 || (lo & 3) === 0) return false;
      if ((lo & 0x80) !== 0) {
        throw new Error(`vtd guest tables: unmap at 0x${iova.toString(16)} (level ${leafLevel}) inside a larger leaf`);
      }
      table = (this.mem.readU32(slot + 4) & 0xf_ffff) * 2 ** 32 + ((lo & ~0xfff) >>> 0);
    }
    this.pte(table, slotIndex(n, leafLevel), 0n);
    return true;
  }
}

/**
 * The guest's side of the invalidation queue (6.5.2): 128-bit descriptors
 * in the 4 KiB queue at `base` (QS = 0: 256 entries), the tail moved with
 * one IQT write per submission.
 */
export class VtdInvalidationQueue {
  /** The software tail, in descriptors. */
  tail = 0;
  private waits = 0;

  constructor(
    readonly mem: GuestMemory,
    readonly port: VtdMmioPort,
    /** Queue base (4 KiB aligned). */
    readonly base: number,
    /** Where wait descriptors write their status (submitAndWait). */
    readonly statusAddr = base + 0x1000,
  ) {}

  /** IQA (base, QS 0, 128-bit descriptors), then GCMD.QIE keeping the current TE. */
  enable(): void {
    this.port.mmioWrite(VtdGuestReg.IQA, 8, BigInt(this.base));
    this.port.mmioWrite(VtdGuestReg.GCMD, 4, VtdGuestReg.QIE | (this.port.mmioRead(VtdGuestReg.GSTS, 4) & VtdGuestReg.TE));
  }

  /** Writes the descriptors at the tail and moves IQT past them (one MMIO write). */
  submit(...descs: VtdDescriptorWords[]): void {
    for (const [lo, hi] of descs) {
      const at = this.base + this.tail * 16;
      if (!this.mem.writeU64(at, BigInt.asUintN(64, lo)) || !this.mem.writeU64(at + 8, BigInt.asUintN(64, hi))) {
        throw new Error(`vtd guest queue: descriptor at 0x${at.toString(16)} is outside RAM`);
      }
      this.tail = (this.tail + 1) % 256;
    }
    this.port.mmioWrite(VtdGuestReg.IQT, 8, BigInt(this.tail) << 4n);
  }

  /**
   * `submit` followed by a wait descriptor with status write (SW) of a fresh
   * value, as a driver waits for completion; throws when the status was not
   * written (the queue stopped: IQE, or it is not enabled).
   */
  submitAndWait(...descs: VtdDescriptorWords[]): void {
    const status = ++this.waits;
    this.submit(...descs, VtdDescriptor.wait({ sw: true, data: status, addr: BigInt(this.statusAddr) }));
    const got = this.mem.readU32(this.statusAddr);
    if (got !== status) throw new Error(`vtd guest queue: invalidation wait did not complete (status ${got}, expected ${status})`);
  }
}

/** Where VtdGuest puts its structures in guest RAM (defaults: root 0x100000, context 0x101000, queue 0x110000, status 0x118000, tables from 0x200000). */
export interface VtdGuestLayout {
  root: number;
  context: number;
  queue: number;
  status: number;
  tables: number;
}

export interface VtdGuestOptions {
  /** 39 (3-level tables, default) or 48 (4-level). */
  awBits?: 39 | 48;
  /** Requester id of the device (default 0x20, 00:04.0). */
  sid?: number;
  /** Domain id (default 1). */
  did?: number;
  layout?: Partial<VtdGuestLayout>;
}

const K4 = 0x1000n;

/**
 * A minimal guest driver for one device's domain, in legacy mode: what a
 * conformance adapter needs (map, unmap, invalidate, translation on and
 * off). Leaves are written straight into RAM, as the guest CPU would;
 * invalidations go through the queue, each followed by a wait.
 */
export class VtdGuest {
  readonly sid: number;
  readonly did: number;
  readonly levels: number;
  readonly layout: Readonly<VtdGuestLayout>;
  readonly tables: VtdGuestTables;
  readonly queue: VtdInvalidationQueue;
  private top = 0;

  constructor(readonly ram: GuestMemory, readonly port: VtdMmioPort, opts: VtdGuestOptions = {}) {
    this.sid = opts.sid ?? 0x20;
    this.did = opts.did ?? 1;
    this.levels = (opts.awBits ?? 39) === 48 ? 4 : 3;
    this.layout = { root: 0x10_0000, context: 0x10_1000, queue: 0x11_0000, status: 0x11_8000, tables: 0x20_0000, ...opts.layout };
    this.tables = new VtdGuestTables(ram, this.layout.tables);
    this.queue = new VtdInvalidationQueue(ram, port, this.layout.queue, this.layout.status);
  }

  /** The device's second-level root table (after setup). */
  get slptptr(): number {
    return this.top;
  }

  /** Root and context entries, queued invalidation on, a global context-cache and IOTLB invalidation, translation on. */
  setup(): void {
    const { root, context } = this.layout;
    this.top = this.tables.page();
    this.tables.root(root, this.sid >> 8, VtdEntry.root({ ctp: context }));
    // TT 0 (untranslated requests through the second level); AW = levels - 2.
    this.tables.legacyContext(context, this.sid & 0xff, { slptptr: this.top, aw: this.levels - 2, did: this.did });
    const R = VtdGuestReg;
    this.port.mmioWrite(R.RTADDR, 8, BigInt(root));
    this.port.mmioWrite(R.GCMD, 4, R.SRTP);
    this.port.mmioWrite(R.IQA, 8, BigInt(this.layout.queue)); // QS = 0: 256 entries
    this.port.mmioWrite(R.IQT, 8, 0n);
    this.port.mmioWrite(R.GCMD, 4, R.QIE);
    this.submit(VtdDescriptor.contextGlobal(), VtdDescriptor.iotlbGlobal());
    this.port.mmioWrite(R.GCMD, 4, R.TE | R.QIE);
  }

  /** Fault events to the MSI at `addr`/`data`, unmasked (FECTL.IM clear). */
  enableFaultEvents(addr: number, data: number): void {
    this.port.mmioWrite(VtdGuestReg.FEDATA, 4, BigInt(data));
    this.port.mmioWrite(VtdGuestReg.FEADDR, 4, BigInt(addr));
    this.port.mmioWrite(VtdGuestReg.FECTL, 4, 0n);
  }

  disableTranslation(): void {
    this.port.mmioWrite(VtdGuestReg.GCMD, 4, VtdGuestReg.QIE);
  }

  enableTranslation(): void {
    this.port.mmioWrite(VtdGuestReg.GCMD, 4, VtdGuestReg.TE | VtdGuestReg.QIE);
  }

  private leafLevel(size: bigint): number {
    if (size === K4) return 1;
    if (size === 0x20_0000n) return 2;
    if (size === 0x4000_0000n) return 3;
    throw new Error(`vtd guest: no leaf of size 0x${size.toString(16)}`);
  }

  /**
   * Writes a leaf of `size` (4 KiB, 2 MiB or 1 GiB) at `iova` -> `gpa` with
   * `perm` (R 1 | W 2), replacing whatever was there (a larger leaf on the
   * way becomes a fresh empty table).
   */
  map(iova: bigint, gpa: bigint, size: bigint, perm: number): void {
    this.tables.map(this.top, this.levels, iova, gpa, { leafLevel: this.leafLevel(size), r: (perm & 1) !== 0, w: (perm & 2) !== 0 });
  }

  /** Clears the slot of a leaf of `size` at `iova`; nothing when the path is absent. */
  unmap(iova: bigint, size: bigint): void {
    this.tables.unmap(this.top, this.levels, iova, this.leafLevel(size));
  }

  /** Page-selective (2^am pages covering `size`; above MAMV 18 domain-selective), domain-selective or global IOTLB invalidation, then a wait. */
  invalidate(iova: bigint, size: bigint | 'domain' | 'global'): void {
    if (size === 'global') return this.submit(VtdDescriptor.iotlbGlobal());
    if (size === 'domain') return this.submit(VtdDescriptor.iotlbDomain(this.did));
    let am = 0;
    while ((K4 << BigInt(am)) < size) am++;
    if (am > 18) return this.submit(VtdDescriptor.iotlbDomain(this.did));
    this.submit(VtdDescriptor.iotlbPage(this.did, iova & ~((K4 << BigInt(am)) - 1n), am));
  }

  /** Queues descriptors and a wait with status write, checks that it completed. */
  submit(...descs: VtdDescriptorWords[]): void {
    this.queue.submitAndWait(...descs);
  }
}
