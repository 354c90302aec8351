/**
 * Binary layouts of the AMD-Vi structures in guest memory, decoded with
 * binary-parser: the 256-bit device table entry (spec 48882 "Device Table
 * Entry Format") and the 128-bit command (spec "Command Buffer"), plus the
 * encoding of a 128-bit event-log entry. Little-endian 64-bit words are
 * parsed as u32 halves so that every field stays an exact JS number. Internal.
 */
import { Parser } from 'binary-parser';

const TWO_32 = 4294967296;

/** One decoded device table entry (the fields translation uses). */
export interface Dte {
  /** V, bit 0. */
  readonly v: boolean;
  /** TV, bit 1. */
  readonly tv: boolean;
  /** Mode, bits 11:9: 0 untranslated, 1-6 page-table levels, 7 reserved. */
  readonly mode: number;
  /** Page Table Root Pointer, bits 51:12. */
  readonly root: number;
  /** IR (bit 61) as bit 0 and IW (bit 62) as bit 1: an IOMMUAccessFlags value. */
  readonly perm: number;
  /** DomainID, bits 79:64. */
  readonly domid: number;
  /** SE (bit 97): suppress IO_PAGE_FAULT events. */
  readonly se: boolean;
  /** SA (bit 98): suppress all events of this device. */
  readonly sa: boolean;
  /** EX (bit 103): the exclusion range applies to this device. */
  readonly ex: boolean;
  /** SysMgt (bits 105:104): system management message handling (decoded; the model routes no such messages). */
  readonly sysMgt: number;
  /** Reserved bits set (the set QEMU checks: q0 6:2 and 63, q2 53:52, q3 14:0 and 53:48). */
  readonly reserved: boolean;
}

const dteParser = new Parser()
  .endianness('little')
  .uint32le('w0').uint32le('w1').uint32le('w2').uint32le('w3')
  .uint32le('w4').uint32le('w5').uint32le('w6').uint32le('w7');

interface DteWords { w0: number; w1: number; w2: number; w3: number; w4: number; w5: number; w6: number; w7: number }

export function decodeDte(bytes: Uint8Array): Dte {
  const r = dteParser.parse(bytes) as DteWords;
  return {
    v: (r.w0 & 1) !== 0,
    tv: (r.w0 & 2) !== 0,
    mode: (r.w0 >>> 9) & 7,
    root: ((r.w0 & 0xffff_f000) >>> 0) + (r.w1 & 0xfffff) * TWO_32,
    perm: (r.w1 >>> 29) & 3,
    domid: r.w2 & 0xffff,
    se: (r.w3 & 2) !== 0,
    sa: (r.w3 & 4) !== 0,
    ex: (r.w3 & 0x80) !== 0,
    sysMgt: (r.w3 >>> 8) & 3,
    reserved: (r.w0 & 0x7c) !== 0 || (r.w1 & 0x8000_0000) !== 0 || (r.w5 & 0x0030_0000) !== 0 ||
      (r.w6 & 0x7fff) !== 0 || (r.w7 & 0x003f_0000) !== 0,
  };
}

/**
 * A DTE reader with a one-entry memo per DeviceID slot: QEMU 7.2 re-reads the
 * DTE on every IOTLB miss, and guests rarely change it, so the same 32 bytes
 * decode to the previous (frozen) result without running the parser.
 */
export class DteDecoder {
  private readonly buf = new Uint8Array(32);
  private readonly last = new Uint8Array(32);
  private lastDte: Dte | undefined;

  /** Decodes the 32 bytes the caller read into `bytes()`. */
  decode(): Dte {
    const b = this.buf;
    const l = this.last;
    if (this.lastDte !== undefined) {
      let same = true;
      for (let i = 0; i < 32; i++) {
        if (b[i] !== l[i]) { same = false; break; }
      }
      if (same) return this.lastDte;
    }
    l.set(b);
    this.lastDte = Object.freeze(decodeDte(b));
    return this.lastDte;
  }

  /** The buffer to read the entry into. */
  bytes(): Uint8Array {
    return this.buf;
  }
}

/** One 128-bit command, as four dwords (cmd[0] = w1:w0, cmd[1] = w3:w2 in QEMU's terms). */
export interface Command {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  /** Bits 63:60. */
  readonly opcode: number;
}

const commandParser = new Parser().endianness('little').uint32le('w0').uint32le('w1').uint32le('w2').uint32le('w3');

export function decodeCommand(bytes: Uint8Array): Command {
  const r = commandParser.parse(bytes) as { w0: number; w1: number; w2: number; w3: number };
  return { w0: r.w0, w1: r.w1, w2: r.w2, w3: r.w3, opcode: r.w1 >>> 28 };
}

/**
 * Reserved fields of each command that the spec defines (the same fields
 * QEMU 7.2 tests): true when a reserved bit is set. Opcodes 6 and 7 are
 * legal because EXT_FEATURES advertises PreFSup and PPRSup.
 */
export function commandReserved(c: Command): boolean {
  switch (c.opcode) {
    case 1: // COMPLETION_WAIT: cmd[0] bits 59:52
      return (c.w1 & 0x0ff0_0000) !== 0;
    case 2: // INVALIDATE_DEVTAB_ENTRY: cmd[0] bits 59:16, cmd[1]
    case 5: // INVALIDATE_INTERRUPT_TABLE: same layout
      return (c.w0 & 0xffff_0000) !== 0 || (c.w1 & 0x0fff_ffff) !== 0 || c.w2 !== 0 || c.w3 !== 0;
    case 3: // INVALIDATE_IOMMU_PAGES: cmd[0] bits 31:20 and 59:48, cmd[1] bits 11:3
      return (c.w0 & 0xfff0_0000) !== 0 || (c.w1 & 0x0fff_0000) !== 0 || (c.w2 & 0xff8) !== 0;
    case 4: // INVALIDATE_IOTLB_PAGES: cmd[1] bits 1, 3 and 11:6
      return (c.w2 & 0xfca) !== 0;
    case 6: // PREFETCH_IOMMU_PAGES: cmd[0] bits 23:16, 59:52; cmd[1] bits 1, 3, 11:5
      return (c.w0 & 0x00ff_0000) !== 0 || (c.w1 & 0x0ff0_0000) !== 0 || (c.w2 & 0xfea) !== 0;
    case 7: // COMPLETE_PPR_REQUEST: cmd[0] bits 31:16, 59:52; cmd[1] bits 1:0, 31:3, 63:48
      return (c.w0 & 0xffff_0000) !== 0 || (c.w1 & 0x0ff0_0000) !== 0 || (c.w2 & 0xffff_fffb) !== 0 || (c.w3 & 0xffff_0000) !== 0;
    case 8: // INVALIDATE_IOMMU_ALL: everything but the opcode
      return c.w0 !== 0 || (c.w1 & 0x0fff_ffff) !== 0 || c.w2 !== 0 || c.w3 !== 0;
    default:
      return false;
  }
}

/**
 * Encodes an event-log entry (spec "Event Log"): DeviceID in bits 15:0,
 * DomainID (or PASID) in bits 47:32, flags in 59:48, event code in 63:60,
 * address in the second quadword.
 */
export function encodeEvent(out: Uint8Array, code: number, devid: number, domid: number, flags: number, address: bigint): void {
  const dv = new DataView(out.buffer, out.byteOffset, 16);
  dv.setUint32(0, devid & 0xffff, true);
  dv.setUint32(4, ((domid & 0xffff) | ((flags & 0xfff) << 16) | ((code & 0xf) << 28)) >>> 0, true);
  dv.setBigUint64(8, BigInt.asUintN(64, address), true);
}
