/**
 * A simulated VFIO type1 v2 container (Linux drivers/vfio/vfio_iommu_type1.c,
 * shared/reference/vtd-facts.md §10): the host side a vfio-like listener
 * drives. It keeps the user's DMA mappings (`vfio_dma`), programs every host
 * IOMMU domain of the container, tracks pages pinned by mediated-device
 * vendor drivers, and refuses what the kernel refuses, with the kernel's
 * errno, so a broken notification sequence shows up as the damage it does on
 * a real host.
 */
import { X86_MSI_RANGE, hex } from '../core/guest-addr';
import { EventEmitter } from 'node:events';
import type { TypedEmitter } from '../core/typed-events';
import { produce } from 'immer';
import { ERRNO, HostDomainError, IOMMU_READ, IOMMU_WRITE, SimHostDomain } from './host-domain';
import type { HostIommuDomain, VfioErrno } from './host-domain';
import { SpanList } from './intervals';
import type { Span } from './intervals';

const U64_END = 1n << 64n;
/** Host PAGE_SIZE: the pinning granularity and the smallest IOVA page size VFIO reports. */
const HOST_PAGE = 4096n;

/** VFIO_DMA_UNMAP_FLAG_ALL (v2, Linux 5.12+): iova = size = 0 unmaps everything. */
export const VFIO_DMA_UNMAP_FLAG_ALL = 2;
/**
 * VFIO_DMA_UNMAP_FLAG_VADDR (Linux 5.12+, live update): the mappings of the
 * range stay in the IOMMU, only their vaddr is invalidated; work that needs
 * it (pinning, replay into a new domain, an IOPF fault-in) fails with EAGAIN
 * until VFIO_DMA_MAP_FLAG_VADDR gives a new one.
 */
export const VFIO_DMA_UNMAP_FLAG_VADDR = 4;
/** VFIO_DMA_MAP_FLAG_VADDR: give a mapping whose vaddr was invalidated a new vaddr, same iova and size. */
export const VFIO_DMA_MAP_FLAG_VADDR = 4;
/** `getInfo().flags` bits: VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_INFO_CAPS. */
export const VFIO_IOMMU_INFO_PGSIZES = 1;
export const VFIO_IOMMU_INFO_CAPS = 2;
/** Default `dma_entry_limit` module parameter (U16_MAX). */
export const VFIO_DMA_ENTRY_LIMIT = 65535;
/** x86 MSI doorbell window, reported by Linux as an IOMMU_RESV_MSI region of every device. */
export const X86_MSI_WINDOW = { start: X86_MSI_RANGE.start, last: X86_MSI_RANGE.end, type: 'msi' } as const;

export type VfioOp = 'MAP_DMA' | 'UNMAP_DMA' | 'PIN_PAGES' | 'RESERVE' | 'DEVICE' | 'ATTACH_GROUP';

/** What an UNMAP_DMA that stopped on pinned pages had done: bytes unmapped before, pages still pinned, rounds asked. */
export interface VfioErrorDetail {
  unmapped: bigint;
  pinned: bigint[];
  /** Notification rounds spent on the stuck mapping (see `unpinRetries`). */
  rounds?: number;
}

/** An ioctl failed; `errno` is the Linux error name. Nothing changed unless `detail` says so. */
export class VfioError extends Error {
  override readonly name = 'VfioError';
  constructor(
    readonly op: VfioOp,
    readonly errno: VfioErrno,
    /** The call, as QEMU logs it (`vfio_dma_map(0x1000, 0x1000, 0x7f0000005000)`). */
    readonly call: string,
    /** Why, in words. */
    readonly reason: string,
    /** UNMAP_DMA that failed part way (pinned pages): what was unmapped before, and the pages still pinned. */
    readonly detail?: VfioErrorDetail,
  ) {
    super(`${call} = -${ERRNO[errno][0]} (${ERRNO[errno][1]}): ${reason}`);
  }

  static is(e: unknown): e is VfioError {
    return e instanceof VfioError;
  }
}

/**
 * A refused change whose unwind failed too (a domain's `unreserve` threw):
 * `errno`/`reason` are the original failure, `unwindFailures` what could not
 * be undone. The container's own state is as before the call; the domains
 * named in `unwindFailures` keep what they refused to give back.
 */
export class VfioUnwindError extends VfioError {
  constructor(
    original: VfioError,
    /** The original host failure (a HostDomainError, or what the domain threw). */
    override readonly cause: unknown,
    readonly unwindFailures: ReadonlyArray<{ domain: string; error: unknown }>,
  ) {
    super(original.op, original.errno, original.call,
      `${original.reason}; unwind failed in ${unwindFailures.map((f) => f.domain).join(', ')}`, original.detail);
  }
}

/** VFIO_IOMMU_MAP_DMA arguments. */
export interface VfioDmaMap {
  iova: bigint;
  size: bigint;
  /** Process virtual address of the memory to map (QEMU: the HVA of guest RAM). */
  vaddr: bigint;
  read: boolean;
  write: boolean;
  /** 0, or VFIO_DMA_MAP_FLAG_VADDR (then read/write are ignored). */
  flags?: number;
}

/** Why `tryMapDma` refused a map (no Error built). */
export interface VfioMapRefusal {
  readonly errno: VfioErrno;
  readonly reason: string;
}
const ENOSPC_REFUSAL: VfioMapRefusal = Object.freeze({ errno: 'ENOSPC', reason: 'dma_avail exhausted' });

/** VFIO_IOMMU_UNMAP_DMA arguments. */
export interface VfioDmaUnmap {
  iova: bigint;
  size: bigint;
  /** 0, or VFIO_DMA_UNMAP_FLAG_ALL and/or VFIO_DMA_UNMAP_FLAG_VADDR. */
  flags?: number;
}

/** One user mapping (`vfio_dma`). */
export interface VfioDmaMapping {
  iova: bigint;
  size: bigint;
  vaddr: bigint;
  read: boolean;
  write: boolean;
}

/** An IOVA range, inclusive. */
export interface VfioIovaRange {
  start: bigint;
  end: bigint;
}

/** A reserved IOVA region (not mappable): `start`..`last` inclusive. */
export interface VfioReservedRegion {
  start: bigint;
  last: bigint;
  type: 'msi' | 'reserved';
}

/** VFIO_IOMMU_GET_INFO, with the IOVA-range (cap id 1) and DMA-avail (cap id 3) capabilities folded in. */
export interface VfioIommuInfo {
  flags: number;
  /** AND of the domains' page-size bitmaps, sizes below 4 KiB folded into 4 KiB. */
  iova_pgsizes: bigint;
  /** VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: usable IOVA (apertures minus reserved regions). */
  iova_ranges: VfioIovaRange[];
  /** VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: how many more MAP_DMA calls can succeed. */
  dma_avail: number;
}

