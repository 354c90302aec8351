/**
 * The vfio-like listener: QEMU's `vfio_iommu_map_notify` over a simulated
 * VFIO type1 container. It registers MAP|UNMAP notifiers (with replay on
 * attach) and turns every MAP into VFIO_IOMMU_MAP_DMA and every UNMAP into
 * VFIO_IOMMU_UNMAP_DMA of exactly the notified entry
 * (shared/reference/anchor-features.md §6). Like QEMU it cannot undo a
 * refused ioctl: the failure is reported (event + stats) and the host keeps
 * whatever state the refusal left, which `check()` then shows as stale or
 * missing host mappings.
 */
import { U64_MAX } from '../core/guest-addr';
import { EventEmitter } from 'node:events';
import type { TypedEmitter } from '../core/typed-events';
import { IOMMUAccessFlags } from '../core/access';
import { IOMMUNotifierFlag } from '../core/tlb-entry';
import type { IOMMUTLBEntry, IOMMUTLBEvent } from '../core/tlb-entry';
import type { NotifierHandle } from '../core/notifier-list';
import type { LeafWalker } from '../core/leaf';
import { PAGE_SHIFT } from '../core/leaf';
import { VFIO_DMA_UNMAP_FLAG_ALL, VfioError } from './vfio-container';
import type { VfioContainer, VfioIovaRange } from './vfio-container';
import { diffSpans } from './intervals';
import type { Span, SpanDiff } from './intervals';
import { registerOn } from './source';
import type { NotifierSource } from './source';


export interface VfioListenerOptions {
  /** First IOVA of the notifier range (default 0). */
  start?: bigint;
  /** Last IOVA of the notifier range, inclusive (default 2^64 - 1). */
  end?: bigint;
  /**
   * Guest-physical to process-virtual (QEMU `memory_get_xlat_addr`): where
   * the guest RAM at `gpa` lives for `size` bytes, or undefined when it is not
   * RAM (the MAP is then refused, as QEMU refuses to map MMIO). Default: identity.
   */
  gpaToVaddr?: (gpa: bigint, size: bigint) => bigint | undefined;
  name?: string;
}

/** A MAP or UNMAP the container refused. */
export interface VfioListenerError {
  op: 'map' | 'unmap';
  error: VfioError;
  /** A copy of the notified entry. */
  entry: IOMMUTLBEntry;
}

export type VfioListenerEvents = {
  /** The container refused a notification's ioctl (QEMU only logs these). */
  dmaError: (e: VfioListenerError) => void;
  /**
   * The container ran out of DMA entries (`dma_entry_limit`, ENOSPC): emitted
   * once, at the first refusal of an episode (it ends when a map succeeds or
   * an unmap frees entries). Later refusals are only counted
   * (`stats().limitRefusals`, `limitRefusedBytes`): no error is built per
   * refused MAP, so a flood of them (aliased tables) stays cheap.
   */
  dmaLimit: (e: { entry: IOMMUTLBEntry; mappings: number }) => void;
  /**
   * A device of the container stopped DMA (close or reset), forwarded while
   * attached; `invalidated`: peer-to-peer mappings of its BARs that went
   * with it, which the guest may still map (check() shows them missing).
   */
  dmaStopped: (e: { device: string; reason: 'close' | 'reset'; invalidated: Array<{ iova: bigint; size: bigint }> }) => void;
};

export interface VfioListenerStats {
  maps: number;
  unmaps: number;
  /** Bytes the container reported unmapped. */
  unmappedBytes: bigint;
  mapErrors: number;
  unmapErrors: number;
  /** Failures by errno. */
  errors: Record<string, number>;
  /** MAPs refused for lack of DMA entries (ENOSPC; included in mapErrors and errors.ENOSPC). */
  limitRefusals: number;
  /** Bytes of the MAPs in `limitRefusals`: guest translations the device cannot use. */
  limitRefusedBytes: bigint;
  /** `dmaLimit` events emitted. */
  limitEpisodes: number;
}

