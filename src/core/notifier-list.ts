import { EventEmitter } from 'node:events';
import type { TypedEmitter } from './typed-events';
import { IOMMUNotifierFlag, flagsToString } from './tlb-entry';
import type { IOMMUTLBEntry, IOMMUTLBEvent, IOMMUEventType } from './tlb-entry';
import { ContractViolation } from './errors';
import type { ContractRule } from './errors';
import type { LeafWalker } from './leaf';
import type { IOMMUAccessFlags } from './access';
import { permToString } from './access';
import { IntervalMap } from './interval-map';
import { LeafMerger, OP_MAP, chunkPages } from './leaf-merge';
import type { ViewMerge } from './leaf-merge';
import { alignedPow2Chunks, isPow2 } from './pow2';
import { U64_MAX, hex } from './guest-addr';

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
  /** Events handed to listeners (one per notifier call). */
  delivered: number;
  /** Violations detected (both modes; C1 refusals included). */
  violations: number;
  /** Violations repaired (repair mode; one per notifier and offending event). */
  repairs: number;
}

const MAP = IOMMUNotifierFlag.MAP;
const UNMAP = IOMMUNotifierFlag.UNMAP;
const DEVIOTLB = IOMMUNotifierFlag.DEVIOTLB_UNMAP;
const TWO53 = 2 ** 53;
/** Frames in the 64-bit space. */
const PFN_LIMIT = 2 ** 52;

/** The registration record; the handle given out is this object. */
class Registration implements NotifierHandle {
  registered = true;
  readonly flags: number;
  /** iommuIdx, 0 when not given (QEMU notifiers always have one). */
  readonly idx: number;
  /** First and last frame that intersect [start, end] (intersection tests). */
  readonly lo: number;
  readonly hi: number;
  /** First and last frame wholly inside [start, end] (MAP/UNMAP must lie in [inLo, inHi]). */
  readonly inLo: number;
  readonly inHi: number;
  /** The delivered view: only for notifiers with MAP. */
  view: IntervalMap | undefined;

  constructor(readonly list: NotifierList, readonly id: number, readonly notifier: IOMMUNotifier) {
    this.flags = notifier.flags;
    this.idx = notifier.iommuIdx ?? 0;
    this.lo = Number(notifier.start >> 12n);
    this.hi = Number(notifier.end >> 12n);
    this.inLo = Number((notifier.start + 4095n) >> 12n);
    this.inHi = Number((notifier.end + 1n) >> 12n) - 1;
    this.view = notifier.flags & MAP ? new IntervalMap() : undefined;
  }

  dispose(): void {
    this.list['unregister'](this);
  }
}

/**
 * The notifier list of one IOMMU address space. It delivers IOMMUTLBEvents to
 * the notifiers whose flags and range match, in registration order, and it
 * enforces the notifier contract (`docs/contract.md`, rules C1..C10):
 * it keeps, per notifier with the MAP flag, the view delivered so far (an
 * interval map over IOVA) and checks every event against it before delivery.
 *
 * Views count in 4 KiB frames: a MAP or UNMAP entry smaller than 4 KiB, or
 * not 4 KiB aligned, is a C2 violation (DEVIOTLB_UNMAP is only cropped, never
 * tracked). A notifier with MAP but without UNMAP does not receive UNMAPs, but
 * the list still removes the UNMAPped entries (whole) from its view, so a
 * later MAP of the same range is not taken for a duplicate. `targetAs` is not
 * part of the view (two entries that differ only in it are identical).
 */
export class NotifierList {
  readonly events: TypedEmitter<NotifierListEvents> = new EventEmitter() as TypedEmitter<NotifierListEvents>;
  readonly stats: NotifierListStats = { delivered: 0, violations: 0, repairs: 0 };

  private readonly strict: boolean;
  private readonly hook: ((oldFlags: number, newFlags: number) => void) | undefined;
  private readonly name: string;
  /** Copy-on-write: deliveries iterate the array they started with (C10). */
  private regs: Registration[] = [];
  private unionFlags = 0;
  private nextId = 1;
  /** Nesting of deliveries (a listener that notifies from its callback). */
  private depth = 0;
  /** The walk state of syncs and replays (a nested one gets its own). */
  private readonly merger = new LeafMerger();

  // The event being checked, in frames (set by parse()).
  private pType = 0;
  private pFirst = 0;
  private pPages = 0;
  private pLast = 0;
  private pXlat = 0;
  private pPerm = 0;
  /** True when C2 and C3 hold (tracked shape: 4 KiB granule). */
  private pClean = false;
  private pC2: string | undefined;
  private pC3: string | undefined;
  /** Counts parse() calls: a re-entrant notification overwrites the p* fields. */
  private pGen = 0;

  /** Reused event for notifyOnePages: bigint fields are computed only when read. */
  private readonly lazy = makeLazyEvent();

  constructor(options: NotifierListOptions = {}) {
    this.strict = (options.mode ?? 'strict') === 'strict';
    if (options.mode !== undefined && options.mode !== 'strict' && options.mode !== 'repair') {
      throw new TypeError(`NotifierList: mode must be 'strict' or 'repair', not ${String(options.mode)}`);
    }
    this.hook = options.notifyFlagChanged;
    this.name = options.name ?? 'notifier list';
  }

  /** Union of the registered notifiers' flags. */
  get flags(): IOMMUNotifierFlag {
    return this.unionFlags;
  }

  /** The registered notifiers, in registration order. */
  get handles(): readonly NotifierHandle[] {
    return this.regs;
  }

