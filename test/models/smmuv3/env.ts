/**
 * A guest for the SMMUv3 unit tests: RAM, a linear stream table, command and
 * event queues, and translation tables built from the architecture text
 * (Arm ARM D8 VMSAv8-64 descriptors; IHI 0070 5.2 STE, 5.4 CD, 4.x
 * commands, 7.3 event records), written directly into a SparseRam.
 * Nothing here reads the model's code: layouts are written from the spec.
 */
import { SparseRam } from '../../../src/memory';
import type { GuestMemory } from '../../../src/memory';
import { createSmmuV3 } from '../../../src/models/smmuv3';
import type { SmmuStage, SmmuV3 } from '../../../src/models/smmuv3';

export const RAM_SIZE = 0x1000_0000; // 256 MiB at 0
export const STRTAB = 0x1_0000;
export const CMDQ = 0x2_0000;
export const EVTQ = 0x3_0000;
export const CMDQ_LOG2 = 8;
export const EVTQ_LOG2 = 5;

/** Descriptor bits (Arm ARM D8.3): valid, table/page, AF, AP[2] (read-only), APTable[1]. */
export const DESC_VALID = 1n;
export const DESC_TABLE = 3n;
export const AF = 1n << 10n;
export const AP_RO = 1n << 7n;
export const AP_EL0 = 1n << 6n;
export const APTABLE_RO = 1n << 62n;
/** Stage-2 S2AP (D8.4.2): bit 6 read, bit 7 write. */
export const S2AP_R = 1n << 6n;
export const S2AP_W = 1n << 7n;

const levelShift = (level: number, g: number): number => g + (3 - level) * (g - 3);

/** A bump allocator of naturally aligned blocks in RAM. */
export class Alloc {
  constructor(private next: number) {}
  take(bytes: number): number {
    const align = Math.max(bytes, 8);
    this.next = Math.ceil(this.next / align) * align;
    const a = this.next;
    this.next += bytes;
    return a;
  }
}

/**
 * Translation tables of one stage (granule 2^g, input size `inputsize` bits,
 * starting at `startLevel`, with concatenated start tables when the start
 * level resolves more than one table's bits, as stage 2 allows).
 */
export class Tables {
  readonly root: number;
  constructor(private readonly ram: GuestMemory, private readonly alloc: Alloc, readonly g: number, readonly inputsize: number, readonly startLevel: number) {
    const entries = 2 ** (inputsize - levelShift(startLevel, g));
    this.root = alloc.take(Math.max(entries * 8, 2 ** g));
  }

  private readDesc(addr: number): bigint {
    return this.ram.readU64(addr) ?? 0n;
  }

  /** The slot of `ia` at `level` in the table at `base` (the start table indexes all its bits). */
  private slot(base: number, ia: bigint, level: number): number {
    const shift = BigInt(levelShift(level, this.g));
    let idx = ia >> shift;
    if (level !== this.startLevel) idx &= (1n << BigInt(this.g - 3)) - 1n;
    return base + Number(idx) * 8;
  }

  /** Maps [ia, ia + 2^sizeLog2) to `out` with leaf attribute bits `attrs` (a page at level 3, else a block). */
  map(ia: bigint, out: bigint, sizeLog2: number, attrs: bigint, tableAttrs = 0n): number {
    let level = this.startLevel;
    let base = this.root;
    while (levelShift(level, this.g) > sizeLog2) {
      const at = this.slot(base, ia, level);
      const d = this.readDesc(at);
      if ((d & 3n) !== 3n) {
        const t = this.alloc.take(2 ** this.g);
        this.ram.writeU64(at, BigInt(t) | DESC_TABLE | tableAttrs);
        base = t;
      } else {
        base = Number(d & 0x0000_ffff_ffff_f000n);
      }
      level++;
    }
    if (levelShift(level, this.g) !== sizeLog2) throw new Error(`no level has leaf size 2^${sizeLog2}`);
    const at = this.slot(base, ia, level);
    this.ram.writeU64(at, out | (level === 3 ? 3n : 1n) | attrs);
    return at;
  }

