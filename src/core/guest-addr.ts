/**
 * Guest addresses, 4 KiB page frame numbers and checked inclusive ranges,
 * written once for every model and tool.
 *
 * Addresses are bigint (an IOVA or guest-physical address may be anything up
 * to 2^64 - 1). Ranges are inclusive at both ends, as cloud-hypervisor and
 * the virtio-iommu spec write them (`virt_end`, `input_range.end`): a range
 * can then reach the last byte of the 64-bit space, which an exclusive end
 * cannot express in 64 bits. Offsets are checked the way rust-vmm's
 * vm-memory `GuestAddress::checked_offset` does: an overflow past 2^64 is
 * an `undefined` the caller must handle, never a silent wrap.
 *
 * Frame numbers are plain numbers (`addr >> 12` is below 2^52, exact in a
 * double), the unit the notifier list and the models' hot paths count in
 * (see leaf.ts): a hot path converts once and then does number arithmetic.
 */
import { PAGE_SHIFT } from './leaf';

/** 2^64 - 1: the last address of the 64-bit space. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * `0x`-prefixed lowercase hex, the spelling of addresses in messages and
 * traces; a negative value (a misshapen mask in a contract diagnosis) reads
 * `-0x..`.
 */
export function hex(v: bigint | number): string {
  return v < 0 ? `-0x${(-BigInt(v)).toString(16)}` : `0x${v.toString(16)}`;
}

/** The 4 KiB granule as bigint, and its offset mask (`addr & PAGE_OFFSET_MASK` is the offset in the page). */
export const PAGE_SIZE_4K = 0x1000n;
export const PAGE_OFFSET_MASK = 0xfffn;
const SHIFT = BigInt(PAGE_SHIFT);

/** The 4 KiB frame number of `addr` (0 <= addr < 2^64), exact as a number. */
export function pfnOf(addr: bigint): number {
  return Number(addr >> SHIFT);
}

/** The address of frame `pfn` (an integer 0 <= pfn < 2^52). */
export function pfnToAddr(pfn: number): bigint {
  return BigInt(pfn) << SHIFT;
}

/** `addr` rounded down to its 4 KiB page. */
export function pageBase(addr: bigint): bigint {
  return addr & ~PAGE_OFFSET_MASK;
}

/** Whether `addr` is a multiple of `align` (a power of two; default 4 KiB). */
export function isAligned(addr: bigint, align: bigint = PAGE_SIZE_4K): boolean {
  return (addr & (align - 1n)) === 0n;
}

/**
 * `base + offset` when it stays within the 64-bit space, else undefined
 * (vm-memory `checked_offset`). Both operands must be non-negative.
 */
export function checkedOffset(base: bigint, offset: bigint): bigint | undefined {
  const r = base + offset;
  return r <= U64_MAX ? r : undefined;
}

/** An inclusive range of 64-bit addresses, [start, end], start <= end. */
export interface InclusiveRange {
  readonly start: bigint;
  readonly end: bigint;
}

/** Whether `r` is a well-formed range: 0 <= start <= end <= 2^64 - 1. */
export function isValidRange(r: InclusiveRange): boolean {
  return r.start >= 0n && r.start <= r.end && r.end <= U64_MAX;
}

/**
 * The range of `len` bytes from `start`, or undefined when `len` is 0 or the
 * range would pass 2^64 - 1 (a range may end exactly on it).
 */
export function rangeFromStartLen(start: bigint, len: bigint): InclusiveRange | undefined {
  if (len <= 0n || start < 0n) return undefined;
  const end = checkedOffset(start, len - 1n);
  return end === undefined ? undefined : { start, end };
}

/** Number of bytes in `r` (up to 2^64, so a bigint). */
export function rangeLength(r: InclusiveRange): bigint {
  return r.end - r.start + 1n;
}

/** Whether `addr` lies in `r`. */
export function rangeContains(r: InclusiveRange, addr: bigint): boolean {
  return addr >= r.start && addr <= r.end;
}

/** Whether `inner` lies wholly inside `outer`. */
export function rangeContainsRange(outer: InclusiveRange, inner: InclusiveRange): boolean {
  return inner.start >= outer.start && inner.end <= outer.end;
}

/** Whether `a` and `b` share at least one byte. */
export function rangeOverlaps(a: InclusiveRange, b: InclusiveRange): boolean {
  return a.start <= b.end && b.start <= a.end;
}

/**
 * Whether `r` is made of whole pages of `align` bytes (a power of two;
 * default 4 KiB): its start is aligned and its end is the last byte of a
 * page (end + 1 aligned; the range may end on 2^64 - 1).
 */
export function isRangeAligned(r: InclusiveRange, align: bigint = PAGE_SIZE_4K): boolean {
  const m = align - 1n;
  return (r.start & m) === 0n && (r.end & m) === m;
}

/**
 * The x86 interrupt (MSI) window 0xfee00000-0xfeefffff: DMA writes there are
 * interrupt requests, never translated (VT-d 3.14 "Handling Requests to
 * Interrupt Address Range"; QEMU's q35 reserves it as virtio-iommu's MSI
 * RESV_MEM region and VFIO as a reserved IOVA region).
 */
export const X86_MSI_RANGE: InclusiveRange = Object.freeze({ start: 0xfee0_0000n, end: 0xfeef_ffffn });
