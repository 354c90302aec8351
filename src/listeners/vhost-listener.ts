/**
 * The vhost-like listener: a device IOTLB as the vhost kernel keeps it
 * (drivers/vhost/{vhost,iotlb}.c, shared/reference/vtd-facts.md §11). It is
 * a pull model: a lookup that misses asks the owner (VHOST_IOTLB_MISS, the
 * owner answers with the IOMMU's translation as VHOST_IOTLB_UPDATE), and
 * the IOMMU's UNMAP (or DEVIOTLB_UNMAP) notifications become
 * VHOST_IOTLB_INVALIDATE, which drops every entry intersecting the range,
 * whole. It never receives MAPs, so over-sized invalidations cost only
 * misses, while a missing one leaves the device using memory the guest
 * took away.
 */
import { U64_MAX } from '../core/guest-addr';
import { EventEmitter } from 'node:events';
import type { TypedEmitter } from '../core/typed-events';
import { IOMMUAccessFlags } from '../core/access';
import { IOMMUNotifierFlag } from '../core/tlb-entry';
import type { IOMMUTLBEntry, IOMMUTLBEvent } from '../core/tlb-entry';
import type { NotifierHandle } from '../core/notifier-list';
import { registerOn } from './source';
import type { NotifierSource } from './source';

/** Kernel default `max_iotlb_entries` (vhost module parameter). */
export const VHOST_MAX_IOTLB_ENTRIES = 2048;
/** How often a miss is retried when an invalidation raced with it. */
const MISS_RETRIES = 3;

/** One IOTLB entry (`struct vhost_iotlb_map`): [iova, iova + size - 1] -> uaddr. */
export interface VhostIotlbEntry {
  iova: bigint;
  size: bigint;
  uaddr: bigint;
  perm: IOMMUAccessFlags;
}

/** `struct vhost_iotlb_msg` of an UPDATE or INVALIDATE. */
export interface VhostIotlbMsg {
  iova: bigint;
  size: bigint;
  uaddr?: bigint;
  perm?: IOMMUAccessFlags;
}

/** An IOTLB message was refused (`errno` as the kernel returns it). */
export class VhostError extends Error {
  override readonly name = 'VhostError';
  constructor(readonly errno: 'EINVAL' | 'EFAULT', message: string) {
    super(message);
  }
}

/**
 * The owner's answer to VHOST_IOTLB_MISS: the IOMMU translation of `iova` for
 * `perm` (QEMU `vhost_device_iotlb_miss` via `address_space_get_iotlb_entry`),
 * or undefined when the IOMMU has none (a fault).
 */
export type VhostMissHandler = (iova: bigint, perm: IOMMUAccessFlags) => IOMMUTLBEntry | undefined;

export interface VhostListenerOptions {
  miss: VhostMissHandler;
  /** `max_iotlb_entries` (default 2048); the oldest entry is retired when full. */
  maxIotlbEntries?: number;
  /** Register DEVIOTLB_UNMAP instead of UNMAP (the guest enabled ATS on the device). */
  deviceIotlb?: boolean;
  start?: bigint;
  end?: bigint;
  /** Guest-physical to process-virtual address (default identity); undefined: not RAM, no UPDATE. */
  gpaToUaddr?: (gpa: bigint) => bigint | undefined;
  name?: string;
}

/** Why a device access failed (VHOST_IOTLB_ACCESS_FAIL). */
export type VhostAccessFailure = 'fault' | 'permission' | 'bad-translation' | 'raced';

export type VhostListenerEvents = {
  miss: (e: { iova: bigint; perm: IOMMUAccessFlags }) => void;
  update: (entry: VhostIotlbEntry) => void;
  invalidate: (e: { iova: bigint; size: bigint; dropped: number }) => void;
  /** An entry retired because the IOTLB was full. */
  retired: (entry: VhostIotlbEntry) => void;
  accessFail: (e: { iova: bigint; perm: IOMMUAccessFlags; reason: VhostAccessFailure }) => void;
};

export interface VhostListenerStats {
  entries: number;
  hits: number;
  misses: number;
  updates: number;
  invalidations: number;
  dropped: number;
  retired: number;
  accessFails: number;
  /** Translations served without caching: outside the notifier range or while not attached. */
  uncached: number;
}

/** Result of a device access through the IOTLB. */
export interface VhostTranslation {
  /** Process virtual address of `iova`. */
  uaddr: bigint;
  entry: VhostIotlbEntry;
}