  /**
   * Registers a notifier (C1). Throws ContractViolation (rule C1) when flags
   * are NONE or the range is empty, or the error thrown by the model's
   * `notifyFlagChanged` (the registration is then undone).
   * Does not replay: the model does that (C7) through `replay()`.
   */
  register(notifier: IOMMUNotifier): NotifierHandle {
    const refuse = (why: string): never => {
      const v = new ContractViolation(`${this.name}: C1 (registration): ${why}`, 'C1', undefined, undefined, undefined);
      this.stats.violations++;
      this.events.emit('violation', v);
      throw v;
    };
    const { flags, start, end } = notifier;
    if (typeof flags !== 'number' || !Number.isInteger(flags) || (flags & ~7) !== 0) refuse(`unknown notifier flags ${String(flags)}`);
    if ((flags & 7) === 0) refuse('a notifier with no flag (NONE) is refused');
    if (typeof start !== 'bigint' || typeof end !== 'bigint') refuse('start and end must be bigint');
    if (start < 0n || end > U64_MAX) refuse(`range [${hex(start)}, ${hex(end)}] is outside the 64-bit IOVA space`);
    if (start > end) refuse(`empty range: start ${hex(start)} > end ${hex(end)}`);
    if (typeof notifier.notify !== 'function') refuse('notify must be a function');
    const reg = new Registration(this, this.nextId++, notifier);
    this.regs = [...this.regs, reg];
    const old = this.unionFlags;
    this.unionFlags = old | flags;
    if (this.unionFlags !== old && this.hook) {
      try {
        this.hook(old, this.unionFlags);
      } catch (e) {
        // The model refused (QEMU undoes the insert when notify_flag_changed fails).
        reg.registered = false;
        reg.view = undefined;
        this.regs = this.regs.filter((r) => r !== reg);
        this.unionFlags = old;
        throw e;
      }
    }
    return reg;
  }

  /** dispose(): also tells the model when the union of flags changes (QEMU does on unregister). */
  private unregister(reg: Registration): void {
    if (!reg.registered) return;
    reg.registered = false;
    reg.view = undefined;
    this.regs = this.regs.filter((r) => r !== reg);
    const old = this.unionFlags;
    let u = 0;
    for (const r of this.regs) u |= r.flags;
    this.unionFlags = u;
    if (u !== old && this.hook) this.hook(old, u);
  }

  /**
   * Delivers `event` to every registered notifier whose flags include its type
   * and whose range it intersects (and whose iommuIdx matches, when given),
   * checking C2..C6 and C10 against each notifier's view. MAP/UNMAP events must
   * lie wholly inside each receiving notifier's range; DEVIOTLB_UNMAP events
   * are cropped to it, in the fewest aligned power-of-two blocks (C6). A MAP
   * with perm NONE is judged as the UNMAP it means (C3), by UNMAP-only
   * notifiers too. Strict mode: violating deliveries are skipped and a
   * ContractViolation is thrown after the others were delivered.
   */
  notify(event: IOMMUTLBEvent, iommuIdx?: number): void {
    this.parse(event);
    // Copy the parsed event to locals: a listener may notify from its callback.
    const gen = this.pGen;
    const type = this.pType;
    const first = this.pFirst;
    const last = this.pLast;
    // A MAP with perm NONE means "no translation" (C3): UNMAP listeners hear it
    // too, refused (strict) or repaired into an UNMAP, so that a vhost-like
    // listener does not keep serving the translation.
    const mapNone = type === MAP && this.pPerm === 0;
    const regs = this.regs;
    let errors: ContractViolation[] | undefined;
    this.depth++;
    try {
      for (let i = 0; i < regs.length; i++) {
        const reg = regs[i]!;
        if (!reg.registered) continue;
        if (iommuIdx !== undefined && reg.idx !== iommuIdx) continue;
        if (type === DEVIOTLB) {
          if (reg.flags & DEVIOTLB) {
            const v = this.deliverDev(reg, event);
            if (v) (errors ??= []).push(v);
          }
          continue;
        }
        if (last < reg.lo || first > reg.hi) continue;
        if ((reg.flags & type) === 0) {
          if (type === UNMAP && reg.view) this.silentUnmap(reg, first, last);
          else if (mapNone && reg.flags & UNMAP) {
            const v = this.deliverChecked(reg, event, gen === this.pGen);
            if (v) (errors ??= []).push(v);
          }
          continue;
        }
        const v = this.deliverChecked(reg, event, gen === this.pGen);
        if (v) (errors ??= []).push(v);
      }
    } finally {
      this.depth--;
    }
    if (errors) throw combine(errors);
  }

  /**
   * Delivers `event` to one notifier only (QEMU `memory_region_notify_iommu_one`),
   * with the same checks. A handle that is no longer registered is a C10 violation.
   * A type the notifier did not ask for, or an event outside its range, is C6:
   * `notifyOne` states that this notifier receives the event, so (unlike
   * `notify`, which only updates the view of a MAP notifier without UNMAP)
   * an UNMAP to a notifier that did not ask for UNMAP is refused (trace-v1:
   * "an event of a type the listener did not ask for ... is a C6 violation").
   */
  notifyOne(handle: NotifierHandle, event: IOMMUTLBEvent): void {
    const reg = this.own(handle);
    this.parse(event);
    this.one(reg, event);
  }

  /**
   * The numeric form of `notifyOne`, for hot paths (trace checking): the event
   * is given in 4 KiB frames: `pages` (a power of two) frames at `iovaPfn`
   * mapped to `xlatPfn` (ignored for UNMAP; pass 0) with `perm`. The bigint
   * entry handed to the listener is computed only when the listener reads it
   * (the event object is reused: valid during the callback only).
   */
  notifyOnePages(handle: NotifierHandle, type: IOMMUEventType, iovaPfn: number, pages: number, xlatPfn: number, perm: number): void {
    const reg = this.own(handle);
    const ok =
      (type === MAP || type === UNMAP) &&
      Number.isInteger(iovaPfn) && iovaPfn >= 0 && isPow2(pages) && iovaPfn % pages === 0 && iovaPfn + pages <= PFN_LIMIT;
    const permOk = type === MAP ? perm === 1 || perm === 2 || perm === 3 : perm === 0;
    const xlatOk = type !== MAP || (Number.isInteger(xlatPfn) && xlatPfn >= 0 && xlatPfn % pages === 0 && xlatPfn + pages <= PFN_LIMIT);
    if (ok && permOk && xlatOk && this.depth === 0) {
      this.pType = type;
      this.pFirst = iovaPfn;
      this.pPages = pages;
      this.pLast = iovaPfn + pages - 1;
      this.pXlat = type === MAP ? xlatPfn : 0;
      this.pPerm = perm;
      this.pClean = true;
      this.pGen++;
      const ev = this.lazy;
      ev.state.pfn = iovaPfn;
      ev.state.pages = pages;
      ev.state.xlat = this.pXlat;
      ev.state.perm = perm;
      ev.event.type = type;
      this.one(reg, ev.event);
      return;
    }
    if (!Number.isInteger(iovaPfn) || !Number.isInteger(pages) || !Number.isInteger(xlatPfn) || iovaPfn < 0 || pages < 1 || xlatPfn < 0) {
      throw this.violation('C2', `${this.name}: C2 (shape): notifyOnePages needs integer frame numbers (iovaPfn ${iovaPfn}, pages ${pages}, xlatPfn ${xlatPfn})`, reg, undefined, undefined);
    }
    // Misshapen or re-entrant: the bigint form, with its full diagnosis.
    this.notifyOne(handle, buildEvent(type, iovaPfn, pages, type === MAP ? xlatPfn : 0, perm));
  }