  /** The address of the descriptor that maps `ia` at `level` (for tests that corrupt it). */
  descAt(ia: bigint, level: number): number {
    let base = this.root;
    for (let l = this.startLevel; l < level; l++) {
      const d = this.readDesc(this.slot(base, ia, l));
      base = Number(d & 0x0000_ffff_ffff_f000n);
    }
    return this.slot(base, ia, level);
  }
}

export interface CdOptions {
  asid: number;
  t0sz: number;
  ttb0: number;
  /** TG0 encoding: 0 4K, 1 64K, 2 16K. */
  tg0?: number;
  r?: boolean;
  had0?: boolean;
  epd1?: boolean;
  valid?: boolean;
}

export interface SteOptions {
  /** Config[2:0]: 0b100 bypass, 0b101 S1, 0b110 S2, 0b111 nested, 0b000 abort. */
  config: number;
  ctxPtr?: number;
  vmid?: number;
  s2t0sz?: number;
  s2sl0?: number;
  /** S2TG: 0 4K, 1 64K, 2 16K. */
  s2tg?: number;
  s2ps?: number;
  s2ttb?: number;
  s2r?: boolean;
  s2affd?: boolean;
}

/** A guest with one SMMUv3, a linear stream table of 256 STEs, a command queue and an event queue. */
export class SmmuEnv {
  readonly ram: SparseRam;
  readonly smmu: SmmuV3;
  readonly alloc = new Alloc(0x10_0000);
  private prod = 0;
  private evCons = 0;

  constructor(stage: SmmuStage = '1', mem?: (ram: SparseRam) => GuestMemory) {
    this.ram = new SparseRam([{ base: 0n, size: BigInt(RAM_SIZE) }]);
    this.smmu = createSmmuV3({ stage }, mem ? mem(this.ram) : this.ram);
    const s = this.smmu;
    s.mmioWrite(0x80, 8, BigInt(STRTAB)); // STRTAB_BASE
    s.mmioWrite(0x88, 4, 8n); // linear, LOG2SIZE 8
    s.mmioWrite(0x90, 8, BigInt(CMDQ | CMDQ_LOG2));
    s.mmioWrite(0xa0, 8, BigInt(EVTQ | EVTQ_LOG2));
    s.mmioWrite(0x20, 4, 0xdn); // SMMUEN | EVENTQEN | CMDQEN
  }

  /** Stage-1 (or stage-2) tables with granule 2^g for an input size. */
  tables(g: number, inputsize: number, startLevel: number): Tables {
    return new Tables(this.ram, this.alloc, g, inputsize, startLevel);
  }

  /** Stage-1 start level (Arm ARM D8.2.2 table: 4K with 25..33 bits -> level 2 ...). */
  static s1Start(t0sz: number, g: number): number {
    const inputsize = 64 - t0sz;
    for (let level = 0; level <= 3; level++) {
      // The start level is the first whose table resolves the top of the input address.
      if (levelShift(level, g) < inputsize && levelShift(level, g) + (g - 3) >= inputsize) return level;
    }
    return 3;
  }

  writeSte(sid: number, o: SteOptions): void {
    const ste = new DataView(new ArrayBuffer(64));
    const ptr = o.ctxPtr ?? 0;
    ste.setUint32(0, (1 | (o.config << 1) | (ptr % 2 ** 32 & ~0x3f)) >>> 0, true);
    ste.setUint32(4, Math.floor(ptr / 2 ** 32), true);
    ste.setUint32(16, o.vmid ?? 0, true);
    const w5 = (o.s2t0sz ?? 0) | ((o.s2sl0 ?? 0) << 6) | ((o.s2tg ?? 0) << 14) | ((o.s2ps ?? 4) << 16) | (1 << 19)
      | ((o.s2affd ? 1 : 0) << 21) | ((o.s2r ?? true ? 1 : 0) << 26);
    ste.setUint32(20, w5 >>> 0, true);
    const ttb = o.s2ttb ?? 0;
    ste.setUint32(24, (ttb % 2 ** 32) >>> 0, true);
    ste.setUint32(28, Math.floor(ttb / 2 ** 32), true);
    this.ram.write(STRTAB + sid * 64, new Uint8Array(ste.buffer));
  }

