/**
 * The host IOMMU side of a simulated VFIO container: one `HostIommuDomain` per
 * host IOMMU domain (Linux `struct iommu_domain` behind a `vfio_domain`). The
 * container drives domains through this interface only, so tests can plug in
 * a domain that fails, unmaps less than asked, or more.
 */

/** Errno names the simulated host side reports (Linux values in `ERRNO`). */
export type VfioErrno =
  | 'EPERM' | 'ENOENT' | 'EBADF' | 'EAGAIN' | 'ENOMEM' | 'EFAULT' | 'EBUSY' | 'EEXIST' | 'ENODEV' | 'EINVAL' | 'ENOSPC' | 'ERANGE';

/** Linux errno numbers and strerror texts, for messages in QEMU's shape (`= -17 (File exists)`). */
export const ERRNO: Readonly<Record<VfioErrno, readonly [number, string]>> = {
  EPERM: [1, 'Operation not permitted'],
  ENOENT: [2, 'No such file or directory'],
  EBADF: [9, 'Bad file descriptor'],
  EAGAIN: [11, 'Resource temporarily unavailable'],
  ENOMEM: [12, 'Cannot allocate memory'],
  EFAULT: [14, 'Bad address'],
  EBUSY: [16, 'Device or resource busy'],
  EEXIST: [17, 'File exists'],
  ENODEV: [19, 'No such device'],
  EINVAL: [22, 'Invalid argument'],
  ENOSPC: [28, 'No space left on device'],
  ERANGE: [34, 'Numerical result out of range'],
};

/** A host IOMMU domain operation failed; nothing was changed by the failing call. */
export class HostDomainError extends Error {
  override readonly name = 'HostDomainError';
  constructor(readonly errno: VfioErrno, message: string) {
    super(message);
  }
}

/** IOMMU_READ / IOMMU_WRITE as the host IOMMU API takes them. */
export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;

/**
 * A host IOMMU domain, as much of the Linux IOMMU API as VFIO type1 uses.
 * Addresses are bigint (64-bit IOVA). `paddr` is the host address the pinned
 * user memory resolves to (the simulation uses the process virtual address).
 */
export interface HostIommuDomain {
  /** Name used in events and reports. */
  readonly name: string;
  /** Page sizes the domain can map: bit n set = 2^n bytes (`iommu_domain.pgsize_bitmap`). */
  readonly pgsizeBitmap: bigint;
  /** Last IOVA the domain can translate (`iommu_domain.geometry.aperture_end`). */
  readonly apertureEnd: bigint;
  /**
   * Maps [iova, iova + size) to [paddr, ...) with `prot` (IOMMU_READ | IOMMU_WRITE).
   * Throws HostDomainError on failure, having mapped nothing.
   */
  map(iova: bigint, paddr: bigint, size: bigint, prot: number): void;
  /**
   * Unmaps from `iova` on (`iommu_unmap`): returns the number of bytes
   * actually unmapped, [iova, iova + returned). That may be less than `size`
   * (0: nothing mapped at iova, or the domain refused) or more (a superpage
   * is removed whole).
   */
  unmap(iova: bigint, size: bigint): bigint;
  /** Installs a reserved region [start, last] (an MSI doorbell window). Throws HostDomainError on failure. */
  reserve?(start: bigint, last: bigint): void;
  /** Removes a reserved region installed by `reserve`. */
  unreserve?(start: bigint, last: bigint): void;
}

/** A page of a simulated host page table; sizes in 4 KiB frames. */
interface HostPage {
  pages: number;
  paddr: bigint;
  prot: number;
}

/** Options of `SimHostDomain`. */
export interface SimHostDomainOptions {
  name?: string;
  /** Default 4 KiB | 2 MiB | 1 GiB, as Intel and AMD host IOMMUs. */
  pgsizeBitmap?: bigint;
  /** Default 2^48 - 1 (4-level tables). */
  apertureEnd?: bigint;
}

/**
 * A host IOMMU domain with real page-table behaviour: `map` picks, for each
 * step, the largest supported page size that the IOVA, the address and the
 * remaining length allow (as Linux `iommu_pgsize`), so an aligned 2 MiB map
 * becomes one superpage; `unmap` removes whole pages from `iova` on and
 * reports what it removed (a 2 MiB page asked to unmap 4 KiB goes whole, as
 * Intel's `intel_iommu_unmap` does), and stops at the first hole.
 */
export class SimHostDomain implements HostIommuDomain {
  readonly name: string;
  readonly pgsizeBitmap: bigint;
  readonly apertureEnd: bigint;
  /**
   * Page table: first frame (iova / 4 KiB, exact as a number over 64 bits)
   * -> page. Number keys: bigint Map keys hash far slower.
   */
  private readonly table = new Map<number, HostPage>();
  /** Supported page sizes in frames, largest first. */
  private readonly sizes: number[];
  private readonly reserved: Array<[bigint, bigint]> = [];