/** One difference between the host and the guest, as found by `check()`. */
export interface VfioConsistencyDiff {
  /** `container` (the user mapping list) or the name of the host domain. */
  where: string;
  start: bigint;
  /** Inclusive. */
  last: bigint;
  host: { vaddr: bigint; perm: IOMMUAccessFlags } | undefined;
  guest: { vaddr: bigint; perm: IOMMUAccessFlags } | undefined;
}

export interface VfioConsistencyReport {
  ok: boolean;
  /** The host maps what the guest does not: a device can still reach memory the guest took away. */
  stale: VfioConsistencyDiff[];
  /** The guest maps what the host does not: device DMA faults. */
  missing: VfioConsistencyDiff[];
  /** Both map it, to different memory or with other permissions. */
  mismatched: VfioConsistencyDiff[];
}

/** The guest's current translations, as entries or as a page-table walker. */
export type GuestTranslations = Iterable<IOMMUTLBEntry> | LeafWalker;

/** Turns a listener's notifications into DMA mappings of a `VfioContainer`. */
export class VfioListener {
  readonly events: TypedEmitter<VfioListenerEvents> = new EventEmitter() as TypedEmitter<VfioListenerEvents>;
  readonly start: bigint;
  readonly end: bigint;
  readonly name: string;
  private readonly gpaToVaddr: (gpa: bigint, size: bigint) => bigint | undefined;
  private readonly handles: NotifierHandle[] = [];
  private readonly counters: VfioListenerStats = {
    maps: 0, unmaps: 0, unmappedBytes: 0n, mapErrors: 0, unmapErrors: 0, errors: {}, limitRefusals: 0, limitRefusedBytes: 0n, limitEpisodes: 0,
  };
  /** Inside a run of ENOSPC refusals (one `dmaLimit` event per run). */
  private atLimit = false;
  private readonly onDeviceStopped = (e: { device: string; reason: 'close' | 'reset'; invalidated: Array<{ iova: bigint; size: bigint }> }): void => {
    this.events.emit('dmaStopped', e);
  };
  /** The ranges the notifiers cover: [start, end] minus what the container cannot map (see `attach`). */
  private covered: VfioIovaRange[];

  constructor(readonly container: VfioContainer, options: VfioListenerOptions = {}) {
    this.start = options.start ?? 0n;
    this.end = options.end ?? U64_MAX;
    this.name = options.name ?? 'vfio-listener';
    this.gpaToVaddr = options.gpaToVaddr ?? ((gpa) => gpa);
    if (this.start < 0n || this.end > U64_MAX || this.end < this.start) throw new RangeError(`${this.name}: empty or out-of-range [start, end]`);
    this.covered = this.usableRanges();
  }

  /** [start, end] intersected with the container's usable IOVA ranges (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE). */
  private usableRanges(): VfioIovaRange[] {
    const out: VfioIovaRange[] = [];
    for (const r of this.container.getInfo().iova_ranges) {
      const s = r.start > this.start ? r.start : this.start;
      const e = r.end < this.end ? r.end : this.end;
      if (s <= e) out.push({ start: s, end: e });
    }
    return out;
  }

  /** The IOVA ranges the listener's notifiers cover (from the last `attach`), inclusive. */
  get ranges(): VfioIovaRange[] {
    return this.covered.map((r) => ({ ...r }));
  }

  /**
   * Registers MAP|UNMAP notifiers on `source`: one per usable range, i.e.
   * [start, end] minus the container's reserved regions (the x86 MSI window)
   * and what lies beyond its aperture, as QEMU registers VFIO notifiers on
   * each side of the interrupt window. A guest leaf that spans a reserved
   * region then reaches the listener split at its edges (C6), so everything
   * around the window is mapped instead of the whole leaf being refused
   * (EINVAL). An address space replays its current translations (C7); for a
   * bare NotifierList the listener replays `walk` when given. Throws what the
   * source throws (C1: a model without caching mode refuses MAP notifiers),
   * having registered nothing. Reserved regions added to the container later
   * take effect at the next attach.
   */
  attach(source: NotifierSource, walk?: LeafWalker): NotifierHandle[] {
    this.covered = this.usableRanges();
    const handles: NotifierHandle[] = [];
    try {
      for (const r of this.covered) {
        handles.push(registerOn(source, {
          flags: IOMMUNotifierFlag.MAP | IOMMUNotifierFlag.UNMAP,
          start: r.start,
          end: r.end,
          notify: (event) => this.onEvent(event),
        }, walk));
      }
    } catch (e) {
      for (const h of handles) h.dispose();
      throw e;
    }
    if (this.handles.length === 0 && handles.length > 0) this.container.events.on('deviceStopped', this.onDeviceStopped);
    this.handles.push(...handles);
    return handles;
  }

