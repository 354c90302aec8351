/**
 * The AMD-Vi device: MMIO registers, device table, IOTLB, command buffer,
 * event log, MSI, notifiers. Two readings, chosen by `config.profile`:
 * `spec` follows the AMD IOMMU Specification 48882 and `qemu-7.2` QEMU 7.2's
 * amd-iommu (shared findings, qemu-7.2-amdvi-findings.md). Each behaviour
 * below names the document it follows. Internal: other layers use index.ts.
 */
import { EventEmitter } from 'node:events';
import { IOMMUAccessFlags } from '../../core/access';
import { AddressSpaceRegistry, GuestActions, identityEntry } from '../../core/address-spaces';
import type { AddressSpaceOwner, ModelAddressSpace } from '../../core/address-spaces';
import type { LeafWalker } from '../../core/leaf';
import type { IOMMUFault, IOMMUModelEvents, MmioIOMMUModel, TranslateResult } from '../../core/model';
import { U64_MAX, hex } from '../../core/guest-addr';
import { IOMMUNotifierFlag } from '../../core/tlb-entry';
import type { IOMMUTLBEntry } from '../../core/tlb-entry';
import type { TypedEmitter } from '../../core/typed-events';
import { WalkSession, budgetOption } from '../../core/walk-budget';
import { dmaRead, dmaWrite } from '../../memory/dma';
import type { DmaReadResult, DmaResult } from '../../memory/dma';
import type { GuestMemory } from '../../memory/guest-memory';
import type { PageWordsSource } from '../../memory/sparse-ram';
import type { AmdViConfig } from './config';
import { AmdViIotlb, IotlbEntry } from './iotlb';
import {
  ADDR_MASK_51_12, CAP_HEADER_BASE, CAP_NPCACHE, CMD, CTRL, EVENT, EVF, EXT_FEATURES, INT_WINDOW_FIRST, INT_WINDOW_LAST,
  MMIO_SIZE, PTR_MASK, REG, STATUS,
} from './regs';
import { DteDecoder, commandReserved, decodeCommand, encodeEvent } from './structures';
import type { Command, Dte } from './structures';
import { QEMU_WALK_STEP_LIMIT, newWalkResult, pageWordsOf, syncWalker, walkQemu72, walkSpec } from './walk';

/** Default work bound of the notifier syncs of one guest action (page-table entries read). */
export const AMDVI_SYNC_WALK_BUDGET = 2 ** 24;

/** Work bounds of the model. */
export interface AmdViLimits {
  /**
   * Page-table entries the notifier syncs of one guest action may read (a number >= 0, Infinity allowed; else a
   * RangeError); past it the syncs stop, the listeners' views stay as they were and `syncIncomplete` is raised.
   */
  syncWalkBudget?: number;
}

const TWO_32 = 4294967296;

/** The iova's 32-bit halves without allocating (a bigint written into a typed array). */
const IOVA_U64 = new BigUint64Array(1);
const IOVA_U32 = new Uint32Array(IOVA_U64.buffer);
const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const LO = LITTLE ? 0 : 1;
const HI = LITTLE ? 1 : 0;

/** addrMask of a 2^shift page, shift 12..64. */
const MASKS: bigint[] = [];
for (let s = 0; s <= 64; s++) MASKS.push((1n << BigInt(s)) - 1n);

/**
 * Registers the spec lets software write, with their writable bits (spec
 * 48882 "MMIO Registers"); other bits read as zero. STATUS is handled apart
 * (RW1C), EXT_FEATURES is read-only.
 */
const SPEC_WRITABLE = new Map<number, bigint>([
  [REG.DEVTAB_BASE, 0x000f_ffff_ffff_f1ffn],
  [REG.CMD_BASE, 0x0f0f_ffff_ffff_f000n],
  [REG.EVT_BASE, 0x0f0f_ffff_ffff_f000n],
  [REG.CONTROL, U64_MAX],
  [REG.EXCL_BASE, 0x000f_ffff_ffff_f003n],
  [REG.EXCL_LIMIT, 0x000f_ffff_ffff_f000n],
  [REG.PPR_BASE, 0x0f0f_ffff_ffff_f000n],
  [REG.CMD_HEAD, BigInt(PTR_MASK)],
  [REG.CMD_TAIL, BigInt(PTR_MASK)],
  [REG.EVT_HEAD, BigInt(PTR_MASK)],
  [REG.EVT_TAIL, BigInt(PTR_MASK)],
  [REG.PPR_HEAD, BigInt(PTR_MASK)],
  [REG.PPR_TAIL, BigInt(PTR_MASK)],
]);

/** Registers QEMU 7.2's amdvi_mmio_write stores (it has no case for STATUS, EXCL_BASE, EXT_FEATURES): every bit written. */
const QEMU72_WRITABLE = new Set<number>([
  REG.CONTROL, REG.DEVTAB_BASE, REG.CMD_HEAD, REG.CMD_BASE, REG.CMD_TAIL, REG.EVT_BASE, REG.EVT_HEAD, REG.EVT_TAIL,
  REG.EXCL_LIMIT, REG.PPR_BASE, REG.PPR_HEAD, REG.PPR_TAIL,
]);

