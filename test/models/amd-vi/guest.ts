/**
 * A guest driver for the AMD-Vi model in tests, written from the spec's
 * formats (48882): device table entries, v1 page-table entries, commands.
 * Memory map as the QEMU captures use: device table 0x100000 (4 KiB, 128
 * entries), command buffer 0x110000 (256 entries), event log 0x118000 (256
 * entries), COMPLETION_WAIT stores 0x11c000, page tables from 0x200000.
 */
import { SparseRam } from '../../../src/memory/sparse-ram';
import type { GuestMemory } from '../../../src/memory/guest-memory';
import { createAmdVi } from '../../../src/models/amd-vi';
import type { AmdVi, AmdViConfig, AmdViLimits } from '../../../src/models/amd-vi';

export const DEVTAB = 0x10_0000;
export const CMDBUF = 0x11_0000;
export const EVTLOG = 0x11_8000;
export const STORE = 0x11_c000;
export const TABLES = 0x20_0000;
export const RAM_SIZE = 0x800_0000;

export const IR = 1n << 61n;
export const IW = 1n << 62n;
/** IR/IW bits for an IOMMUAccessFlags value (1 r, 2 w, 3 rw). */
export function permBits(perm: number): bigint {
  return (perm & 1 ? IR : 0n) | (perm & 2 ? IW : 0n);
}

/** A v1 page-table entry: PR, NextLevel, address, IR/IW (spec "I/O Page Table Entry"). */
export function pte(addr: bigint | number, nextLevel: number, perm = 3, pr = true): bigint {
  return (pr ? 1n : 0n) | (BigInt(nextLevel) << 9n) | (BigInt(addr) & 0x000f_ffff_ffff_f000n) | permBits(perm);
}

export interface DteFields {
  v?: boolean;
  tv?: boolean;
  mode?: number;
  root?: number;
  perm?: number;
  domid?: number;
  se?: boolean;
  sa?: boolean;
  ex?: boolean;
  /** Extra bits ORed into quadword 0 (reserved-bit tests). */
  q0?: bigint;
}

/** Counts the guest-memory reads the model makes (work bounds without wall time). */
export class CountingMemory implements GuestMemory {
  reads = 0;
  constructor(readonly inner: GuestMemory) {}
  read(gpa: number, dst: Uint8Array): boolean { this.reads++; return this.inner.read(gpa, dst); }
  write(gpa: number, src: Uint8Array): boolean { return this.inner.write(gpa, src); }
  readU32(gpa: number): number { this.reads++; return this.inner.readU32(gpa); }
  readU64(gpa: number): bigint | undefined { this.reads++; return this.inner.readU64(gpa); }
  writeU32(gpa: number, value: number): boolean { return this.inner.writeU32(gpa, value); }
  writeU64(gpa: number, value: bigint): boolean { return this.inner.writeU64(gpa, value); }
}

export class AmdGuest {
  readonly ram = new SparseRam([{ base: 0n, size: BigInt(RAM_SIZE) }]);
  readonly mem: CountingMemory = new CountingMemory(this.ram);
  readonly iommu: AmdVi;
  private nextTable = TABLES;
  private tail = 0;
  private stores = 0;

  constructor(config: Partial<AmdViConfig> = {}, limits?: AmdViLimits) {
    this.iommu = createAmdVi(config, this.mem, limits);
  }

  alloc(): number {
    const t = this.nextTable;
    this.nextTable += 0x1000;
    return t;
  }

  write64(gpa: number, v: bigint): void {
    this.ram.writeU64(gpa, BigInt.asUintN(64, v));
  }

  read64(gpa: number): bigint {
    return this.ram.readU64(gpa)!;
  }

  setDte(devid: number, f: DteFields): void {
    const q0 = (f.v === false ? 0n : 1n) | (f.tv === false ? 0n : 2n) | (BigInt(f.mode ?? 0) << 9n) |
      BigInt(f.root ?? 0) | permBits(f.perm ?? 3) | (f.q0 ?? 0n);
    const q1 = BigInt(f.domid ?? 0) | (f.se ? 1n << 33n : 0n) | (f.sa ? 1n << 34n : 0n) | (f.ex ? 1n << 39n : 0n);
    const at = DEVTAB + devid * 32;
    this.write64(at, q0);
    this.write64(at + 8, q1);
    this.write64(at + 16, 0n);
    this.write64(at + 24, 0n);
  }

