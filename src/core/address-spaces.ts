/**
 * Model plumbing every IOMMU model needs around its notifier lists, written
 * once (issue 8 part 1) and used by every model (intel-vtd, virtio-iommu,
 * smmuv3, amd-vi):
 * - the per-device address space, one NotifierList per sid / PASID
 *   (AddressSpaceRegistry, ModelAddressSpace; a model with per-space state
 *   subclasses ModelAddressSpace and passes a factory);
 * - registration with the model's veto (C1) and replay of the current
 *   translations (C7);
 * - the error boundary that turns a guest's mistake into a `guestError`
 *   event, never an exception out of a guest operation (a contract
 *   violation, a walk over its work bound: GuestActions, `safely`);
 * - per-guest-action work bounds: one WalkSession (walk-budget.ts) per MMIO
 *   write or registration, and a sync cut by it reported as `syncIncomplete`
 *   once per device and action, UNMAP-only listeners still unmapped;
 * - MAP delivery of a new range split at each notifier's range edges (C2,
 *   C6), teardown (C8) and resync;
 * - the identity translation of a pass-through (bypassed) space.
 */
import { IOMMUAccessFlags } from './access';
import { ContractViolation } from './errors';
import type { LeafWalker } from './leaf';
import type { IOMMUAddressSpace, IOMMUModelEvents } from './model';
import { NotifierList } from './notifier-list';
import type { IOMMUNotifier, NotifierHandle } from './notifier-list';
import { forEachPfnChunk } from './pow2';
import { IOMMUNotifierFlag } from './tlb-entry';
import type { IOMMUTLBEntry } from './tlb-entry';
import type { TypedEmitter } from './typed-events';
import { WalkLimitError } from './walk-budget';
import type { WalkSession } from './walk-budget';

/** What an address space asks of its model. */
export interface AddressSpaceOwner {
  /**
   * QEMU `notify_flag_changed`: throws (with the reason) to refuse a
   * registration whose flags the model can never serve (C1).
   */
  checkNotifierFlags(name: string, flags: number): void;
  /** The current valid translations of the space, for C7 replay; undefined when it has none. */
  walker(as: ModelAddressSpace): LeafWalker | undefined;
  /** A notification step failed on a contract violation (reported, never thrown out of a guest operation). */
  notificationError(as: ModelAddressSpace, message: string): void;
}

/**
 * The guest actions of one model (an MMIO write with every descriptor it
 * processes and every address space it syncs; a notifier registration and
 * its replay), each under one work bound: `run` starts a fresh WalkSession
 * for the outermost action (a listener that registers or writes a register
 * from its callback joins the running one), and is the error boundary of the
 * action: a contract violation or a walk over its bound becomes a
 * `guestError` event, never an exception out of the guest operation.
 *
 * When a walk passes the bound, that sync and every later sync of the same
 * action are abandoned: the listeners' views stay as they were,
 * `syncIncomplete` names each device concerned (once per action), UNMAP-only
 * listeners still receive their UNMAPs (ModelAddressSpace.abandon), and the
 * guest-visible state (registers, queue, caches) is as if the syncs had
 * completed.
 */
export class GuestActions {
  /** Nesting of guest actions. */
  private depth = 0;
  /** Serial of the current guest action. */
  private serial = 0;
  /** Why the current action's walks stopped ('' while they have not). */
  private reason = '';

  constructor(
    /** Work bound and memo of the current action, shared by all its walks. */
    readonly session: WalkSession,
    private readonly events: TypedEmitter<IOMMUModelEvents>,
    /** Prefix of the `guestError` messages (the model's trace-v1 name). */
    private readonly model: string,
  ) {}