export class AmdViDevice implements MmioIOMMUModel, AddressSpaceOwner {
  readonly kind = 'amd-vi' as const;
  readonly events = new EventEmitter() as TypedEmitter<IOMMUModelEvents>;
  /** The IOMMU capability header at PCI config 0x40 (NpCache is bit 26). */
  readonly capabilityHeader: number;

  private readonly q72: boolean;
  private readonly regs = new DataView(new ArrayBuffer(MMIO_SIZE));
  private readonly iotlb = new AmdViIotlb();
  private readonly spaces: AddressSpaceRegistry;
  private readonly dteDecoder = new DteDecoder();
  private readonly walkOut = newWalkResult();
  private readonly pw: PageWordsSource | undefined;
  /**
   * Guest actions (an MMIO write with every command it runs, a notifier
   * registration with its replay), each under one work bound shared by all
   * its sync walks, and the error boundary that reports a sync cut by it
   * (`syncIncomplete` once per device and action: GuestActions).
   */
  private readonly actions: GuestActions;
  private readonly eventBuf = new Uint8Array(16);
  private readonly cmdBuf = new Uint8Array(16);
  private msiAddr: bigint | undefined;
  private msiData: number | undefined;

  // Spec profile state.
  /** Cached DTEs by DeviceID (spec: the IOMMU may cache DTEs until INVALIDATE_DEVTAB_ENTRY). */
  private dteCache: Array<Dte | undefined> = [];
  /** The command processor stopped at an illegal command or an error (cleared by CmdBufEn 0 -> 1). */
  private cmdHalted = false;
  /** The event log stopped on overflow or a bad pointer (cleared by EventLogEn 0 -> 1). */
  private evtStopped = false;

  // QEMU 7.2 profile state (its AMDVIState fields).
  private devtab = 0;
  private cmdbuf = 0;
  private cmdbufLen = 1;
  private cmdHead = 0;
  private cmdTail = 0;

  constructor(readonly config: Readonly<AmdViConfig>, private readonly mem: GuestMemory, limits: AmdViLimits = {}) {
    this.q72 = config.profile === 'qemu-7.2';
    this.pw = pageWordsOf(mem);
    this.msiAddr = config.msiAddr;
    this.msiData = config.msiData;
    this.actions = new GuestActions(
      new WalkSession(budgetOption('amd-vi', 'syncWalkBudget', limits.syncWalkBudget, AMDVI_SYNC_WALK_BUDGET)),
      this.events, 'amd-vi',
    );
    this.spaces = new AddressSpaceRegistry(this, 'amd-vi', { actions: this.actions });
    // QEMU 7.2 sets NpCache in AMDVI_CAPAB_FEATURES although it serves no MAP notifier.
    this.capabilityHeader = (CAP_HEADER_BASE | (this.q72 || config.npCache ? CAP_NPCACHE : 0)) >>> 0;
    this.resetRegisters();
  }

  // ---- registers ------------------------------------------------------------------------------

  private resetRegisters(): void {
    new Uint8Array(this.regs.buffer).fill(0);
    this.regs.setBigUint64(REG.EXT_FEATURES, EXT_FEATURES, true);
    this.dteCache = [];
    this.cmdHalted = this.evtStopped = false;
    this.devtab = this.cmdbuf = this.cmdHead = this.cmdTail = 0;
    this.cmdbufLen = 1;
    this.iommuEn = this.exclusionOn = false;
  }

  private reg(offset: number): bigint {
    return this.regs.getBigUint64(offset, true);
  }

  private setReg(offset: number, value: bigint): void {
    this.regs.setBigUint64(offset, BigInt.asUintN(64, value), true);
  }

  private ctrl(): number {
    return this.regs.getUint32(REG.CONTROL, true);
  }

  private get enabled(): boolean {
    return this.iommuEn;
  }

  /** CONTROL.IommuEn (kept in a field: translate() reads it on every call). */
  private iommuEn = false;
  /** Spec: EXCL_BASE.ExEn (kept in a field for the same reason). */
  private exclusionOn = false;

  /** Reads `size` bytes at `offset`; outside the 16 KiB region: all ones (QEMU amdvi_mmio_read). */
  mmioRead(offset: number, size: 4 | 8): bigint {
    if (!Number.isInteger(offset) || offset < 0 || offset + size > MMIO_SIZE) return size === 8 ? U64_MAX : 0xffff_ffffn;
    return size === 8 ? this.regs.getBigUint64(offset, true) : BigInt(this.regs.getUint32(offset, true));
  }