  /** Device table, command buffer, event log (each 256 entries), then CONTROL = `control` (default IommuEn|EventLogEn|CmdBufEn). */
  bringUp(control = 0x1005n): void {
    const io = this.iommu;
    io.mmioWrite(0x00, 8, BigInt(DEVTAB));
    io.mmioWrite(0x08, 8, BigInt(CMDBUF) | (8n << 56n));
    io.mmioWrite(0x10, 8, BigInt(EVTLOG) | (8n << 56n));
    io.mmioWrite(0x18, 8, control);
  }

  /** Writes the commands at the tail and moves CMD_TAIL past them (one MMIO write). */
  submit(...cmds: Array<[bigint, bigint]>): void {
    for (const [a, b] of cmds) {
      this.write64(CMDBUF + this.tail, a);
      this.write64(CMDBUF + this.tail + 8, b);
      this.tail = (this.tail + 16) % 0x1000;
    }
    this.iommu.mmioWrite(0x2008, 8, BigInt(this.tail));
  }

  get cmdTail(): number {
    return this.tail;
  }

  /** Submits `cmds` then a COMPLETION_WAIT with store, and checks the store landed (the commands completed). */
  run(...cmds: Array<[bigint, bigint]>): boolean {
    const slot = STORE + (this.stores++ % 256) * 8;
    const token = 0x5eed_0000_0000n + BigInt(this.stores);
    this.submit(...cmds, completionWait(slot, token));
    return this.read64(slot) === token;
  }
}

// ---- commands (spec "Command Buffer": opcode in bits 63:60 of the first quadword) --------------

export function completionWait(store: number, data: bigint, interrupt = false): [bigint, bigint] {
  return [(1n << 60n) | BigInt(store) | 1n | (interrupt ? 2n : 0n), data];
}
export function completionWaitInterruptOnly(): [bigint, bigint] {
  return [(1n << 60n) | 2n, 0n];
}
export function invDevtab(devid: number): [bigint, bigint] {
  return [(2n << 60n) | BigInt(devid), 0n];
}
/** INVALIDATE_IOMMU_PAGES of [iova, iova + size) (size a power of two >= 4 KiB, iova aligned) or the whole domain. */
export function invPages(domid: number, iova: bigint | 'all', size = 0x1000n, pde = false): [bigint, bigint] {
  const a = (3n << 60n) | (BigInt(domid) << 32n);
  const p = pde ? 2n : 0n;
  if (iova === 'all') return [a, 0x7fff_ffff_ffff_f000n | 1n | p];
  if (size === 0x1000n) return [a, iova | p];
  // S=1: the first zero bit from bit 12 is bit log2(size) - 1.
  return [a, iova | (size / 2n - 0x1000n) | 1n | p];
}
export function invIotlb(devid: number, iova: bigint, s = false): [bigint, bigint] {
  return [(4n << 60n) | BigInt(devid), iova | (s ? 1n : 0n)];
}
export function invAll(): [bigint, bigint] {
  return [8n << 60n, 0n];
}

/**
 * A radix page table of `mode` levels rooted at a fresh table: `map` writes
 * one leaf of 4 KiB, 2 MiB or 1 GiB (directory entries allow RW, so the
 * leaf's IR/IW is the AND), replacing a larger leaf on the way by a table
 * and dropping a table under the slot; `unmap` clears the slot.
 */
export class RadixTable {
  readonly root: number;
  constructor(private readonly g: AmdGuest, readonly mode: number) {
    this.root = g.alloc();
  }

  private slot(iova: bigint, level: number, create: boolean): number | undefined {
    let table = this.root;
    for (let l = this.mode; l > level; l--) {
      const at = table + Number((iova >> BigInt(12 + 9 * (l - 1))) & 511n) * 8;
      const e = this.g.read64(at);
      const next = Number((e >> 9n) & 7n);
      if ((e & 1n) === 0n || next === 0 || next === 7) {
        if (!create) return undefined;
        const t = this.g.alloc();
        this.g.write64(at, pte(t, l - 1));
        table = t;
      } else {
        table = Number(e & 0x000f_ffff_ffff_f000n);
      }
    }
    return table + Number((iova >> BigInt(12 + 9 * (level - 1))) & 511n) * 8;
  }

  map(iova: bigint, gpa: bigint, size: bigint, perm: number): void {
    const level = size === 0x1000n ? 1 : size === 0x20_0000n ? 2 : 3;
    this.g.write64(this.slot(iova, level, true)!, pte(gpa, 0, perm));
  }

  unmap(iova: bigint, size: bigint): void {
    const level = size === 0x1000n ? 1 : size === 0x20_0000n ? 2 : 3;
    const at = this.slot(iova, level, false);
    if (at !== undefined) this.g.write64(at, 0n);
  }
}
