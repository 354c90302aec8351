/**
 * The Arm SMMUv3 device: QEMU 7.2's `smmuv3` on the `virt` machine by
 * default (shared/reference/qemu-7.2-smmuv3-findings.md, "the findings"
 * below; the captures in fixtures/qemu-smmuv3 are QEMU's), and stage 2 /
 * nested translation from the architecture (IHI 0070) with `stage: "2"` or
 * `"nested"`, as QEMU 8.1+ / 9.2 advertise them. Every place where QEMU
 * departs from the architecture says which one it follows.
 *
 * Notifiers: the architecture has no caching mode, a guest never tells the
 * SMMU about new mappings, so MAP notifiers are refused at registration
 * (C1). UNMAP notifiers get the ranges TLBI commands invalidate, widened to
 * whole leaf entries, for the StreamIDs whose configuration the command
 * affects; DEVIOTLB_UNMAP notifiers get ATC_INV ranges.
 */
import { EventEmitter } from 'node:events';
import { IOMMUAccessFlags } from '../../core/access';
import { AddressSpaceRegistry, identityEntry } from '../../core/address-spaces';
import type { AddressSpaceOwner, ModelAddressSpace } from '../../core/address-spaces';
import type { LeafWalker } from '../../core/leaf';
import type { IOMMUFault, IOMMUModelEvents, MmioIOMMUModel, TranslateResult } from '../../core/model';
import { dmaAlignedPow2Mask } from '../../core/pow2';
import { IOMMUNotifierFlag } from '../../core/tlb-entry';
import type { IOMMUTLBEntry } from '../../core/tlb-entry';
import type { TypedEmitter } from '../../core/typed-events';
import { dmaRead, dmaWrite } from '../../memory/dma';
import type { DmaReadResult, DmaResult } from '../../memory/dma';
import type { GuestMemory } from '../../memory/guest-memory';
import type { SmmuV3Config } from './config';
import { SmmuIotlb } from './iotlb';
import type { IotlbEntry } from './iotlb';
import {
  AIDR, BASE_ADDR_MASK, CERROR_ABT, CERROR_ILL, CMD, CR0_CMDQEN, CR0_EVENTQEN, CR0_RESERVED, CR0_SMMUEN, EVT,
  GBPA_ABORT, GBPA_RESET, GBPA_UPDATE, GERROR_CMDQ_ERR, GERROR_EVENTQ_ABT_ERR, ID_REGS, IDR1, IDR3, IDR5, idr0,
  IRQ_CTRL_EVENTQ_IRQEN, IRQ_CTRL_GERROR_IRQEN, IRQ_SPI, MMIO_SIZE, OAS_BITS, OAS_ENC, QUEUE_LOG2_MAX, R, SIDSIZE,
} from './regs';
import type { SmmuIrqLine } from './regs';
import { oasBits, parseCd, parseL1Std, parseSte, tgToGranule } from './structures';
import {
  CLASS_CD, CLASS_IN, CLASS_TT, PTW_ACCESS, PTW_ADDR_SIZE, PTW_OK, PTW_PERMISSION, PTW_TRANSLATION, PTW_WALK_EABT,
  WalkResult, levelShift, s1StartLevel, s1Table, walkS1, walkS2,
} from './walk';
import type { S1Table, S2Config } from './walk';

/** A wired interrupt pulse (the `virt` machine has no MSI for the SMMU). */
export interface SmmuIrq {
  line: SmmuIrqLine;
  /** GIC SPI number on `virt`. */
  spi: number;
}

/** The model's events: the common ones plus its wired interrupts and event records. */
export type SmmuV3Events = IOMMUModelEvents & {
  /** An interrupt line was pulsed (eventq, cmdq-sync, gerror). */
  irq: (irq: SmmuIrq) => void;
  /** An event record was written to the event queue (32 bytes, as in guest memory). */
  eventRecord: (record: Uint8Array) => void;
};

/** One event to record (IHI 0070 7.3); fields left 0 when the type has none. */
interface EventInfo {
  type: number;
  sid: number;
  addr: bigint;
  addr2: bigint;
  rnw: boolean;
  s2: boolean;
  cls: number;
}

/** A decoded STE (+ CD): what QEMU's SMMUTransCfg holds. */
interface TransCfg {
  aborted: boolean;
  bypassed: boolean;
  s1: boolean;
  s2: S2Config | undefined;
  asid: number;
  vmid: number;
  tbi: number;
  record: boolean;
  tt: [S1Table, S1Table];
  /** IOTLB buckets of (ASID, VMID, TG) for TTB0 / TTB1 (stage 2 only: both the S2 bucket). */
  buckets: [number, number];
  /**
   * translate()'s hit path: input addresses below `hotLimit` (0: none) use
   * IOTLB bucket `hotBucket` with levels from `hotStart` (block sizes
   * `hotFrames`); `hotPermMask` is the access bits a cached entry is checked
   * for (QEMU checks only writes against a stage-1 entry).
   */
  hotLimit: number;
  hotBucket: number;
  hotStart: number;
  hotFrames: readonly number[];
  hotPermMask: number;
}

interface Queue {
  base: bigint;
  log2size: number;
  prod: number;
  cons: number;
}

const TWO48n = 1n << 48n;
const TWO53n = 1n << 53n;
const U64 = (1n << 64n) - 1n;
const DISABLED_TT: S1Table = Object.freeze({ disabled: true, tsz: 0, granule: 0, ttb: 0, had: false, start: 4, root: 0, limit: 0 });

/** Failure of a configuration fetch: the event to record. */
class ConfigFault {
  constructor(readonly type: number, readonly addr = 0n, readonly addr2 = 0n, readonly s2 = false, readonly cls = 0) {}
}

export class SmmuV3Device implements MmioIOMMUModel, AddressSpaceOwner {
  readonly kind = 'smmuv3' as const;
  readonly events = new EventEmitter() as TypedEmitter<SmmuV3Events>;

  private readonly stage1: boolean;
  private readonly stage2: boolean;
  private readonly qemu72: boolean;
  private readonly idr0: number;

  private cr0 = 0;
  private cr0ack = 0;
  private cr1 = 0;
  private cr2 = 0;
  private gbpa = 0;
  private irqCtrl = 0;
  private gerror = 0;
  private gerrorn = 0;
  private gerrorIrqCfg0 = 0n;
  private gerrorIrqCfg1 = 0;
  private gerrorIrqCfg2 = 0;
  private eventqIrqCfg0 = 0n;
  private eventqIrqCfg1 = 0;
  private eventqIrqCfg2 = 0;
  private strtabBase = 0n;
  private strtabBaseCfg = 0;
  private twoLevel = false;
  private sidSplit = 0;
  private readonly cmdq: Queue = { base: 0n, log2size: 0, prod: 0, cons: 0 };
  private readonly eventq: Queue = { base: 0n, log2size: 0, prod: 0, cons: 0 };

  /** Decoded configurations by StreamID (QEMU's per-device config cache). */
  private readonly configs: Array<TransCfg | undefined> = new Array<TransCfg | undefined>(1 << SIDSIZE).fill(undefined);
  private readonly iotlb = new SmmuIotlb();
  private readonly spaces: AddressSpaceRegistry;
  private readonly walk = new WalkResult();
  private readonly walk2 = new WalkResult();
  private readonly buf64 = new Uint8Array(64);
  private readonly buf8 = new Uint8Array(8);
  private readonly record = new Uint8Array(32);
  /** Set while TLBI notification decodes configurations: no event is recorded (QEMU inval_ste_allowed). */
  private quiet = false;