  constructor(options: SimHostDomainOptions = {}) {
    this.name = options.name ?? 'host-domain';
    this.pgsizeBitmap = options.pgsizeBitmap ?? ((1n << 12n) | (1n << 21n) | (1n << 30n));
    this.apertureEnd = options.apertureEnd ?? (1n << 48n) - 1n;
    // Sizes below 4 KiB are offered but the simulation maps in 4 KiB frames,
    // as VFIO only ever asks for PAGE_SIZE multiples (vfio_pgsize_bitmap).
    this.sizes = [];
    for (let b = 63; b >= 12; b--) if ((this.pgsizeBitmap >> BigInt(b)) & 1n) this.sizes.push(2 ** (b - 12));
    if (this.pgsizeBitmap & ((1n << 12n) - 1n) && !this.sizes.includes(1)) this.sizes.push(1);
    if (this.sizes.length === 0 || this.pgsizeBitmap >= 1n << 64n) {
      throw new RangeError(`${this.name}: pgsizeBitmap 0x${this.pgsizeBitmap.toString(16)} offers no page size up to 2^63`);
    }
  }

  /** The first frame of the page containing frame `pfn`, or -1. */
  private pageAt(pfn: number): number {
    for (const size of this.sizes) {
      const base = pfn - (pfn % size);
      const p = this.table.get(base);
      if (p !== undefined && p.pages === size) return base;
    }
    return -1;
  }

  map(iova: bigint, paddr: bigint, size: bigint, prot: number): void {
    const minPages = this.sizes[this.sizes.length - 1]!;
    const min = BigInt(minPages) << 12n;
    if (size <= 0n || iova < 0n || ((iova | paddr | size) & (min - 1n)) !== 0n) {
      throw new HostDomainError('EINVAL', `${this.name}: map of 0x${iova.toString(16)}+0x${size.toString(16)} not aligned to 0x${min.toString(16)}`);
    }
    if (iova + size - 1n > this.apertureEnd) {
      throw new HostDomainError('EFAULT', `${this.name}: map of 0x${iova.toString(16)} beyond the aperture`);
    }
    const first = Number(iova >> 12n);
    const count = Number(size >> 12n);
    const pfirst = Number(paddr >> 12n);
    // Check the whole range first so a failure maps nothing. The cost is
    // O(min(pages in the range, pages in the table)): a huge guest leaf (an
    // AMD-Vi NextLevel-7 page can span 2^47 bytes) must not be probed frame
    // by frame when the table holds a few entries.
    if (count / minPages > this.table.size) {
      for (const [base, p] of this.table) {
        if (base < first + count && base + p.pages > first) {
          throw new HostDomainError('EEXIST', `${this.name}: 0x${(BigInt(Math.max(base, first)) << 12n).toString(16)} already mapped`);
        }
      }
    } else {
      for (let off = 0; off < count; off += minPages) {
        if (this.pageAt(first + off) >= 0) {
          throw new HostDomainError('EEXIST', `${this.name}: 0x${((BigInt(first + off)) << 12n).toString(16)} already mapped`);
        }
      }
    }
    let off = 0;
    while (off < count) {
      let chosen = minPages;
      for (const s of this.sizes) {
        if (s <= count - off && (first + off) % s === 0 && (pfirst + off) % s === 0) { chosen = s; break; }
      }
      this.table.set(first + off, { pages: chosen, paddr: paddr + (BigInt(off) << 12n), prot });
      off += chosen;
    }
  }

  unmap(iova: bigint, size: bigint): bigint {
    if (iova < 0n || (iova & 0xfffn) !== 0n) return 0n;
    const first = Number(iova >> 12n);
    const count = size >> 12n;
    let done = 0;
    while (BigInt(done) < count) {
      const base = this.pageAt(first + done);
      // A hole, or a page that starts below the address: nothing more from here.
      if (base !== first + done) break;
      done += this.table.get(base)!.pages;
      this.table.delete(base);
    }
    return BigInt(done) << 12n;
  }

  reserve(start: bigint, last: bigint): void {
    for (const [base, p] of this.table) {
      const b = BigInt(base) << 12n;
      if (b <= last && b + (BigInt(p.pages) << 12n) - 1n >= start) {
        throw new HostDomainError('EBUSY', `${this.name}: reserved region 0x${start.toString(16)}-0x${last.toString(16)} overlaps a mapping`);
      }
    }
    this.reserved.push([start, last]);
  }

  unreserve(start: bigint, last: bigint): void {
    const i = this.reserved.findIndex(([s, l]) => s === start && l === last);
    if (i >= 0) this.reserved.splice(i, 1);
  }

  /** The host translation of `iova` (what a device behind this domain reaches), or undefined. */
  translate(iova: bigint): { paddr: bigint; prot: number } | undefined {
    if (iova < 0n || iova >= 1n << 64n) return undefined;
    const base = this.pageAt(Number(iova >> 12n));
    if (base < 0) return undefined;
    const p = this.table.get(base)!;
    return { paddr: p.paddr + (iova - (BigInt(base) << 12n)), prot: p.prot };
  }

  /** The page table: every page, ascending. */
  mappings(): Array<{ iova: bigint; size: bigint; paddr: bigint; prot: number }> {
    return [...this.table].sort((a, b) => a[0] - b[0])
      .map(([pfn, p]) => ({ iova: BigInt(pfn) << 12n, size: BigInt(p.pages) << 12n, paddr: p.paddr, prot: p.prot }));
  }

  /** Reserved regions installed, as [start, last]. */
  reservedRegions(): Array<[bigint, bigint]> {
    return this.reserved.map(([s, l]) => [s, l]);
  }
}