/** A host mapping as a domain holds it (the container's record of that domain). */
export interface HostMapping {
  iova: bigint;
  size: bigint;
  vaddr: bigint;
  read: boolean;
  write: boolean;
}

export type VfioContainerEvents = {
  /** A host IOMMU domain failed an operation (the container unwound or kept its record equal to the domain). */
  hostError: (e: { domain: string; op: 'map' | 'unmap' | 'reserve' | 'unreserve'; iova: bigint; size: bigint; errno: VfioErrno; message: string }) => void;
  /** A domain unmapped more than asked (a superpage): `unmapped` bytes from `iova` are gone, other mappings included. */
  hostOverUnmap: (e: { domain: string; iova: bigint; asked: bigint; unmapped: bigint }) => void;
  /** UNMAP_DMA met pinned pages that the vendor drivers did not unpin. */
  unpinStuck: (e: { iova: bigint; size: bigint; pinned: bigint[]; rounds: number }) => void;
  /** An ioctl or in-kernel call was refused (the same error is thrown to the caller). */
  ioctlError: (error: VfioError) => void;
  /**
   * A device stopped DMA (last handle closed, or reset). `invalidated`: the
   * peer-to-peer mappings backed by its BARs, removed with it (seed 004).
   */
  deviceStopped: (e: { device: string; reason: 'close' | 'reset'; invalidated: VfioDmaRange[] }) => void;
  /** IOPF mode: host memory went away (`invalidateVaddr`); `unmapped` per domain, exact. */
  vaddrInvalidated: (e: { vaddr: bigint; size: bigint; ranges: VfioVaddrUnmap[] }) => void;
};

/** An IOVA range [iova, iova + size). */
export interface VfioDmaRange {
  iova: bigint;
  size: bigint;
}

/** What `invalidateVaddr` removed for one mapping: the IOVA range backed by the memory, and per domain the bytes the domain reported unmapped. */
export interface VfioVaddrUnmap extends VfioDmaRange {
  /** Per domain (index order): bytes the domain's unmap calls removed, which may exceed `size` (a superpage goes whole). */
  unmapped: bigint[];
}

/** Counters of a container. */
export interface VfioContainerStats {
  mappings: number;
  dmaAvail: number;
  maps: number;
  unmaps: number;
  /** Failed ioctls by errno. */
  errors: Partial<Record<VfioErrno, number>>;
  hostErrors: number;
  hostOverUnmaps: number;
  unpinStuck: number;
  /** dmaUnmap notification rounds (each tells every vendor driver once). */
  unpinRounds: number;
  /** MAP_DMA refused through `tryMapDma` (counted in `errors` too, no VfioError built). */
  refusedMaps: number;
  /** Domains that failed to give back a reservation while a refused change was unwound. */
  unwindFailures: number;
  /** IOPF mode: pages mapped on a device fault after an invalidation. */
  iopfFaults: number;
  /** Peer-to-peer mappings removed because their BAR's device stopped. */
  p2pInvalidated: number;
  /** Groups attached after creation (`attachGroup`). */
  groupsAttached: number;
  pinnedPages: number;
  devices: number;
  deviceStops: number;
}

export interface VfioContainerOptions {
  /** Host IOMMU domains; default one `SimHostDomain`. Empty: a container with no IOMMU-backed domain (mdev only). */
  domains?: HostIommuDomain[];
  /** `dma_entry_limit`; default 65535. */
  dmaEntryLimit?: number;
  /**
   * Notification rounds without progress (no pin dropped) that UNMAP_DMA
   * allows one mapping with pinned pages before it gives up with EBUSY
   * (default 1). Linux asks the same mapping at most 10 times
   * (`BUG_ON(++retries > 10)` in vfio_dma_do_unmap, a host crash); the
   * simulation fails the ioctl instead and reports the rounds spent.
   */
  unpinRetries?: number;
  /** Reserved regions of the attached devices; default the x86 MSI window. */
  reservedRegions?: VfioReservedRegion[];
  /**
   * How the IOMMU holds user memory. `pinned` (default, type1): pages are
   * pinned at MAP_DMA and a change of the process's memory does not reach
   * the IOMMU. `iopf` (I/O page faults with an MMU notifier, as SVA/iommufd
   * do): `invalidateVaddr` unmaps every IOVA backed by the changed memory,
   * and a device access to such an IOVA faults the page back in from the
   * mapping's vaddr.
   */
  hostMemory?: 'pinned' | 'iopf';
  name?: string;
}

/** Options of `openDevice`. */
export interface VfioDeviceOptions {
  /** Index of the domain the device's group is attached to (default 0). */
  domain?: number;
  /**
   * The vendor driver's `dma_unmap` (mediated devices): told `{iova, size}`
   * of a mapping that is being unmapped while pages of it are pinned; it
   * must unpin them.
   */
  dmaUnmap?: (iova: bigint, size: bigint) => void;
}

/** Result of a device-side DMA check. */
export type VfioDmaAccess =
  | { ok: true; hostAddr: bigint }
  | { ok: false; iova: bigint; reason: 'unmapped' | 'permission' };

interface Dma extends Span {
  /** VFIO_DMA_UNMAP_FLAG_VADDR was applied and no new vaddr given yet. */
  vaddrInvalid: boolean;
  /** Page IOVA -> pin references (vfio_pfn.ref_count); created on the first pin. */
  pinned: Map<bigint, number> | undefined;
  pinRefs: number;
}

/** @internal The container's state of one open device (shared by its handles). */
export interface DeviceRecord {
  readonly name: string;
  refs: number;
  readonly domain: number;
  readonly dmaUnmap: ((iova: bigint, size: bigint) => void) | undefined;
  /** Page IOVA -> pin references held by this device. */
  readonly pins: Map<bigint, number>;
  open: boolean;
}

interface ControlState {
  readonly reserved: readonly VfioReservedRegion[];
  readonly iovaRanges: readonly VfioIovaRange[];
}

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const cloneSpan = (s: Span, start: bigint, end: bigint): Span => ({ start, end, addr: s.addr + (start - s.start), prot: s.prot });

/**
 * A VFIO type1 v2 container. Its methods mirror the ioctls (`mapDma`,
 * `unmapDma`, `getInfo`) and the in-kernel interfaces used by mediated
 * devices (`pinPages`, `unpinPages`, the device's `dmaUnmap`).
 */