/** A device IOTLB fed by misses and emptied by UNMAP notifications. */
export class VhostListener {
  readonly events: TypedEmitter<VhostListenerEvents> = new EventEmitter() as TypedEmitter<VhostListenerEvents>;
  readonly name: string;
  readonly start: bigint;
  readonly end: bigint;
  readonly maxIotlbEntries: number;
  private readonly missHandler: VhostMissHandler;
  private readonly flags: number;
  private readonly gpaToUaddr: (gpa: bigint) => bigint | undefined;
  /** Entries sorted by iova (overlaps allowed, as in the kernel). */
  private readonly sorted: VhostIotlbEntry[] = [];
  /** Insertion order, oldest first: what retirement takes. */
  private readonly order = new Set<VhostIotlbEntry>();
  /** Upper bound of the entry sizes present, to bound the backward scan of a lookup. */
  private maxSize = 0n;
  /** Bumped by every invalidation, to detect one that raced with a miss. */
  private generation = 0;
  private readonly handles: NotifierHandle[] = [];
  private readonly counters = { hits: 0, misses: 0, updates: 0, invalidations: 0, dropped: 0, retired: 0, accessFails: 0, uncached: 0 };

  constructor(options: VhostListenerOptions) {
    this.missHandler = options.miss;
    this.maxIotlbEntries = options.maxIotlbEntries ?? VHOST_MAX_IOTLB_ENTRIES;
    if (!(this.maxIotlbEntries >= 2)) throw new RangeError('maxIotlbEntries must be at least 2');
    this.flags = options.deviceIotlb ? IOMMUNotifierFlag.DEVIOTLB_UNMAP : IOMMUNotifierFlag.UNMAP;
    this.start = options.start ?? 0n;
    this.end = options.end ?? U64_MAX;
    this.gpaToUaddr = options.gpaToUaddr ?? ((gpa) => gpa);
    this.name = options.name ?? 'vhost-listener';
  }

  /** Registers the UNMAP (or DEVIOTLB_UNMAP) notifier on `source` (`vhost_iommu_region_add`; nothing to replay). */
  attach(source: NotifierSource): NotifierHandle {
    const handle = registerOn(source, {
      flags: this.flags,
      start: this.start,
      end: this.end,
      notify: (event) => this.onEvent(event),
    });
    this.handles.push(handle);
    return handle;
  }

  /** Unregisters and empties the IOTLB (the device IOTLB goes with the region). */
  detach(): void {
    for (const h of this.handles.splice(0)) h.dispose();
    this.invalidate({ iova: 0n, size: 1n << 64n });
  }

  /**
   * A device access to `iova` needing `perm`: served from the IOTLB, or
   * after a miss the owner answered. Undefined when the access fails
   * (`accessFail` says why): the IOMMU faulted, the entry lacks the
   * permission (the kernel's -EPERM), or the answer was malformed.
   *
   * Only what an attached UNMAP notifier covers is cached: an answer is
   * cropped to [start, end], and outside that range, or while the listener
   * is not attached (before `attach`, after `detach`), the answer serves
   * this access only and is not kept, since no invalidation would ever
   * reach it (counted in `stats().uncached`).
   */
  translate(iova: bigint, perm: IOMMUAccessFlags): VhostTranslation | undefined {
    let entry = this.lookup(iova);
    if (entry === undefined) {
      for (let attempt = 0; ; attempt++) {
        this.counters.misses++;
        this.events.emit('miss', { iova, perm });
        const gen = this.generation;
        const answer = this.missHandler(iova, perm);
        if (answer === undefined || answer.perm === IOMMUAccessFlags.NONE) return this.fail(iova, perm, 'fault');
        const size = answer.addrMask + 1n;
        const base = answer.iova & ~answer.addrMask;
        if ((size & answer.addrMask) !== 0n || iova < base || iova > base + answer.addrMask) {
          return this.fail(iova, perm, 'bad-translation');
        }
        // An invalidation during the miss may have come after the IOMMU
        // answered: the answer can be stale, so ask again (never insert it).
        if (this.generation !== gen) {
          if (attempt + 1 >= MISS_RETRIES) return this.fail(iova, perm, 'raced');
          continue;
        }
        const uaddr = this.gpaToUaddr(answer.translatedAddr & ~answer.addrMask);
        if (uaddr === undefined) return this.fail(iova, perm, 'fault');
        const fresh: VhostIotlbEntry = { iova: base, size, uaddr, perm: answer.perm };
        if (this.handles.length === 0 || iova < this.start || iova > this.end) {
          this.counters.uncached++;
          entry = fresh;
          break;
        }
        // Crop to the notifier range: invalidations of the rest never arrive.
        const lo = base > this.start ? base : this.start;
        const hi = base + answer.addrMask < this.end ? base + answer.addrMask : this.end;
        this.update({ iova: lo, size: hi - lo + 1n, uaddr: uaddr + (lo - base), perm: answer.perm });
        entry = this.lookup(iova);
        if (entry === undefined) return this.fail(iova, perm, 'bad-translation');
        break;
      }
    } else {
      this.counters.hits++;
    }
    if ((entry.perm & perm) !== perm) return this.fail(iova, perm, 'permission');
    return { uaddr: entry.uaddr + (iova - entry.iova), entry };
  }

