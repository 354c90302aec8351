/**
 * The Intel VT-d device as QEMU 7.2's intel-iommu behaves: MMIO registers,
 * queued and register-based invalidation, the context cache and the IOTLB,
 * fault recording and event interrupts, DMA translation, and the notifier
 * lists of the per-device address spaces. Internal: other layers use
 * `createIntelVtd` from index.ts.
 *
 * References: shared/reference/vtd-facts.md (§ numbers below) and
 * shared/reference/qemu-7.2-findings.md ("findings").
 */
import { EventEmitter } from 'node:events';
import type { TypedEmitter } from '../../core/typed-events';
import { IOMMUAccessFlags } from '../../core/access';
import { AddressSpaceRegistry, GuestActions, ModelAddressSpace, identityEntry } from '../../core/address-spaces';
import type { AddressSpaceOwner } from '../../core/address-spaces';
import { X86_MSI_RANGE, hex } from '../../core/guest-addr';
import type { LeafWalker } from '../../core/leaf';
import type { IOMMUFault, IOMMUModelEvents, TranslateResult } from '../../core/model';
import { IOMMUNotifierFlag } from '../../core/tlb-entry';
import type { IOMMUTLBEntry } from '../../core/tlb-entry';
import { budgetOption, WalkSession } from '../../core/walk-budget';
import type { SyncLimits } from '../../core/walk-budget';
import { dmaRead, dmaWrite } from '../../memory/dma';
import type { DmaReadResult, DmaResult } from '../../memory/dma';
import type { GuestMemory } from '../../memory/guest-memory';
import type { VtdConfig } from './config';
import type { IntelVtd } from './index';
import { decodeDescriptor, parseRawDescriptor, VTD_CC_G, VTD_IOTLB_G } from './descriptors';
import type { VtdInvDescriptor } from './descriptors';
import { VtdIotlb } from './iotlb';
import * as R from './regs';
import {
  isContextFault, isQualifiedFault, refreshPasid, resolveContext, secondLevelWalker, walkSecondLevel,
} from './translation';
import type { VtdContext, VtdLeaf } from './translation';

/**
 * Work one guest action (an MMIO write, with every descriptor it processes
 * and every address space it syncs; or one notifier registration and its
 * replay) may spend on second-level walks: table entries read from guest
 * memory, plus entries visited in tables met again (WalkSession, src/core/walk-budget.ts).
 * Arithmetic: a legitimate domain of 10^6 4 KiB pages laid out as 15 625
 * runs of 64 pages at scattered IOVAs needs at worst one level-1, one
 * level-2 and one level-3 table per run, each read whole: 3 * 512 * 15 625 +
 * 512 ≈ 2.4e7 entries; 2^26 ≈ 6.7e7 leaves room for that domain and a second
 * one in the same action (tables a domain shares between its devices are
 * read once per action). A hostile table that aliases one table at every
 * level is read once per (table, level) thanks to the memo, and cut by the
 * leaf bound below; about 2 s at the worst (~30 ns per entry).
 */
export const VTD_SYNC_WALK_BUDGET = 2 ** 26;

/**
 * Leaves one guest action may report to the notifier lists (each becomes
 * view work in the notifier list, far dearer than a table read). 2^21 ≈
 * 2.1e6 leaves: twice the 10^6-page domain the model is sized for, and 32x
 * what a VFIO container can map at all (dma_entry_limit 65535); an aliasing
 * table whose every level-1 slot is a valid leaf is cut there.
 */
export const VTD_SYNC_LEAF_BUDGET = 2 ** 21;

/**
 * Overrides of the work bound of one guest action (tests of hostile guests
 * use small ones): `syncWalkBudget` table entries (default
 * VTD_SYNC_WALK_BUDGET), `syncLeafBudget` leaves (default
 * VTD_SYNC_LEAF_BUDGET). When a walk passes it, that sync and every later
 * sync of the same action are abandoned: the listeners' views stay as they
 * were, `syncIncomplete` names each device concerned (once per action),
 * UNMAP-only listeners still receive their UNMAPs, and the guest-visible
 * state (registers, queue, caches) is as if the syncs had completed (core
 * GuestActions, src/core/address-spaces.ts).
 */
export type VtdLimits = SyncLimits;

/** QEMU's context-cache generation wraps here and then resets every cached context. */
const VTD_CONTEXT_CACHE_GEN_MAX = 0xffff_ffff;
/** The interrupt address window (QEMU routes it to the APIC, never through translate). */
const VTD_INTERRUPT_ADDR_FIRST = Number(X86_MSI_RANGE.start);
const VTD_INTERRUPT_ADDR_LAST = Number(X86_MSI_RANGE.end);
const PCI_NO_PASID_PV = 0xffff;
const IOTLB_EVENTS = IOMMUNotifierFlag.MAP | IOMMUNotifierFlag.UNMAP;
/** Descriptor type recorded as the last processed one when a read fails (VTD_INV_DESC_NONE). */
const VTD_INV_DESC_NONE = 0;
const VTD_INV_DESC_WAIT = 5;

/** addrMask of a leaf at level 1, 2, 3. */
const LEVEL_MASK = [0n, 0xfffn, 0x1f_ffffn, 0x3fff_ffffn];

/**
 * One device address space (core ModelAddressSpace: notifier list,
 * registration, replay, bounded syncs) with the cached context and IOTLB
 * state of (sid, PASID). Its `index` tags its IOTLB entries; its
 * `passThrough` is QEMU's no-DMAR alias (see VtdDevice.switchAddressSpace).
 */
class VtdAddressSpace extends ModelAddressSpace {
  /** Context-cache entry: valid while `ctxGen` equals the device's generation. */
  ctxGen = 0;
  ctx: VtdContext | undefined;
  /**
   * Scalable mode, requests without PASID: the RID_PASID whose IOTLB key is
   * `iotlbKey` (last one used; -1: none). See VtdDevice.ridPasidKey.
   */
  iotlbPasid = -1;
  iotlbKey = 0;
  /** DID of the tables the views were last synced or replayed from (-1: views emptied since). */
  syncedDid = -1;
}

/** The VT-d device (see index.ts for the public contract). */
export class VtdDevice implements IntelVtd, AddressSpaceOwner {
  readonly kind = 'intel-vtd';
  readonly events = new EventEmitter() as TypedEmitter<IOMMUModelEvents>;
  readonly config: Readonly<VtdConfig>;

  private readonly regs = new R.RegisterFile();
  private readonly cap: bigint;
  private readonly ecap: bigint;
  private readonly hawMask: bigint;

  // Latched state (QEMU IntelIOMMUState).
  private root = 0;
  private rootScalable = false;
  private dmarEnabled = false;
  private qiEnabled = false;
  private iq = 0n;
  private iqSize = 0;
  private iqHead = 0;
  private iqTail = 0;
  private iqDw = false;
  private iqLastDescType = VTD_INV_DESC_NONE;
  private nextFrcd = 0;
  private contextCacheGen = 1;

  private readonly iotlb = new VtdIotlb();
  /** IOTLB keys of (space index * 2^20 + RID_PASID) pairs, see ridPasidKey. */
  private readonly ridPasidKeys = new Map<number, number>();
  private readonly leaf: VtdLeaf = { iovaPfn: 0, pages: 0, xlatPfn: 0, perm: 0, level: 0 };
  private readonly descBytes = { 16: new Uint8Array(16), 32: new Uint8Array(32) };