  /**
   * Unregisters from every source, then removes the listener's whole range
   * from the container, as QEMU's `vfio_listener_region_del` unmaps the
   * section (UNMAP_ALL for the whole 64-bit space).
   */
  detach(): void {
    if (this.handles.length > 0) this.container.events.off('deviceStopped', this.onDeviceStopped);
    for (const h of this.handles.splice(0)) h.dispose();
    for (const r of this.covered) {
      try {
        if (r.start === 0n && r.end === U64_MAX) {
          this.container.unmapDma({ iova: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL });
        } else {
          this.container.unmapDma({ iova: r.start, size: r.end - r.start + 1n });
        }
      } catch (e) {
        if (!(e instanceof VfioError)) throw e;
        this.report('unmap', e, { iova: r.start, translatedAddr: 0n, addrMask: r.end - r.start, perm: IOMMUAccessFlags.NONE });
      }
    }
    this.atLimit = false;
  }

  stats(): VfioListenerStats {
    return { ...this.counters, errors: { ...this.counters.errors } };
  }

  /**
   * Compares the host with the guest inside the listener's covered ranges
   * (`ranges`: a reserved window is neither expected nor allowed on the host): the
   * container's mappings and what every host domain maps must equal the
   * guest's current translations (`guest`: entries with perm NONE are
   * ignored; a walker is asked for the whole range). Guest addresses go
   * through `gpaToVaddr`; guest memory that is not RAM is not expected on
   * the host.
   */
  check(guest: GuestTranslations): VfioConsistencyReport {
    const g = this.guestSpans(guest);
    const report: VfioConsistencyReport = { ok: true, stale: [], missing: [], mismatched: [] };
    const { dmas, domains } = this.container.spans();
    const places: Array<[string, Span[]]> = [['container', dmas]];
    domains.forEach((spans, k) => places.push([this.container.domains[k]!.name, spans]));
    for (const [where, host] of places) {
      for (const r of this.covered) {
        for (const d of diffSpans(host, g, r.start, r.end + 1n)) {
          // IOPF mode: a domain may lack pages of a mapping until a device faults them in.
          if (d.host === undefined && where !== 'container' && this.container.hostMemory === 'iopf') continue;
          const diff = toDiff(where, d);
          if (d.guest === undefined) report.stale.push(diff);
          else if (d.host === undefined) report.missing.push(diff);
          else report.mismatched.push(diff);
        }
      }
    }
    report.ok = report.stale.length + report.missing.length + report.mismatched.length === 0;
    return report;
  }

  private guestSpans(guest: GuestTranslations): Span[] {
    const spans: Span[] = [];
    const add = (iova: bigint, size: bigint, gpa: bigint, perm: number): void => {
      if (perm === IOMMUAccessFlags.NONE) return;
      const vaddr = this.gpaToVaddr(gpa, size);
      if (vaddr === undefined) return;
      spans.push({ start: iova, end: iova + size, addr: vaddr, prot: perm });
    };
    if (typeof guest === 'function') {
      const first = Number(this.start >> BigInt(PAGE_SHIFT));
      const last = Number(this.end >> BigInt(PAGE_SHIFT));
      guest(first, last, (iovaPfn, pages, xlatPfn, perm) => {
        add(BigInt(iovaPfn) << BigInt(PAGE_SHIFT), BigInt(pages) << BigInt(PAGE_SHIFT), BigInt(xlatPfn) << BigInt(PAGE_SHIFT), perm);
      });
    } else {
      for (const e of guest) add(e.iova, e.addrMask + 1n, e.translatedAddr, e.perm);
    }
    spans.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    for (let i = 1; i < spans.length; i++) {
      if (spans[i]!.start < spans[i - 1]!.end) {
        throw new RangeError(`${this.name}: check(): guest translations overlap at 0x${spans[i]!.start.toString(16)}`);
      }
    }
    return spans;
  }