export class VfioContainer {
  readonly name: string;
  readonly events: TypedEmitter<VfioContainerEvents> = new EventEmitter() as TypedEmitter<VfioContainerEvents>;
  readonly hostMemory: 'pinned' | 'iopf';
  /** The host IOMMU domains (grows with `attachGroup`). */
  get domains(): readonly HostIommuDomain[] {
    return this.domainList;
  }
  private readonly domainList: HostIommuDomain[];
  /** Process memory that is a device's BAR mmap: DMA mappings of it are peer-to-peer. */
  private readonly bars: Array<{ device: string; vaddr: bigint; end: bigint }> = [];
  private readonly dmas = new SpanList<Dma>();
  /** Per domain: what that host domain maps, kept equal to it from what its calls return. */
  private readonly records: SpanList<Span>[];
  private readonly devices = new Map<string, DeviceRecord>();
  private dmaAvail: number;
  private readonly unpinRetries: number;
  private pgsizes: bigint;
  private minPage: bigint;
  /** Control-plane state: replaced as a whole (immer), so a failed change leaves it untouched. */
  private control: ControlState;
  private readonly counters: Omit<VfioContainerStats, 'mappings' | 'dmaAvail' | 'pinnedPages' | 'devices'> = {
    maps: 0, unmaps: 0, errors: {}, hostErrors: 0, hostOverUnmaps: 0, unpinStuck: 0, deviceStops: 0,
    unpinRounds: 0, refusedMaps: 0, unwindFailures: 0, iopfFaults: 0, p2pInvalidated: 0, groupsAttached: 0,
  };

  constructor(options: VfioContainerOptions = {}) {
    this.name = options.name ?? 'vfio-container';
    this.domainList = [...(options.domains ?? [new SimHostDomain({ name: `${this.name}/domain0` })])];
    this.hostMemory = options.hostMemory ?? 'pinned';
    this.records = this.domains.map(() => new SpanList<Span>());
    this.dmaAvail = options.dmaEntryLimit ?? VFIO_DMA_ENTRY_LIMIT;
    this.unpinRetries = options.unpinRetries ?? 1;
    if (!Number.isInteger(this.unpinRetries) || this.unpinRetries < 1) throw new RangeError(`${this.name}: unpinRetries must be an integer >= 1`);
    // vfio_pgsize_bitmap: AND of all domains; sizes below PAGE_SIZE are hidden and PAGE_SIZE offered instead.
    let bitmap = U64_END - 1n;
    let aperture = U64_END - 1n;
    for (const d of this.domains) {
      bitmap &= d.pgsizeBitmap;
      if (d.apertureEnd < aperture) aperture = d.apertureEnd;
    }
    if (bitmap & (HOST_PAGE - 1n)) bitmap = (bitmap & ~(HOST_PAGE - 1n)) | HOST_PAGE;
    if (bitmap === 0n) throw new RangeError(`${this.name}: the domains share no page size`);
    this.pgsizes = bitmap;
    this.minPage = bitmap & -bitmap;
    this.control = { reserved: [], iovaRanges: [{ start: 0n, end: aperture }] };
    for (const r of options.reservedRegions ?? [X86_MSI_WINDOW]) this.addReservedRegion(r);
  }

  /** VFIO_IOMMU_GET_INFO. */
  getInfo(): VfioIommuInfo {
    return {
      flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
      iova_pgsizes: this.pgsizes,
      iova_ranges: this.control.iovaRanges.map((r) => ({ ...r })),
      dma_avail: this.dmaAvail,
    };
  }

  /**
   * Adds a reserved region (as attaching a group with an MSI window does): it
   * is installed in every domain or in none (a domain that fails has the
   * others unwound), refused with EINVAL when a mapping already overlaps it
   * (Linux `vfio_iommu_resv_conflict`), and removed from the usable IOVA ranges.
   */
  addReservedRegion(region: VfioReservedRegion): void {
    const { start, last } = region;
    if (start < 0n || last < start || last >= U64_END) {
      throw this.fail('RESERVE', 'EINVAL', `reserve(${hex(start)}, ${hex(last)})`, 'empty or outside 64 bits');
    }
    if (this.dmas.firstOverlapping(start, last + 1n) !== undefined) {
      throw this.fail('RESERVE', 'EINVAL', `reserve(${hex(start)}, ${hex(last)})`, 'overlaps an existing DMA mapping');
    }
    this.control = produce(this.control, (draft) => {
      this.reserveAll(this.domainList.map((d) => [d, region]), 'RESERVE', `reserve(${hex(start)}, ${hex(last)})`);
      draft.reserved.push({ ...region });
      draft.iovaRanges = subtractRange(draft.iovaRanges, start, last);
    });
  }

  /** VFIO_IOMMU_MAP_DMA (type1 v2). Throws VfioError; on failure nothing is mapped in any domain. */
  mapDma(map: VfioDmaMap): void {
    const refusal = this.refuseMap(map);
    if (refusal === 'done') return;
    if (refusal !== undefined) {
      throw this.fail('MAP_DMA', refusal.errno, `vfio_dma_map(${hex(map.iova)}, ${hex(map.size)}, ${hex(map.vaddr)})`, refusal.reason);
    }
    this.doMap(map);
  }

  /**
   * MAP_DMA for callers that expect floods of refusals (a listener replaying
   * aliased tables past `dma_entry_limit`): the same checks and effect as
   * `mapDma`, but a refusal is returned, counted in `stats()` (`errors`,
   * `refusedMaps`) and neither thrown nor emitted, so no Error (and no stack
   * capture) is built per refusal. A host domain failure still throws.
   */
  tryMapDma(map: VfioDmaMap): VfioMapRefusal | undefined {
    const refusal = this.refuseMap(map);
    if (refusal === 'done') return undefined;
    if (refusal !== undefined) {
      this.counters.errors[refusal.errno] = (this.counters.errors[refusal.errno] ?? 0) + 1;
      this.counters.refusedMaps++;
      return refusal;
    }
    this.doMap(map);
    return undefined;
  }