  /**
   * Replays the address space to one notifier (C7): afterwards the notifier's
   * view equals the valid translations `walk` reports inside its range. For a
   * new notifier that is one MAP per leaf (split at the range edges into
   * aligned power-of-two chunks); for one that already has a view, only the
   * differences are sent (so a replay of an unchanged space sends nothing).
   */
  replay(handle: NotifierHandle, walk: LeafWalker): void {
    const reg = this.own(handle);
    if (!reg.registered) throw new Error(`${this.name}: replay to notifier #${reg.id}, which is no longer registered`);
    if (!reg.view || reg.inLo > reg.inHi) return;
    const merger = this.takeMerger();
    try {
      merger.merge(0).open(reg.view, reg.inLo, reg.inHi);
      merger.begin(reg.inLo, reg.inHi, 1, this.name);
      walk(reg.inLo, reg.inHi, merger.sink);
      const m = merger.merges[0]!;
      m.finish();
      this.depth++;
      try {
        this.play(reg, m);
      } finally {
        this.depth--;
      }
    } finally {
      merger.end();
    }
  }

  /**
   * Teardown (C8): every MAP notifier receives UNMAPs for all entries its view
   * holds that intersect [start, end] (whole entries); every UNMAP-only
   * notifier receives UNMAPs covering [start, end] ∩ its range, split into
   * aligned power-of-two chunks. Default range: the whole 64-bit space.
   *
   * A MAP notifier gets aligned power-of-two UNMAPs of the range widened to
   * the entries crossing its edges, only those that hold entries: a chunk of
   * that split never cuts an entry the view held when it started, so each
   * covers whole entries; an entry a listener maps meanwhile (from inside one
   * of these UNMAPs) and a later chunk would cut is unmapped whole instead.
   */
  unmapAll(start: bigint = 0n, end: bigint = U64_MAX): void {
    this.checkRange('unmapAll', start, end);
    const a = Number(start >> 12n);
    const b = Number(end >> 12n);
    const regs = this.regs;
    this.depth++;
    try {
      for (const reg of regs) {
        if (!reg.registered) continue;
        const view = reg.view;
        if (view) {
          if (view.size === 0) continue;
          let lo = Math.max(a, reg.inLo);
          let hi = Math.min(b, reg.inHi);
          if (view.seek(a) && view.curStart < lo) lo = view.curStart;
          if (view.seek(b) && view.curStart <= b && view.curEnd > hi) hi = view.curEnd;
          if (lo > hi) continue;
          let p = lo;
          while (p <= hi && reg.registered && reg.view) {
            const n = chunkPages(p, hi, -1);
            // Against the live view: a listener may legally map, from inside
            // an earlier UNMAP of this loop, an entry the chunk would cut; it
            // is then unmapped whole (C5). Chunks holding nothing are skipped
            // (an UNMAP of nothing would be noise).
            this.deliverLive(reg, UNMAP, p, n, 0, 0, false, undefined);
            p += n;
          }
        } else if (reg.flags & UNMAP) {
          this.unmapChunks(reg, Math.max(a, reg.inLo), Math.min(b, reg.inHi));
        }
      }
    } finally {
      this.depth--;
    }
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
   *
   * The walker is called before anything is delivered, so a walker that throws
   * (a runaway-walk guard) leaves every view as it was; the error propagates.
   * Its leaves are compared with the views as they arrive and only the
   * differences are kept: a leaf equal to the view costs a few comparisons.
   */
  sync(start: bigint, end: bigint, walk: LeafWalker): void {
    this.checkRange('sync', start, end);
    const a = Number(start >> 12n);
    const b = Number(end >> 12n);
    const regs = this.regs;
    const mapRegs: Registration[] = [];
    for (const reg of regs) if (reg.registered && reg.view) mapRegs.push(reg);
    if (mapRegs.length > 0) {
      const merger = this.takeMerger();
      try {
        // Widen R to whole leaves crossing its edges (point queries), then, per
        // notifier, to whole view entries crossing them. Aligned power-of-two
        // blocks nest or are disjoint, so one step suffices and no leaf or entry
        // crosses the widened edges.
        const tLo = this.edgeLeaf(walk, a, merger, false);
        const tHi = this.edgeLeaf(walk, b, merger, true);
        let wLo = tLo;
        let wHi = tHi;
        let count = 0;
        for (const reg of mapRegs) {
          const view = reg.view!;
          let lo = tLo;
          let hi = tHi;
          if (view.seek(a) && view.curStart < lo) lo = view.curStart;
          if (view.seek(b) && view.curStart <= b && view.curEnd > hi) hi = view.curEnd;
          if (lo < wLo) wLo = lo;
          if (hi > wHi) wHi = hi;
          // Every merge is opened (and mapRegs[i] kept in step) even when empty.
          merger.merge(count++).open(view, Math.max(lo, reg.inLo), Math.min(hi, reg.inHi));
        }
        merger.begin(wLo, wHi, count, this.name);
        walk(wLo, wHi, merger.sink);
        for (let i = 0; i < count; i++) merger.merges[i]!.finish();
        this.depth++;
        try {
          for (let i = 0; i < count; i++) {
            const reg = mapRegs[i]!;
            if (reg.registered) this.play(reg, merger.merges[i]!);
          }
        } finally {
          this.depth--;
        }
      } finally {
        merger.end();
      }
    }
    this.depth++;
    try {
      for (const reg of regs) {
        if (!reg.registered || reg.view || !(reg.flags & UNMAP)) continue;
        this.unmapChunks(reg, Math.max(a, reg.inLo), Math.min(b, reg.inHi));
      }
    } finally {
      this.depth--;
    }
  }

  /**
   * The view of a MAP notifier: the entries it has been told are valid, in
   * ascending IOVA order (empty for a notifier without MAP).
   */
  view(handle: NotifierHandle): IOMMUTLBEntry[] {
    const reg = this.own(handle);
    const out: IOMMUTLBEntry[] = [];
    reg.view?.forEach((s, n, x, perm) => out.push(makeEntry(s, n, x, perm)));
    return out;
  }

  // ---- internals ------------------------------------------------------------

  private own(handle: NotifierHandle): Registration {
    if (!(handle instanceof Registration) || handle.list !== this) {
      throw new TypeError(`${this.name}: not a handle of this notifier list`);
    }
    return handle;
  }

  private checkRange(what: string, start: bigint, end: bigint): void {
    if (typeof start !== 'bigint' || typeof end !== 'bigint' || start < 0n || end > U64_MAX || start > end) {
      throw new RangeError(`${this.name}: ${what}: bad range [${String(start)}, ${String(end)}] (bigint, 0 <= start <= end < 2^64)`);
    }
  }

  /** The list's merger, or a new one while it is in use (a sync or replay started from a walker or listener). */
  private takeMerger(): LeafMerger {
    const m = this.merger.busy ? new LeafMerger() : this.merger;
    m.busy = true;
    return m;
  }

  /** Start (or, with `last`, last) frame of the leaf containing frame p; p if none. */
  private edgeLeaf(walk: LeafWalker, p: number, merger: LeafMerger, last: boolean): number {
    merger.begin(p, p, 0, this.name);
    walk(p, p, merger.sink);
    if (merger.probePages === 0) return p;
    return last ? Math.max(p, merger.probeStart + merger.probePages - 1) : Math.min(p, merger.probeStart);
  }

  /**
   * Reads `event` into the p* fields: frames, shape (C2) and perm (C3) checks.
   * The hot path (bigint values below 2^53) converts each value once.
   */
  private parse(event: IOMMUTLBEvent): void {
    const type = event.type;
    const e = event.entry;
    this.pGen++;
    this.pType = type;
    this.pC2 = undefined;
    this.pC3 = undefined;
    if (type !== MAP && type !== UNMAP && type !== DEVIOTLB) {
      throw this.violation('C3', `${this.name}: event type ${String(type)} is none of MAP, UNMAP, DEVIOTLB_UNMAP`, undefined, event, undefined);
    }
    const perm = e.perm;
    this.pPerm = perm;
    if (perm !== 0 && perm !== 1 && perm !== 2 && perm !== 3) this.pC3 = `perm ${String(perm)} is not an IOMMUAccessFlags value`;
    else if (type === MAP ? perm === 0 : perm !== 0) {
      this.pC3 = type === MAP ? 'a MAP carries perm NONE' : `an ${type === UNMAP ? 'UNMAP' : 'DEVIOTLB_UNMAP'} carries perm ${permToString(perm)} (must be NONE)`;
    }
    const iova = e.iova;
    const mask = e.addrMask;
    if (typeof iova !== 'bigint' || typeof mask !== 'bigint') {
      throw this.violation('C2', `${this.name}: C2 (shape): iova and addrMask must be bigint`, undefined, event, undefined);
    }
    const iv = Number(iova);
    const mk = Number(mask);
    if (mk === 4095 && iv >= 0 && iv < TWO53) {
      // 4 KiB: the common case, aligned iff iova is a whole frame.
      const first = iv / 4096;
      if (first === Math.floor(first)) {
        this.pFirst = first;
        this.pPages = 1;
        this.pLast = first;
        this.pXlat = type === MAP ? this.parseXlat(e.translatedAddr, 1) : 0;
        this.pClean = this.pC2 === undefined && this.pC3 === undefined;
        return;
      }
    }
    if (iv >= 0 && iv < TWO53 && mk >= 0 && mk < TWO53) {
      const first = iv / 4096;
      const pages = (mk + 1) / 4096;
      if (Number.isInteger(first) && Number.isInteger(pages) && isPow2(pages) && first % pages === 0 && first + pages <= PFN_LIMIT) {
        this.pFirst = first;
        this.pPages = pages;
        this.pLast = first + pages - 1;
        this.pXlat = type === MAP ? this.parseXlat(e.translatedAddr, pages) : 0;
        this.pClean = this.pC2 === undefined && this.pC3 === undefined;
        return;
      }
    }
    this.parseSlow(type, iova, mask, e.translatedAddr);
  }

  /** Translated frame of a MAP (aligned to `pages`), or sets pC2. */
  private parseXlat(ta: bigint, pages: number): number {
    if (typeof ta === 'bigint') {
      const xv = Number(ta);
      if (xv >= 0 && xv < TWO53) {
        const x = xv / 4096;
        // Division by a power of two is exact: floor tests alignment without fmod.
        if (x === Math.floor(x) && (pages === 1 || Math.floor(x / pages) * pages === x)) return x;
      } else if (ta >= 0n && ta <= U64_MAX && (ta & (BigInt(pages) * 4096n - 1n)) === 0n) {
        return Number(ta >> 12n);
      }
      if (ta >= 0n && ta <= U64_MAX) {
        this.pC2 = `translatedAddr ${hex(ta)} is not aligned to the entry size`;
        return 0;
      }
    }
    this.pC2 = `translatedAddr ${String(ta)} is not a 64-bit bigint`;
    return 0;
  }

  private parseSlow(type: number, iova: bigint, mask: bigint, ta: bigint): void {
    let last = iova + mask;
    let lo = iova;
    if (iova < 0n || mask < 0n || last > U64_MAX) {
      this.pC2 = `entry [${hex(iova)}, ${hex(last)}] is outside the 64-bit IOVA space`;
      if (lo < 0n) lo = 0n;
      if (last > U64_MAX) last = U64_MAX;
      if (last < lo) last = lo;
    } else if (((mask + 1n) & mask) !== 0n) {
      this.pC2 = `addrMask ${hex(mask)} + 1 is not a power of two`;
    } else if ((iova & mask) !== 0n) {
      this.pC2 = `iova ${hex(iova)} is not aligned to addrMask ${hex(mask)}`;
    } else if (mask < 0xfffn && type !== DEVIOTLB) {
      this.pC2 = `addrMask ${hex(mask)} is below 4 KiB: the notifier list tracks 4 KiB granules`;
    }
    this.pFirst = Number(lo >> 12n);
    this.pLast = Number(last >> 12n);
    this.pPages = this.pC2 === undefined ? this.pLast - this.pFirst + 1 : NaN;
    this.pXlat = type === MAP && this.pC2 === undefined ? this.parseXlat(ta, this.pPages) : 0;
    this.pClean = this.pC2 === undefined && this.pC3 === undefined;
  }

  /** One-notifier delivery (notifyOne / notifyOnePages), p* fields set. */
  private one(reg: Registration, event: IOMMUTLBEvent): void {
    const type = this.pType;
    if (!reg.registered) {
      const v = this.refuse(reg, event, 'C10', `notifier #${reg.id} is no longer registered`, undefined);
      if (v) throw v;
      return;
    }
    let v: ContractViolation | undefined;
    this.depth++;
    try {
      if (type === DEVIOTLB) {
        if (reg.flags & DEVIOTLB) v = this.deliverDev(reg, event);
        else v = this.refuse(reg, event, 'C6', `notifier ${this.describe(reg)} did not ask for DEVIOTLB_UNMAP`, undefined);
      } else if (this.pLast < reg.lo || this.pFirst > reg.hi) {
        v = this.refuse(reg, materialize(event, this.lazy.event), 'C6', `${typeName(type)} ${fmtEvent(event)} does not intersect the range of notifier ${this.describe(reg)}`, undefined);
      } else if ((reg.flags & type) === 0) {
        v = this.refuse(reg, materialize(event, this.lazy.event), 'C6', `notifier ${this.describe(reg)} did not ask for ${typeName(type)}`, undefined);
      } else {
        v = this.deliverChecked(reg, event, true);
      }
    } finally {
      this.depth--;
    }
    if (v) throw v;
  }

  /**
   * Checks a MAP/UNMAP against one notifier and delivers it (or the repaired
   * sequence). `parsed`: the p* fields still describe `event` (false after a
   * re-entrant notification overwrote them).
   * Returns the violation in strict mode.
   */
  private deliverChecked(reg: Registration, event: IOMMUTLBEvent, parsed: boolean): ContractViolation | undefined {
    if (!parsed) this.parse(event);
    const first = this.pFirst;
    const last = this.pLast;
    if (this.pClean && first >= reg.inLo && last <= reg.inHi) {
      const view = reg.view;
      if (this.pType === MAP) {
        if (view) {
          if (view.seek(first) && view.curStart <= last) return this.slow(reg, event);
          view.insertAfterSeek(first, this.pPages, this.pXlat, this.pPerm);
        }
        this.call(reg, event);
        return undefined;
      }
      if (view) {
        // C5: every entry the UNMAP touches must lie wholly inside it.
        let hits = 0;
        let ok = view.seek(first);
        view.mark();
        for (; ok && view.curStart <= last; ok = view.next()) {
          if (view.curStart < first || view.curEnd > last) return this.slow(reg, event);
          hits++;
        }
        if (hits === 1) {
          view.backToMark();
          view.removeAtCursor();
        } else if (hits > 1) removeRange(view, first, last);
      }
      this.call(reg, event);
      return undefined;
    }
    return this.slow(reg, event);
  }

  /** A violating MAP/UNMAP (p* fields describe it): diagnose (strict) or repair. */
  private slow(reg: Registration, event: IOMMUTLBEvent): ContractViolation | undefined {
    const ev = materialize(event, this.lazy.event);
    if (!this.strict) {
      this.repair(reg, ev);
      return undefined;
    }
    const type = this.pType;
    const what = `${typeName(type)} ${fmtEvent(ev)}`;
    if (this.pC2 !== undefined) return this.refuse(reg, ev, 'C2', `${what}: ${this.pC2}`, undefined);
    if (this.pC3 !== undefined) return this.refuse(reg, ev, 'C3', `${what}: ${this.pC3}`, undefined);
    if (this.pFirst < reg.inLo || this.pLast > reg.inHi) {
      return this.refuse(reg, ev, 'C6', `${what} is not wholly inside the range of notifier ${this.describe(reg)} (the model must split events at range edges)`, undefined);
    }
    const view = reg.view!;
    if (type === MAP) {
      view.seek(this.pFirst);
      const c = cursorEntry(view);
      const same = view.curStart === this.pFirst && view.curPages === this.pPages && view.curXlat === this.pXlat && view.curPerm === this.pPerm;
      return this.refuse(reg, ev, 'C4', same
        ? `${what} repeats an identical entry of the view of notifier ${this.describe(reg)} (a duplicate MAP is not delivered again)`
        : `${what} overlaps ${fmtEntry(c)} in the view of notifier ${this.describe(reg)}: a change of a valid translation must be sent as UNMAP of the old entry, then MAP`, c);
    }
    for (let ok = view.seek(this.pFirst); ok && view.curStart <= this.pLast; ok = view.next()) {
      if (view.curStart < this.pFirst || view.curEnd > this.pLast) {
        const c = cursorEntry(view);
        return this.refuse(reg, ev, 'C5', `${what} cuts ${fmtEntry(c)} in the view of notifier ${this.describe(reg)}: an UNMAP must cover whole entries`, c);
      }
    }
    return undefined;
  }

  /**
   * Repair mode: turns a violating MAP/UNMAP (p* fields) into a legal
   * sequence for `reg`, delivers it and reports it.
   */
  private repair(reg: Registration, ev: IOMMUTLBEvent): void {
    const rules: ContractRule[] = [];
    const notes: string[] = [];
    const delivered: IOMMUTLBEvent[] = [];
    let type = this.pType;
    let perm = this.pPerm;
    let first = this.pFirst;
    let last = this.pLast;
    let xlat = this.pXlat;
    let drop = false;
    if (this.pC3 !== undefined) {
      rules.push('C3');
      if (perm !== 0 && perm !== 1 && perm !== 2 && perm !== 3) {
        drop = true;
        notes.push(`${this.pC3}: dropped`);
      } else if (type === MAP) {
        type = UNMAP;
        perm = 0;
        notes.push('MAP with perm NONE treated as UNMAP');
      } else {
        perm = 0;
        notes.push('UNMAP carried a perm: sent with perm NONE');
      }
    }
    if (this.pC2 !== undefined && !drop) {
      rules.push('C2');
      const e = ev.entry;
      const lo = e.iova < 0n ? 0n : e.iova;
      let hi = e.iova + e.addrMask;
      if (hi > U64_MAX) hi = U64_MAX;
      if (type === UNMAP) {
        first = Number(lo >> 12n);
        last = Number(hi >> 12n);
        notes.push(`${this.pC2}: split into aligned 4 KiB-granular chunks covering it`);
      } else if (e.iova < 0n || e.addrMask < 0n || e.iova + e.addrMask > U64_MAX) {
        // A MAP that leaves the 64-bit IOVA space states no translation a
        // host could program; clamping it would map what nobody asked for.
        drop = true;
        notes.push(`${this.pC2}: dropped`);
      } else {
        first = Number((lo + 4095n) >> 12n);
        last = Number((hi + 1n) >> 12n) - 1;
        // The translation of the first whole page keeps the entry's offset.
        const delta = typeof e.translatedAddr === 'bigint' ? e.translatedAddr - e.iova : 1n;
        xlat = first + Number(delta >> 12n);
        if ((delta & 0xfffn) !== 0n || first > last || xlat < 0 || xlat + (last - first) >= PFN_LIMIT) {
          drop = true;
          notes.push(`${this.pC2}: no whole 4 KiB page can be mapped: dropped`);
        } else {
          notes.push(`${this.pC2}: split into aligned chunks of the whole 4 KiB pages it covers`);
        }
      }
    }
    if (!drop && (first < reg.inLo || last > reg.inHi)) {
      rules.push('C6');
      const f = Math.max(first, reg.inLo);
      if (type === MAP) xlat += f - first;
      first = f;
      last = Math.min(last, reg.inHi);
      notes.push(`cropped to the range of notifier ${this.describe(reg)}`);
      if (first > last) drop = true;
    }
    if (!drop) {
      let p = first;
      while (p <= last && reg.registered) {
        const n = chunkPages(p, last, type === MAP ? xlat + (p - first) : -1);
        this.deliverLive(reg, type, p, n, type === MAP ? xlat + (p - first) : 0, perm, true, { rules, notes, delivered });
        p += n;
      }
    }
    this.stats.repairs++;
    this.stats.violations++;
    const rule = rules[0] ?? 'C4';
    const message = `${this.name}: repaired ${rule} for notifier ${this.describe(reg)}: ${typeName(this.pType)} ${fmtEvent(ev)}: ${notes.join('; ')}`;
    const v = new ContractViolation(message, rule, reg, ev, undefined);
    this.events.emit('violation', v);
    this.events.emit('repaired', { rule, notifier: reg, original: ev, delivered, message });
  }

  /**
   * One MAP or UNMAP of frames [s, s + n - 1] for `reg`, made legal against
   * the view as it is at each step (C4, C5), whatever listeners (or a walker)
   * changed in it from inside the delivery in progress: the one checked path
   * of repairs, of sync scripts played on a changed view, and of teardown.
   * - MAP: a repeat of an identical entry is dropped. Otherwise every entry
   *   it overlaps is unmapped whole first (invalid -> valid only), each only
   *   while it is still in the view; the MAP itself is sent only when its
   *   range is then free. A listener that mapped there again from inside one
   *   of those UNMAPs (legal: the range was empty) keeps its entry, since a
   *   MAP over it would break C4 and a further UNMAP could be answered by a
   *   further MAP forever.
   * - UNMAP: sent as is when it cuts no entry (`sendEmpty`: even when it
   *   covers nothing, as the model sent it); otherwise widened to the whole
   *   entries it touches, one UNMAP each, each while still in the view. An
   *   UNMAP-only notifier (no view) gets it as is.
   * Work is bounded by the entries the range held when the call started.
   */
  private deliverLive(reg: Registration, type: number, s: number, n: number, x: number, perm: number, sendEmpty: boolean, report: RepairReport | undefined): void {
    const view = reg.view;
    const e = s + n - 1;
    if (!view) {
      if (type === UNMAP) this.deliverBuilt(reg, UNMAP, s, n, 0, 0, report?.delivered);
      return;
    }
    if (type === UNMAP) {
      // Only an entry crossing an edge can be cut (point queries: a teardown of 10^6 entries collects nothing).
      const cut = (view.seek(s) && view.curStart < s) || (view.seek(e) && view.curStart <= e && view.curEnd > e);
      if (!cut) {
        if (sendEmpty || (view.seek(s) && view.curStart <= e)) this.deliverBuilt(reg, UNMAP, s, n, 0, 0, report?.delivered);
        return;
      }
    }
    const olds = collect(view, s, e);
    if (type === MAP && olds.length === 4 && olds[0] === s && olds[1] === n && olds[2] === x && olds[3] === perm) {
      noteRepair(report, 'C4', `duplicate of ${fmtEntry(makeEntry(s, n, x, perm))}: dropped`);
      return;
    }
    for (let i = 0; i < olds.length && reg.registered && reg.view; i += 4) {
      const os = olds[i]!;
      const on = olds[i + 1]!;
      // Still there, whole? (A listener may have unmapped or replaced it from inside an earlier UNMAP.)
      if (!(reg.view.seek(os) && reg.view.curStart === os && reg.view.curPages === on)) continue;
      noteRepair(report, type === MAP ? 'C4' : 'C5', `${type === MAP ? 'in-place change: UNMAP' : 'UNMAP widened to the whole entry'} ${fmtEntry(makeEntry(os, on, olds[i + 2]!, 0))}${type === MAP ? ' first' : ''}`);
      this.deliverBuilt(reg, UNMAP, os, on, olds[i + 2]!, 0, report?.delivered);
    }
    if (type !== MAP || !reg.registered || !reg.view) return;
    if (reg.view.seek(s) && reg.view.curStart <= e) {
      noteRepair(report, 'C4', `MAP ${fmtEntry(makeEntry(s, n, x, perm))} not sent: a listener mapped ${fmtEntry(cursorEntry(reg.view))} there during the delivery`);
      return;
    }
    this.deliverBuilt(reg, MAP, s, n, x, perm, report?.delivered);
  }

  /**
   * DEVIOTLB_UNMAP: checked for C2/C3 (byte level), cropped to the range and,
   * where the crop (or, in repair mode, a misshapen event) is not one aligned
   * power-of-two block, delivered as the fewest aligned blocks covering it
   * exactly (C6, so C2 holds for every event delivered). Never tracked.
   */
  private deliverDev(reg: Registration, event: IOMMUTLBEvent): ContractViolation | undefined {
    const e = event.entry;
    const start = reg.notifier.start;
    const end = reg.notifier.end;
    const last = e.iova + e.addrMask;
    if (last < start || e.iova > end) return undefined;
    let c2: string | undefined;
    if (e.iova < 0n || e.addrMask < 0n || last > U64_MAX) c2 = `entry [${hex(e.iova)}, ${hex(last)}] is outside the 64-bit IOVA space`;
    else if (((e.addrMask + 1n) & e.addrMask) !== 0n) c2 = `addrMask ${hex(e.addrMask)} + 1 is not a power of two`;
    else if ((e.iova & e.addrMask) !== 0n) c2 = `iova ${hex(e.iova)} is not aligned to addrMask ${hex(e.addrMask)}`;
    const c3 = e.perm !== 0 ? `a DEVIOTLB_UNMAP carries perm ${String(e.perm)} (must be NONE)` : undefined;
    const what = `DEVIOTLB_UNMAP ${fmtEvent(event)}`;
    if ((c2 || c3) && this.strict) return this.refuse(reg, event, c2 ? 'C2' : 'C3', `${what}: ${c2 ?? c3}`, undefined);
    // Registration keeps [start, end] inside the 64-bit space, so the crop is too.
    const lo = e.iova < start ? start : e.iova;
    const hi = last > end ? end : last;
    const delivered: IOMMUTLBEvent[] = [];
    if (lo === e.iova && hi === last && !c2 && !c3) {
      delivered.push(event);
      this.call(reg, event);
    } else if (lo <= hi) {
      // (lo > hi: a negative addrMask, repaired into nothing.)
      // QEMU crops a device-IOTLB invalidation to the notifier's range; C6 asks for aligned blocks.
      for (const c of alignedPow2Chunks(lo, hi)) {
        if (!reg.registered) break;
        const out: IOMMUTLBEvent = { type: DEVIOTLB as IOMMUEventType, entry: { iova: c.iova, translatedAddr: e.translatedAddr, addrMask: c.addrMask, perm: 0 as IOMMUAccessFlags } };
        if (e.targetAs !== undefined) out.entry.targetAs = e.targetAs;
        delivered.push(out);
        this.call(reg, out);
      }
    }
    if (c2 || c3) {
      this.stats.repairs++;
      this.stats.violations++;
      const rule: ContractRule = c2 ? 'C2' : 'C3';
      const message = `${this.name}: repaired ${rule} for notifier ${this.describe(reg)}: ${what}: ${c2 ?? c3}; delivered ${delivered.map(fmtEvent).join(', ') || 'nothing'} with perm NONE`;
      this.events.emit('violation', new ContractViolation(message, rule, reg, event, undefined));
      this.events.emit('repaired', { rule, notifier: reg, original: event, delivered, message });
    }
    return undefined;
  }

  /** UNMAP to a MAP notifier without UNMAP: drop the overlapping entries (whole), deliver nothing. */
  private silentUnmap(reg: Registration, first: number, last: number): void {
    removeRange(reg.view!, first, last);
  }

  /** UNMAPs of [lo, hi] in aligned power-of-two chunks (UNMAP-only notifiers). */
  private unmapChunks(reg: Registration, lo: number, hi: number): void {
    let p = lo;
    while (p <= hi && reg.registered) {
      const n = chunkPages(p, hi, -1);
      this.deliverBuilt(reg, UNMAP, p, n, 0, 0, undefined);
      p += n;
    }
  }

  /**
   * Plays the script a merge recorded for reg (the view was equal to the
   * tables apart from these operations when the walk ended). The script is
   * trusted only while the view changes by its own operations: when anything
   * else changed it (a walker or listener that notified from inside the
   * sync), each remaining operation is re-checked against the view, so the
   * events stay legal (C4, C5) and the view sound.
   */
  private play(reg: Registration, m: ViewMerge): void {
    const ops = m.ops;
    const nOps = m.nOps;
    let expect = m.version;
    let careful = false;
    for (let i = 0; i < nOps * 4 && reg.registered; i += 4) {
      const view = reg.view!;
      const s = ops[i]!;
      const n = ops[i + 1]!;
      const x = ops[i + 2]!;
      const type = ops[i + 3]! >> 2;
      const perm = ops[i + 3]! & 3;
      if (view.version !== expect) careful = true;
      if (careful) {
        // Something else changed the view: the script's UNMAP ops of entries gone already are dropped.
        this.deliverLive(reg, type === OP_MAP ? MAP : UNMAP, s, n, x, perm, false, undefined);
        continue;
      }
      if (type === OP_MAP) view.insert(s, n, x, perm);
      else removeRange(view, s, s + n - 1);
      expect = view.version;
      if (reg.flags & type) this.call(reg, buildEvent(type as IOMMUEventType, s, n, x, perm));
    }
  }

  /** Delivers a generated (legal) event: updates the view, then calls the listener. */
  private deliverBuilt(reg: Registration, type: number, p: number, n: number, x: number, perm: number, out: IOMMUTLBEvent[] | undefined): void {
    const view = reg.view;
    if (view) {
      if (type === MAP) view.insert(p, n, x, perm);
      else removeRange(view, p, p + n - 1);
    }
    if ((reg.flags & type) === 0) return;
    const ev = buildEvent(type as IOMMUEventType, p, n, x, perm);
    out?.push(ev);
    this.call(reg, ev);
  }

  private call(reg: Registration, event: IOMMUTLBEvent): void {
    this.stats.delivered++;
    try {
      reg.notifier.notify(event, reg);
    } catch (err) {
      // The listener was told (its view is updated); the others still get theirs.
      this.events.emit('listenerError', err, reg, materialize(event, this.lazy.event));
    }
  }

  /** Records a strict-mode refusal (or, in repair mode, a dropped event) and returns the violation. */
  private refuse(reg: Registration, event: IOMMUTLBEvent, rule: ContractRule, why: string, conflicting: IOMMUTLBEntry | undefined): ContractViolation | undefined {
    const ev = materialize(event, this.lazy.event);
    const message = `${this.name}: ${rule} (${RULE_NAMES[rule]}): ${why}`;
    if (this.strict) return this.violation(rule, message, reg, ev, conflicting);
    // Repair mode: C6 / C10 refusals of notifyOne cannot be repaired: drop.
    this.stats.repairs++;
    this.stats.violations++;
    const v = new ContractViolation(message, rule, reg, ev, conflicting);
    this.events.emit('violation', v);
    this.events.emit('repaired', { rule, notifier: reg, original: ev, delivered: [], message: `${message}: dropped` });
    return undefined;
  }

  private violation(rule: ContractRule, message: string, reg: Registration | undefined, event: IOMMUTLBEvent | undefined, conflicting: IOMMUTLBEntry | undefined): ContractViolation {
    const v = new ContractViolation(message, rule, reg, event, conflicting);
    this.stats.violations++;
    this.events.emit('violation', v);
    return v;
  }

  private describe(reg: Registration): string {
    return `#${reg.id} (${flagsToString(reg.flags)} [${hex(reg.notifier.start)}, ${hex(reg.notifier.end)}])`;
  }
}

const RULE_NAMES: Record<ContractRule, string> = {
  C1: 'registration',
  C2: 'shape',
  C3: 'type and permission',
  C4: 'invalid -> valid only',
  C5: 'UNMAP covers whole entries',
  C6: 'filtering',
  C7: 'replay',
  C8: 'teardown',
  C9: 'coherence',
  C10: 'unregistration during delivery',
};

/** What a repair collects for its `repaired` report. */
interface RepairReport {
  rules: ContractRule[];
  notes: string[];
  delivered: IOMMUTLBEvent[];
}

function noteRepair(report: RepairReport | undefined, rule: ContractRule, note: string): void {
  if (!report) return;
  if (!report.rules.includes(rule)) report.rules.push(rule);
  report.notes.push(note);
}

/** Removes every entry that intersects [first, last] (whole entries). */
function removeRange(view: IntervalMap, first: number, last: number): void {
  while (view.seek(first) && view.curStart <= last) view.removeAtCursor();
}

/** The entries intersecting [first, last] as flat [start, pages, xlat, perm]*. */
function collect(view: IntervalMap, first: number, last: number): number[] {
  const out: number[] = [];
  for (let ok = view.seek(first); ok && view.curStart <= last; ok = view.next()) {
    out.push(view.curStart, view.curPages, view.curXlat, view.curPerm);
  }
  return out;
}

function cursorEntry(view: IntervalMap): IOMMUTLBEntry {
  return makeEntry(view.curStart, view.curPages, view.curXlat, view.curPerm);
}

function makeEntry(p: number, n: number, x: number, perm: number): IOMMUTLBEntry {
  return {
    iova: BigInt(p) << 12n,
    translatedAddr: BigInt(x) << 12n,
    addrMask: (BigInt(n) << 12n) - 1n,
    perm: perm as IOMMUAccessFlags,
  };
}

function buildEvent(type: IOMMUEventType, p: number, n: number, x: number, perm: number): IOMMUTLBEvent {
  return { type, entry: makeEntry(p, n, x, perm) };
}

interface LazyEvent {
  state: { pfn: number; pages: number; xlat: number; perm: number };
  event: IOMMUTLBEvent;
}

/** An event whose bigint fields are computed from frame numbers when read (enumerable, so a spread copies values). */
function makeLazyEvent(): LazyEvent {
  const state = { pfn: 0, pages: 1, xlat: 0, perm: 0 };
  const entry = {} as IOMMUTLBEntry;
  Object.defineProperties(entry, {
    iova: { enumerable: true, get: () => BigInt(state.pfn) << 12n },
    translatedAddr: { enumerable: true, get: () => BigInt(state.xlat) << 12n },
    addrMask: { enumerable: true, get: () => (BigInt(state.pages) << 12n) - 1n },
    perm: { enumerable: true, get: () => state.perm },
  });
  return { state, event: { type: MAP as IOMMUEventType, entry } };
}

/** A plain copy of the reused lazy event (for reports that outlive the call); other events as they are. */
function materialize(event: IOMMUTLBEvent, lazy: IOMMUTLBEvent): IOMMUTLBEvent {
  if (event !== lazy) return event;
  const e = event.entry;
  return { type: event.type, entry: { iova: e.iova, translatedAddr: e.translatedAddr, addrMask: e.addrMask, perm: e.perm } };
}

/** One ContractViolation for a notify() that met several: the first, with the rest in `others`. */
function combine(errors: ContractViolation[]): ContractViolation {
  const first = errors[0]!;
  if (errors.length === 1) return first;
  return new ContractViolation(first.message, first.rule, first.notifier, first.event, first.conflicting, errors.slice(1));
}

function typeName(type: number): string {
  return type === MAP ? 'MAP' : type === UNMAP ? 'UNMAP' : type === DEVIOTLB ? 'DEVIOTLB_UNMAP' : `type ${type}`;
}

function fmtEntry(e: IOMMUTLBEntry): string {
  const last = e.iova + e.addrMask;
  return `[${hex(e.iova)}, ${hex(last)}] -> ${hex(e.translatedAddr)} ${typeof e.perm === 'number' && e.perm >= 0 && e.perm <= 3 ? permToString(e.perm) : String(e.perm)}`;
}

function fmtEvent(ev: IOMMUTLBEvent): string {
  return fmtEntry(ev.entry);
}