  /** Runs one guest action (nested: joins the running one), catching what a guest may cause. */
  run(fn: () => void): void {
    if (this.depth === 0) {
      this.session.reset();
      this.serial++;
      this.reason = '';
    }
    this.depth++;
    try {
      fn();
    } catch (e) {
      // A notification step that is not under `safely` (a model's own
      // notify) stops here: reported, never thrown out of a guest operation.
      if (ContractViolation.is(e) || e instanceof WalkLimitError) this.guestError(`${e.name}: ${e.message}`);
      else throw e;
    } finally {
      this.depth--;
    }
  }

  /** The action's walks may not run: its bound is spent. */
  get exhausted(): boolean {
    return this.session.exhausted;
  }

  /** A `guestError` event of the model (QEMU's error_report / LOG_GUEST_ERROR). */
  guestError(message: string): void {
    this.events.emit('guestError', `${this.model}: ${message}`);
  }

  /**
   * A sync of `as` stopped by the bound (`why`, the walk's message) or not
   * attempted once it was spent: the first one of the action is a
   * `guestError`, and each device gets one `syncIncomplete` per action.
   */
  abandoned(as: ModelAddressSpace, why?: string): void {
    if (this.reason === '') {
      this.reason = why ?? 'the work bound of this guest action was already spent';
      this.guestError(`${this.reason}; notifier sync abandoned`);
    }
    if (as.reportedAction !== this.serial) {
      as.reportedAction = this.serial;
      this.events.emit('syncIncomplete', as.sid, this.reason);
    }
  }
}

/** One device's address space: where notifiers register. */
export class ModelAddressSpace implements IOMMUAddressSpace {
  readonly notifiers: NotifierList;
  /**
   * The device's DMA bypasses translation (pass-through, or an alias that
   * does: VT-d's no-DMAR address space): `translate` answers identityEntry,
   * and no notifier has tables to shadow. Set by the model.
   */
  passThrough = false;
  /** The guest action whose abandoned syncs of this space were last reported (GuestActions). */
  reportedAction = -1;

  constructor(
    private readonly owner: AddressSpaceOwner,
    readonly sid: number,
    readonly pasid: number | undefined,
    readonly name: string,
    /** Index of the space in its registry, in creation order (a model may tag its caches with it). */
    readonly index = 0,
    /** The model's guest actions, when its walks are bounded per action (registration then runs as one). */
    private readonly actions?: GuestActions,
  ) {
    this.notifiers = new NotifierList({ name, notifyFlagChanged: (_old, flags) => owner.checkNotifierFlags(name, flags) });
  }

  /**
   * Registers (C1: the list refuses NONE and empty ranges, the model its own
   * cases) and replays the current translations to a MAP notifier (C7). With
   * GuestActions the replay is one guest action for the work bound: a replay
   * over it leaves the view as it was (empty) and reports `syncIncomplete`.
   */
  registerNotifier(notifier: IOMMUNotifier): NotifierHandle {
    const handle = this.notifiers.register(notifier);
    if (notifier.flags & IOMMUNotifierFlag.MAP) {
      const replay = (): void => {
        if (this.actions?.exhausted) {
          this.abandon();
          return;
        }
        const walk = this.owner.walker(this);
        if (walk !== undefined) this.safely(() => this.notifiers.replay(handle, walk));
      };
      if (this.actions !== undefined) this.actions.run(replay);
      else replay();
    }
    return handle;
  }

  /** True when any notifier is registered (models skip notification work otherwise). */
  get listened(): boolean {
    return this.notifiers.handles.length > 0;
  }

  /**
   * Runs one notification step; a contract violation stops that step only
   * and is reported to the model (strict lists throw it after delivering to
   * the other notifiers). A walk over the action's work bound abandons the
   * sync of [start, end] (see abandon). Anything else is a bug and propagates.
   */
  safely(step: () => void, start?: bigint, end?: bigint): void {
    try {
      step();
    } catch (e) {
      if (ContractViolation.is(e)) this.owner.notificationError(this, `notifier contract violation (${e.rule}): ${e.message}`);
      else if (e instanceof WalkLimitError) this.abandon(e.message, start, end);
      else throw e;
    }
  }