  constructor(readonly config: Readonly<SmmuV3Config>, private readonly mem: GuestMemory) {
    this.stage1 = config.stage !== '2';
    this.stage2 = config.stage !== '1';
    this.qemu72 = config.stage === '1';
    this.idr0 = idr0(config.stage);
    this.spaces = new AddressSpaceRegistry(this, 'smmuv3');
    this.initRegs();
  }

  /** QEMU smmuv3_init_regs. */
  private initRegs(): void {
    this.cr0 = this.cr0ack = this.cr1 = this.cr2 = 0;
    // QEMU 7.2 has no GBPA (reads 0, writes ignored); 8.1+ resets it to 0x1000.
    this.gbpa = this.qemu72 ? 0 : GBPA_RESET;
    this.irqCtrl = this.gerror = this.gerrorn = 0;
    this.gerrorIrqCfg0 = this.eventqIrqCfg0 = 0n;
    this.gerrorIrqCfg1 = this.gerrorIrqCfg2 = this.eventqIrqCfg1 = this.eventqIrqCfg2 = 0;
    this.strtabBase = 0n;
    this.strtabBaseCfg = 0;
    this.twoLevel = false;
    this.sidSplit = 0;
    // CMDQ_BASE and EVENTQ_BASE reset with LOG2SIZE preset to 19 (the findings).
    for (const q of [this.cmdq, this.eventq]) {
      q.base = BigInt(QUEUE_LOG2_MAX);
      q.log2size = QUEUE_LOG2_MAX;
      q.prod = q.cons = 0;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Registers

  mmioRead(offset: number, size: 4 | 8): bigint {
    if (!this.validAccess(offset, size, 'read')) return 0n;
    const off = offset & ~0x10000; // page 1 is an exact alias of page 0 (the findings)
    if (size === 8) {
      // QEMU smmu_readll: only the 64-bit registers; any other 8-byte read is 0.
      switch (off) {
        case R.GERROR_IRQ_CFG0: return this.gerrorIrqCfg0;
        case R.STRTAB_BASE: return this.strtabBase;
        case R.CMDQ_BASE: return this.cmdq.base;
        case R.EVENTQ_BASE: return this.eventq.base;
        default:
          this.guestError(`8-byte read at 0x${off.toString(16)} reads 0 (QEMU takes 4 bytes there)`);
          return 0n;
      }
    }
    return BigInt(this.readl(off) >>> 0);
  }

  private readl(off: number): number {
    if (off >= R.IDREGS && off < R.IDREGS + 0x30) return ID_REGS[(off - R.IDREGS) >> 2] ?? 0;
    if (off >= R.IDR0 && off <= R.IDR5) {
      switch (off) {
        case R.IDR0: return this.idr0;
        case R.IDR0 + 4: return IDR1;
        case R.IDR0 + 12: return IDR3;
        case R.IDR5: return IDR5;
        default: return 0;
      }
    }
    switch (off) {
      case R.IIDR: return 0;
      case R.AIDR: return AIDR;
      case R.CR0: return this.cr0;
      case R.CR0ACK: return this.cr0ack;
      case R.CR1: return this.cr1;
      case R.CR2: return this.cr2;
      case R.STATUSR: return 0;
      case R.GBPA: return this.gbpa;
      case R.IRQ_CTRL:
      case R.IRQ_CTRL_ACK: return this.irqCtrl;
      case R.GERROR: return this.gerror;
      case R.GERRORN: return this.gerrorn;
      case R.GERROR_IRQ_CFG0: return lo32(this.gerrorIrqCfg0);
      case R.GERROR_IRQ_CFG0 + 4: return hi32(this.gerrorIrqCfg0);
      case R.GERROR_IRQ_CFG1: return this.gerrorIrqCfg1;
      case R.GERROR_IRQ_CFG2: return this.gerrorIrqCfg2;
      case R.STRTAB_BASE: return lo32(this.strtabBase);
      case R.STRTAB_BASE + 4: return hi32(this.strtabBase);
      case R.STRTAB_BASE_CFG: return this.strtabBaseCfg;
      case R.CMDQ_BASE: return lo32(this.cmdq.base);
      case R.CMDQ_BASE + 4: return hi32(this.cmdq.base);
      case R.CMDQ_PROD: return this.cmdq.prod;
      case R.CMDQ_CONS: return this.cmdq.cons;
      case R.EVENTQ_BASE: return lo32(this.eventq.base);
      case R.EVENTQ_BASE + 4: return hi32(this.eventq.base);
      case R.EVENTQ_PROD: return this.eventq.prod;
      case R.EVENTQ_CONS: return this.eventq.cons;
      case R.EVENTQ_IRQ_CFG0: return lo32(this.eventqIrqCfg0);
      case R.EVENTQ_IRQ_CFG0 + 4: return hi32(this.eventqIrqCfg0);
      case R.EVENTQ_IRQ_CFG1: return this.eventqIrqCfg1;
      case R.EVENTQ_IRQ_CFG2: return this.eventqIrqCfg2;
      default: return 0; // unimplemented: RAZ
    }
  }

  mmioWrite(offset: number, size: 4 | 8, value: bigint): void {
    if (!this.validAccess(offset, size, 'write')) return;
    const off = offset & ~0x10000;
    const v = BigInt.asUintN(size * 8, value);
    if (size === 8) {
      // QEMU smmu_writell: only the 64-bit registers; any other 8-byte write is ignored.
      switch (off) {
        case R.GERROR_IRQ_CFG0: this.gerrorIrqCfg0 = v; return;
        case R.STRTAB_BASE: this.strtabBase = v; return;
        case R.CMDQ_BASE: this.setQueueBase(this.cmdq, v); return;
        case R.EVENTQ_BASE: this.setQueueBase(this.eventq, v); return;
        case R.EVENTQ_IRQ_CFG0: this.eventqIrqCfg0 = v; return;
        default:
          this.guestError(`8-byte write at 0x${off.toString(16)} ignored (QEMU takes 4 bytes there)`);
          return;
      }
    }
    this.writel(off, Number(v));
  }

  private writel(off: number, v: number): void {
    switch (off) {
      case R.CR0: {
        const wasOn = (this.cr0 & CR0_SMMUEN) !== 0;
        this.cr0 = v;
        this.cr0ack = (v & ~CR0_RESERVED) >>> 0;
        // Translation switched off: every device's translations cease to exist (C8).
        if (wasOn && (v & CR0_SMMUEN) === 0) this.unmapEverywhere();
        this.consumeCmdq(); // in case the command queue has been enabled
        return;
      }
      case R.CR1: this.cr1 = v; return;
      case R.CR2: this.cr2 = v; return;
      case R.IRQ_CTRL: this.irqCtrl = v; return;
      case R.GERRORN: this.writeGerrorn(v); this.consumeCmdq(); return;
      case R.GERROR_IRQ_CFG0: this.gerrorIrqCfg0 = setLo(this.gerrorIrqCfg0, v); return;
      case R.GERROR_IRQ_CFG0 + 4: this.gerrorIrqCfg0 = setHi(this.gerrorIrqCfg0, v); return;
      case R.GERROR_IRQ_CFG1: this.gerrorIrqCfg1 = v; return;
      case R.GERROR_IRQ_CFG2: this.gerrorIrqCfg2 = v; return;
      case R.GBPA:
        // QEMU 7.2 does not implement GBPA; 8.1+ takes a write with UPDATE (synchronously).
        if (!this.qemu72 && (v & GBPA_UPDATE) !== 0) this.gbpa = (v & ~GBPA_UPDATE) >>> 0;
        return;
      case R.STRTAB_BASE: this.strtabBase = setLo(this.strtabBase, v); return;
      case R.STRTAB_BASE + 4: this.strtabBase = setHi(this.strtabBase, v); return;
      case R.STRTAB_BASE_CFG:
        this.strtabBaseCfg = v;
        // QEMU: FMT=1 switches the 2-level format on for good (the findings: sticky).
        if (((v >>> 16) & 3) === 1) {
          this.sidSplit = (v >>> 6) & 0x1f;
          this.twoLevel = true;
        }
        return;
      case R.CMDQ_BASE: this.setQueueBase(this.cmdq, setLo(this.cmdq.base, v)); return;
      case R.CMDQ_BASE + 4: this.cmdq.base = setHi(this.cmdq.base, v); return;
      case R.CMDQ_PROD: this.cmdq.prod = v; this.consumeCmdq(); return;
      case R.CMDQ_CONS: this.cmdq.cons = v; return;
      case R.EVENTQ_BASE: this.setQueueBase(this.eventq, setLo(this.eventq.base, v)); return;
      case R.EVENTQ_BASE + 4: this.eventq.base = setHi(this.eventq.base, v); return;
      case R.EVENTQ_PROD: this.eventq.prod = v; return;
      case R.EVENTQ_CONS: this.eventq.cons = v; return;
      case R.EVENTQ_IRQ_CFG0: this.eventqIrqCfg0 = setLo(this.eventqIrqCfg0, v); return;
      case R.EVENTQ_IRQ_CFG0 + 4: this.eventqIrqCfg0 = setHi(this.eventqIrqCfg0, v); return;
      case R.EVENTQ_IRQ_CFG1: this.eventqIrqCfg1 = v; return;
      case R.EVENTQ_IRQ_CFG2: this.eventqIrqCfg2 = v; return;
      default: return; // read-only or unimplemented: write ignored
    }
  }

  /** Sizes 4 and 8 only, naturally aligned, inside the 128 KiB region (QEMU: MEMTX_ERROR otherwise). */
  private validAccess(offset: number, size: number, what: string): boolean {
    if ((size === 4 || size === 8) && Number.isInteger(offset) && offset >= 0 && offset + size <= MMIO_SIZE && offset % size === 0) return true;
    this.guestError(`${what} of size ${size} at offset ${offset} refused (4- or 8-byte aligned accesses inside the 128 KiB region)`);
    return false;
  }

  private setQueueBase(q: Queue, v: bigint): void {
    q.base = v;
    q.log2size = Math.min(Number(v & 0x1fn), QUEUE_LOG2_MAX); // LOG2SIZE above 19 is clamped
  }

  private writeGerrorn(v: number): void {
    const pending = this.gerror ^ this.gerrorn;
    const toggled = this.gerrorn ^ v;
    if (toggled & ~pending) this.guestError(`guest toggles non pending errors = 0x${((toggled & ~pending) >>> 0).toString(16)}`);
    this.gerrorn = v;
  }

  // ---------------------------------------------------------------------------------------------
  // Interrupts and event queue

  /** QEMU smmuv3_trigger_irq: GERROR bits toggle only when not pending; pulses are typed events. */
  private triggerIrq(line: SmmuIrqLine, gerrorMask = 0): void {
    let pulse: boolean;
    switch (line) {
      case 'eventq': pulse = (this.irqCtrl & IRQ_CTRL_EVENTQ_IRQEN) !== 0; break;
      case 'cmdqSync': pulse = true; break; // independent of IRQ_CTRL (the findings)
      case 'gerror': {
        const fresh = ~(this.gerror ^ this.gerrorn) & gerrorMask;
        if (!fresh) return;
        this.gerror = (this.gerror ^ fresh) >>> 0;
        pulse = (this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) !== 0;
        break;
      }
      default: pulse = false;
    }
    if (pulse) this.events.emit('irq', { line, spi: IRQ_SPI[line] });
  }

  private qIndex(q: Queue, v: number): number {
    return v & ((1 << q.log2size) - 1);
  }

  private qWrap(q: Queue, v: number): number {
    return (v >>> q.log2size) & 1;
  }

  private qEmpty(q: Queue): boolean {
    return this.qIndex(q, q.prod) === this.qIndex(q, q.cons) && this.qWrap(q, q.prod) === this.qWrap(q, q.cons);
  }

  private qFull(q: Queue): boolean {
    return this.qIndex(q, q.prod) === this.qIndex(q, q.cons) && this.qWrap(q, q.prod) !== this.qWrap(q, q.cons);
  }

  /** Index + wrap incremented in place, the bits above kept (QEMU queue_*_incr: deposit32). */
  private qIncr(q: Queue, v: number): number {
    const width = q.log2size + 1;
    const mask = width >= 32 ? 0xffff_ffff : (2 ** width - 1);
    return ((v & ~mask) | ((v + 1) & mask)) >>> 0;
  }

  private qEntry(q: Queue, index: number, size: number): bigint {
    return (q.base & BASE_ADDR_MASK) + BigInt(index * size);
  }

  /**
   * QEMU smmuv3_record_event. Returns whether the record reached the queue:
   * nothing is written with EVENTQEN=0; a full queue or a failed write
   * toggles GERROR.EVENTQ_ABT_ERR (QEMU 7.2 sets no EVENTQ_PROD.OVFLG).
   */
  private recordEvent(e: EventInfo): boolean {
    if (this.quiet || (this.cr0 & CR0_EVENTQEN) === 0) return false;
    const q = this.eventq;
    const rec = this.record;
    rec.fill(0);
    const dv = new DataView(rec.buffer);
    dv.setUint32(0, e.type, true);
    dv.setUint32(4, e.sid >>> 0, true);
    switch (e.type) {
      case EVT.F_STE_FETCH:
        setAddr2(dv, e.addr2);
        break;
      case EVT.F_CD_FETCH:
        setAddr(dv, e.addr);
        break;
      case EVT.F_WALK_EABT: case EVT.F_TRANSLATION: case EVT.F_ADDR_SIZE: case EVT.F_ACCESS: case EVT.F_PERMISSION:
        dv.setUint32(12, (e.rnw ? 1 << 3 : 0) | (e.s2 ? 1 << 7 : 0) | (e.cls << 8), true);
        setAddr(dv, e.addr);
        setAddr2(dv, e.addr2);
        break;
      default:
        break; // C_BAD_STREAMID, C_BAD_STE, C_BAD_CD: type and StreamID only (SSV 0: no substreams)
    }
    let ok = false;
    if (!this.qFull(q)) {
      const at = this.qEntry(q, this.qIndex(q, q.prod), 32);
      if (at < TWO53n && this.mem.write(Number(at), rec)) {
        q.prod = this.qIncr(q, q.prod);
        ok = true;
        this.events.emit('eventRecord', rec.slice());
        if (!this.qEmpty(q)) this.triggerIrq('eventq');
      }
    }
    if (!ok) this.triggerIrq('gerror', GERROR_EVENTQ_ABT_ERR);
    return ok;
  }

  // ---------------------------------------------------------------------------------------------
  // Command queue

  /** QEMU smmuv3_cmdq_consume: runs while not empty and CMDQ_ERR not pending; stops at a bad command. */
  private consumeCmdq(): void {
    const q = this.cmdq;
    if ((this.cr0 & CR0_CMDQEN) === 0) return;
    let error = 0;
    const cmd = new Uint8Array(16);
    const dv = new DataView(cmd.buffer);
    // At most 2^(LOG2SIZE+1) commands: CONS catches up with PROD.
    while (!this.qEmpty(q)) {
      if ((this.gerror ^ this.gerrorn) & GERROR_CMDQ_ERR) break;
      const at = this.qEntry(q, this.qIndex(q, q.cons), 16);
      if (!(at < TWO53n && this.mem.read(Number(at), cmd))) {
        error = CERROR_ABT;
        break;
      }
      error = this.runCommand(dv);
      if (error) break;
      q.cons = this.qIncr(q, q.cons);
    }
    if (error) {
      // CMDQ_CONS.ERR (bits 30:24); it stays after recovery (the findings).
      q.cons = ((q.cons & ~(0x7f << 24)) | (error << 24)) >>> 0;
      this.triggerIrq('gerror', GERROR_CMDQ_ERR);
    }
  }

  /** One command; returns a CERROR code or 0. */
  private runCommand(dv: DataView): number {
    const w0 = dv.getUint32(0, true);
    const w1 = dv.getUint32(4, true);
    const w2 = dv.getUint32(8, true);
    const w3 = dv.getUint32(12, true);
    const type = w0 & 0xff;
    const ssec = (w0 >>> 10) & 1;
    switch (type) {
      case CMD.SYNC:
        // CS bit 0 (SIG_IRQ) pulses the cmdq-sync line (QEMU tests CS & SIG_IRQ); MSIAddr/MSIData are ignored (the findings).
        if ((w0 >>> 12) & 1) this.triggerIrq('cmdqSync');
        return 0;
      case CMD.PREFETCH_CONFIG:
      case CMD.PREFETCH_ADDR:
        return 0;
      case CMD.CFGI_STE:
      case CMD.CFGI_CD:
      case CMD.CFGI_CD_ALL:
        if (ssec) return CERROR_ILL;
        // CFGI_CD / CD_ALL act as CFGI_STE (one cached STE+CD per device); no device has a StreamID above 16 bits.
        if (w1 <= 0xffff) {
          this.configs[w1] = undefined;
          this.unmapConfigChange(w1, w1);
        }
        return 0;
      case CMD.CFGI_STE_RANGE: {
        if (ssec) return CERROR_ILL;
        const range = w2 & 0x1f;
        const mask = 2 ** (range + 1) - 1;
        const start = w1 - (w1 % (mask + 1));
        const end = start + mask;
        for (let sid = Math.max(0, start); sid <= Math.min(end, 0xffff); sid++) this.configs[sid] = undefined;
        this.unmapConfigChange(start, end);
        return 0;
      }
      case CMD.TLBI_NH_ASID: {
        if (!this.stage1) return CERROR_ILL;
        const asid = w1 >>> 16;
        const vmid = this.stage2 ? w1 & 0xffff : -1;
        this.unmapWhole((c) => c.asid === asid && (vmid < 0 || c.vmid === vmid));
        this.iotlb.removeWhere((e) => e.asid === asid && (vmid < 0 || e.vmid === vmid));
        return 0;
      }
      case CMD.TLBI_NH_ALL:
        if (!this.stage1) return CERROR_ILL;
        if (this.stage2) {
          // With stage 2 the NH commands are VMID-scoped (IHI 0070 4.4.2).
          const vmid = w1 & 0xffff;
          this.unmapWhole((c) => c.vmid === vmid);
          this.iotlb.removeWhere((e) => e.s1 && e.vmid === vmid);
          return 0;
        }
        this.unmapWhole(() => true);
        this.iotlb.clear();
        return 0;
      case CMD.TLBI_NSNH_ALL:
        this.unmapWhole(() => true);
        this.iotlb.clear();
        return 0;
      case CMD.TLBI_NH_VA:
      case CMD.TLBI_NH_VAA:
        if (!this.stage1) return CERROR_ILL;
        this.rangeInval(type, w0, w1, w2, w3);
        return 0;
      case CMD.TLBI_S12_VMALL:
        if (!this.stage2) return 0; // QEMU 7.2: consumed as a no-op (the findings)
        {
          const vmid = w1 & 0xffff;
          this.unmapWhole((c) => c.vmid === vmid);
          this.iotlb.removeWhere((e) => e.vmid === vmid);
        }
        return 0;
      case CMD.TLBI_S2_IPA:
        if (!this.stage2) return 0;
        this.rangeInval(type, w0, w1, w2, w3);
        return 0;
      case CMD.ATC_INV:
        this.atcInval(w1, w2, w3);
        return 0;
      case CMD.TLBI_EL3_ALL: case CMD.TLBI_EL3_VA: case CMD.TLBI_EL2_ALL: case CMD.TLBI_EL2_ASID:
      case CMD.TLBI_EL2_VA: case CMD.TLBI_EL2_VAA: case CMD.PRI_RESP: case CMD.RESUME: case CMD.STALL_TERM:
        return 0; // QEMU: consumed without error although the features are absent
      default:
        this.guestError(`illegal command type ${type}`);
        return CERROR_ILL;
    }
  }

  /**
   * TLBI_NH_VA / NH_VAA / S2_IPA (QEMU smmuv3_range_inval): without TG one
   * page; with TG the range (NUM+1) << SCALE pages, split into aligned
   * power-of-two pieces, each invalidated (and notified) on its own.
   */
  private rangeInval(type: number, w0: number, w1: number, w2: number, w3: number): void {
    let addr = (BigInt(w3) << 32n) | BigInt((w2 & ~0xfff) >>> 0);
    const ttl = (w2 >>> 8) & 3;
    const tg = (w2 >>> 10) & 3;
    const num = (w0 >>> 12) & 0x1f;
    const scale = (w0 >>> 20) & 0x1f;
    const asid = type === CMD.TLBI_NH_VA ? w1 >>> 16 : -1;
    const vmid = this.stage2 ? w1 & 0xffff : -1;
    const s2ipa = type === CMD.TLBI_S2_IPA;
    if (tg === 0) {
      this.invalIova(asid, vmid, addr, 0, 1n, ttl, s2ipa, 0xfffn);
      return;
    }
    const granule = BigInt(tg * 2 + 10);
    const end = (addr + ((BigInt(num + 1) << BigInt(scale)) << granule) - 1n) & U64;
    // At most ~128 pieces: each is the largest aligned block that fits.
    for (let guard = 0; guard < 256; guard++) {
      const mask = addr <= end ? dmaAlignedPow2Mask(addr, end) : dmaAlignedPow2Mask(addr, U64);
      // A piece smaller than the granule (ADDR not aligned to TG) is 0 pages, as in QEMU.
      this.invalIova(asid, vmid, addr, tg, (mask + 1n) >> granule, ttl, s2ipa, mask);
      addr = (addr + mask + 1n) & U64;
      if (addr === ((end + 1n) & U64)) return;
    }
  }

  /**
   * QEMU smmu_iotlb_inv_iova, and the notifier UNMAPs of the same piece
   * [iova, iova + pieceMask] (QEMU would notify a mask of 2^64 - 1 for a
   * piece of 0 pages; the model notifies the piece, so that C2 holds).
   */
  private invalIova(asid: number, vmid: number, iova: bigint, tg: number, pages: bigint, ttl: number, s2ipa: boolean, pieceMask: bigint): void {
    const granule = tg ? BigInt(tg * 2 + 10) : 12n;
    const infoMask = ((pages << granule) - 1n) & U64;
    const matches = (e: IotlbEntry): boolean => (asid < 0 || e.asid === asid) && (vmid < 0 || e.vmid === vmid) && (s2ipa ? !e.s1 : e.s1);
    let removed: IotlbEntry[] | undefined;
    if (ttl && pages === 1n && asid >= 0 && iova < TWO48n) {
      // QEMU: the exact (asid, iova, tg, ttl) key first; done if it held an entry.
      const e = this.iotlb.get(this.iotlb.bucket(asid, vmid, tg), ttl, Number(iova >> 12n));
      if (e !== undefined && e.entry.iova === iova && matches(e)) removed = this.iotlb.removeWhere((x) => x === e);
    }
    removed ??= this.iotlb.removeWhere((e) => matches(e) && (
      (iova & ~e.entry.addrMask) === e.entry.iova || (e.entry.iova & ~infoMask) === iova));
    if (s2ipa) this.iotlb.removeWhere((e) => e.nested && (vmid < 0 || e.vmid === vmid));
    this.notifyRange(asid, vmid, iova, tg, pieceMask, removed, s2ipa);
  }

  /** ATC_INV: DEVIOTLB_UNMAP of [Address, + 2^(Size + 12)) to the StreamID's device-IOTLB listeners. */
  private atcInval(w1: number, w2: number, w3: number): void {
    const as = this.spaces.peek(w1 & 0xffff);
    if (as === undefined || w1 > 0xffff || (as.notifiers.flags & IOMMUNotifierFlag.DEVIOTLB_UNMAP) === 0) return;
    const sizeLog2 = Math.min((w2 & 0x3f) + 12, 64);
    const mask = (1n << BigInt(sizeLog2)) - 1n;
    const iova = ((BigInt(w3) << 32n) | BigInt((w2 & ~0xfff) >>> 0)) & ~mask;
    as.safely(() => as.notifiers.notify({
      type: IOMMUNotifierFlag.DEVIOTLB_UNMAP as 4,
      entry: { iova, translatedAddr: 0n, addrMask: mask, perm: IOMMUAccessFlags.NONE },
    }));
  }

  // ---------------------------------------------------------------------------------------------
  // Notifiers

  checkNotifierFlags(name: string, flags: number): void {
    if (flags & IOMMUNotifierFlag.MAP) {
      throw new Error(`${name}: SMMUv3 cannot serve MAP notifiers: the architecture has no caching mode, so a guest never tells the SMMU about new mappings (only UNMAP and DEVIOTLB_UNMAP are served)`);
    }
  }

  walker(as: ModelAddressSpace): LeafWalker | undefined {
    void as;
    return undefined; // no MAP notifier is ever registered (C1)
  }

  notificationError(as: ModelAddressSpace, message: string): void {
    this.guestError(`${as.name}: ${message}`);
  }

  addressSpace(sid: number, pasid?: number): ModelAddressSpace {
    void pasid; // only SSID 0 exists (IDR1.SSIDSIZE = 0)
    return this.spaces.get(sid);
  }

  /** The spaces with an UNMAP notifier. */
  private unmapListeners(): ModelAddressSpace[] {
    return this.spaces.spaces().filter((as) => (as.notifiers.flags & IOMMUNotifierFlag.UNMAP) !== 0);
  }

  /** The configuration of a listening StreamID, decoded without recording events (QEMU inval_ste_allowed). */
  private quietConfig(sid: number): TransCfg | undefined {
    this.quiet = true;
    try {
      const c = this.getConfig(sid);
      return c instanceof ConfigFault ? undefined : c;
    } finally {
      this.quiet = false;
    }
  }

  /** UNMAP of the whole space to the listeners of StreamIDs whose configuration `affected` selects (or cannot be decoded). */
  private unmapWhole(affected: (c: TransCfg) => boolean): void {
    for (const as of this.unmapListeners()) {
      const c = this.quietConfig(as.sid);
      if (c === undefined || affected(c)) as.notifyUnmap();
    }
  }

  /**
   * After CFGI_STE/CD (a range of StreamIDs): the guest may have changed the
   * STE or CD (abort, bypass, another ASID/VMID or table), so every
   * translation an UNMAP listener of those streams cached from the old
   * configuration may have ceased to exist (C8: a context entry changed).
   * The old configuration is not kept (it may not even be cached any more),
   * so the whole space is unmapped; a TLBI of the old ASID/VMID would not
   * reach these streams, whose new configuration no longer uses it.
   */
  private unmapConfigChange(first: number, last: number): void {
    for (const as of this.unmapListeners()) if (as.sid >= first && as.sid <= last) as.notifyUnmap();
  }

  private unmapEverywhere(): void {
    for (const as of this.unmapListeners()) as.notifyUnmap();
  }

  /**
   * UNMAPs of an invalidated piece to each listening StreamID whose
   * configuration uses the ASID/VMID: without TG the granule page of the
   * stream's table (QEMU smmuv3_notify_iova), widened to whole leaf entries
   * (the IOTLB entries it dropped, and the leaves the tables map at the
   * edges) so a listener never keeps part of a leaf (C5).
   */
  private notifyRange(asid: number, vmid: number, iova: bigint, tg: number, pieceMask: bigint, removed: IotlbEntry[], s2ipa: boolean): void {
    for (const as of this.unmapListeners()) {
      const c = this.quietConfig(as.sid);
      if (c === undefined || c.aborted || c.bypassed) continue;
      if (asid >= 0 && c.asid !== asid) continue;
      if (vmid >= 0 && c.vmid !== vmid) continue;
      if (s2ipa && c.s1) {
        // An IPA invalidation under a nested stream: its IOVAs are unknown, all go.
        as.notifyUnmap();
        continue;
      }
      let lo = iova;
      let hi = iova + pieceMask;
      if (tg === 0) {
        const g = this.granuleOf(c, iova);
        if (g === 0) continue;
        const m = (1n << BigInt(g)) - 1n;
        lo = iova & ~m;
        hi = lo + m;
      }
      for (const e of removed) {
        if (e.asid !== c.asid || e.vmid !== c.vmid) continue;
        const eEnd = e.entry.iova + e.entry.addrMask;
        if (e.entry.iova <= hi && eEnd >= lo) {
          if (e.entry.iova < lo) lo = e.entry.iova;
          if (eEnd > hi) hi = eEnd;
        }
      }
      for (const edge of [lo, hi]) {
        const leaf = this.leafAt(c, edge);
        if (leaf === undefined) continue;
        if (leaf.iova < lo) lo = leaf.iova;
        if (leaf.iova + leaf.addrMask > hi) hi = leaf.iova + leaf.addrMask;
      }
      if (hi > U64) hi = U64;
      if (lo <= hi) as.notifyUnmap(lo, hi);
    }
  }

  /** Granule (log2) of the table that translates `iova` for `c`, 0 when none. */
  private granuleOf(c: TransCfg, iova: bigint): number {
    if (!c.s1) return c.s2?.granule ?? 0;
    const tt = this.selectTt(c, iova);
    return tt === undefined || tt.disabled ? 0 : tt.granule;
  }

  /** The leaf the tables now map at `iova` (no event, no IOTLB fill), or undefined. */
  private leafAt(c: TransCfg, iova: bigint): IOMMUTLBEntry | undefined {
    if (iova >= TWO48n) return undefined;
    const r = this.walk2;
    if (this.walkTables(c, iova, Number(iova), IOMMUAccessFlags.NONE, r) !== PTW_OK) return undefined;
    const mask = (1n << BigInt(r.sizeLog2)) - 1n;
    return { iova: iova & ~mask, translatedAddr: BigInt(r.out), addrMask: mask, perm: r.perm as IOMMUAccessFlags };
  }

  // ---------------------------------------------------------------------------------------------
  // Configuration: stream table, STE, CD

  /** Reads `n` bytes at a 64-bit guest-physical address, or undefined outside RAM. */
  private fetch(addr: bigint, dst: Uint8Array): boolean {
    return addr < TWO53n && this.mem.read(Number(addr), dst);
  }

  /** The decoded configuration of `sid`, from the cache or the tables (QEMU smmuv3_get_config: failures are not cached). */
  private getConfig(sid: number): TransCfg | ConfigFault {
    const cached = this.configs[sid];
    if (cached !== undefined) return cached;
    const c = this.decodeConfig(sid);
    if (!(c instanceof ConfigFault)) this.configs[sid] = c;
    return c;
  }

  /** QEMU smmu_find_ste + decode_ste + smmu_get_cd + decode_cd. */
  private decodeConfig(sid: number): TransCfg | ConfigFault {
    const log2size = this.strtabBaseCfg & 0x3f;
    if (sid >= 2 ** Math.min(log2size, SIDSIZE)) return new ConfigFault(EVT.C_BAD_STREAMID);
    let steAddr: bigint;
    if (this.twoLevel) {
      const split = this.sidSplit;
      const shift = Math.max(5, log2size - split - 1 + 3);
      const base = this.strtabBase & BASE_ADDR_MASK & ~((1n << BigInt(shift)) - 1n);
      const l1 = base + BigInt(Math.floor(sid / 2 ** split) * 8);
      if (!this.fetch(l1, this.buf8)) return new ConfigFault(EVT.F_STE_FETCH, 0n, l1);
      const d = parseL1Std(this.buf8);
      if (d.span === 0) return new ConfigFault(EVT.C_BAD_STREAMID);
      const l2off = sid % 2 ** split;
      if (l2off > 2 ** d.span - 1) return new ConfigFault(EVT.C_BAD_STE);
      steAddr = (d.l2Ptr + BigInt(l2off * 64)) & U64;
    } else {
      const shift = BigInt(Math.min(log2size + 5, 64));
      steAddr = (this.strtabBase & BASE_ADDR_MASK & ~((1n << shift) - 1n)) + BigInt(sid * 64);
    }
    const raw = this.buf64;
    if (!this.fetch(steAddr, raw)) return new ConfigFault(EVT.F_STE_FETCH, 0n, steAddr);
    const ste = parseSte(raw);
    const badSte = new ConfigFault(EVT.C_BAD_STE);
    if (!ste.v) return badSte;
    const cfg: TransCfg = {
      aborted: false, bypassed: false, s1: false, s2: undefined, asid: -1, vmid: -1, tbi: 0, record: false,
      tt: [DISABLED_TT, DISABLED_TT], buckets: [-1, -1], hotLimit: 0, hotBucket: -1, hotStart: 0, hotFrames: FRAMES_4K, hotPermMask: 3,
    };
    if ((ste.config & 4) === 0) {
      cfg.aborted = true;
      return cfg;
    }
    if (ste.config === 4) {
      cfg.bypassed = true;
      return cfg;
    }
    const s1 = (ste.config & 1) !== 0;
    const s2 = (ste.config & 2) !== 0;
    // A stage the SMMU does not advertise is C_BAD_STE (IHI 0070 5.2; QEMU 7.2 for stage 2).
    if ((s1 && !this.stage1) || (s2 && !this.stage2)) return badSte;
    if (this.stage2) cfg.vmid = ste.s2Vmid;
    if (s2) {
      const s2cfg = this.decodeS2(ste);
      if (s2cfg === undefined) return badSte;
      cfg.s2 = s2cfg;
    }
    if (ste.s1CdMax !== 0 || ste.s1Stalld) return badSte;
    if (!s1) {
      const s2c = cfg.s2!;
      const b = this.iotlb.bucket(-1, cfg.vmid, granuleToTg(s2c.granule));
      cfg.buckets = [b, b];
      setHot(cfg, b, Math.min(s2c.startLevel, s1StartLevel(s2c.tsz, s2c.granule)), s2c.granule, s2c.tsz, 3);
      return cfg;
    }
    // The CD: at an IPA when stage 2 is on (IHI 0070 5.2 S1ContextPtr).
    let cdAddr = ste.s1ContextPtr;
    if (cfg.s2 !== undefined) {
      const r = this.walk;
      if (cdAddr >= TWO48n || walkS2(this.mem, cfg.s2, Number(cdAddr), IOMMUAccessFlags.RO, r) !== PTW_OK) {
        return new ConfigFault(s2EventType(r.status), 0n, cdAddr, true, CLASS_CD);
      }
      cdAddr = BigInt(r.out + (Number(cdAddr) % 2 ** r.sizeLog2));
    }
    if (!this.fetch(cdAddr, raw)) return new ConfigFault(EVT.F_CD_FETCH, ste.s1ContextPtr);
    if (!this.decodeCd(raw, cfg)) return new ConfigFault(EVT.C_BAD_CD);
    const t0 = cfg.tt[0];
    // Below 2^48, TTB0 is selected exactly below 2^(64 - T0SZ) (select_tt: bit 55 is 0, so never TTB1).
    if (!t0.disabled) setHot(cfg, cfg.buckets[0], s1StartLevel(t0.tsz, t0.granule), t0.granule, t0.tsz, cfg.s2 ? 3 : 2);
    return cfg;
  }

  /** QEMU decode_ste_s2_cfg (8.1+): the STE.S2* checks; undefined for C_BAD_STE. */
  private decodeS2(ste: ReturnType<typeof parseSte>): S2Config | undefined {
    if (!ste.s2Aa64) return undefined; // AArch32 tables are not supported (QEMU asserts)
    const granule = [12, 16, 14][ste.s2Tg];
    if (granule === undefined) return undefined;
    if (ste.s2Sl0 === 3) return undefined;
    const effPs = oasBits(Math.min(ste.s2Ps, OAS_ENC));
    if (ste.s2Ttb >> BigInt(effPs) !== 0n) return undefined;
    const tsz = ste.s2T0sz;
    if (tsz > 39 || tsz < (granule === 16 ? 64 - OAS_BITS : Math.max(64 - OAS_BITS, 16))) return undefined;
    const startLevel = (granule === 12 ? 2 : 3) - ste.s2Sl0;
    if (startLevel < 0) return undefined;
    // At most 16 concatenated start tables (Arm ARM D8.2.7).
    const concat = Math.floor((2 ** (64 - tsz) - 1) / 2 ** levelShift(startLevel - 1, granule)) + 1;
    if (concat > 16) return undefined;
    if (ste.s2Endi || ste.s2S) return undefined;
    return {
      vmid: ste.s2Vmid, granule, tsz, startLevel, ttb: Number(ste.s2Ttb), effPs, affd: ste.s2Affd, record: ste.s2R,
    };
  }

  /** QEMU decode_cd; false for C_BAD_CD. */
  private decodeCd(raw: Uint8Array, cfg: TransCfg): boolean {
    const cd = parseCd(raw);
    if (!cd.v || !cd.aa64 || !cd.a || cd.s || cd.ha || cd.hd) return false;
    const oas = Math.min(oasBits(cd.ips), OAS_BITS);
    cfg.s1 = true;
    cfg.tbi = cd.tbi;
    cfg.asid = cd.asid;
    cfg.record = cd.r;
    for (const i of [0, 1] as const) {
      const t = cd.tt[i];
      if (t.epd) continue; // TTBn with EPDn=1 is ignored entirely
      if (t.tsz < 16 || t.tsz > 39) return false;
      const granule = tgToGranule(t.tg, i);
      if (granule === 0 || cd.endi) return false;
      if (t.ttb >> BigInt(oas) !== 0n) return false;
      cfg.tt[i] = s1Table(t.tsz, granule, Number(t.ttb & (TWO48n - 1n)), t.had);
      cfg.buckets[i] = this.iotlb.bucket(cfg.asid, cfg.vmid, granuleToTg(granule));
    }
    return true;
  }

  /** QEMU select_tt: TTB0 for addresses with zeros above T0SZ, TTB1 with ones above T1SZ (TBI honoured). */
  private selectTt(c: TransCfg, iova: bigint): S1Table | undefined {
    const top = Number(iova >> 32n);
    const tbi = (top & 0x0080_0000) !== 0 ? (c.tbi >> 1) & 1 : c.tbi & 1;
    const t0 = c.tt[0];
    const t1 = c.tt[1];
    if (t0.tsz && bitsAbove(iova, t0.tsz, tbi) === 0n) return t0;
    if (t1.tsz) {
      const n = BigInt(t1.tsz - tbi * 8);
      if (bitsAbove(iova, t1.tsz, tbi) === (1n << n) - 1n) return t1;
    }
    if (!t0.tsz) return t0;
    if (!t1.tsz) return t1; // the disabled TTB1: a translation fault (the findings)
    return undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // Translation

  translate(sid: number, iova: bigint, access: IOMMUAccessFlags): TranslateResult {
    // The 64-bit IOVA (QEMU hwaddr: taken modulo 2^64) as a number when below 2^48, else -1.
    const ia = lowNumber(iova);
    const low = ia >= 0;
    // Hit path: SMMU on, decoded configuration, input address below its limit, IOTLB hit.
    if (low && (this.cr0 & CR0_SMMUEN) !== 0) {
      const c = this.configs[sid];
      if (c !== undefined && ia < c.hotLimit) {
        const e = this.iotlb.lookup(c.hotBucket, c.hotStart, c.hotFrames, Math.floor(ia / 4096));
        if (e !== undefined && (access & c.hotPermMask & ~e.entry.perm) === 0) return e.entry;
      }
    }
    return this.translateSlow(sid, low ? iova : BigInt.asUintN(64, iova), ia, access);
  }

  /** QEMU smmuv3_translate (`ia`: the input address as a number when below 2^48, else -1). */
  private translateSlow(sid: number, a: bigint, ia: number, access: IOMMUAccessFlags): TranslateResult {
    if ((this.cr0 & CR0_SMMUEN) === 0) {
      // GBPA: QEMU 7.2 has none (bypass); 8.1+ aborts with GBPA.ABORT, recording nothing.
      if (this.gbpa & GBPA_ABORT) return this.fault(sid, a, access, 0, false);
      return identityEntry(a, access || IOMMUAccessFlags.RW); // bypass: the permission asked for (QEMU)
    }
    if (!Number.isInteger(sid) || sid < 0 || sid > 0xffff) {
      this.guestError(`translate for StreamID ${sid}, not a 16-bit StreamID`);
      return this.fault(0, a, access, EVT.C_BAD_STREAMID, false);
    }
    const c = this.getConfig(sid);
    if (c instanceof ConfigFault) {
      return this.fail(sid, a, access, { type: c.type, sid, addr: c.addr, addr2: c.addr2, rnw: (access & 1) === 1, s2: c.s2, cls: c.cls });
    }
    if (c.aborted) return this.fault(sid, a, access, 0, false); // no event on abort
    if (c.bypassed) return identityEntry(a, access || IOMMUAccessFlags.RW);
    let bucket: number;
    let g: number;
    let start: number;
    let tt: S1Table | undefined;
    if (c.s1) {
      tt = ia >= 0 ? selectTtLow(c, ia) : this.selectTt(c, a);
      if (tt === undefined || tt.disabled) return this.ptwFault(sid, a, access, c, PTW_TRANSLATION, false, 0, 0);
      bucket = c.buckets[tt === c.tt[0] ? 0 : 1];
      g = tt.granule;
      start = tt.start;
    } else {
      const s2 = c.s2!;
      bucket = c.buckets[0];
      g = s2.granule;
      start = Math.max(0, Math.min(s2.startLevel, s1StartLevel(s2.tsz, g)));
    }
    const frames = framesOf(g);
    if (ia >= 0) {
      const e = this.iotlb.lookup(bucket, start, frames, Math.floor(ia / 4096));
      if (e !== undefined) {
        // QEMU checks only writes against a cached stage-1 leaf; with stage 2 reads are checked too.
        const missing = access & (c.s2 ? 3 : 2) & ~e.entry.perm;
        if (missing) return this.ptwFault(sid, a, access, c, PTW_PERMISSION, !c.s1, c.s1 ? 0 : CLASS_IN, c.s1 ? 0 : ia);
        return e.entry;
      }
    }
    const r = this.walk;
    const status = ia < 0 ? this.walkHigh(c, a, access, r) : this.walkTables(c, a, ia, access, r, tt);
    if (status !== PTW_OK) return this.ptwFault(sid, a, access, c, status, r.s2, r.cls, r.faultAddr);
    // The leaf's first 4 KiB frame (sizes are powers of two from 4 KiB: floor division is exact).
    const pages = PAGES[r.sizeLog2]!;
    const frame = ia >= 0 ? Math.floor(ia / 4096 / pages) * pages : 0;
    // The request's own bigint when it is the leaf's first byte: BigInt() of a number costs as much as a walk level.
    const first = frame * 4096;
    const entry: IOMMUTLBEntry = {
      iova: ia < 0 ? a & ~MASKS[r.sizeLog2]! : first === ia ? a : BigInt(first), translatedAddr: BigInt(r.out), addrMask: MASKS[r.sizeLog2]!,
      perm: r.perm as IOMMUAccessFlags,
    };
    if (ia >= 0 && r.level >= 0) {
      this.iotlb.insert({
        asid: c.asid, vmid: c.vmid, tg: granuleToTg(g), level: r.level, s1: c.s1, nested: c.s1 && c.s2 !== undefined, bucket, frame, entry,
      });
    }
    return entry;
  }

  /** An input address at or above 2^48 (only through translate()): walked, never cached. */
  private walkHigh(c: TransCfg, a: bigint, access: number, r: WalkResult): number {
    if (!c.s1) {
      r.s2 = true;
      r.cls = CLASS_IN;
      r.faultAddr = 0;
      return (r.status = PTW_TRANSLATION);
    }
    return this.walkTables(c, a, Number(a & (TWO48n - 1n)), access, r);
  }

  /**
   * The walk of `a` for `c`: stage 1, stage 2, or stage 1 with every table
   * address and the output translated by stage 2 (nested: the leaf is the
   * smaller of the two, its permission the intersection, and it is kept
   * only at a size that is a stage-1 level size: `r.level` -1 otherwise).
   */
  private walkTables(c: TransCfg, a: bigint, ia: number, access: number, r: WalkResult, selected?: S1Table): number {
    const write = (access & IOMMUAccessFlags.WO) !== 0;
    const s2 = c.s2;
    if (!c.s1) {
      const st = walkS2(this.mem, s2!, ia, access, r);
      if (st !== PTW_OK) r.cls = CLASS_IN;
      return st;
    }
    const tt = selected ?? this.selectTt(c, a);
    if (tt === undefined || tt.disabled) {
      r.s2 = false;
      return (r.status = PTW_TRANSLATION);
    }
    if (s2 === undefined) return walkS1(this.mem, tt, ia, write, r);
    const mem = this.mem;
    const st = walkS1(mem, tt, ia, write, r, (ipa, cls, res) => {
      const rr = this.walk2 === res ? new WalkResult() : this.walk2;
      if (walkS2(mem, s2, ipa, IOMMUAccessFlags.RO, rr) !== PTW_OK) {
        res.status = rr.status;
        res.s2 = true;
        res.cls = cls;
        res.faultAddr = rr.status === PTW_WALK_EABT ? rr.faultAddr : ipa;
        return -1;
      }
      return rr.out + (ipa % 2 ** rr.sizeLog2);
    });
    if (st !== PTW_OK) return st;
    const s1Size = r.sizeLog2;
    const s1Perm = r.perm;
    const ipa = r.out + (ia % 2 ** s1Size);
    const rr = this.walk2 === r ? new WalkResult() : this.walk2;
    if (walkS2(mem, s2, ipa, access, rr) !== PTW_OK) {
      r.status = rr.status;
      r.s2 = true;
      r.cls = CLASS_IN;
      r.faultAddr = rr.status === PTW_WALK_EABT ? rr.faultAddr : ipa;
      return r.status;
    }
    const size = Math.min(s1Size, rr.sizeLog2);
    let level = -1;
    for (let l = r.level; l <= 3; l++) if (levelShift(l, tt.granule) === size) level = l;
    r.sizeLog2 = size;
    r.level = level;
    const out = rr.out + (ipa % 2 ** rr.sizeLog2);
    r.out = out - (out % 2 ** size);
    r.perm = s1Perm & rr.perm;
    r.s2 = false;
    return (r.status = PTW_OK);
  }

  /** A walk failure: the event QEMU records (R / S2R decide for translation-class faults; WALK_EABT always). */
  private ptwFault(sid: number, a: bigint, access: number, c: TransCfg, status: number, s2: boolean, cls: number, faultAddr: number): IOMMUFault {
    const rnw = (access & 1) === 1;
    const record = s2 ? c.s2?.record ?? false : c.record;
    let type: number;
    switch (status) {
      case PTW_WALK_EABT:
        return this.fail(sid, a, access, { type: EVT.F_WALK_EABT, sid, addr: a, addr2: BigInt(faultAddr), rnw, s2, cls: cls || CLASS_TT });
      case PTW_PERMISSION: type = EVT.F_PERMISSION; break;
      case PTW_ACCESS: type = EVT.F_ACCESS; break;
      case PTW_ADDR_SIZE: type = EVT.F_ADDR_SIZE; break;
      default: type = EVT.F_TRANSLATION;
    }
    if (!record) return this.fault(sid, a, access, type, false);
    // Stage-2 faults report the IPA in ADDR2 (IHI 0070 7.3.12); stage 1 as QEMU 7.2: CLASS and ADDR2 0.
    return this.fail(sid, a, access, { type, sid, addr: a, addr2: s2 ? BigInt(faultAddr) : 0n, rnw, s2, cls: s2 ? cls : 0 });
  }

  private fail(sid: number, a: bigint, access: number, e: EventInfo): IOMMUFault {
    const recorded = this.recordEvent(e);
    return this.fault(sid, a, access, e.type, recorded);
  }

  private fault(sid: number, iova: bigint, access: number, reason: number, recorded: boolean): IOMMUFault {
    const f: IOMMUFault = { fault: true, reason, recorded, sid, iova, access: access as IOMMUAccessFlags };
    this.events.emit('fault', f);
    return f;
  }

  /** A device reads through the SMMU (page by page; faulting pages read as zeros). */
  dmaRead(sid: number, iova: bigint, len: number): DmaReadResult {
    return dmaRead(this.mem, (i, w) => this.translate(sid, i, w ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO), iova, len);
  }

  /** A device writes through the SMMU (bytes of faulting pages are dropped). */
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): DmaResult {
    return dmaWrite(this.mem, (i, w) => this.translate(sid, i, w ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO), iova, data);
  }

  // ---------------------------------------------------------------------------------------------
  // Reset, errors, inspection

  /** System reset: registers to reset values, caches dropped, listeners told (C8). */
  reset(): void {
    this.unmapEverywhere();
    this.initRegs();
    this.configs.fill(undefined);
    this.iotlb.clear();
  }

  private guestError(message: string): void {
    this.events.emit('guestError', `smmuv3: ${message}`);
  }

  /** Number of IOTLB entries (tests, tools). */
  get iotlbSize(): number {
    return this.iotlb.size;
  }
}

/** Block size in 4 KiB frames of each level, per granule (Arm ARM D8.2). */
const FRAMES_BY_GRANULE = new Map<number, readonly number[]>([12, 14, 16].map((g) => [g, [0, 1, 2, 3].map((l) => 2 ** (levelShift(l, g) - 12))]));
const FRAMES_4K = FRAMES_BY_GRANULE.get(12)!;

function framesOf(granule: number): readonly number[] {
  return FRAMES_BY_GRANULE.get(granule) ?? FRAMES_4K;
}

/** 4 KiB frames in 2^n bytes (n >= 12). */
const PAGES: readonly number[] = Array.from({ length: 65 }, (_, n) => 2 ** Math.max(0, n - 12));

/** addrMask of a leaf of 2^n bytes. */
const MASKS: readonly bigint[] = Array.from({ length: 65 }, (_, n) => (1n << BigInt(n)) - 1n);

/** Sets translate()'s hit-path fields of a configuration (input limit 2^(64 - tsz), at most 2^48). */
function setHot(c: TransCfg, bucket: number, start: number, granule: number, tsz: number, permMask: number): void {
  c.hotLimit = 2 ** Math.min(48, 64 - tsz);
  c.hotBucket = bucket;
  c.hotStart = Math.max(0, start);
  c.hotFrames = framesOf(granule);
  c.hotPermMask = permMask;
}

/** Scratch for `lowNumber`: Number(bigint) costs several times a typed-array store on node 20. */
const U64_SCRATCH = new BigUint64Array(1);
const U32_VIEW = new Uint32Array(U64_SCRATCH.buffer);
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `v` modulo 2^64 as a number when that is below 2^48, else -1. */
function lowNumber(v: bigint): number {
  U64_SCRATCH[0] = v;
  const hi = LITTLE ? U32_VIEW[1]! : U32_VIEW[0]!;
  if (hi >= 0x1_0000) return -1;
  return hi * 0x1_0000_0000 + (LITTLE ? U32_VIEW[0]! : U32_VIEW[1]!);
}

/** The event type of a failed stage-2 walk. */
function s2EventType(status: number): number {
  switch (status) {
    case PTW_WALK_EABT: return EVT.F_WALK_EABT;
    case PTW_PERMISSION: return EVT.F_PERMISSION;
    case PTW_ACCESS: return EVT.F_ACCESS;
    case PTW_ADDR_SIZE: return EVT.F_ADDR_SIZE;
    default: return EVT.F_TRANSLATION;
  }
}

/** TG of the IOTLB key (QEMU: (granule - 10) / 2). */
function granuleToTg(granule: number): number {
  return (granule - 10) >> 1;
}

/**
 * select_tt for an input address below 2^48: its bit 55 and top byte are 0,
 * so TBI does not matter and TTB1 (all ones above T1SZ) never matches.
 */
function selectTtLow(c: TransCfg, ia: number): S1Table | undefined {
  const t0 = c.tt[0];
  if (t0.tsz && ia < t0.limit) return t0;
  if (!t0.tsz) return t0;
  if (!c.tt[1].tsz) return c.tt[1];
  return undefined;
}

/** Bits [64 - tsz, 64 - 8 * tbi) of iova (QEMU select_tt's extract64). */
function bitsAbove(iova: bigint, tsz: number, tbi: number): bigint {
  const n = tsz - tbi * 8;
  if (n <= 0) return 0n;
  return (iova >> BigInt(64 - tsz)) & ((1n << BigInt(n)) - 1n);
}

const lo32 = (v: bigint): number => Number(v & 0xffff_ffffn);
const hi32 = (v: bigint): number => Number((v >> 32n) & 0xffff_ffffn);
const setLo = (v: bigint, w: number): bigint => (v & ~0xffff_ffffn) | BigInt(w >>> 0);
const setHi = (v: bigint, w: number): bigint => (v & 0xffff_ffffn) | (BigInt(w >>> 0) << 32n);

function setAddr(dv: DataView, a: bigint): void {
  dv.setUint32(16, lo32(a), true);
  dv.setUint32(20, hi32(a), true);
}

/** ADDR2 (QEMU EVT_SET_ADDR2: bits 63:3). */
function setAddr2(dv: DataView, a: bigint): void {
  dv.setUint32(24, (lo32(a) & ~7) >>> 0, true);
  dv.setUint32(28, hi32(a), true);
}