  /**
   * The checks of vfio_dma_do_map, in its order where it matters; undefined
   * when a new map may go ahead. A MAP with VFIO_DMA_MAP_FLAG_VADDR is
   * done here (it changes only the vaddr): ENOENT when no mapping starts
   * there, EINVAL unless exactly one mapping of that iova and size has an
   * invalidated vaddr.
   */
  private refuseMap(map: VfioDmaMap): VfioMapRefusal | 'done' | undefined {
    const { iova, size, vaddr } = map;
    const flags = map.flags ?? 0;
    const setVaddr = (flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
    const mask = this.minPage - 1n;
    if ((flags & ~VFIO_DMA_MAP_FLAG_VADDR) !== 0) return { errno: 'EINVAL', reason: `unsupported flags 0x${flags.toString(16)}` };
    if (!setVaddr && !map.read && !map.write) return { errno: 'EINVAL', reason: 'neither read nor write' };
    if (size <= 0n || iova < 0n || vaddr < 0n || ((size | iova | vaddr) & mask) !== 0n) {
      return { errno: 'EINVAL', reason: `size 0 or not aligned to ${hex(this.minPage)}` };
    }
    const last = iova + size - 1n;
    if (last >= U64_END || vaddr + size - 1n >= U64_END) return { errno: 'EINVAL', reason: 'wraps' };
    if (setVaddr) {
      const dma = this.dmas.firstOverlapping(iova, last + 1n);
      if (dma === undefined) return { errno: 'ENOENT', reason: 'no mapping there' };
      if (dma.start !== iova || dma.end !== last + 1n || !dma.vaddrInvalid) {
        return { errno: 'EINVAL', reason: `not exactly one mapping of this iova and size with an invalidated vaddr` };
      }
      dma.addr = vaddr;
      dma.vaddrInvalid = false;
      return 'done';
    }
    // vfio_dma_do_map's order: EEXIST, then ENOSPC (a constant: the flood case builds nothing), then the IOVA ranges.
    if (this.dmas.firstOverlapping(iova, last + 1n) !== undefined) return { errno: 'EEXIST', reason: 'overlaps an existing mapping' };
    if (this.dmaAvail <= 0) return ENOSPC_REFUSAL;
    if (!this.control.iovaRanges.some((r) => r.start <= iova && last <= r.end)) {
      return { errno: 'EINVAL', reason: 'outside the valid IOVA ranges (reserved or beyond the aperture)' };
    }
    return undefined;
  }

  private doMap(map: VfioDmaMap): void {
    const { iova, size, vaddr } = map;
    const last = iova + size - 1n;
    const what = (): string => `vfio_dma_map(${hex(iova)}, ${hex(size)}, ${hex(vaddr)})`;
    const prot = (map.read ? IOMMU_READ : 0) | (map.write ? IOMMU_WRITE : 0);
    // All domains or none (vfio_iommu_map's unwind): a domain that fails has
    // the ones before it unmapped again; the records follow each call.
    for (let k = 0; k < this.domains.length; k++) {
      const d = this.domains[k]!;
      try {
        d.map(iova, vaddr, size, prot);
      } catch (e) {
        const errno = e instanceof HostDomainError ? e.errno : 'EFAULT';
        this.hostError(d, 'map', iova, size, errno, messageOf(e));
        for (let u = k - 1; u >= 0; u--) this.unmapFromDomain(u, iova, last + 1n);
        throw this.fail('MAP_DMA', errno, what(), `${d.name} failed, other domains unwound`);
      }
      // A domain that accepted the map replaced whatever it held there (a
      // stale leftover of a failed unmap): the record follows it.
      this.records[k]!.cut(iova, last + 1n, cloneSpan);
      this.records[k]!.insert({ start: iova, end: last + 1n, addr: vaddr, prot });
    }
    this.dmas.insert({ start: iova, end: last + 1n, addr: vaddr, prot, pinned: undefined, pinRefs: 0, vaddrInvalid: false });
    this.dmaAvail--;
    this.counters.maps++;
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA (type1 v2). Returns `{unmapped}`: the bytes of the
   * mappings removed (0 when none lay in the range). EINVAL when the range
   * would bisect a mapping (nothing is unmapped then).
   *
   * Pinned pages (mediated devices): as Linux `vfio_dma_do_unmap`, before a
   * mapping with pinned pages is removed, every open device's `dmaUnmap` is
   * told that mapping's `{iova, size}`, and the container asks again while
   * the pins decrease. Linux gives up after 10 rounds on the same mapping
   * with `BUG_ON` (a host crash); the simulation stops after
   * `unpinRetries` rounds in a row that unpin nothing and fails with EBUSY
   * instead, reporting the rounds spent. As in Linux, mappings
   * of the range removed before the stuck one stay removed; the stuck one and
   * those after it stay mapped (`detail` says how much was unmapped and which
   * pages are still pinned), and `unpinStuck` is emitted.
   */
  unmapDma(unmap: VfioDmaUnmap): { unmapped: bigint } {
    const flags = unmap.flags ?? 0;
    let { iova, size } = unmap;
    const what = (): string => `vfio_dma_unmap(${hex(unmap.iova)}, ${hex(unmap.size)})`;
    if ((flags & ~(VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)) !== 0) throw this.fail('UNMAP_DMA', 'EINVAL', what(), `unsupported flags 0x${flags.toString(16)}`);
    if (flags & VFIO_DMA_UNMAP_FLAG_ALL) {
      if (iova !== 0n || size !== 0n) throw this.fail('UNMAP_DMA', 'EINVAL', what(), `UNMAP_ALL needs iova = size = 0`);
      size = U64_END;
    } else {
      const mask = this.minPage - 1n;
      if (size <= 0n || iova < 0n || ((iova | size) & mask) !== 0n) {
        throw this.fail('UNMAP_DMA', 'EINVAL', what(), `size 0 or not aligned to ${hex(this.minPage)}`);
      }
      if (iova + size > U64_END) throw this.fail('UNMAP_DMA', 'EINVAL', what(), `wraps`);
      // v2: the range may not bisect a mapping at either end.
      const first = this.dmas.find(iova);
      if (first !== undefined && first.start !== iova) {
        throw this.fail('UNMAP_DMA', 'EINVAL', what(), `bisects the mapping at ${hex(first.start)}+${hex(first.end - first.start)}`);
      }
      const lastDma = this.dmas.find(iova + size - 1n);
      if (lastDma !== undefined && lastDma.end !== iova + size) {
        throw this.fail('UNMAP_DMA', 'EINVAL', what(), `bisects the mapping at ${hex(lastDma.start)}+${hex(lastDma.end - lastDma.start)}`);
      }
    }
    const end = iova + size;
    if (flags & VFIO_DMA_UNMAP_FLAG_VADDR) return this.invalidateVaddrs(iova, end, what);
    let unmapped = 0n;
    let stuckOn: Dma | undefined;
    let idle = 0;
    let rounds = 0;
    for (;;) {
      const dma = this.dmas.firstOverlapping(iova, end);
      if (dma === undefined) break;
      if (dma.pinRefs > 0) {
        const before = dma.pinRefs;
        const dsize = dma.end - dma.start;
        if (stuckOn !== dma) { stuckOn = dma; idle = 0; rounds = 0; }
        rounds++;
        this.counters.unpinRounds++;
        for (const dev of [...this.devices.values()]) {
          if (!dev.open || dev.dmaUnmap === undefined) continue;
          try {
            dev.dmaUnmap(dma.start, dsize);
          } catch {
            // A vendor driver that throws has simply not unpinned; the progress check below decides.
          }
        }
        // The callbacks may have changed the list (Linux drops the lock: "goto again").
        if (dma.pinRefs < before || this.dmas.find(dma.start) !== dma) idle = 0;
        else if (++idle >= this.unpinRetries) {
          const pinned = [...dma.pinned!.keys()].sort((a, b) => (a < b ? -1 : 1));
          this.counters.unpinStuck++;
          this.events.emit('unpinStuck', { iova: dma.start, size: dsize, pinned, rounds });
          this.counters.unmaps++;
          throw this.fail('UNMAP_DMA', 'EBUSY', what(),
            `${pinned.length} page(s) of ${hex(dma.start)}+${hex(dsize)} still pinned after ${rounds} round(s) of notifying the vendor drivers (${idle} without progress)`,
            { unmapped, pinned, rounds });
        }
        continue;
      }
      this.removeDma(dma);
      unmapped += dma.end - dma.start;
    }
    this.counters.unmaps++;
    return { unmapped };
  }

  /**
   * UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR: every mapping of [iova, end)
   * keeps its IOMMU mapping and loses its vaddr. One already invalidated
   * makes the whole call fail with EINVAL, the ones marked before it in this
   * call restored (Linux's unwind; `unmapped` 0).
   */
  private invalidateVaddrs(iova: bigint, end: bigint, what: () => string): { unmapped: bigint } {
    const hit = this.dmas.overlapping(iova, end);
    const stale = hit.find((d) => d.vaddrInvalid);
    if (stale !== undefined) {
      throw this.fail('UNMAP_DMA', 'EINVAL', what(), `the vaddr of ${hex(stale.start)}+${hex(stale.end - stale.start)} is already invalid; nothing changed`);
    }
    let unmapped = 0n;
    for (const d of hit) {
      d.vaddrInvalid = true;
      unmapped += d.end - d.start;
    }
    this.counters.unmaps++;
    return { unmapped };
  }

  /**
   * IOPF mode (`hostMemory: 'iopf'`): the process's memory [vaddr, vaddr +
   * size) changed (an MMU notifier's invalidate_range). Every IOVA backed by
   * it is unmapped from every domain; the user mappings stay, and a later
   * device access faults the pages in again. Returns, per mapping touched,
   * the IOVA range and what each domain reported it unmapped, the exact
   * sizes (a domain may remove a whole superpage: its record follows what it
   * says, never the size asked). In `pinned` mode the IOMMU keeps the pinned
   * pages (what pinning is for): nothing is unmapped and [] is returned.
   */
  invalidateVaddr(vaddr: bigint, size: bigint): VfioVaddrUnmap[] {
    if (size <= 0n || vaddr < 0n || vaddr + size > U64_END) {
      throw this.fail('UNMAP_DMA', 'EINVAL', `invalidate_vaddr(${hex(vaddr)}, ${hex(size)})`, 'empty or outside 64 bits');
    }
    if (this.hostMemory !== 'iopf') return [];
    const lo = vaddr & ~(HOST_PAGE - 1n);
    const hi = (vaddr + size + HOST_PAGE - 1n) & ~(HOST_PAGE - 1n);
    const out: VfioVaddrUnmap[] = [];
    for (const d of this.dmas) {
      if (d.vaddrInvalid) continue; // no vaddr: not backed by this memory any more
      const dEnd = d.addr + (d.end - d.start);
      if (dEnd <= lo || d.addr >= hi) continue;
      const s = d.start + ((lo > d.addr ? lo : d.addr) - d.addr);
      const e = d.start + ((hi < dEnd ? hi : dEnd) - d.addr);
      out.push({ iova: s, size: e - s, unmapped: this.domainList.map((_, k) => this.unmapFromDomain(k, s, e, true)) });
    }
    if (out.length > 0) this.events.emit('vaddrInvalidated', { vaddr, size, ranges: out });
    return out;
  }

  /**
   * Attaches a group whose devices sit behind a new host domain to a
   * container that may already have mappings (vfio_iommu_type1_attach_group):
   * refused with EINVAL when a mapping lies in one of the group's reserved
   * regions or beyond the domain's aperture, or is not aligned to a page
   * size the domain has; EAGAIN while a mapping's vaddr is invalid. Then
   * every mapping is replayed into the domain and the container's reserved
   * regions and the group's are installed (the group's in every domain). A
   * failure anywhere unwinds it all: the new domain is unmapped and
   * unreserved, the others unreserved; an unwind that fails too is a
   * `VfioUnwindError`. Returns the new domain's index (for `openDevice`).
   */
  attachGroup(domain: HostIommuDomain, reservedRegions: readonly VfioReservedRegion[] = []): number {
    const call = `attach_group(${domain.name})`;
    // The same domain twice would have the unwind of a failed replay unmap a live domain.
    if (this.domainList.includes(domain)) throw this.fail('ATTACH_GROUP', 'EINVAL', call, 'domain already in the container');
    for (const r of reservedRegions) {
      if (r.start < 0n || r.last < r.start || r.last >= U64_END) throw this.fail('ATTACH_GROUP', 'EINVAL', call, 'reserved region empty or outside 64 bits');
      const d = this.dmas.firstOverlapping(r.start, r.last + 1n);
      if (d !== undefined) throw this.fail('ATTACH_GROUP', 'EINVAL', call, `mapping ${hex(d.start)}+${hex(d.end - d.start)} lies in reserved region ${hex(r.start)}-${hex(r.last)}`);
    }
    let bitmap = this.pgsizes & domain.pgsizeBitmap;
    if (bitmap & (HOST_PAGE - 1n)) bitmap = (bitmap & ~(HOST_PAGE - 1n)) | HOST_PAGE;
    if (bitmap === 0n) throw this.fail('ATTACH_GROUP', 'EINVAL', call, 'no page size in common with the container');
    const minPage = bitmap & -bitmap;
    for (const d of this.dmas) {
      if (d.end - 1n > domain.apertureEnd) throw this.fail('ATTACH_GROUP', 'EINVAL', call, `mapping ${hex(d.start)} beyond the aperture`);
      if (((d.start | d.end | d.addr) & (minPage - 1n)) !== 0n) throw this.fail('ATTACH_GROUP', 'EINVAL', call, `mapping ${hex(d.start)} not aligned to ${hex(minPage)}`);
      if (d.vaddrInvalid) throw this.fail('ATTACH_GROUP', 'EAGAIN', call, `mapping ${hex(d.start)} has no valid vaddr (VFIO_DMA_UNMAP_FLAG_VADDR)`);
    }
    // Replay (vfio_iommu_replay), then the reservations; unwind on failure.
    const record = new SpanList<Span>();
    const undoMaps = (): void => {
      for (const m of record.toArray().reverse()) {
        try { domain.unmap(m.start, m.end - m.start); } catch { /* reported below as the replay failure */ }
      }
    };
    for (const d of this.dmas) {
      try {
        domain.map(d.start, d.addr, d.end - d.start, d.prot);
      } catch (e) {
        const errno = e instanceof HostDomainError ? e.errno : 'EFAULT';
        this.hostError(domain, 'map', d.start, d.end - d.start, errno, messageOf(e));
        undoMaps();
        throw this.fail('ATTACH_GROUP', errno, call, `replay of ${hex(d.start)} failed, replay unwound`);
      }
      record.insert({ start: d.start, end: d.end, addr: d.addr, prot: d.prot });
    }
    const pairs: Array<[HostIommuDomain, VfioReservedRegion]> = [];
    for (const r of this.control.reserved) pairs.push([domain, r]);
    for (const r of reservedRegions) for (const d of [...this.domainList, domain]) pairs.push([d, r]);
    this.reserveAll(pairs, 'ATTACH_GROUP', call, undoMaps);
    this.domainList.push(domain);
    this.records.push(record);
    this.pgsizes = bitmap;
    this.minPage = minPage;
    this.control = produce(this.control, (draft) => {
      for (const r of reservedRegions) {
        draft.reserved.push({ ...r });
        draft.iovaRanges = subtractRange(draft.iovaRanges, r.start, r.last);
      }
      if (domain.apertureEnd < U64_END - 1n) draft.iovaRanges = subtractRange(draft.iovaRanges, domain.apertureEnd + 1n, U64_END - 1n);
    });
    this.counters.groupsAttached++;
    return this.domainList.length - 1;
  }

  /**
   * Installs each (domain, region) pair in order; when one fails, every pair
   * done is unreserved again (all of them, even when one refuses), `undo`
   * runs, and the failure is thrown: a VfioError, or a VfioUnwindError
   * carrying the original failure and the unwind failures.
   */
  private reserveAll(pairs: ReadonlyArray<[HostIommuDomain, VfioReservedRegion]>, op: VfioOp, call: string, undo?: () => void): void {
    const done: Array<[HostIommuDomain, VfioReservedRegion]> = [];
    for (const [d, r] of pairs) {
      try {
        d.reserve?.(r.start, r.last);
        done.push([d, r]);
      } catch (e) {
        const errno = e instanceof HostDomainError ? e.errno : 'EFAULT';
        this.hostError(d, 'reserve', r.start, r.last - r.start + 1n, errno, messageOf(e));
        // Unwind every pair even when one refuses: one stuck domain must not
        // leave the others reserved (seed 002: all or nothing).
        const unwindFailures: Array<{ domain: string; error: unknown }> = [];
        for (const [u, ur] of done.reverse()) {
          try {
            u.unreserve?.(ur.start, ur.last);
          } catch (ue) {
            unwindFailures.push({ domain: u.name, error: ue });
            this.hostError(u, 'unreserve', ur.start, ur.last - ur.start + 1n, ue instanceof HostDomainError ? ue.errno : 'EFAULT', messageOf(ue));
          }
        }
        undo?.();
        if (unwindFailures.length === 0) throw this.fail(op, errno, call, `${d.name} failed, other domains unwound`);
        this.counters.unwindFailures += unwindFailures.length;
        const error = new VfioUnwindError(new VfioError(op, errno, call, `${d.name} failed`), e, unwindFailures);
        this.countError(error);
        throw error;
      }
    }
  }

  /** The user mappings (`vfio_dma` list), ascending. */
  mappings(): VfioDmaMapping[] {
    return this.dmas.toArray().map((d) => ({
      iova: d.start, size: d.end - d.start, vaddr: d.addr, read: (d.prot & IOMMU_READ) !== 0, write: (d.prot & IOMMU_WRITE) !== 0,
    }));
  }

  /** What host domain `domain` maps (the container's record of it, equal to the domain by construction), ascending. */
  hostMappings(domain = 0): HostMapping[] {
    const rec = this.records[domain];
    if (rec === undefined) throw new RangeError(`${this.name}: no domain ${domain}`);
    return rec.toArray().map((s) => ({
      iova: s.start, size: s.end - s.start, vaddr: s.addr, read: (s.prot & IOMMU_READ) !== 0, write: (s.prot & IOMMU_WRITE) !== 0,
    }));
  }

  /** Internal for listeners: the spans of the user mappings and of each domain record. */
  spans(): { dmas: Span[]; domains: Span[][] } {
    return { dmas: this.dmas.toArray(), domains: this.records.map((r) => r.toArray()) };
  }

  /**
   * Opens a device (a file descriptor on a device of a group in this
   * container). Opening a name already open takes another reference and
   * returns another handle to the same device; its options are ignored.
   */
  openDevice(name: string, options: VfioDeviceOptions = {}): VfioDevice {
    let dev = this.devices.get(name);
    if (dev === undefined) {
      const domain = options.domain ?? 0;
      if (this.domains.length > 0 && this.records[domain] === undefined) {
        throw this.fail('DEVICE', 'EINVAL', `open(${name})`, `no domain ${domain}`);
      }
      dev = { name, refs: 0, domain, dmaUnmap: options.dmaUnmap, pins: new Map(), open: true };
      this.devices.set(name, dev);
    }
    dev.refs++;
    return new VfioDevice(this, dev);
  }

  /** Counters and current sizes. */
  stats(): VfioContainerStats {
    let pinnedPages = 0;
    for (const d of this.dmas) pinnedPages += d.pinned?.size ?? 0;
    return {
      ...this.counters,
      errors: { ...this.counters.errors },
      mappings: this.dmas.length,
      dmaAvail: this.dmaAvail,
      pinnedPages,
      devices: this.devices.size,
    };
  }

  // ---- device side (called by VfioDevice) ----

  /** @internal */
  devicePin(dev: DeviceRecord, iovas: readonly bigint[], write: boolean): bigint[] {
    this.checkOpen(dev, 'PIN_PAGES');
    // vfio_pin_pages: all or nothing, each page inside a mapping with the access asked.
    const found: Dma[] = [];
    for (const iova of iovas) {
      if ((iova & (HOST_PAGE - 1n)) !== 0n) throw this.fail('PIN_PAGES', 'EINVAL', `vfio_pin_pages(${hex(iova)})`, 'not page aligned');
      const dma = this.dmas.find(iova);
      if (dma === undefined) throw this.fail('PIN_PAGES', 'EINVAL', `vfio_pin_pages(${hex(iova)})`, 'not mapped');
      if (write && (dma.prot & IOMMU_WRITE) === 0) throw this.fail('PIN_PAGES', 'EPERM', `vfio_pin_pages(${hex(iova)}, write)`, 'mapping is read-only');
      // Linux 5.12-6.1 blocked here until MAP_DMA with FLAG_VADDR (vfio_wait); a simulation cannot block: EAGAIN.
      if (dma.vaddrInvalid) throw this.fail('PIN_PAGES', 'EAGAIN', `vfio_pin_pages(${hex(iova)})`, 'vaddr invalidated (VFIO_DMA_UNMAP_FLAG_VADDR), no new vaddr yet');
      found.push(dma);
    }
    return iovas.map((iova, i) => {
      const dma = found[i]!;
      dma.pinned ??= new Map();
      dma.pinned.set(iova, (dma.pinned.get(iova) ?? 0) + 1);
      dma.pinRefs++;
      dev.pins.set(iova, (dev.pins.get(iova) ?? 0) + 1);
      return dma.addr + (iova - dma.start);
    });
  }

  /** @internal */
  deviceUnpin(dev: DeviceRecord, iovas: readonly bigint[]): number {
    this.checkOpen(dev, 'PIN_PAGES');
    let n = 0;
    for (const iova of iovas) if (this.unpinOne(dev, iova)) n++;
    return n;
  }

  private unpinOne(dev: DeviceRecord, iova: bigint): boolean {
    const held = dev.pins.get(iova);
    if (held === undefined) return false;
    if (held > 1) dev.pins.set(iova, held - 1);
    else dev.pins.delete(iova);
    const dma = this.dmas.find(iova);
    const refs = dma?.pinned?.get(iova);
    if (dma !== undefined && dma.pinned !== undefined && refs !== undefined) {
      if (refs > 1) dma.pinned.set(iova, refs - 1);
      else dma.pinned.delete(iova);
      dma.pinRefs--;
    }
    return true;
  }

  /** @internal */
  deviceDma(dev: DeviceRecord, iova: bigint, len: bigint, write: boolean): VfioDmaAccess {
    this.checkOpen(dev, 'DEVICE');
    const end = iova + (len > 0n ? len : 1n);
    const need = write ? IOMMU_WRITE : IOMMU_READ;
    if (this.domains.length === 0) {
      // No IOMMU-backed domain (mdev): the device reaches only what its driver pinned.
      for (let p = iova & ~(HOST_PAGE - 1n); p < end; p += HOST_PAGE) {
        if (!dev.pins.has(p)) return { ok: false, iova: p > iova ? p : iova, reason: 'unmapped' };
      }
      const dma = this.dmas.find(iova)!;
      if ((dma.prot & need) === 0) return { ok: false, iova, reason: 'permission' };
      return { ok: true, hostAddr: dma.addr + (iova - dma.start) };
    }
    const rec = this.records[dev.domain]!;
    let x = iova;
    let first: bigint | undefined;
    while (x < end) {
      const s = rec.find(x) ?? this.faultIn(dev.domain, x);
      if (s === undefined) return { ok: false, iova: x, reason: 'unmapped' };
      if ((s.prot & need) === 0) return { ok: false, iova: x, reason: 'permission' };
      if (first === undefined) first = s.addr + (x - s.start);
      x = s.end;
    }
    return { ok: true, hostAddr: first! };
  }

  /**
   * IOPF mode: a device access to an IOVA its domain lost through
   * `invalidateVaddr` (an I/O page fault) maps the host page back from the
   * user mapping's vaddr. Undefined when nothing may be faulted in: not IOPF
   * mode, no mapping there, or its vaddr invalidated.
   */
  private faultIn(k: number, iova: bigint): Span | undefined {
    if (k >= this.domainList.length) return undefined;
    if (this.hostMemory !== 'iopf') return undefined;
    const dma = this.dmas.find(iova);
    if (dma === undefined || dma.vaddrInvalid) return undefined;
    const page = iova & ~(this.minPage - 1n);
    const addr = dma.addr + (page - dma.start);
    try {
      this.domainList[k]!.map(page, addr, this.minPage, dma.prot);
    } catch (e) {
      this.hostError(this.domainList[k]!, 'map', page, this.minPage, e instanceof HostDomainError ? e.errno : 'EFAULT', messageOf(e));
      return undefined;
    }
    const span: Span = { start: page, end: page + this.minPage, addr, prot: dma.prot };
    this.records[k]!.insert(span);
    this.counters.iopfFaults++;
    return span;
  }

  /** @internal Declares [vaddr, vaddr + size) of the process as this device's BAR mmap (peer-to-peer DMA target). */
  deviceBar(dev: DeviceRecord, vaddr: bigint, size: bigint): void {
    this.checkOpen(dev, 'DEVICE');
    if (size <= 0n || vaddr < 0n || vaddr + size > U64_END || ((vaddr | size) & (HOST_PAGE - 1n)) !== 0n) {
      throw this.fail('DEVICE', 'EINVAL', `mmap_bar(${dev.name}, ${hex(vaddr)}, ${hex(size)})`, 'empty, unaligned or outside 64 bits');
    }
    this.bars.push({ device: dev.name, vaddr, end: vaddr + size });
  }

  /**
   * @internal Stops a device's DMA: its pins are dropped, every DMA mapping
   * backed by its BARs (peer-to-peer: another device's DMA into this one)
   * is removed from the container and every domain (the BAR's memory is
   * gone; vfio-pci zaps the mmaps on reset and close), and listeners are
   * told, with the ranges invalidated.
   */
  deviceStop(dev: DeviceRecord, reason: 'close' | 'reset'): void {
    for (const [iova, n] of [...dev.pins]) for (let i = 0; i < n; i++) this.unpinOne(dev, iova);
    const invalidated: VfioDmaRange[] = [];
    const bars = this.bars.filter((b) => b.device === dev.name);
    if (bars.length > 0) {
      for (const d of this.dmas.toArray()) {
        const dEnd = d.addr + (d.end - d.start);
        if (!bars.some((b) => d.addr < b.end && b.vaddr < dEnd)) continue;
        // Pins on a BAR mapping go with it: the memory they pinned no longer exists.
        for (const other of this.devices.values()) {
          for (const p of [...other.pins.keys()]) if (p >= d.start && p < d.end) other.pins.delete(p);
        }
        this.removeDma(d);
        invalidated.push({ iova: d.start, size: d.end - d.start });
      }
      this.counters.p2pInvalidated += invalidated.length;
    }
    this.counters.deviceStops++;
    if (reason === 'close') {
      dev.open = false;
      this.devices.delete(dev.name);
      for (let i = this.bars.length - 1; i >= 0; i--) if (this.bars[i]!.device === dev.name) this.bars.splice(i, 1);
    }
    this.events.emit('deviceStopped', { device: dev.name, reason, invalidated });
  }

  private checkOpen(dev: DeviceRecord, op: VfioOp): void {
    if (!dev.open) throw this.fail(op, 'ENODEV', `device ${dev.name}`, 'stopped');
  }

  // ---- internals ----

  private removeDma(dma: Dma): void {
    for (let k = 0; k < this.domains.length; k++) this.unmapFromDomain(k, dma.start, dma.end);
    this.dmas.delete(dma);
    this.dmaAvail++;
  }

  /**
   * Unmaps [start, end) from domain k, piece by piece of what its record
   * holds there (as `vfio_unmap_unpin` loops on `iommu_unmap`), and keeps the
   * record equal to what the domain reports it removed: an over-unmap takes
   * neighbours with it, an unmap that makes no progress leaves the rest
   * mapped (a stale host mapping that the consistency check reports).
   * Returns the bytes the domain reported unmapped.
   */
  private unmapFromDomain(k: number, start: bigint, end: bigint, widen = false): bigint {
    const d = this.domainList[k]!;
    const rec = this.records[k]!;
    let total = 0n;
    for (const s of rec.overlapping(start, end)) {
      let pos = s.start > start ? s.start : start;
      const stop = s.end < end ? s.end : end;
      while (pos < stop) {
        // The record may have lost this piece to an earlier over-unmap.
        const cur = rec.find(pos);
        if (cur === undefined) {
          const next = rec.firstOverlapping(pos, stop);
          if (next === undefined) break;
          pos = next.start;
          continue;
        }
        let at = pos;
        let ask = (cur.end < stop ? cur.end : stop) - pos;
        let got = this.domainUnmap(d, at, ask);
        if (got <= 0n && widen && cur.start < pos) {
          // A host page (a superpage) that starts below `pos` cannot be
          // split: remove it whole from the mapping's start; in IOPF mode
          // device faults bring back what was not meant to go.
          ask += pos - cur.start;
          at = cur.start;
          got = this.domainUnmap(d, at, ask);
        }
        if (got <= 0n) {
          this.hostError(d, 'unmap', pos, stop - pos, 'EFAULT',
            `${d.name}: iommu_unmap(${hex(at)}, ${hex(ask)}) unmapped nothing; ${hex(pos)}-${hex(stop - 1n)} stays mapped`);
          break;
        }
        rec.cut(at, at + got, cloneSpan);
        total += got;
        if (got > ask) {
          this.counters.hostOverUnmaps++;
          this.events.emit('hostOverUnmap', { domain: d.name, iova: at, asked: ask, unmapped: got });
        }
        // The record shrank by `got` > 0 bytes, so this loop ends even when `at + got` stays below `pos`.
        if (at + got > pos) pos = at + got;
      }
    }
    return total;
  }

  /** `iommu_unmap` on one domain: the bytes it reports removed; a throw counts as 0 and is reported. */
  private domainUnmap(d: HostIommuDomain, iova: bigint, size: bigint): bigint {
    try {
      return d.unmap(iova, size);
    } catch (e) {
      this.hostError(d, 'unmap', iova, size, e instanceof HostDomainError ? e.errno : 'EFAULT', messageOf(e));
      return 0n;
    }
  }

  private hostError(d: HostIommuDomain, op: 'map' | 'unmap' | 'reserve' | 'unreserve', iova: bigint, size: bigint, errno: VfioErrno, message: string): void {
    this.counters.hostErrors++;
    this.events.emit('hostError', { domain: d.name, op, iova, size, errno, message });
  }

  private fail(op: VfioOp, errno: VfioErrno, call: string, reason: string, detail?: VfioErrorDetail): VfioError {
    const error = new VfioError(op, errno, call, reason, detail);
    this.countError(error);
    return error;
  }

  private countError(error: VfioError): void {
    this.counters.errors[error.errno] = (this.counters.errors[error.errno] ?? 0) + 1;
    this.events.emit('ioctlError', error);
  }
}

/**
 * A handle on an open device. Handles of one device share it (reference
 * counted): the device stops when its last handle is closed. A closed
 * handle refuses everything with EBADF.
 */
export class VfioDevice {
  private closed = false;

  /** @internal */
  constructor(private readonly container: VfioContainer, private readonly dev: DeviceRecord) {}

  get name(): string {
    return this.dev.name;
  }

  /** References to the device (open handles). */
  get refs(): number {
    return this.dev.refs;
  }

  /**
   * Device-side DMA check: can this device reach [iova, iova + len) for a
   * read or a write, through its host domain? Never throws for an unmapped
   * address (that is a device fault); the answer shows what a stale host
   * mapping lets a device do.
   */
  dma(iova: bigint, len: bigint, write: boolean): VfioDmaAccess {
    this.check();
    return this.container.deviceDma(this.dev, iova, len, write);
  }

  /** vfio_pin_pages: pins 4 KiB pages by IOVA; returns their host addresses. All or nothing. */
  pinPages(iovas: readonly bigint[], write: boolean): bigint[] {
    this.check();
    return this.container.devicePin(this.dev, iovas, write);
  }

  /** vfio_unpin_pages: drops one pin reference per page; returns how many pages this device had pinned. */
  unpinPages(iovas: readonly bigint[]): number {
    this.check();
    return this.container.deviceUnpin(this.dev, iovas);
  }

  /**
   * Declares [vaddr, vaddr + size) of the process as an mmap of this
   * device's BAR: a MAP_DMA of that memory is a peer-to-peer mapping, which
   * the device's reset or close invalidates (`deviceStopped.invalidated`).
   */
  mmapBar(vaddr: bigint, size: bigint): void {
    this.check();
    this.container.deviceBar(this.dev, vaddr, size);
  }

  /** Device reset: in-flight DMA stops (pins dropped, `deviceStopped` emitted); the device stays open. */
  reset(): void {
    this.check();
    this.container.deviceStop(this.dev, 'reset');
  }

  /** Closes this handle; the last close stops the device. Closing twice is harmless. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dev.refs--;
    if (this.dev.refs === 0) this.container.deviceStop(this.dev, 'close');
  }

  private check(): void {
    if (this.closed) throw new VfioError('DEVICE', 'EBADF', `device ${this.dev.name}`, 'handle closed');
  }
}

/** Removes [start, last] from a sorted list of disjoint inclusive ranges. */
function subtractRange(ranges: readonly VfioIovaRange[], start: bigint, last: bigint): VfioIovaRange[] {
  const out: VfioIovaRange[] = [];
  for (const r of ranges) {
    if (r.end < start || r.start > last) { out.push({ ...r }); continue; }
    if (r.start < start) out.push({ start: r.start, end: start - 1n });
    if (r.end > last) out.push({ start: last + 1n, end: r.end });
  }
  return out;
}