  /** The entry serving `iova` without asking on a miss (the kernel's lookup: lowest-starting entry that contains it). */
  lookup(iova: bigint): VhostIotlbEntry | undefined {
    const a = this.sorted;
    // Last entry starting at or below iova, then back while an entry could still reach iova.
    const lo = this.upperBound(iova);
    let found: VhostIotlbEntry | undefined;
    const floor = iova - this.maxSize;
    for (let i = lo - 1; i >= 0; i--) {
      const e = a[i]!;
      if (e.iova <= floor) break;
      if (iova - e.iova < e.size) found = e;
    }
    return found;
  }

  /**
   * VHOST_IOTLB_UPDATE: inserts [iova, iova + size - 1] -> uaddr without an
   * overlap check; the whole 64-bit space is stored as two halves (the
   * kernel's size field cannot hold 2^64). When full, the oldest entry retires.
   */
  update(msg: VhostIotlbMsg): void {
    const perm = msg.perm ?? IOMMUAccessFlags.RW;
    if (msg.size <= 0n) throw new VhostError('EINVAL', `${this.name}: UPDATE of size 0 at 0x${msg.iova.toString(16)}`);
    if (perm === IOMMUAccessFlags.NONE) throw new VhostError('EINVAL', `${this.name}: UPDATE with perm NONE`);
    if (msg.iova < 0n || msg.iova + msg.size - 1n > U64_MAX) throw new VhostError('EFAULT', `${this.name}: UPDATE wraps 64 bits`);
    const uaddr = msg.uaddr ?? msg.iova;
    if (msg.size > U64_MAX) {
      const half = 1n << 63n;
      this.insert({ iova: 0n, size: half, uaddr, perm });
      this.insert({ iova: half, size: half, uaddr: uaddr + half, perm });
      return;
    }
    this.insert({ iova: msg.iova, size: msg.size, uaddr, perm });
  }

  /** VHOST_IOTLB_INVALIDATE: drops every entry intersecting [iova, iova + size - 1], whole. Returns how many. */
  invalidate(msg: VhostIotlbMsg): number {
    this.generation++;
    this.counters.invalidations++;
    const first = msg.iova;
    const last = msg.iova + (msg.size > 0n ? msg.size : 1n) - 1n;
    // Only entries starting in (first - maxSize, last] can intersect: scan that window.
    const a = this.sorted;
    const lo = this.upperBound(first - this.maxSize);
    const hi = this.upperBound(last);
    let dropped = 0;
    let w = lo;
    for (let i = lo; i < hi; i++) {
      const e = a[i]!;
      if (e.iova + e.size - 1n >= first) {
        this.order.delete(e);
        dropped++;
      } else {
        a[w++] = e;
      }
    }
    if (dropped > 0) a.splice(w, dropped);
    if (a.length === 0) this.maxSize = 0n;
    this.counters.dropped += dropped;
    this.events.emit('invalidate', { iova: msg.iova, size: msg.size, dropped });
    return dropped;
  }

  /** Index of the first entry whose iova is above `x`. */
  private upperBound(x: bigint): number {
    const a = this.sorted;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]!.iova <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The IOTLB, sorted by iova (copies). */
  entries(): VhostIotlbEntry[] {
    return this.sorted.map((e) => ({ ...e }));
  }

  stats(): VhostListenerStats {
    return { entries: this.sorted.length, ...this.counters };
  }

  private insert(entry: VhostIotlbEntry): void {
    if (this.order.size >= this.maxIotlbEntries) {
      const oldest = this.order.values().next().value as VhostIotlbEntry;
      this.order.delete(oldest);
      this.sorted.splice(this.indexOf(oldest), 1);
      this.counters.retired++;
      this.events.emit('retired', { ...oldest });
    }
    this.sorted.splice(this.upperBound(entry.iova), 0, entry);
    this.order.add(entry);
    if (entry.size > this.maxSize) this.maxSize = entry.size;
    this.counters.updates++;
    this.events.emit('update', { ...entry });
  }

  private indexOf(entry: VhostIotlbEntry): number {
    let lo = 0;
    let hi = this.sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sorted[mid]!.iova < entry.iova) lo = mid + 1;
      else hi = mid;
    }
    while (this.sorted[lo] !== entry) lo++;
    return lo;
  }

  private fail(iova: bigint, perm: IOMMUAccessFlags, reason: VhostAccessFailure): undefined {
    this.counters.accessFails++;
    this.events.emit('accessFail', { iova, perm, reason });
    return undefined;
  }

  private onEvent(event: IOMMUTLBEvent): void {
    if (event.type !== IOMMUNotifierFlag.UNMAP && event.type !== IOMMUNotifierFlag.DEVIOTLB_UNMAP) return;
    // vhost_iommu_unmap_notify: INVALIDATE {iova, addr_mask + 1}.
    this.invalidate({ iova: event.entry.iova, size: event.entry.addrMask + 1n });
  }
}