  mmioWrite(offset: number, size: 4 | 8, value: bigint): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + size > MMIO_SIZE) return;
    const reg = offset & ~7;
    this.actions.run(() => {
      if (this.q72) this.writeQemu72(reg, offset, size, value);
      else this.writeSpec(reg, offset, size, value);
    });
  }

  /** The 64-bit register `reg` after writing `size` bytes of `value` at `offset` into `old`. */
  private static merge(old: bigint, reg: number, offset: number, size: number, value: bigint): bigint {
    if (size === 8 && offset === reg) return BigInt.asUintN(64, value);
    const shift = BigInt((offset - reg) * 8);
    const mask = ((1n << BigInt(size * 8)) - 1n) << shift;
    return (old & ~mask) | ((value << shift) & mask);
  }

  /** QEMU 7.2: raw storage of the registers it has a case for, then its handler. */
  private writeQemu72(reg: number, offset: number, size: 4 | 8, value: bigint): void {
    if (!QEMU72_WRITABLE.has(reg)) return;
    this.setReg(reg, AmdViDevice.merge(this.reg(reg), reg, offset, size, value));
    const latch = offset !== reg || size === 8; // DEVTAB and CMD_BASE act only on an 8-byte or high-dword write (source)
    switch (reg) {
      case REG.CONTROL: this.controlWritten(); break;
      case REG.DEVTAB_BASE:
        if (latch) this.devtab = Number(this.reg(reg) & ADDR_MASK_51_12);
        break;
      case REG.CMD_BASE:
        if (latch) {
          const v = this.reg(reg);
          this.cmdbuf = Number(v & ADDR_MASK_51_12);
          this.cmdbufLen = 2 ** Number((v >> 56n) & 0xfn);
          // Internal head/tail only: the CMD_HEAD / CMD_TAIL registers keep their values (source).
          this.cmdHead = this.cmdTail = 0;
        }
        break;
      case REG.CMD_HEAD:
        this.cmdHead = Number(this.reg(reg) & BigInt(PTR_MASK));
        this.runCommands();
        break;
      case REG.CMD_TAIL:
        this.cmdTail = Number(this.reg(reg) & BigInt(PTR_MASK));
        this.runCommands();
        break;
      default: break; // EVT_*, EXCL_LIMIT, PPR_*: stored, unused
    }
  }

  /** Spec 48882: defined fields only, STATUS write-1-to-clear, EXT_FEATURES read-only. */
  private writeSpec(reg: number, offset: number, size: 4 | 8, value: bigint): void {
    if (reg === REG.STATUS) {
      const w = AmdViDevice.merge(0n, reg, offset, size, value);
      this.setReg(reg, this.reg(reg) & ~(w & BigInt(STATUS.RW1C)));
      return;
    }
    const mask = SPEC_WRITABLE.get(reg);
    if (mask === undefined) return;
    const before = this.reg(reg);
    this.setReg(reg, AmdViDevice.merge(before, reg, offset, size, value) & mask);
    switch (reg) {
      case REG.CONTROL: this.controlWritten(Number(before & 0xffff_ffffn)); break;
      case REG.DEVTAB_BASE:
        // A new device table: cached DTEs describe the old one.
        if (this.reg(reg) !== before) this.dteCache = [];
        break;
      case REG.CMD_HEAD:
      case REG.CMD_TAIL:
        this.runCommands();
        break;
      case REG.EXCL_BASE:
        this.exclusionOn = (this.reg(reg) & 1n) !== 0n;
        break;
      default: break;
    }
  }

  /**
   * CONTROL written. Both: CmdBufRun = IommuEn && CmdBufEn and EventLogRun =
   * IommuEn && EventLogEn (spec: also not halted / overflowed; CmdBufEn or
   * EventLogEn 0 -> 1 restarts them); pending commands run (QEMU runs them on
   * every CONTROL write). IommuEn changes re-sync the notifiers (C8).
   */
  private controlWritten(before = -1): void {
    const now = this.ctrl();
    if (!this.q72 && before >= 0) {
      if ((now & CTRL.CMD_BUF_EN) !== 0 && (before & CTRL.CMD_BUF_EN) === 0) this.cmdHalted = false;
      if ((now & CTRL.EVENT_LOG_EN) !== 0 && (before & CTRL.EVENT_LOG_EN) === 0) this.evtStopped = false;
    }
    this.iommuEn = (now & CTRL.IOMMU_EN) !== 0;
    this.updateRunBits();
    if (this.enabled !== this.wasEnabled) {
      this.wasEnabled = this.enabled;
      this.resyncAll();
    }
    this.runCommands();
  }

  /** IommuEn as of the last CONTROL write (a change re-syncs the notifiers). */
  private wasEnabled = false;

  private cmdRunning(): boolean {
    const c = this.ctrl();
    return (c & CTRL.IOMMU_EN) !== 0 && (c & CTRL.CMD_BUF_EN) !== 0 && !this.cmdHalted;
  }

  private evtRunning(): boolean {
    const c = this.ctrl();
    return (c & CTRL.IOMMU_EN) !== 0 && (c & CTRL.EVENT_LOG_EN) !== 0 && !this.evtStopped;
  }

  private updateRunBits(): void {
    let s = this.regs.getUint32(REG.STATUS, true) & ~(STATUS.CMD_BUF_RUN | STATUS.EVENT_LOG_RUN);
    if (this.cmdRunning()) s |= STATUS.CMD_BUF_RUN;
    if (this.evtRunning()) s |= STATUS.EVENT_LOG_RUN;
    this.regs.setUint32(REG.STATUS, s >>> 0, true);
  }

  private setStatus(bits: number): boolean {
    const s = this.regs.getUint32(REG.STATUS, true);
    this.regs.setUint32(REG.STATUS, (s | bits) >>> 0, true);
    return (s & bits) !== bits;
  }

  /** Programs (or disables, with undefined) the MSI capability of the IOMMU's PCI function. */
  setMsi(address: bigint | undefined, data?: number): void {
    this.msiAddr = address;
    this.msiData = address === undefined ? undefined : (data ?? 0);
  }

  /** QEMU amdvi_generate_msi_interrupt: only when the PCI MSI capability is enabled; not through the IOMMU. */
  private sendMsi(): void {
    if (this.msiAddr !== undefined && this.msiData !== undefined) this.events.emit('msi', { address: this.msiAddr, data: this.msiData });
  }

  // ---- command buffer -------------------------------------------------------------------------

  private runCommands(): void {
    if (this.q72) this.runCommandsQemu72();
    else this.runCommandsSpec();
  }

  /**
   * QEMU 7.2 amdvi_cmdbuf_run: from the internal head to the tail, storing
   * the incremented head in CMD_HEAD before wrapping it (so CMD_HEAD reads the
   * buffer size after the last slot). A tail at or beyond the size makes QEMU
   * loop forever: the model runs nothing and reports it.
   */
  private runCommandsQemu72(): void {
    const c = this.ctrl();
    if ((c & CTRL.IOMMU_EN) === 0 || (c & CTRL.CMD_BUF_EN) === 0) return;
    const size = this.cmdbufLen * 16;
    if (this.cmdHead === this.cmdTail) return;
    if (this.cmdTail >= size) {
      this.events.emit('guestError', `amd-vi: command tail ${hex(this.cmdTail)} is not below the buffer size ${hex(size)} (QEMU 7.2 would loop forever): no command run`);
      return;
    }
    // The head reaches the tail within one lap (plus one step from a head beyond the size).
    for (let n = 0; n <= this.cmdbufLen && this.cmdHead !== this.cmdTail; n++) {
      const cmd = this.fetchCommand(this.cmdbuf + this.cmdHead);
      if (cmd !== undefined) this.execQemu72(cmd);
      this.cmdHead += 16;
      this.setReg(REG.CMD_HEAD, BigInt(this.cmdHead));
      if (this.cmdHead >= size) this.cmdHead = 0;
    }
  }

  /**
   * Spec 48882 "Command Buffer": commands from CMD_HEAD to CMD_TAIL; an
   * illegal opcode or reserved bit logs ILLEGAL_COMMAND_ERROR and halts the
   * processor at that command (CmdBufRun clear, head on it); a command that
   * cannot be read logs COMMAND_HARDWARE_ERROR and halts. ComLen below 8 is
   * reserved and read as 8 (256 entries). A head or tail beyond the buffer is
   * a guest error: the processor halts without running anything.
   */
  private runCommandsSpec(): void {
    if (!this.cmdRunning()) return;
    const v = this.reg(REG.CMD_BASE);
    const base = Number(v & ADDR_MASK_51_12);
    const size = 2 ** Math.max(8, Number((v >> 56n) & 0xfn)) * 16;
    let head = Number(this.reg(REG.CMD_HEAD));
    const tail = Number(this.reg(REG.CMD_TAIL));
    if (head === tail) return;
    if (head >= size || tail >= size) {
      this.events.emit('guestError', `amd-vi: command head ${hex(head)} / tail ${hex(tail)} beyond the buffer (${hex(size)} bytes): command processing halted`);
      this.haltCommands();
      return;
    }
    while (head !== tail) {
      const at = base + head;
      const cmd = this.fetchCommand(at);
      if (cmd === undefined) {
        this.logEvent(EVENT.COMMAND_HARDWARE_ERROR, 0, 0, 0, BigInt(at));
        this.haltCommands();
        return;
      }
      if (cmd.opcode === 0 || cmd.opcode > CMD.INVALIDATE_IOMMU_ALL || commandReserved(cmd)) {
        this.logEvent(EVENT.ILLEGAL_COMMAND_ERROR, 0, 0, 0, BigInt(at));
        this.haltCommands();
        return;
      }
      this.execSpec(cmd);
      head = (head + 16) % size;
      this.setReg(REG.CMD_HEAD, BigInt(head));
    }
  }

  private haltCommands(): void {
    this.cmdHalted = true;
    this.updateRunBits();
  }

  private fetchCommand(gpa: number): Command | undefined {
    return this.mem.read(gpa, this.cmdBuf) ? decodeCommand(this.cmdBuf) : undefined;
  }

  /** QEMU 7.2 amdvi_cmdbuf_exec: illegal opcodes and reserved bits are skipped (their events are lost) and processing goes on. */
  private execQemu72(c: Command): void {
    switch (c.opcode) {
      case CMD.COMPLETION_WAIT: this.completionWait(c); break;
      case CMD.INVALIDATE_DEVTAB_ENTRY: this.syncDevice(c.w0 & 0xffff); break; // no DTE cache to drop
      case CMD.INVALIDATE_IOMMU_PAGES: {
        // Every entry of the DomainID, whatever the address, S and PDE (and reserved bits) say.
        const domid = c.w1 & 0xffff;
        this.iotlb.removeIf((s) => s.domid === domid);
        const [start, end] = invalidationRange(c);
        this.syncDomain(domid, start, end);
        break;
      }
      case CMD.INVALIDATE_IOTLB_PAGES: {
        if (commandReserved(c)) break;
        const devid = c.w0 & 0xffff;
        if ((c.w2 & 1) !== 0) this.iotlb.removeIf((s) => s.devid === devid);
        else {
          // The key of that page: (address >> 12) | (DeviceID << 36).
          this.iotlb.remove(((c.w3 >>> 16) | devid) & 0xffff, (c.w3 & 0xffff) * 0x10_0000 + (c.w2 >>> 12));
        }
        this.deviceIotlbUnmap(devid, c);
        break;
      }
      case CMD.INVALIDATE_IOMMU_ALL:
        this.iotlb.clear();
        this.resyncAll();
        break;
      default: break; // 5, 6, 7: accepted, no effect; 0, 9-15: skipped
    }
  }

  /** Spec 48882 command semantics (the command is legal). */
  private execSpec(c: Command): void {
    switch (c.opcode) {
      case CMD.COMPLETION_WAIT: this.completionWait(c); break;
      case CMD.INVALIDATE_DEVTAB_ENTRY: {
        const devid = c.w0 & 0xffff;
        this.dteCache[devid] = undefined;
        this.syncDevice(devid);
        break;
      }
      case CMD.INVALIDATE_IOMMU_PAGES: {
        // S and the address select the naturally aligned range; PDE also names cached
        // directory entries, which this model does not cache (every miss walks from the root).
        const domid = c.w1 & 0xffff;
        const [start, end] = invalidationRange(c);
        const first = Number(start >> 12n);
        const last = Number(end >> 12n);
        this.iotlb.removeIf((s) => s.domid === domid && s.firstPfn <= last && s.firstPfn + s.pages - 1 >= first);
        this.syncDomain(domid, start, end);
        break;
      }
      case CMD.INVALIDATE_IOTLB_PAGES:
        // Targets the device's own (ATS) IOTLB, not the IOMMU's.
        this.deviceIotlbUnmap(c.w0 & 0xffff, c);
        break;
      case CMD.INVALIDATE_IOMMU_ALL:
        this.iotlb.clear();
        this.dteCache = [];
        this.resyncAll();
        break;
      default: break; // INVALIDATE_INTERRUPT_TABLE (no remapping modelled), PREFETCH_IOMMU_PAGES, COMPLETE_PPR_REQUEST
    }
  }

  /**
   * COMPLETION_WAIT: S stores the second quadword at bits 51:3 of the first;
   * I sets STATUS.ComWaitInt. Interrupt: QEMU 7.2 sends the MSI on every I=1
   * whatever ComWaitIntEn says; the spec only when ComWaitIntEn is set, on
   * ComWaitInt going from 0 to 1 (software clears it by writing 1).
   */
  private completionWait(c: Command): void {
    if ((c.w0 & 1) !== 0) {
      const addr = ((c.w0 & 0xffff_fff8) >>> 0) + (c.w1 & 0xfffff) * TWO_32;
      const data = new Uint8Array(8);
      const dv = new DataView(data.buffer);
      dv.setUint32(0, c.w2, true);
      dv.setUint32(4, c.w3, true);
      if (!this.mem.write(addr, data)) this.events.emit('guestError', `amd-vi: COMPLETION_WAIT store to ${hex(addr)} is outside RAM`);
    }
    if ((c.w0 & 2) !== 0) {
      const rose = this.setStatus(STATUS.COM_WAIT_INT);
      if (this.q72 || ((this.ctrl() & CTRL.COM_WAIT_INT_EN) !== 0 && rose)) this.sendMsi();
    }
  }

  // ---- event log ------------------------------------------------------------------------------

  /**
   * Writes one event-log entry; true when it was recorded. QEMU 7.2 never
   * records (amdvi_log_event returns early: amdvi_test_mask() is always true).
   * Spec: when EventLogRun, at EVT_TAIL, which then moves (wrapping at
   * 2^EventLen entries, EventLen below 8 read as 8); a full log (the next
   * tail would equal the head) sets EventOverflow and stops the log instead;
   * with EventIntEn, EventLogInt is set per entry and an MSI goes out when
   * EventLogInt or EventOverflow rises (0 -> 1).
   */
  private logEvent(code: number, devid: number, domid: number, flags: number, address: bigint): boolean {
    if (this.q72 || !this.evtRunning()) return false;
    const v = this.reg(REG.EVT_BASE);
    const base = Number(v & ADDR_MASK_51_12);
    const size = 2 ** Math.max(8, Number((v >> 56n) & 0xfn)) * 16;
    const head = Number(this.reg(REG.EVT_HEAD));
    const tail = Number(this.reg(REG.EVT_TAIL));
    const intEn = (this.ctrl() & CTRL.EVENT_INT_EN) !== 0;
    if (head >= size || tail >= size) {
      this.events.emit('guestError', `amd-vi: event log head ${hex(head)} / tail ${hex(tail)} beyond the log (${hex(size)} bytes): log stopped`);
      this.evtStopped = true;
      this.updateRunBits();
      return false;
    }
    const next = (tail + 16) % size;
    if (next === head) {
      this.evtStopped = true;
      this.updateRunBits();
      if (this.setStatus(STATUS.EVENT_OVERFLOW) && intEn) this.sendMsi();
      return false;
    }
    encodeEvent(this.eventBuf, code, devid, domid, flags, address);
    if (!this.mem.write(base + tail, this.eventBuf)) {
      this.events.emit('guestError', `amd-vi: event log entry at ${hex(base + tail)} is outside RAM`);
      return false;
    }
    this.setReg(REG.EVT_TAIL, BigInt(next));
    if (intEn && this.setStatus(STATUS.EVENT_LOG_INT)) this.sendMsi();
    return true;
  }

  // ---- translation ----------------------------------------------------------------------------

  translate(sid: number, iova: bigint, access: IOMMUAccessFlags, _pasid?: number): TranslateResult {
    // QEMU amdvi_translate: IOMMU off -> untranslated; the interrupt window is never translated
    // (write-only identity). The spec profile keeps both: interrupts are not DMA here.
    if (!this.iommuEn) return identityEntry(iova, IOMMUAccessFlags.RW);
    IOVA_U64[0] = iova;
    const lo = IOVA_U32[LO]!;
    const hi = IOVA_U32[HI]!;
    if (hi === 0 && lo >= INT_WINDOW_FIRST && lo <= INT_WINDOW_LAST) return identityEntry(iova, IOMMUAccessFlags.WO);
    return this.q72 ? this.translateQemu72(sid & 0xffff, iova, lo, hi, access) : this.translateSpec(sid & 0xffff, iova, lo, hi, access);
  }

  /** QEMU 7.2 amdvi_do_translate (shared findings "Device table entry", "Page walk", "IOTLB"). */
  private translateQemu72(sid: number, iova: bigint, lo: number, hi: number, access: IOMMUAccessFlags): TranslateResult {
    // Key (iova >> 12) | (DeviceID << 36): iova bits 48-63 land on the DeviceID.
    const bucket = ((hi >>> 16) | sid) & 0xffff;
    const key = (hi & 0xffff) * 0x10_0000 + (lo >>> 12);
    // Looked up before the DTE; a hit grants the leaf's IR/IW only.
    const hit = this.iotlb.lookup(bucket, key);
    if (hit !== undefined) return hit;
    const dte = this.readDte(this.devtab + sid * 32);
    if (dte === undefined) return this.fault(EVENT.DEV_TAB_HARDWARE_ERROR, false, sid, iova, access);
    if (dte.reserved) return this.fault(EVENT.ILLEGAL_DEV_TABLE_ENTRY, false, sid, iova, access);
    if (!dte.v) return identityEntry(iova, IOMMUAccessFlags.RW); // not cached
    if (!dte.tv || dte.mode === 0) {
      if (dte.perm === 0) return this.fault(0, false, sid, iova, access);
      const pfn = hi * 0x10_0000 + (lo >>> 12);
      const page = iova & ~0xfffn;
      const entry = new IotlbEntry(page, page, 0xfffn, dte.perm as IOMMUAccessFlags, sid, dte.domid, pfn, 1);
      this.iotlb.insert(bucket, key, entry);
      return entry;
    }
    if (dte.mode === 7) return this.fault(0, false, sid, iova, access);
    const r = walkQemu72(this.mem, this.pw, dte, lo, hi, access, this.walkOut);
    if (!r.ok) {
      if (r.runaway) this.events.emit('guestError', `amd-vi: the page walk of DeviceID ${hex(sid)} at iova ${hex(iova)} took ${QEMU_WALK_STEP_LIMIT} steps (NextLevel loop; QEMU 7.2 would not return): access failed`);
      return this.fault(r.code, false, sid, iova, access);
    }
    return this.cacheWalk(bucket, key, sid, dte.domid, iova, lo, hi, r.xlat, r.shift, r.perm);
  }

  /** Spec 48882 "Address Translation" for one access. */
  private translateSpec(sid: number, iova: bigint, lo: number, hi: number, access: IOMMUAccessFlags): TranslateResult {
    const rw = access & 2 ? EVF.RW : 0;
    let dte = this.dteCache[sid];
    if (dte === undefined) {
      const v = this.reg(REG.DEVTAB_BASE);
      const entries = (Number(v & 0x1ffn) + 1) * 128;
      const gpa = Number(v & ADDR_MASK_51_12) + sid * 32;
      if (sid >= entries) {
        // A DeviceID beyond the device table's Size: no DTE; the request is aborted and logged.
        return this.fault(EVENT.ILLEGAL_DEV_TABLE_ENTRY, this.logEvent(EVENT.ILLEGAL_DEV_TABLE_ENTRY, sid, 0, rw, iova), sid, iova, access);
      }
      dte = this.readDte(gpa);
      if (dte === undefined) {
        return this.fault(EVENT.DEV_TAB_HARDWARE_ERROR, this.logEvent(EVENT.DEV_TAB_HARDWARE_ERROR, sid, 0, rw, BigInt(gpa)), sid, iova, access);
      }
      this.dteCache[sid] = dte;
    }
    if (!dte.v) return identityEntry(iova, IOMMUAccessFlags.RW); // V=0: the other fields are ignored
    if (dte.reserved || dte.mode === 7) return this.dteFault(EVENT.ILLEGAL_DEV_TABLE_ENTRY, dte, sid, iova, access, rw | EVF.RZ);
    if (this.exclusionOn && this.excluded(dte, iova)) return identityEntry(iova, IOMMUAccessFlags.RW);
    if (!dte.tv || dte.mode === 0) {
      // Untranslated; IR/IW still apply (TV=0: the spec leaves them in force, QEMU 7.2 agrees).
      if ((dte.perm & access) !== access) return this.dteFault(EVENT.IO_PAGE_FAULT, dte, sid, iova, access, rw | EVF.PR | EVF.PE);
      return identityEntry(iova, dte.perm as IOMMUAccessFlags);
    }
    const pfn = hi * 0x10_0000 + (lo >>> 12);
    const hit = this.iotlb.lookup(sid, pfn);
    if (hit !== undefined && hit.domid === dte.domid) {
      if ((hit.perm & access) === access) return hit;
      return this.dteFault(EVENT.IO_PAGE_FAULT, dte, sid, iova, access, rw | EVF.PR | EVF.PE);
    }
    const r = walkSpec(this.mem, this.pw, dte, lo, hi, access, this.walkOut);
    if (!r.ok) return this.dteFault(r.code, dte, sid, iova, access, r.flags, r.eventAddr);
    return this.cacheWalk(sid, pfn, sid, dte.domid, iova, lo, hi, r.xlat, r.shift, r.perm);
  }

  /** Spec "Exclusion Range": with ExEn, and Allow or the DTE's EX, [base, limit | 0xfff] is untranslated. */
  private excluded(dte: Dte, iova: bigint): boolean {
    const b = this.reg(REG.EXCL_BASE);
    if ((b & 1n) === 0n || ((b & 2n) === 0n && !dte.ex)) return false;
    return iova >= (b & ADDR_MASK_51_12) && iova <= (this.reg(REG.EXCL_LIMIT) | 0xfffn);
  }

  private readDte(gpa: number): Dte | undefined {
    const bytes = this.dteDecoder.bytes();
    if (!this.mem.read(gpa, bytes)) return undefined;
    return this.dteDecoder.decode();
  }

  /** A fault of a device with a DTE: logged unless the DTE suppresses it (SA: all events; SE: IO_PAGE_FAULT). */
  private dteFault(code: number, dte: Dte, sid: number, iova: bigint, access: IOMMUAccessFlags, flags: number, eventAddr = NaN): IOMMUFault {
    const suppressed = dte.sa || (dte.se && code === EVENT.IO_PAGE_FAULT);
    const address = Number.isNaN(eventAddr) ? iova : BigInt(eventAddr);
    const recorded = !suppressed && this.logEvent(code, sid, dte.domid, flags, address);
    return this.fault(code, recorded, sid, iova, access);
  }

  private fault(reason: number, recorded: boolean, sid: number, iova: bigint, access: IOMMUAccessFlags): IOMMUFault {
    const f: IOMMUFault = { fault: true, reason, recorded, sid, iova, access };
    this.events.emit('fault', f);
    return f;
  }

  private cacheWalk(bucket: number, key: number, sid: number, domid: number, iova: bigint, lo: number, hi: number, xlat: number, shift: number, perm: number): IOMMUTLBEntry {
    const mask = MASKS[shift]!;
    const pfn = hi * 0x10_0000 + (lo >>> 12);
    const pages = 2 ** (shift - 12);
    const firstPfn = pfn - (pfn % pages);
    // The page's iova as an exact number when it is one (below 2^53), else in bigint.
    const base = firstPfn < 0x20_0000_0000 ? BigInt(firstPfn * 4096) : iova & ~mask;
    const entry = new IotlbEntry(base, BigInt(xlat), mask, perm as IOMMUAccessFlags, sid, domid, firstPfn, pages);
    this.iotlb.insert(bucket, key, entry);
    return entry;
  }

  /** A device reads `len` bytes at `iova` through the IOMMU, page by page (trace-v1 `dma.read`). */
  dmaRead(sid: number, iova: bigint, len: number): DmaReadResult {
    return dmaRead(this.mem, (a, write) => this.translate(sid, a, write ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO), iova, len);
  }

  /** A device writes `data` at `iova` through the IOMMU (trace-v1 `dma.write`). */
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): DmaResult {
    return dmaWrite(this.mem, (a, write) => this.translate(sid, a, write ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO), iova, data);
  }

  // ---- notifiers ------------------------------------------------------------------------------

  /** The address space of DeviceID `sid` (PASIDs are not modelled: `pasid` is ignored). */
  addressSpace(sid: number, _pasid?: number): ModelAddressSpace {
    return this.spaces.get(sid);
  }

  /** C1: MAP needs NpCache (the guest then flushes after every map); DEVIOTLB_UNMAP needs device-iotlb. */
  checkNotifierFlags(name: string, flags: number): void {
    if ((flags & IOMMUNotifierFlag.MAP) !== 0 && !this.config.npCache) {
      throw new Error(`${name}: MAP notifiers need NpCache (npCache: true): without it the guest does not invalidate after creating a mapping, so new mappings cannot be notified`);
    }
    if ((flags & IOMMUNotifierFlag.DEVIOTLB_UNMAP) !== 0 && !this.config.deviceIotlb) {
      throw new Error(`${name}: DEVIOTLB_UNMAP notifiers need device-iotlb (deviceIotlb: true)`);
    }
  }

  /** The DTE translation of `sid` currently uses (spec: the cached one), when it walks page tables. */
  private translatingDte(sid: number): Dte | undefined {
    if (!this.enabled) return undefined;
    let dte: Dte | undefined;
    if (this.q72) {
      dte = this.readDte(this.devtab + sid * 32);
    } else {
      dte = this.dteCache[sid];
      if (dte === undefined) {
        const v = this.reg(REG.DEVTAB_BASE);
        if (sid >= (Number(v & 0x1ffn) + 1) * 128) return undefined;
        dte = this.readDte(Number(v & ADDR_MASK_51_12) + sid * 32);
        if (dte !== undefined) this.dteCache[sid] = dte;
      }
    }
    if (dte === undefined || !dte.v || !dte.tv || dte.reserved || dte.mode === 0 || dte.mode === 7) return undefined;
    return dte;
  }

  walker(as: ModelAddressSpace): LeafWalker | undefined {
    const dte = this.translatingDte(as.sid);
    return dte === undefined ? undefined : this.walkerFor(as.sid, dte);
  }

  /** A walker over `dte`'s tables charging the current guest action's work bound (WalkLimitError past it). */
  private walkerFor(sid: number, dte: Dte): LeafWalker {
    return syncWalker(this.mem, dte, this.actions.session, `AMD-Vi page walk of DeviceID ${hex(sid)}`);
  }

  notificationError(_as: ModelAddressSpace, message: string): void {
    this.events.emit('guestError', message);
  }

  /** C9 after INVALIDATE_IOMMU_PAGES: every space whose DTE is in `domid` syncs [start, end]. */
  private syncDomain(domid: number, start: bigint, end: bigint): void {
    for (const as of this.spaces.spaces()) {
      if (!as.listened) continue;
      const dte = this.translatingDte(as.sid);
      if (dte === undefined) {
        as.resync(); // not translating: nothing may stay mapped
        continue;
      }
      if (dte.domid !== domid) continue;
      as.sync(start, end, this.walkerFor(as.sid, dte));
    }
  }

  /** After INVALIDATE_DEVTAB_ENTRY (C8/C9): MAP views re-synced to the DTE's tables; UNMAP-only notifiers get their whole range unmapped. */
  private syncDevice(devid: number): void {
    const as = this.spaces.peek(devid);
    if (as === undefined || !as.listened) return;
    as.resync();
    // Whole 4 KiB pages of each one's range, in aligned power-of-two chunks (C2, C6).
    as.notifyCacheUnmap(0n, U64_MAX);
  }

  private resyncAll(): void {
    for (const as of this.spaces.spaces()) if (as.pasid === undefined) this.syncDevice(as.sid);
  }

  /** INVALIDATE_IOTLB_PAGES to the device's DEVIOTLB_UNMAP notifiers (device-iotlb only). */
  private deviceIotlbUnmap(devid: number, c: Command): void {
    if (!this.config.deviceIotlb) return;
    const as = this.spaces.peek(devid);
    if (as === undefined || (as.notifiers.flags & IOMMUNotifierFlag.DEVIOTLB_UNMAP) === 0) return;
    const [start, end] = invalidationRange(c);
    as.safely(() => as.notifiers.notify({
      type: IOMMUNotifierFlag.DEVIOTLB_UNMAP,
      entry: { iova: start, translatedAddr: 0n, addrMask: end - start, perm: IOMMUAccessFlags.NONE },
    }));
  }

  // ---- reset ----------------------------------------------------------------------------------

  /** System reset: registers to reset values, caches dropped, every notifier's entries unmapped (C8). */
  reset(): void {
    this.actions.run(() => {
      this.resetRegisters();
      this.iotlb.clear();
      this.wasEnabled = false;
      for (const as of this.spaces.spaces()) as.notifyUnmap();
    });
  }
}

/**
 * The range of INVALIDATE_IOMMU_PAGES / INVALIDATE_IOTLB_PAGES (spec
 * "Invalidation size"): S=0 the 4 KiB page at Address; S=1 a naturally
 * aligned block of 2^(k+1) bytes, k the first zero bit of Address from bit
 * 12 (bits 12..62 all one: the whole 64-bit space).
 */
export function invalidationRange(c: Command): [bigint, bigint] {
  const addr = (BigInt((c.w2 & 0xffff_f000) >>> 0) | (BigInt(c.w3 >>> 0) << 32n));
  if ((c.w2 & 1) === 0) return [addr, addr | 0xfffn];
  let k = 12;
  while (k < 64 && ((addr >> BigInt(k)) & 1n) === 1n) k++;
  if (k >= 63) return [0n, U64_MAX];
  const mask = (1n << BigInt(k + 1)) - 1n;
  return [addr & ~mask, (addr & ~mask) | mask];
}