  private onEvent(event: IOMMUTLBEvent): void {
    const e = event.entry;
    const size = e.addrMask + 1n;
    if (event.type === IOMMUNotifierFlag.MAP) {
      this.counters.maps++;
      const vaddr = this.gpaToVaddr(e.translatedAddr, size);
      if (vaddr === undefined) {
        this.report('map', new VfioError('MAP_DMA', 'EFAULT', `${this.name}: map of 0x${e.iova.toString(16)}`, `0x${e.translatedAddr.toString(16)} is not RAM`), e);
        return;
      }
      try {
        // tryMapDma: a refusal costs no Error (issue 13: 1.77M refusals past the limit).
        const refusal = this.container.tryMapDma({
          iova: e.iova, size, vaddr, read: (e.perm & IOMMUAccessFlags.RO) !== 0, write: (e.perm & IOMMUAccessFlags.WO) !== 0,
        });
        if (refusal === undefined) this.atLimit = false;
        else if (refusal.errno === 'ENOSPC') this.limitRefusal(e, size);
        else this.report('map', new VfioError('MAP_DMA', refusal.errno, `vfio_dma_map(0x${e.iova.toString(16)}, 0x${size.toString(16)}, 0x${vaddr.toString(16)})`, refusal.reason), e);
      } catch (err) {
        if (!(err instanceof VfioError)) throw err;
        this.report('map', err, e);
      }
    } else if (event.type === IOMMUNotifierFlag.UNMAP) {
      this.counters.unmaps++;
      try {
        const r = size > U64_MAX
          ? this.container.unmapDma({ iova: 0n, size: 0n, flags: VFIO_DMA_UNMAP_FLAG_ALL })
          : this.container.unmapDma({ iova: e.iova, size });
        this.counters.unmappedBytes += r.unmapped;
        if (r.unmapped > 0n) this.atLimit = false;
      } catch (err) {
        if (!(err instanceof VfioError)) throw err;
        if (err.detail !== undefined) this.counters.unmappedBytes += err.detail.unmapped;
        this.report('unmap', err, e);
      }
    }
  }

  private limitRefusal(e: IOMMUTLBEntry, size: bigint): void {
    const c = this.counters;
    c.mapErrors++;
    c.errors.ENOSPC = (c.errors.ENOSPC ?? 0) + 1;
    c.limitRefusals++;
    c.limitRefusedBytes += size;
    if (this.atLimit) return;
    this.atLimit = true;
    c.limitEpisodes++;
    this.events.emit('dmaLimit', {
      entry: { iova: e.iova, translatedAddr: e.translatedAddr, addrMask: e.addrMask, perm: e.perm },
      mappings: this.container.stats().mappings,
    });
  }

  private report(op: 'map' | 'unmap', error: VfioError, e: IOMMUTLBEntry): void {
    if (op === 'map') this.counters.mapErrors++;
    else this.counters.unmapErrors++;
    this.counters.errors[error.errno] = (this.counters.errors[error.errno] ?? 0) + 1;
    this.events.emit('dmaError', {
      op, error, entry: { iova: e.iova, translatedAddr: e.translatedAddr, addrMask: e.addrMask, perm: e.perm },
    });
  }
}

function toDiff(where: string, d: SpanDiff): VfioConsistencyDiff {
  return {
    where,
    start: d.start,
    last: d.last,
    host: d.host && { vaddr: d.host.addr, perm: d.host.prot as IOMMUAccessFlags },
    guest: d.guest && { vaddr: d.guest.addr, perm: d.guest.prot as IOMMUAccessFlags },
  };
}
