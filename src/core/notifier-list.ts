import { EventEmitter } from 'node:events';
import type TypedEmitter from 'typed-emitter';
import type { IOMMUTLBEntry, IOMMUTLBEvent, IOMMUNotifierFlag } from './tlb-entry';
import type { ContractRule, ContractViolation } from './errors';
import type { LeafWalker } from './leaf';

/**
 * A listener's registration (QEMU `IOMMUNotifier`): which event types it
 * wants (`flags`, never NONE) and for which inclusive IOVA range.
 */
export interface IOMMUNotifier {
  flags: IOMMUNotifierFlag;
  /** First IOVA of the range (inclusive). */
  start: bigint;
  /** Last IOVA of the range (inclusive); 2^64 - 1 for the whole space. */
  end: bigint;
  iommuIdx?: number;
  /**
   * Called for each delivered event. The event and its entry are only valid
   * during the call. A throw is caught and reported as `listenerError`; the
   * other notifiers still get the event.
   */
  notify(event: IOMMUTLBEvent, handle: NotifierHandle): void;
}

/** What `register()` returns: the way to unregister, and the notifier's identity in reports. */
export interface NotifierHandle {
  readonly id: number;
  readonly notifier: IOMMUNotifier;
  /** False once disposed. */
  readonly registered: boolean;
  /** Unregisters. Sends no UNMAP (as QEMU). Safe to call during delivery (C10) and twice. */
  dispose(): void;
}

/** `repaired` event: a violating event was turned into a legal sequence (repair mode). */
export interface ContractRepair {
  rule: ContractRule;
  notifier: NotifierHandle;
  /** The event the model sent. */
  original: IOMMUTLBEvent;
  /** What was delivered instead (possibly nothing). */
  delivered: IOMMUTLBEvent[];
  /** Human-readable account of the change. */
  message: string;
}

export type NotifierListEvents = {
  /** Repair mode: a violation was repaired. */
  repaired: (repair: ContractRepair) => void;
  /** A violation was detected (both modes; in strict mode it is also thrown). */
  violation: (violation: ContractViolation) => void;
  /** A notifier's callback threw. */
  listenerError: (error: unknown, handle: NotifierHandle, event: IOMMUTLBEvent) => void;
};

export interface NotifierListOptions {
  /** `strict` (default): violating events are refused and thrown. `repair`: they are made legal and reported. */
  mode?: 'strict' | 'repair';
  /**
   * The owning model's hook (QEMU `notify_flag_changed`): called when the union
   * of the registered notifiers' flags changes. Throw to refuse the
   * registration that caused the change (C1); the error message should say why.
   */
  notifyFlagChanged?: (oldFlags: IOMMUNotifierFlag, newFlags: IOMMUNotifierFlag) => void;
  /** Name used in messages (for example `intel-vtd sid 0x0020`). */
  name?: string;
}

/** Counters, for tests and the bench. */
export interface NotifierListStats {
  delivered: number;
  violations: number;
  repairs: number;
}

/**
 * The notifier list of one IOMMU address space. It delivers IOMMUTLBEvents to
 * the notifiers whose flags and range match, in registration order, and it
 * enforces the notifier contract (`shared/spec/contract.md`, rules C1..C10):
 * it keeps, per notifier with the MAP flag, the view delivered so far (an
 * interval map over IOVA) and checks every event against it before delivery.
 */
export class NotifierList {
  readonly events: TypedEmitter<NotifierListEvents> = new EventEmitter() as TypedEmitter<NotifierListEvents>;

  constructor(options: NotifierListOptions = {}) {
    void options;
    throw new Error('NotifierList: not implemented yet');
  }

  /** Union of the registered notifiers' flags. */
  get flags(): IOMMUNotifierFlag {
    throw new Error('not implemented');
  }

  /** The registered notifiers, in registration order. */
  get handles(): readonly NotifierHandle[] {
    throw new Error('not implemented');
  }

  readonly stats: NotifierListStats = { delivered: 0, violations: 0, repairs: 0 };

  /**
   * Registers a notifier (C1). Throws ContractViolation (rule C1) when flags
   * are NONE or the range is empty, or the error thrown by the model's
   * `notifyFlagChanged` (the registration is then undone).
   * Does not replay: the model does that (C7) through `replay()`.
   */
  register(notifier: IOMMUNotifier): NotifierHandle {
    void notifier;
    throw new Error('not implemented');
  }

  /**
   * Delivers `event` to every registered notifier whose flags include its type
   * and whose range it intersects (and whose iommuIdx matches, when given),
   * checking C2..C6 and C10 against each notifier's view. MAP/UNMAP events must
   * lie wholly inside each receiving notifier's range; DEVIOTLB_UNMAP events
   * are cropped to it. Strict mode: violating deliveries are skipped and a
   * ContractViolation is thrown after the others were delivered.
   */
  notify(event: IOMMUTLBEvent, iommuIdx?: number): void {
    void event; void iommuIdx;
    throw new Error('not implemented');
  }

  /**
   * Delivers `event` to one notifier only (QEMU `memory_region_notify_iommu_one`),
   * with the same checks. A handle that is no longer registered is a C10 violation.
   * A type the notifier did not ask for, or an event outside its range, is C6.
   */
  notifyOne(handle: NotifierHandle, event: IOMMUTLBEvent): void {
    void handle; void event;
    throw new Error('not implemented');
  }

  /**
   * Replays the address space to one notifier (C7): afterwards the notifier's
   * view equals the valid translations `walk` reports inside its range. For a
   * new notifier that is one MAP per leaf (split at the range edges into
   * aligned power-of-two chunks); for one that already has a view, only the
   * differences are sent (so a replay of an unchanged space sends nothing).
   */
  replay(handle: NotifierHandle, walk: LeafWalker): void {
    void handle; void walk;
    throw new Error('not implemented');
  }

  /**
   * Teardown (C8): every MAP notifier receives UNMAPs for all entries its view
   * holds that intersect [start, end] (whole entries); every UNMAP-only
   * notifier receives UNMAPs covering [start, end] ∩ its range, split into
   * aligned power-of-two chunks. Default range: the whole 64-bit space.
   */
  unmapAll(start?: bigint, end?: bigint): void {
    void start; void end;
    throw new Error('not implemented');
  }

  /**
   * The sync helper (C4, C5, C9): `walk` says what the page tables now hold;
   * afterwards each MAP notifier's view of [start, end] (widened to whole
   * entries of the view and of the tables that cross its edges) equals the
   * tables, using the minimal legal sequence: identical entries are left alone,
   * a changed entry is unmapped then mapped, an entry only partly inside or
   * partly replaced is unmapped whole before the new entries are mapped.
   * UNMAP-only notifiers receive UNMAPs covering [start, end] ∩ their range.
   * Cost: O(view entries + table leaves in the range), never O(range / 4 KiB).
   */
  sync(start: bigint, end: bigint, walk: LeafWalker): void {
    void start; void end; void walk;
    throw new Error('not implemented');
  }

  /**
   * The view of a MAP notifier: the entries it has been told are valid, in
   * ascending IOVA order (empty for a notifier without MAP).
   */
  view(handle: NotifierHandle): IOMMUTLBEntry[] {
    void handle;
    throw new Error('not implemented');
  }
}