  /**
   * Brings the views over [start, end] in line with the tables `walk`
   * reports (C9), under the action's work bound: once it is spent the sync
   * is not attempted but abandoned.
   */
  sync(start: bigint, end: bigint, walk: LeafWalker): void {
    if (start > end) return;
    if (this.actions?.exhausted) this.abandon(undefined, start, end);
    else this.safely(() => this.notifiers.sync(start, end, walk), start, end);
  }

  /**
   * A sync of [start, end] that the work bound stopped (or that came after
   * it was spent). The MAP notifiers' views stay as they were (a walker
   * throws before the notifier list delivers anything), and the device is
   * reported once per action (`syncIncomplete`: C9 does not hold until a
   * later sync succeeds). UNMAP-only notifiers need no walk: they still
   * receive the UNMAPs of the range, so a vhost-like cache never keeps a
   * translation the guest invalidated. No range: a replay (MAP notifiers
   * only).
   */
  abandon(why?: string, start?: bigint, end?: bigint): void {
    if (this.actions !== undefined) this.actions.abandoned(this, why);
    else this.owner.notificationError(this, `${why ?? 'walk bound spent'}; notifier sync abandoned`);
    if (start !== undefined && end !== undefined) this.notifyCacheUnmap(start, end);
  }

  /** UNMAPs of [start, end] to the UNMAP-only notifiers: aligned power-of-two chunks of the frames inside each one's range (C2, C6). */
  notifyCacheUnmap(start: bigint, end: bigint): void {
    const list = this.notifiers;
    const a = Number(start >> 12n);
    const b = Number(end >> 12n);
    for (const h of list.handles) {
      const n = h.notifier;
      if (!h.registered || (n.flags & IOMMUNotifierFlag.MAP) !== 0 || (n.flags & IOMMUNotifierFlag.UNMAP) === 0) continue;
      const lo = Math.max(a, Number((n.start + 0xfffn) >> 12n));
      const hi = Math.min(b, Number(((n.end + 1n) >> 12n) - 1n));
      if (lo > hi) continue;
      this.safely(() => forEachPfnChunk(lo, hi, -1, (p, pages) => {
        if (h.registered) list.notifyOnePages(h, IOMMUNotifierFlag.UNMAP, p, pages, 0, IOMMUAccessFlags.NONE);
      }));
    }
  }

  /**
   * A new valid translation: frames [firstPfn, lastPfn] -> xlatPfn.. with
   * `perm`, delivered as MAPs to every MAP notifier, cropped to the frames
   * wholly inside its range (C6) and split into aligned power-of-two chunks
   * on both the IOVA and the translated side (C2). The caller states that
   * no notifier holds anything in that range (C4).
   */
  notifyMap(firstPfn: number, lastPfn: number, xlatPfn: number, perm: number): void {
    const list = this.notifiers;
    for (const h of list.handles) {
      const n = h.notifier;
      if (!h.registered || (n.flags & IOMMUNotifierFlag.MAP) === 0) continue;
      // Frames wholly inside [start, end].
      const inLo = Number((n.start + 0xfffn) >> 12n);
      const inHi = Number(((n.end + 1n) >> 12n) - 1n);
      const lo = Math.max(firstPfn, inLo);
      const hi = Math.min(lastPfn, inHi);
      if (lo > hi) continue;
      this.safely(() => forEachPfnChunk(lo, hi, xlatPfn + (lo - firstPfn), (p, pages, x) => {
        if (h.registered) list.notifyOnePages(h, IOMMUNotifierFlag.MAP, p, pages, x, perm);
      }));
    }
  }

  /** Teardown of [start, end] (C8): UNMAPs of every entry the notifiers hold there. */
  notifyUnmap(start?: bigint, end?: bigint): void {
    if (this.listened) this.safely(() => this.notifiers.unmapAll(start, end));
  }