  /** A CD with TTB1 disabled (EPD1), 4K TG1 encoding, IPS 44 bits, AA64, A, R as asked. */
  writeCd(addr: number, o: CdOptions): void {
    const cd = new DataView(new ArrayBuffer(64));
    const w0 = o.t0sz | ((o.tg0 ?? 0) << 6) | (16 << 16) | (2 << 22) | ((o.epd1 ?? true ? 1 : 0) << 30) | ((o.valid ?? true ? 1 : 0) << 31);
    cd.setUint32(0, w0 >>> 0, true);
    const w1 = 4 | (1 << 9) | ((o.r ?? true ? 1 : 0) << 13) | (1 << 14) | (o.asid << 16);
    cd.setUint32(4, w1 >>> 0, true);
    cd.setUint32(8, ((o.ttb0 % 2 ** 32) | (o.had0 ? 2 : 0)) >>> 0, true);
    cd.setUint32(12, Math.floor(o.ttb0 / 2 ** 32), true);
    this.ram.write(addr, new Uint8Array(cd.buffer));
  }

  /** Submits commands (four 32-bit words each) and a CMD_SYNC; returns CMDQ_CONS afterwards. */
  commands(...cmds: number[][]): number {
    for (const c of [...cmds, [0x46, 0, 0, 0]]) {
      const at = CMDQ + (this.prod % 2 ** CMDQ_LOG2) * 16;
      for (let i = 0; i < 4; i++) this.ram.writeU32(at + 4 * i, (c[i] ?? 0) >>> 0);
      this.prod = (this.prod + 1) % 2 ** (CMDQ_LOG2 + 1);
    }
    this.smmu.mmioWrite(0x98, 4, BigInt(this.prod));
    return Number(this.smmu.mmioRead(0x9c, 4));
  }

  cfgiAll(): void {
    this.commands([0x04, 0, 31, 0]);
  }

  tlbiAll(): void {
    this.commands([0x30, 0, 0, 0]);
  }

  /** TLBI_NH_VA (IHI 0070 4.4.3): ASID, address bits 63:12, optional TG/NUM/SCALE/TTL. */
  tlbiVa(asid: number, addr: bigint, o: { tg?: number; num?: number; scale?: number; ttl?: number } = {}): void {
    this.commands([0x12 | ((o.num ?? 0) << 12) | ((o.scale ?? 0) << 20), asid << 16,
      Number(addr & 0xffff_f000n) | ((o.tg ?? 0) << 10) | ((o.ttl ?? 0) << 8), Number(addr >> 32n)]);
  }

  /** New event records (32 bytes each, as words), consumed (EVENTQ_CONS written). */
  events(): number[][] {
    const prod = Number(this.smmu.mmioRead(0x100a8, 4));
    const out: number[][] = [];
    const mask = 2 ** (EVTQ_LOG2 + 1) - 1;
    while (this.evCons !== (prod & mask)) {
      const at = EVTQ + (this.evCons % 2 ** EVTQ_LOG2) * 32;
      out.push(Array.from({ length: 8 }, (_, i) => this.ram.readU32(at + 4 * i)));
      this.evCons = (this.evCons + 1) & mask;
    }
    this.smmu.mmioWrite(0x100ac, 4, BigInt(this.evCons));
    return out;
  }
}

/** A GuestMemory that counts reads (hostile-guest tests bound work by reads, not time). */
export class CountingMemory implements GuestMemory {
  reads = 0;
  constructor(private readonly inner: GuestMemory) {}
  read(gpa: number, dst: Uint8Array): boolean { this.reads++; return this.inner.read(gpa, dst); }
  write(gpa: number, src: Uint8Array): boolean { return this.inner.write(gpa, src); }
  readU32(gpa: number): number { this.reads++; return this.inner.readU32(gpa); }
  readU64(gpa: number): bigint | undefined { this.reads++; return this.inner.readU64(gpa); }
  writeU32(gpa: number, value: number): boolean { return this.inner.writeU32(gpa, value); }
  writeU64(gpa: number, value: bigint): boolean { return this.inner.writeU64(gpa, value); }
}