  /**
   * Guest actions (an MMIO write, a notifier registration), each under one
   * work bound and memo (issue 13 item 11): every walk it makes, for any
   * descriptor and any address space, draws on the same WalkSession; the
   * error boundary of a register write (see VtdLimits).
   */
  private readonly actions: GuestActions;
  /** The address spaces, by (sid, PASID); registrations run as guest actions. */
  private readonly registry: AddressSpaceRegistry<VtdAddressSpace>;

  constructor(config: Readonly<VtdConfig>, private readonly mem: GuestMemory, limits: VtdLimits = {}) {
    this.config = config;
    this.actions = new GuestActions(new WalkSession(
      budgetOption('intel-vtd', 'syncWalkBudget', limits.syncWalkBudget, VTD_SYNC_WALK_BUDGET),
      budgetOption('intel-vtd', 'syncLeafBudget', limits.syncLeafBudget, VTD_SYNC_LEAF_BUDGET),
    ), this.events, 'intel-vtd');
    this.registry = new AddressSpaceRegistry<VtdAddressSpace>(this, 'intel-vtd', {
      actions: this.actions,
      create: (owner, sid, pasid, name, index, actions) => new VtdAddressSpace(owner, sid, pasid, name, index, actions),
    });
    this.cap = R.computeCap(config);
    this.ecap = R.computeEcap(config);
    this.hawMask = (1n << BigInt(config.awBits)) - 1n;
    this.initRegisters();
  }

  // ---------------------------------------------------------------------------------------------
  // Registers

  /** Reset values and masks (QEMU vtd_init, vtd-facts §2). */
  private initRegisters(): void {
    const r = this.regs;
    r.clear();
    r.defineLong(R.DMAR_VER_REG, 0x10, 0, 0);
    r.defineQuad(R.DMAR_CAP_REG, this.cap, 0n, 0n);
    r.defineQuad(R.DMAR_ECAP_REG, this.ecap, 0n, 0n);
    r.defineLong(R.DMAR_GCMD_REG, 0, 0xff80_0000, 0);
    r.defineLongWo(R.DMAR_GCMD_REG, 0xff80_0000);
    r.defineLong(R.DMAR_GSTS_REG, 0, 0, 0);
    r.defineQuad(R.DMAR_RTADDR_REG, 0n, 0xffff_ffff_ffff_fc00n, 0n);
    r.defineQuad(R.DMAR_CCMD_REG, 0n, 0xe000_0003_ffff_ffffn, 0n);
    r.defineQuadWo(R.DMAR_CCMD_REG, 0x3_ffff_0000n);
    r.defineLong(R.DMAR_FSTS_REG, 0, 0, 0x11);
    r.defineLong(R.DMAR_FECTL_REG, 0x8000_0000, 0x8000_0000, 0);
    r.defineLong(R.DMAR_FEDATA_REG, 0, 0xffff, 0);
    r.defineLong(R.DMAR_FEADDR_REG, 0, 0xffff_fffc, 0);
    // FEUADDR / IEUADDR: RsvdZ without ECAP.EIM; PMEN: RO without PLMR/PHMR (as QEMU).
    r.defineLong(R.DMAR_FEUADDR_REG, 0, 0, 0);
    r.defineLong(R.DMAR_PMEN_REG, 0, 0, 0);
    r.defineQuad(R.DMAR_IQH_REG, 0n, 0n, 0n);
    r.defineQuad(R.DMAR_IQT_REG, 0n, 0x7fff0n, 0n);
    r.defineQuad(R.DMAR_IQA_REG, 0n, 0xffff_ffff_ffff_f807n, 0n);
    r.defineLong(R.DMAR_ICS_REG, 0, 0, 0x1);
    r.defineLong(R.DMAR_IECTL_REG, 0x8000_0000, 0x8000_0000, 0);
    r.defineLong(R.DMAR_IEDATA_REG, 0, 0xffff_ffff, 0);
    r.defineLong(R.DMAR_IEADDR_REG, 0, 0xffff_fffc, 0);
    r.defineLong(R.DMAR_IEUADDR_REG, 0, 0, 0);
    // IQERCD (invalidation queue error record): QEMU 7.2 does not implement it; it reads 0 and IQE carries no error info.
    r.defineQuad(R.DMAR_IQERCD_REG, 0n, 0n, 0n);
    r.defineQuad(R.DMAR_IOTLB_REG, 0n, 0xb003_ffff_0000_0000n, 0n);
    r.defineQuad(R.DMAR_IVA_REG, 0n, 0xffff_ffff_ffff_f07fn, 0n);
    r.defineQuadWo(R.DMAR_IVA_REG, 0xffff_ffff_ffff_f07fn);
    r.defineQuad(R.DMAR_FRCD_REG, 0n, 0n, 0n);
    r.defineQuad(R.DMAR_FRCD_REG + 8, 0n, 0n, 0x8000_0000_0000_0000n);
    r.defineQuad(R.DMAR_IRTA_REG, 0n, 0xffff_ffff_ffff_f80fn, 0n);
  }

  mmioRead(offset: number, size: 4 | 8): bigint {
    if (!this.validAccess('read', offset, size)) {
      // vtd_mem_read would answer all ones, but QEMU 7.2 never calls it for
      // these: its MMIO region is DMAR_REG_SIZE (0x230) bytes, so a read that
      // reaches past it is an unassigned access, which the memory core
      // answers with 0 (captured: 0x230, 0xffc, and the 8-byte read at 0x22c;
      // tools/qemu-capture/evidence/reads-past-register-block.jsonl).
      return 0n;
    }
    const r = this.regs;
    let val: bigint;
    switch (offset) {
      case R.DMAR_IQA_REG:
        // QEMU returns the queue base latched at QIE enable plus the live QS; DW is dropped (7.2).
        val = this.iq | (r.getQuad(R.DMAR_IQA_REG) & R.VTD_IQA_QS);
        break;
      case R.DMAR_IQA_REG + 4:
        val = (this.iq >> 32n) & 0xffff_ffffn;
        break;
      default:
        val = size === 4 ? BigInt(r.getLong(offset)) : r.getQuad(offset);
    }
    return size === 4 ? val & 0xffff_ffffn : val;
  }

  mmioWrite(offset: number, size: 4 | 8, value: bigint): void {
    if (!this.validAccess('write', offset, size)) return;
    value = BigInt.asUintN(size * 8, value);
    // One guest action; never lets a notification failure escape a register
    // write: a contract violation (reported on the list's `violation` event)
    // or a walk cut by its budget stops that sync only (GuestActions.run).
    this.actions.run(() => this.dispatchWrite(offset, size, value));
  }

  private validAccess(what: string, offset: number, size: number): boolean {
    if ((size !== 4 && size !== 8) || !Number.isInteger(offset) || offset < 0 || offset + size > R.DMAR_REG_SIZE) {
      this.guestError(`MMIO ${what} outside the register block: offset ${hex(offset)} size ${size}`);
      return false;
    }
    if (offset % 4 !== 0) {
      this.guestError(`unaligned MMIO ${what}: offset ${hex(offset)} size ${size}`);
      return false;
    }
    return true;
  }

