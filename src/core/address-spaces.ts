/**
 * Model plumbing every IOMMU model needs around its notifier lists, written
 * once: the per-device address space (one NotifierList per sid / PASID),
 * registration with the model's veto (C1) and replay of the current
 * translations (C7), the error boundary that keeps a contract violation
 * from escaping a guest operation, and MAP delivery of a new range to every
 * MAP notifier split at its range edges (C2, C6).
 *
 * Written for virtio-iommu; src/models/intel-vtd/device.ts still has its own
 * copy of the same steps (issue 8 part 1 moves it here).
 */
import { ContractViolation } from './errors';
import type { LeafWalker } from './leaf';
import type { IOMMUAddressSpace } from './model';
import { NotifierList } from './notifier-list';
import type { IOMMUNotifier, NotifierHandle } from './notifier-list';
import { forEachPfnChunk } from './pow2';
import { IOMMUNotifierFlag } from './tlb-entry';

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

/** One device's address space: where notifiers register. */
export class ModelAddressSpace implements IOMMUAddressSpace {
  readonly notifiers: NotifierList;

  constructor(
    private readonly owner: AddressSpaceOwner,
    readonly sid: number,
    readonly pasid: number | undefined,
    readonly name: string,
  ) {
    this.notifiers = new NotifierList({ name, notifyFlagChanged: (_old, flags) => owner.checkNotifierFlags(name, flags) });
  }

  /** Registers (C1: the list refuses NONE and empty ranges, the model its own cases) and replays (C7). */
  registerNotifier(notifier: IOMMUNotifier): NotifierHandle {
    const handle = this.notifiers.register(notifier);
    if (notifier.flags & IOMMUNotifierFlag.MAP) {
      const walk = this.owner.walker(this);
      if (walk !== undefined) this.safely(() => this.notifiers.replay(handle, walk));
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
   * the other notifiers). Anything else is a bug and propagates.
   */
  safely(step: () => void): void {
    try {
      step();
    } catch (e) {
      if (ContractViolation.is(e)) this.owner.notificationError(this, `notifier contract violation (${e.rule}): ${e.message}`);
      else throw e;
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

/** The address spaces of a model, by requester id (and PASID), created on first use. */
export class AddressSpaceRegistry {
  private readonly bySid: Array<ModelAddressSpace | undefined> = [];
  private readonly byKey = new Map<number, ModelAddressSpace>();
  private readonly all: ModelAddressSpace[] = [];

  constructor(private readonly owner: AddressSpaceOwner, private readonly modelName: string) {}

  /** The space of `sid` (16-bit requester id) and optional 20-bit PASID; RangeError for ids out of range. */
  get(sid: number, pasid?: number): ModelAddressSpace {
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
      as = new ModelAddressSpace(this.owner, sid, pasid, name);
      this.byKey.set(key, as);
      this.all.push(as);
      if (pasid === undefined) this.bySid[sid] = as;
    }
    return as;
  }

  /** The space of `sid` without PASID if it exists (no creation). */
  peek(sid: number): ModelAddressSpace | undefined {
    return this.bySid[sid];
  }

  /** Every space created so far. */
  spaces(): readonly ModelAddressSpace[] {
    return this.all;
  }
}