  /** Brings every MAP notifier's view to the model's current translations (C7/C8 after a change of domain). */
  resync(): void {
    if (!this.listened) return;
    const walk = this.owner.walker(this);
    if (walk === undefined) {
      this.notifyUnmap();
      return;
    }
    for (const h of this.notifiers.handles) {
      if (h.registered && (h.notifier.flags & IOMMUNotifierFlag.MAP)) this.safely(() => this.notifiers.replay(h, walk));
    }
  }
}

/** Makes the space of a registry (a model's subclass of ModelAddressSpace, with its per-space state). */
export type AddressSpaceFactory<AS extends ModelAddressSpace> = (
  owner: AddressSpaceOwner, sid: number, pasid: number | undefined, name: string, index: number, actions: GuestActions | undefined,
) => AS;

/** What a registry makes its spaces with. */
export interface AddressSpaceRegistryOptions<AS extends ModelAddressSpace> {
  /** The model's space class (default: ModelAddressSpace). */
  create?: AddressSpaceFactory<AS>;
  /** The model's guest actions: registrations then run under its work bound (see GuestActions). */
  actions?: GuestActions;
}

/**
 * The address spaces of a model, by requester id and optional PASID (a
 * space per (sid, PASID): VT-d scalable mode), created on first use.
 */
export class AddressSpaceRegistry<AS extends ModelAddressSpace = ModelAddressSpace> {
  /** Spaces without PASID by sid: an array of every 16-bit sid, so the lookup on a model's translate path stays a fast element load. */
  private readonly bySid: Array<AS | undefined> = new Array<AS | undefined>(0x10000);
  private readonly byKey = new Map<number, AS>();
  private readonly all: AS[] = [];
  private readonly create: AddressSpaceFactory<AS>;
  private readonly actions: GuestActions | undefined;

  constructor(private readonly owner: AddressSpaceOwner, private readonly modelName: string, options: AddressSpaceRegistryOptions<AS> = {}) {
    this.create = options.create ?? ((o, sid, pasid, name, index, actions) => new ModelAddressSpace(o, sid, pasid, name, index, actions) as AS);
    this.actions = options.actions;
  }

  /** The space of `sid` (16-bit requester id) and optional 20-bit PASID; RangeError for ids out of range. */
  get(sid: number, pasid?: number): AS {
    if (pasid === undefined) {
      const as = this.bySid[sid];
      if (as !== undefined) return as;
    }
    if (!Number.isInteger(sid) || sid < 0 || sid > 0xffff) throw new RangeError(`${this.modelName}: sid ${sid} is not a 16-bit requester id`);
    if (pasid !== undefined && (!Number.isInteger(pasid) || pasid < 0 || pasid > 0xfffff)) {
      throw new RangeError(`${this.modelName}: pasid ${pasid} is not a 20-bit PASID`);
    }
    const key = pasid === undefined ? sid : sid + (pasid + 1) * 0x10000;
    let as = this.byKey.get(key);
    if (as === undefined) {
      const name = `${this.modelName} sid 0x${sid.toString(16)}` + (pasid === undefined ? '' : ` pasid ${pasid}`);
      as = this.create(this.owner, sid, pasid, name, this.all.length, this.actions);
      this.byKey.set(key, as);
      this.all.push(as);
      if (pasid === undefined) this.bySid[sid] = as;
    }
    return as;
  }

  /** The space of `sid` without PASID if it exists (no creation). */
  peek(sid: number): AS | undefined {
    return this.bySid[sid];
  }

  /** Every space created so far, in creation order. */
  spaces(): readonly AS[] {
    return this.all;
  }
}

/**
 * The translation of a device whose DMA is not translated (translation off,
 * pass-through, bypass, an interrupt window): iova = gpa, one 4 KiB page,
 * with `perm` (default RW).
 */
export function identityEntry(iova: bigint, perm: IOMMUAccessFlags = IOMMUAccessFlags.RW): IOMMUTLBEntry {
  const page = iova & ~0xfffn;
  return { iova: page, translatedAddr: page, addrMask: 0xfffn, perm };
}