  /** Registers QEMU only accepts as 4-byte writes (it asserts otherwise). */
  private static readonly LONG_ONLY = new Set([
    R.DMAR_CCMD_REG + 4, R.DMAR_IOTLB_REG + 4, R.DMAR_IVA_REG + 4, R.DMAR_FSTS_REG, R.DMAR_FECTL_REG,
    R.DMAR_FEDATA_REG, R.DMAR_FEUADDR_REG, R.DMAR_PMEN_REG, R.DMAR_RTADDR_REG + 4, R.DMAR_IQT_REG + 4,
    R.DMAR_IQA_REG + 4, R.DMAR_ICS_REG, R.DMAR_IECTL_REG, R.DMAR_IEDATA_REG, R.DMAR_IEADDR_REG,
    R.DMAR_IEUADDR_REG, R.DMAR_FRCD_REG + 4, R.DMAR_FRCD_REG + 12, R.DMAR_IRTA_REG + 4,
  ]);

  /** vtd_mem_write (7.2): which write acts, and how. */
  private dispatchWrite(offset: number, size: 4 | 8, value: bigint): void {
    const r = this.regs;
    if (size === 8 && VtdDevice.LONG_ONLY.has(offset)) {
      // Divergence: QEMU 7.2 aborts (assert) on an 8-byte write to these
      // registers; we take it as two 4-byte writes, low half first.
      this.guestError(`8-byte write to the 32-bit register at ${hex(offset)} taken as two 4-byte writes (QEMU 7.2 would abort)`);
      this.dispatchWrite(offset, 4, value & 0xffff_ffffn);
      this.dispatchWrite(offset + 4, 4, value >> 32n);
      return;
    }
    const lo = Number(value & 0xffff_ffffn);
    const store = (): void => {
      if (size === 4) r.setLong(offset, lo);
      else r.setQuad(offset, value);
    };
    switch (offset) {
      case R.DMAR_GCMD_REG:
        r.setLong(offset, lo); // an 8-byte write reaches GCMD only (GSTS is read-only)
        this.handleGcmdWrite();
        return;
      case R.DMAR_CCMD_REG:
        store();
        if (size === 8) this.handleCcmdWrite();
        return;
      case R.DMAR_CCMD_REG + 4:
        store();
        this.handleCcmdWrite();
        return;
      case R.DMAR_IOTLB_REG:
        store();
        if (size === 8) this.handleIotlbWrite();
        return;
      case R.DMAR_IOTLB_REG + 4:
        store();
        this.handleIotlbWrite();
        return;
      case R.DMAR_FSTS_REG:
        store();
        this.handleFstsWrite();
        return;
      case R.DMAR_FECTL_REG:
        store();
        this.handleFectlWrite();
        return;
      case R.DMAR_IQT_REG:
        store();
        this.handleIqtWrite();
        return;
      case R.DMAR_IQA_REG:
        store();
        // vtd_update_iq_dw: DW counts only with ECAP.SMTS; re-evaluated on every IQA write.
        this.iqDw = (this.ecap & R.VTD_ECAP_SMTS) !== 0n && (r.getQuadRaw(R.DMAR_IQA_REG) & R.VTD_IQA_DW) !== 0n;
        return;
      case R.DMAR_ICS_REG:
        store();
        this.handleIcsWrite();
        return;
      case R.DMAR_IECTL_REG:
        store();
        this.handleIectlWrite();
        return;
      case R.DMAR_FRCD_REG + 8:
        store();
        if (size === 8) this.updateFstsPpf();
        return;
      case R.DMAR_FRCD_REG + 12:
        store();
        this.updateFstsPpf();
        return;
      default:
        store();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Global command (vtd-facts §2.1)

  private handleGcmdWrite(): void {
    const r = this.regs;
    const status = r.getLongRaw(R.DMAR_GSTS_REG);
    const val = r.getLongRaw(R.DMAR_GCMD_REG);
    const changed = status ^ val;
    if (changed & R.VTD_GCMD_TE) this.handleTe((val & R.VTD_GCMD_TE) !== 0);
    if (val & R.VTD_GCMD_SRTP) this.handleSrtp();
    if (changed & R.VTD_GCMD_QIE) this.handleQie((val & R.VTD_GCMD_QIE) !== 0);
    // SIRTP latches IRTA whether or not interrupt remapping is supported (QEMU
    // 7.2 does not check ECAP.IR here; the spec makes the bit reserved then).
    if (val & R.VTD_GCMD_SIRTP) r.setClearLong(R.DMAR_GSTS_REG, 0, R.VTD_GSTS_IRTPS);
    if ((changed & R.VTD_GCMD_IRE) && this.config.interruptRemapping) {
      if (val & R.VTD_GCMD_IRE) r.setClearLong(R.DMAR_GSTS_REG, 0, R.VTD_GSTS_IRES);
      else r.setClearLong(R.DMAR_GSTS_REG, R.VTD_GSTS_IRES, 0);
    }
    // SFL, EAFL, WBF (CAP.RWBF=0) and CFI are ignored, as QEMU does: their status bits never set.
  }

  private handleTe(enable: boolean): void {
    if (this.dmarEnabled === enable) return;
    this.dmarEnabled = enable;
    if (enable) {
      this.regs.setClearLong(R.DMAR_GSTS_REG, 0, R.VTD_GSTS_TES);
    } else {
      this.nextFrcd = 0;
      this.regs.setClearLong(R.DMAR_GSTS_REG, R.VTD_GSTS_TES, 0);
    }
    this.resetCaches();
    this.unmapAllSpaces();
    for (const as of this.registry.spaces()) this.switchAddressSpace(as);
  }

  private handleSrtp(): void {
    const raw = this.regs.getQuadRaw(R.DMAR_RTADDR_REG);
    this.rootScalable = this.config.scalableMode && (raw & R.VTD_RTADDR_SMT) !== 0n;
    this.root = Number(raw & this.hawMask & ~0xfffn);
    this.regs.setClearLong(R.DMAR_GSTS_REG, 0, R.VTD_GSTS_RTPS);
    this.resetCaches();
    this.unmapAllSpaces();
    for (const as of this.registry.spaces()) this.switchAddressSpace(as);
  }

  /**
   * QEMU 7.2 vtd_switch_address_space: a device whose context (legacy TT=2,
   * scalable: RID_PASID entry PGTT=4), read fresh from the tables, is
   * pass-through while translation is on is moved to an untranslated alias;
   * its DMA then bypasses the IOMMU (no context cache, PASID entry, IOTLB or
   * fault) until TE, SRTP or a context-cache invalidation covering it
   * re-evaluates the device. QEMU also switches on the first pass-through
   * translation (vtd_pt_enable_fast_path). Observable in scalable mode, where
   * the PASID entry is not cached: QEMU capture
   * fixtures/qemu-vtd-extra/sm-pt-no-dmar-alias.jsonl.
   */
  private switchAddressSpace(as: VtdAddressSpace): void {
    if (!this.dmarEnabled) {
      as.passThrough = false;
      return;
    }
    const res = resolveContext(this.mem, this.config, this.root, this.rootScalable, as.sid, as.pasid);
    as.passThrough = !isContextFault(res) && res.passThrough;
  }

  private handleQie(enable: boolean): void {
    const r = this.regs;
    if (enable) {
      const iqa = r.getQuadRaw(R.DMAR_IQA_REG);
      this.iq = iqa & this.hawMask & ~0xfffn;
      this.iqSize = 1 << (Number(iqa & R.VTD_IQA_QS) + 8 - (this.iqDw ? 1 : 0));
      this.qiEnabled = true;
      r.setClearLong(R.DMAR_GSTS_REG, 0, R.VTD_GSTS_QIES);
      // A non-zero tail at enable is a spec violation Windows commits; QEMU processes at once.
      if (this.iqTail !== 0 && !(r.getLongRaw(R.DMAR_FSTS_REG) & R.VTD_FSTS_IQE)) this.fetchInvDesc();
    } else if (this.iqTail === this.iqHead && this.iqLastDescType === VTD_INV_DESC_WAIT) {
      r.setQuadRaw(R.DMAR_IQH_REG, 0n);
      this.iqHead = 0;
      this.qiEnabled = false;
      r.setClearLong(R.DMAR_GSTS_REG, R.VTD_GSTS_QIES, 0);
    } else {
      this.guestError(`queued invalidation cannot be disabled: head ${this.iqHead}, tail ${this.iqTail}, last descriptor type ${this.iqLastDescType} (needs an empty queue ending with a wait descriptor)`);
    }
  }

  private resetCaches(): void {
    this.iotlb.clear();
    this.resetContextCache();
  }

  private resetContextCache(): void {
    for (const as of this.registry.spaces()) as.ctxGen = 0;
    this.contextCacheGen = 1;
  }

  // ---------------------------------------------------------------------------------------------
  // Fault status, fault events, invalidation completion events (vtd-facts §8)

  private handleFstsWrite(): void {
    const r = this.regs;
    const fsts = r.getLongRaw(R.DMAR_FSTS_REG);
    if ((r.getLongRaw(R.DMAR_FECTL_REG) & R.VTD_CTL_IP) && !(fsts & (R.VTD_FSTS_PFO | R.VTD_FSTS_PPF | R.VTD_FSTS_IQE))) {
      r.setClearLong(R.DMAR_FECTL_REG, R.VTD_CTL_IP, 0);
    }
    // As QEMU, clearing IQE does not restart the queue: the next IQT write does.
  }

  private handleFectlWrite(): void {
    const fectl = this.regs.getLongRaw(R.DMAR_FECTL_REG);
    if ((fectl & R.VTD_CTL_IP) && !(fectl & R.VTD_CTL_IM)) {
      this.sendMsi(R.DMAR_FEADDR_REG, R.DMAR_FEDATA_REG);
      this.regs.setClearLong(R.DMAR_FECTL_REG, R.VTD_CTL_IP, 0);
    }
  }

  private handleIcsWrite(): void {
    const r = this.regs;
    if ((r.getLongRaw(R.DMAR_IECTL_REG) & R.VTD_CTL_IP) && !(r.getLongRaw(R.DMAR_ICS_REG) & R.VTD_ICS_IWC)) {
      r.setClearLong(R.DMAR_IECTL_REG, R.VTD_CTL_IP, 0);
    }
  }

  private handleIectlWrite(): void {
    const iectl = this.regs.getLongRaw(R.DMAR_IECTL_REG);
    if ((iectl & R.VTD_CTL_IP) && !(iectl & R.VTD_CTL_IM)) {
      this.sendMsi(R.DMAR_IEADDR_REG, R.DMAR_IEDATA_REG);
      this.regs.setClearLong(R.DMAR_IECTL_REG, R.VTD_CTL_IP, 0);
    }
  }

  /** MSI from an address/data register pair (QEMU uses the 32-bit address register only). */
  private sendMsi(addrReg: number, dataReg: number): void {
    this.events.emit('msi', { address: BigInt(this.regs.getLongRaw(addrReg)), data: this.regs.getLongRaw(dataReg) });
  }

  /** vtd_generate_fault_event: no event while an earlier condition (PPF, PFO, IQE) awaits software. */
  private generateFaultEvent(preFsts: number): void {
    if (preFsts & (R.VTD_FSTS_PPF | R.VTD_FSTS_PFO | R.VTD_FSTS_IQE)) return;
    const r = this.regs;
    r.setClearLong(R.DMAR_FECTL_REG, 0, R.VTD_CTL_IP);
    if (!(r.getLongRaw(R.DMAR_FECTL_REG) & R.VTD_CTL_IM)) {
      this.sendMsi(R.DMAR_FEADDR_REG, R.DMAR_FEDATA_REG);
      r.setClearLong(R.DMAR_FECTL_REG, R.VTD_CTL_IP, 0);
    }
  }

  /** vtd_generate_completion_event: one pending completion at a time (ICS.IWC). */
  private generateCompletionEvent(): void {
    const r = this.regs;
    if (r.getLongRaw(R.DMAR_ICS_REG) & R.VTD_ICS_IWC) return;
    r.setClearLong(R.DMAR_ICS_REG, 0, R.VTD_ICS_IWC);
    r.setClearLong(R.DMAR_IECTL_REG, 0, R.VTD_CTL_IP);
    if (!(r.getLongRaw(R.DMAR_IECTL_REG) & R.VTD_CTL_IM)) {
      this.sendMsi(R.DMAR_IEADDR_REG, R.DMAR_IEDATA_REG);
      r.setClearLong(R.DMAR_IECTL_REG, R.VTD_CTL_IP, 0);
    }
  }

  private frcdHi(index: number): number {
    return R.DMAR_FRCD_REG + index * 16 + 8;
  }

  private isFrcdSet(index: number): boolean {
    return (this.regs.getQuadRaw(this.frcdHi(index)) >> 63n) === 1n;
  }

  /** FSTS.PPF = OR of the FRCD F bits. */
  private updateFstsPpf(): void {
    let ppf = false;
    for (let i = 0; i < R.DMAR_FRCD_REG_NR; i++) if (this.isFrcdSet(i)) ppf = true;
    if (ppf) this.regs.setClearLong(R.DMAR_FSTS_REG, 0, R.VTD_FSTS_PPF);
    else this.regs.setClearLong(R.DMAR_FSTS_REG, R.VTD_FSTS_PPF, 0);
  }

  /**
   * Primary fault logging (vtd_report_dmar_fault): dropped while PFO is set;
   * dropped when a pending record has the same sid (compression); PFO when the
   * next record is in use; else record, and raise a fault event unless PPF was
   * already set. Returns whether a record was written.
   */
  private recordFault(sid: number, iova: bigint, reason: number, isWrite: boolean, pp: boolean, pv: number): boolean {
    const r = this.regs;
    const fsts = r.getLongRaw(R.DMAR_FSTS_REG);
    if (fsts & R.VTD_FSTS_PFO) return false;
    for (let i = 0; i < R.DMAR_FRCD_REG_NR; i++) {
      if (this.isFrcdSet(i) && Number(r.getQuadRaw(this.frcdHi(i)) & 0xffffn) === sid) return false;
    }
    if (this.isFrcdSet(this.nextFrcd)) {
      r.setClearLong(R.DMAR_FSTS_REG, 0, R.VTD_FSTS_PFO);
      return false;
    }
    const index = this.nextFrcd;
    let hi = BigInt(sid) | (BigInt(reason & 0xff) << 32n) | (BigInt(pv & 0xffff) << 40n) | (pp ? 1n << 31n : 0n);
    if (!isWrite) hi |= 1n << 62n;
    r.setQuadRaw(this.frcdHi(index) - 8, iova & ~0xfffn);
    r.setQuadRaw(this.frcdHi(index), hi | (1n << 63n));
    if (!(fsts & R.VTD_FSTS_PPF)) r.setClearLong(R.DMAR_FSTS_REG, R.VTD_FSTS_FRI_MASK, index << R.VTD_FSTS_FRI_SHIFT);
    this.updateFstsPpf();
    this.nextFrcd = (index + 1) % R.DMAR_FRCD_REG_NR;
    if (!(fsts & R.VTD_FSTS_PPF)) this.generateFaultEvent(fsts);
    return true;
  }

  /**
   * A failed translation: recorded unless suppressed, then the `fault` event.
   * The PASID fields of the record are as QEMU 7.2 fills them (findings "Fault
   * recording", and the reference captures fault-context-*.jsonl and
   * sm-faults.jsonl): context-level faults carry PP=0, PV=0; walk faults without a
   * PASID (legacy) carry PCI_NO_PASID, PP=0, PV=0xffff; walk faults of a
   * scalable-mode context carry PP=1 and the PASID walked (the RID_PASID).
   */
  private fault(
    sid: number, iova: bigint, access: IOMMUAccessFlags, reason: number, suppressed: boolean, pp: boolean, pv: number,
  ): IOMMUFault {
    const recorded = suppressed ? false : this.recordFault(sid, iova, reason, (access & IOMMUAccessFlags.WO) !== 0, pp, pv);
    const f: IOMMUFault = { fault: true, reason, recorded, sid, iova, access };
    this.events.emit('fault', f);
    return f;
  }

  private guestError(message: string): void {
    this.actions.guestError(message);
  }

  // ---------------------------------------------------------------------------------------------
  // DMA translation (vtd-facts §5)

  addressSpace(sid: number, pasid?: number): VtdAddressSpace {
    // Without scalable mode requests carry no PASID (ECAP.PASID is never set): one space per sid.
    return this.registry.get(sid, this.config.scalableMode ? pasid : undefined);
  }

  translate(sid: number, iova: bigint, access: IOMMUAccessFlags, pasid?: number): TranslateResult {
    if (!this.config.scalableMode) pasid = undefined;
    const as = (pasid === undefined ? this.registry.peek(sid) : undefined) ?? this.addressSpace(sid, pasid);
    if (!this.dmarEnabled || as.passThrough) return identityEntry(iova);
    // The IOVA as an exact number, or -1 at or above 2^53 (beyond every AW: a fault).
    const n = exactIova(iova);
    if (n >= VTD_INTERRUPT_ADDR_FIRST && n <= VTD_INTERRUPT_ADDR_LAST) {
      // QEMU gives every device a separate region for the interrupt window: requests
      // there are MSIs and never reach the IOMMU's translate (vtd-facts §5 step 2).
      return identityEntry(iova);
    }
    const pfn = n >= 0 ? Math.floor(n / 4096) : -1;
    // Scalable mode without PASID: QEMU looks the IOTLB up after the context
    // (it needs the RID_PASID); legacy: before, so a hit skips the context.
    const rid2pasid = this.rootScalable && pasid === undefined;
    if (!rid2pasid && pfn >= 0) {
      const hit = this.iotlb.lookup(as.index, pfn);
      if (hit !== undefined) return hit;
    }
    let ctx = as.ctxGen === this.contextCacheGen ? as.ctx : undefined;
    if (ctx !== undefined && this.rootScalable) {
      // QEMU 7.2 caches only the scalable-mode context entry: the PASID
      // directory and entry (FPD, PGTT, AW, SLPTPTR, DID) are read again on
      // every translation that reaches this point. Root and context faults
      // cannot happen on that path (the cached entry stands); PASID ones can.
      // The PASID directory pointer and RID_PASID are the CACHED entry's
      // (vtd_ce_get_pasid_fpd and the walk take the cached `ce`): a context
      // entry rewritten without context-cache invalidation is not seen, even
      // if its RID_PASID or directory changed (mutation-found, QEMU capture
      // fixtures/qemu-vtd-extra/sm-stale-context-ridpasid.jsonl).
      const fresh = refreshPasid(this.mem, this.config, ctx);
      if (!isContextFault(fresh)) ctx = fresh;
      else {
        // Cached context with FPD set: QEMU 7.2 (vtd_do_iommu_translate) reads
        // no PASID entry before its IOTLB lookup (vtd_ce_get_pasid_fpd runs only
        // when the context FPD is clear; the RID_PASID comes from the cached
        // entry), so a page cached earlier still hits even after the PASID
        // entry became invalid (mutation campaign 2, QEMU capture
        // fixtures/qemu-vtd-extra/sm-fpd-cached-iotlb-hit-invalid-pasid.jsonl).
        if (ctx.scalable !== undefined && ctx.scalable.contextFpd && rid2pasid && pfn >= 0) {
          const hit = this.iotlb.lookup(this.ridPasidKey(as, ctx.pasid ?? ctx.scalable.ridPasid), pfn);
          if (hit !== undefined) return hit;
        }
        return this.fault(sid, iova, access, fresh.reason, fresh.suppressed, false, 0);
      }
    }
    if (ctx === undefined) {
      const res = resolveContext(this.mem, this.config, this.root, this.rootScalable, sid, pasid);
      if (isContextFault(res)) return this.fault(sid, iova, access, res.reason, res.suppressed, false, 0);
      ctx = res;
      as.ctx = res;
      as.ctxGen = this.contextCacheGen;
    }
    // Pass-through: identity, never cached in the IOTLB (as QEMU), and the
    // device moves to the no-DMAR alias (vtd_pt_enable_fast_path).
    if (ctx.passThrough) {
      this.switchAddressSpace(as);
      return identityEntry(iova);
    }
    // QEMU 7.2 keys IOTLB entries by (sid, PASID); a request without PASID
    // in scalable mode uses the context's RID_PASID, so entries cached under
    // another RID_PASID do not hit (QEMU capture
    // fixtures/qemu-vtd-extra/sm-iotlb-per-rid-pasid.jsonl).
    const space = rid2pasid ? this.ridPasidKey(as, ctx.pasid ?? 0) : as.index;
    if (rid2pasid && pfn >= 0) {
      const hit = this.iotlb.lookup(space, pfn);
      if (hit !== undefined) return hit;
    }
    const write = (access & IOMMUAccessFlags.WO) !== 0;
    const iovaPfn = pfn >= 0 ? pfn : Number(iova >> 12n);
    const leaf = this.leaf;
    const reason = walkSecondLevel(this.mem, this.config, ctx, iovaPfn, write, leaf);
    if (reason !== 0) return this.fault(
        sid, iova, access, reason, ctx.fpd && isQualifiedFault(reason),
        ctx.pasid !== undefined, ctx.pasid === undefined ? PCI_NO_PASID_PV : ctx.pasid,
      );
    // Bigints built the cheap way (measured on node 20): BigInt() of an exact
    // number (both addresses are below 2^53 here), and the request's own
    // bigint when it is already the leaf's first byte; a bigint AND or shift
    // costs twice as much.
    const base = leaf.iovaPfn * 4096;
    const entry: IOMMUTLBEntry = {
      iova: base === n ? iova : pfn >= 0 ? BigInt(base) : BigInt(leaf.iovaPfn) << 12n,
      translatedAddr: BigInt(leaf.xlatPfn * 4096),
      addrMask: LEVEL_MASK[leaf.level]!,
      perm: leaf.perm as IOMMUAccessFlags,
    };
    this.iotlb.insert(space, leaf.level, entry, ctx.did, leaf.iovaPfn, leaf.pages);
    return entry;
  }

  /**
   * The IOTLB key of (space `as`, RID_PASID `pasid`) for requests without
   * PASID in scalable mode: negative numbers, so they never meet a space id
   * (the key of every other request). The last pair is remembered on the
   * space, so a device whose RID_PASID does not change costs no map lookup.
   */
  private ridPasidKey(as: VtdAddressSpace, pasid: number): number {
    if (as.iotlbPasid === pasid) return as.iotlbKey;
    const pair = as.index * 0x10_0000 + pasid;
    let key = this.ridPasidKeys.get(pair);
    if (key === undefined) {
      key = -1 - this.ridPasidKeys.size;
      this.ridPasidKeys.set(pair, key);
    }
    as.iotlbPasid = pasid;
    as.iotlbKey = key;
    return key;
  }

  dmaRead(sid: number, iova: bigint, len: number, pasid?: number): DmaReadResult {
    return dmaRead(this.mem, (a, write) => this.translate(sid, a, write ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO, pasid), iova, len);
  }

  dmaWrite(sid: number, iova: bigint, data: Uint8Array, pasid?: number): DmaResult {
    return dmaWrite(this.mem, (a, write) => this.translate(sid, a, write ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO, pasid), iova, data);
  }

  reset(): void {
    this.initRegisters();
    this.root = 0;
    this.rootScalable = false;
    this.dmarEnabled = false;
    this.qiEnabled = false;
    this.iq = 0n;
    this.iqSize = 0;
    this.iqHead = 0;
    this.iqTail = 0;
    this.iqDw = false;
    this.iqLastDescType = VTD_INV_DESC_NONE;
    this.nextFrcd = 0;
    this.resetCaches();
    this.unmapAllSpaces();
  }

  // ---------------------------------------------------------------------------------------------
  // Register-based invalidation (vtd-facts §6, last item)

  private handleCcmdWrite(): void {
    const r = this.regs;
    const val = r.getQuadRaw(R.DMAR_CCMD_REG);
    if (!(val & R.VTD_CCMD_ICC)) return;
    if (this.qiEnabled) {
      this.guestError('register-based context-cache invalidation while queued invalidation is enabled (ignored, ICC stays set)');
      return;
    }
    let caig: number;
    const cirg = Number((val >> R.VTD_CCMD_CIRG_SHIFT) & 3n);
    switch (cirg) {
      case VTD_CC_G.GLOBAL:
      case VTD_CC_G.DOMAIN:
        // QEMU performs (and reports) a domain-selective request as global.
        caig = VTD_CC_G.GLOBAL;
        this.contextGlobalInvalidate();
        break;
      case VTD_CC_G.DEVICE:
        caig = VTD_CC_G.DEVICE;
        this.contextDeviceInvalidate(Number((val >> 16n) & 0xffffn), Number((val >> 32n) & 3n));
        break;
      default:
        this.guestError(`CCMD with invalid granularity (${hex(val)})`);
        caig = 0;
    }
    r.setClearQuad(R.DMAR_CCMD_REG, R.VTD_CCMD_ICC, 0n);
    r.setClearQuad(R.DMAR_CCMD_REG, R.VTD_CCMD_CAIG_MASK, BigInt(caig) << R.VTD_CCMD_CAIG_SHIFT);
  }

  private handleIotlbWrite(): void {
    const r = this.regs;
    const val = r.getQuadRaw(R.DMAR_IOTLB_REG);
    if (!(val & R.VTD_TLB_IVT)) return;
    if (this.qiEnabled) {
      this.guestError('register-based IOTLB invalidation while queued invalidation is enabled (ignored, IVT stays set)');
      return;
    }
    const did = Number((val >> 32n) & 0xffffn);
    let iaig = 0;
    switch (Number((val >> R.VTD_TLB_IIRG_SHIFT) & 3n)) {
      case VTD_IOTLB_G.GLOBAL:
        iaig = VTD_IOTLB_G.GLOBAL;
        this.iotlbGlobalInvalidate();
        break;
      case VTD_IOTLB_G.DOMAIN:
        iaig = VTD_IOTLB_G.DOMAIN;
        this.iotlbDomainInvalidate(did);
        break;
      case VTD_IOTLB_G.PAGE: {
        const iva = r.getQuadRaw(R.DMAR_IVA_REG);
        const am = Number(iva & 0x3fn);
        if (am > R.VTD_MAMV) {
          this.guestError(`IOTLB page-selective invalidation with AM ${am} > MAMV (IAIG 0)`);
          break;
        }
        iaig = VTD_IOTLB_G.PAGE;
        this.iotlbPageInvalidate(did, iva & ~0xfffn, am);
        break;
      }
      default:
        this.guestError(`IOTLB register with invalid granularity (${hex(val)})`);
    }
    r.setClearQuad(R.DMAR_IOTLB_REG, R.VTD_TLB_IVT, 0n);
    r.setClearQuad(R.DMAR_IOTLB_REG, R.VTD_TLB_IAIG_MASK, BigInt(iaig) << R.VTD_TLB_IAIG_SHIFT);
  }

  // ---------------------------------------------------------------------------------------------
  // Queued invalidation (vtd-facts §6, §7)

  private handleIqtWrite(): void {
    const val = this.regs.getQuadRaw(R.DMAR_IQT_REG);
    if (this.iqDw && (val & 0x10n)) {
      // 7.2 ignores such a write (10.2 raises IQE).
      this.guestError(`IQT ${hex(val)} sets bit 4, reserved with 256-bit descriptors (write ignored, as QEMU 7.2)`);
      return;
    }
    this.iqTail = this.iqDw ? Number((val >> 5n) & 0x3fffn) : Number((val >> 4n) & 0x7fffn);
    if (this.qiEnabled && !(this.regs.getLongRaw(R.DMAR_FSTS_REG) & R.VTD_FSTS_IQE)) this.fetchInvDesc();
  }

  /**
   * Processes descriptors from head to tail inside the register write. Bounded
   * by the queue size: head moves toward a tail below the size, one descriptor
   * per step, and stops at the first invalid one.
   */
  private fetchInvDesc(): void {
    const shift = this.iqDw ? 5 : 4;
    if (this.iqTail >= this.iqSize) {
      this.invQueueError(`queue tail ${this.iqTail} is beyond the queue of ${this.iqSize} descriptors`);
      return;
    }
    while (this.iqHead !== this.iqTail) {
      const why = this.processInvDesc();
      if (why !== undefined) {
        this.invQueueError(why);
        return;
      }
      this.regs.setQuadRaw(R.DMAR_IQH_REG, BigInt(this.iqHead << shift) & 0x7fff0n);
    }
  }

  /** FSTS.IQE and a fault event; IQH stays at the bad descriptor. */
  private invQueueError(why: string): void {
    this.guestError(`invalidation queue error at head ${this.iqHead}: ${why}`);
    const fsts = this.regs.getLongRaw(R.DMAR_FSTS_REG);
    this.regs.setClearLong(R.DMAR_FSTS_REG, 0, R.VTD_FSTS_IQE);
    this.generateFaultEvent(fsts);
  }

  /** One descriptor at the head; undefined on success (head advanced), else why it is invalid. */
  private processInvDesc(): string | undefined {
    const width = this.iqDw ? 32 : 16;
    const bytes = this.descBytes[width];
    const gpa = this.iq + BigInt(this.iqHead * width);
    if (gpa + BigInt(width) > 2n ** 53n || !this.mem.read(Number(gpa), bytes)) {
      this.iqLastDescType = VTD_INV_DESC_NONE;
      return `descriptor at ${hex(gpa)} is outside RAM`;
    }
    const raw = parseRawDescriptor(bytes);
    this.iqLastDescType = Number(raw.lo & 0xfn);
    const d = decodeDescriptor(raw);
    const why = this.executeDescriptor(d);
    if (why !== undefined) return why;
    this.iqHead = (this.iqHead + 1) % this.iqSize;
    return undefined;
  }

  private executeDescriptor(d: VtdInvDescriptor): string | undefined {
    switch (d.type) {
      case 'invalid':
        return d.why;
      case 'context-cache':
        if (d.granularity === VTD_CC_G.DEVICE) this.contextDeviceInvalidate(d.sid, d.fm);
        else this.contextGlobalInvalidate(); // domain-selective is performed as global (QEMU)
        return undefined;
      case 'iotlb':
        if (d.granularity === VTD_IOTLB_G.GLOBAL) this.iotlbGlobalInvalidate();
        else if (d.granularity === VTD_IOTLB_G.DOMAIN) this.iotlbDomainInvalidate(d.did);
        else this.iotlbPageInvalidate(d.did, d.addr, d.am);
        return undefined;
      case 'device-iotlb':
        this.deviceIotlbInvalidate(d.sid, d.s, d.addr);
        return undefined;
      case 'iec':
        // Interrupt entry cache: nothing cached here (interrupt remapping is register state only).
        return undefined;
      case 'wait':
        // Divergence: QEMU 7.2 aborts (assert) on SW and IF together; the spec
        // allows both, so we write the status, then signal the completion.
        if (d.sw) {
          const data = new Uint8Array(4);
          new DataView(data.buffer).setUint32(0, d.statusData >>> 0, true);
          // The status address is not masked with HAW (as QEMU).
          if (d.statusAddr + 4n > 2n ** 53n || !this.mem.write(Number(d.statusAddr), data)) {
            return `wait descriptor status write to ${hex(d.statusAddr)} failed (outside RAM)`;
          }
          // The status may land in a page table: what the walks memoised is stale.
          this.actions.session.forget();
        }
        if (d.iflag) this.generateCompletionEvent();
        return undefined;
      case 'pasid-iotlb':
        // QEMU 7.2 accepts it and does nothing.
        return undefined;
      case 'pasid-cache':
        // QEMU 7.2 caches no PASID entry (it re-reads it on every IOTLB miss), so
        // translation is unchanged. The listeners are not: C8 asks that a device
        // whose PASID entry was made invalid loses its translations, and this is
        // the invalidation a guest (Linux intel_pasid_tear_down_entry) sends for
        // it. Resync, as 10.2 does (vtd_pasid_cache_sync).
        if (d.granularity === 3) for (const as of this.registry.spaces()) { if (this.hasNotifiers(as)) this.resyncSpace(as); }
        else this.syncDomain(d.did, 0n, this.hawMask);
        return undefined;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Cache invalidations and their notifications (vtd-facts §9.3)

  private contextGlobalInvalidate(): void {
    this.contextCacheGen++;
    if (this.contextCacheGen === VTD_CONTEXT_CACHE_GEN_MAX) this.resetContextCache();
    for (const as of this.registry.spaces()) this.switchAddressSpace(as);
    for (const as of this.registry.spaces()) if (this.hasNotifiers(as)) this.resyncSpace(as);
  }

  /** Device-selective: sid's bus, devfn compared under the function mask (FM 1/2/3 masks bit 2 / 2:1 / 2:0). */
  private contextDeviceInvalidate(sid: number, fm: number): void {
    const mask = ~[0, 4, 6, 7][fm & 3]! & 0xff;
    for (const as of this.registry.spaces()) {
      if ((as.sid >> 8) !== (sid >> 8) || ((as.sid & mask) !== (sid & mask))) continue;
      as.ctxGen = 0;
      this.switchAddressSpace(as);
      if (this.hasNotifiers(as)) this.resyncSpace(as);
    }
  }

  private iotlbGlobalInvalidate(): void {
    this.iotlb.clear();
    for (const as of this.registry.spaces()) if (this.hasNotifiers(as)) this.resyncSpace(as);
  }

  private iotlbDomainInvalidate(did: number): void {
    this.iotlb.removeIf((e) => e.did === did);
    this.syncDomain(did, 0n, this.hawMask);
  }

  /**
   * The notifier side of an invalidation of domain `did` over [start, end]:
   * spaces whose context (read now) is in the domain are synced over the
   * range (QEMU 7.2). A space whose views were last synced from this domain
   * but whose context no longer resolves (context cleared, PASID entry made
   * invalid, pass-through) has lost its translations: UNMAP all (C8; QEMU
   * 7.2 skips it and leaves the listeners stale). One now in another domain
   * is resynced whole to its new tables.
   */
  private syncDomain(did: number, start: bigint, end: bigint): void {
    for (const as of this.registry.spaces()) {
      if (!this.hasNotifiers(as)) continue;
      const ctx = this.currentContext(as);
      if (ctx !== undefined && ctx.did === did) this.syncSpace(as, ctx, start, end);
      else if (as.syncedDid === did) {
        if (ctx === undefined) this.unmapSpace(as);
        else this.syncSpace(as, ctx, 0n, this.hawMask);
      }
    }
  }

  /**
   * PSI: drops entries of the domain whose frame matches ADDR under the AM
   * mask, or whose own (large) page contains ADDR (vtd_hash_remove_by_page),
   * then syncs the matching spaces (QEMU 7.2 ignores PASIDs) over the
   * naturally aligned block of 2^AM pages that contains ADDR: the range the
   * hardware invalidates whatever the low bits of ADDR say (VT-d 6.5.2.3,
   * contract C9). QEMU 7.2 syncs [ADDR, ADDR + 4K * 2^AM) as given, which
   * for an unaligned ADDR leaves the start of the block stale in the
   * listeners while its IOTLB entries are gone (issue 13 item 5).
   *
   * QEMU 7.2 keeps the AM mask in a `uint8_t` (VTDIOTLBPageInvInfo.mask), so
   * only gfn bits 7:AM are compared: a PSI also drops every entry of the
   * domain whose gfn agrees in those 8 bits, and with AM >= 8 the mask is 0
   * and the whole domain is dropped. This over-invalidates compared with the
   * VT-d spec (6.5.2.3: only the 2^AM pages at ADDR); we follow QEMU, as
   * captured (fixtures/qemu-vtd-extra/qi-psi-*, reg-invalidation-*).
   *
   * The IOTLB side therefore drops a superset of the entries meeting the
   * aligned block (an entry inside the block agrees with ADDR in gfn bits
   * 7:AM; a large entry meeting a smaller block contains ADDR; a block of
   * AM >= 8 drops the whole domain), so a listener is never synced to a
   * translation that the IOTLB still answers stale. The notifiers sync the
   * block only, as C9 asks: the QEMU over-invalidation beyond it (aliases
   * every 256 pages, or the whole domain) is not an invalidation the guest
   * asked for.
   */
  private iotlbPageInvalidate(did: number, addr: bigint, am: number): void {
    const pages = 2 ** am;
    const gfn = addr < 2n ** 64n ? Number(addr >> 12n) : 0;
    const mask8 = 0xff & ~(pages - 1);
    const gfnLow = (gfn % 256) & mask8;
    this.iotlb.removeIf((e) => e.did === did && (((e.gfn % 256) & mask8) === gfnLow || e.gfn === gfn - (gfn % e.pages)));
    const size = BigInt(pages) << 12n;
    // Aligned, so the block never runs past 2^64 - 1.
    const first = addr & ~(size - 1n);
    this.syncDomain(did, first, first + size - 1n);
  }

  /** DEVIOTLB_UNMAP to the space of `sid`: S=0 one page; S=1 8 KiB << (trailing ones of ADDR[63:12]), ADDR aligned down. */
  private deviceIotlbInvalidate(sid: number, s: boolean, addr: bigint): void {
    const as = this.registry.peek(sid);
    if (as === undefined || !(as.notifiers.flags & IOMMUNotifierFlag.DEVIOTLB_UNMAP)) return;
    let size = 4096n;
    if (s) {
      let ones = 0n;
      while (ones < 52n && ((addr >> (12n + ones)) & 1n) === 1n) ones++;
      size = 8192n << ones;
      if (size > 1n << 64n) size = 1n << 64n;
      addr &= ~(size - 1n) & 0xffff_ffff_ffff_ffffn;
    }
    as.notifiers.notify({
      type: IOMMUNotifierFlag.DEVIOTLB_UNMAP,
      entry: { iova: addr, translatedAddr: 0n, addrMask: size - 1n, perm: IOMMUAccessFlags.NONE },
    });
  }

  private hasNotifiers(as: VtdAddressSpace): boolean {
    return (as.notifiers.flags & IOTLB_EVENTS) !== 0;
  }

  /**
   * The context of a space as the tables say now (QEMU re-reads it for every
   * sync, bypassing the context cache). Undefined when it does not resolve,
   * when translation is off, or for a pass-through context: none of those has
   * page tables a notifier could shadow.
   */
  private currentContext(as: VtdAddressSpace): VtdContext | undefined {
    if (!this.dmarEnabled) return undefined;
    const res = resolveContext(this.mem, this.config, this.root, this.rootScalable, as.sid, as.pasid);
    if (isContextFault(res) || res.passThrough) return undefined;
    return res;
  }

  /**
   * Full-range resync of one space: unmap everything when its context no
   * longer resolves (QEMU bug c28b535d08: never an error), else sync the
   * delta. While translation is off nothing is shadowed: the views were
   * emptied when TE was cleared and stay empty until the guest invalidates
   * with TE on (QEMU switches the device to the untranslated alias).
   */
  private resyncSpace(as: VtdAddressSpace): void {
    if (!this.dmarEnabled) return;
    const ctx = this.currentContext(as);
    if (ctx === undefined) this.unmapSpace(as);
    else this.syncSpace(as, ctx, 0n, this.hawMask);
  }

  /**
   * Brings the views of `as` over [start, end] in line with the tables of
   * `ctx` (C9), under the action's work bound (ModelAddressSpace.sync: once
   * it is spent the sync is abandoned and reported, see VtdLimits).
   */
  private syncSpace(as: VtdAddressSpace, ctx: VtdContext, start: bigint, end: bigint): void {
    if (start > end) return;
    as.syncedDid = ctx.did;
    as.sync(start, end, this.walkerOf(ctx));
  }

  /** The page-table walker of a context for the notifier list, under the current action's work bound and memo. */
  private walkerOf(ctx: VtdContext): LeafWalker {
    return secondLevelWalker(this.mem, this.config, ctx, this.actions.session);
  }

  private unmapSpace(as: VtdAddressSpace): void {
    as.syncedDid = -1;
    // Clipped to 2^aw - 1 as vtd_address_space_unmap does.
    as.notifyUnmap(0n, this.hawMask);
  }

  private unmapAllSpaces(): void {
    for (const as of this.registry.spaces()) if (as.listened) this.unmapSpace(as);
  }

  // ---------------------------------------------------------------------------------------------
  // Notifier registration (C1, C7): AddressSpaceOwner

  /** notify_flag_changed: refuses what this configuration can never serve (C1). */
  checkNotifierFlags(name: string, flags: number): void {
    if ((flags & IOMMUNotifierFlag.MAP) && !this.config.cachingMode) {
      throw new Error(
        `${name}: MAP notifiers need caching mode (cachingMode: true): without CAP.CM the guest never invalidates new mappings, so they could never be notified`,
      );
    }
    if ((flags & IOMMUNotifierFlag.DEVIOTLB_UNMAP) && !this.config.deviceIotlb) {
      throw new Error(`${name}: DEVIOTLB_UNMAP notifiers need device-iotlb (deviceIotlb: true): without ECAP.DT the guest sends no device-IOTLB invalidations`);
    }
  }

  /**
   * The C7 replay of a new MAP notifier (called by ModelAddressSpace inside
   * the registration's guest action): the walker of the space's current
   * context, which the views are then synced from (`syncedDid`); undefined
   * (nothing to replay) when it does not resolve or is pass-through.
   */
  walker(space: ModelAddressSpace): LeafWalker | undefined {
    const as = space as VtdAddressSpace;
    const ctx = this.currentContext(as);
    if (ctx === undefined) return undefined;
    as.syncedDid = ctx.did;
    return this.walkerOf(ctx);
  }

  /** A contract violation stopped a notification step: reported, never thrown out of a guest operation. */
  notificationError(_as: ModelAddressSpace, message: string): void {
    this.guestError(message);
  }
}

/** Scratch for `exactIova`: one u64 and its two u32 halves. */
const IOVA_U64 = new BigUint64Array(1);
const IOVA_U32 = new Uint32Array(IOVA_U64.buffer);
/** Whether IOVA_U32[0] is the low half (typed arrays use the host's byte order). */
const IOVA_U32_LO = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;

/**
 * `iova` as an exact number when 0 <= iova < 2^53, else -1 (translate's only
 * use of an IOVA at or above 2^53 is to fault it as beyond the AW). Through
 * a BigUint64Array: `Number(bigint)` costs about three times as much on
 * node 20, and translate() pays this on every call, IOTLB hits included.
 */
function exactIova(iova: bigint): number {
  if (BigInt.asUintN(64, iova) !== iova) return -1;
  IOVA_U64[0] = iova;
  const hi = IOVA_U32[IOVA_U32_LO ^ 1]!;
  return hi < 0x20_0000 ? hi * 0x1_0000_0000 + IOVA_U32[IOVA_U32_LO]! : -1;
}
