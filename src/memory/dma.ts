import { U64_MAX } from '../core/guest-addr';
import { isFault } from '../core/model';
import type { TranslateResult } from '../core/model';
import { ramExtentOf } from './guest-memory';
import type { GuestMemory } from './guest-memory';

/** Translates one IOVA for a read (`write` false) or a write, as a device's DMA would (side effects included). */
export type DmaTranslate = (iova: bigint, write: boolean) => TranslateResult;

/** What a DMA through the IOMMU did. */
export interface DmaResult {
  /** True when any page chunk failed to translate (trace-v1 `"fault"`). */
  faulted: boolean;
  /** IOVA of the first byte of each chunk that faulted, ascending. */
  faultIovas: bigint[];
  /**
   * True when a translated chunk reached, wholly or partly, guest-physical
   * addresses outside RAM (those bytes read as zero / were dropped). This is
   * not a translation fault: QEMU's IOMMU records nothing and the DMA goes on.
   */
  unassigned: boolean;
}

export interface DmaReadResult extends DmaResult {
  /** The bytes read; zero where a chunk faulted or reached no RAM. */
  data: Uint8Array;
}

const CHUNK = 4096n;
const CHUNK_MASK = 4095n;
/** DMA address arithmetic wraps at 2^64, like QEMU's hwaddr. */
const IOVA_MASK = U64_MAX;
const GPA_LIMIT = 2n ** 53n;

/**
 * Visits the DMA [iova, iova + len) as chunks cut at 4 KiB IOVA boundaries,
 * translating each on its own in ascending order (trace-v1 `dma.read` /
 * `dma.write`; QEMU's memory core translates the same way and does not stop at
 * a faulting page: shared/reference/qemu-7.2-findings.md "DMA semantics").
 * `visit` gets the guest-physical address of the chunk, or undefined when it
 * faulted. IOVAs are 64-bit (QEMU's hwaddr): a DMA that runs past 2^64 - 1
 * wraps around to IOVA 0, as the device's address arithmetic does.
 */
function eachChunk(
  translate: DmaTranslate, iova: bigint, len: number, write: boolean, result: DmaResult,
  visit: (gpa: number | undefined, offset: number, n: number) => void,
): void {
  let offset = 0;
  let cur = iova;
  while (offset < len) {
    const n = Math.min(len - offset, Number(CHUNK - (cur & CHUNK_MASK)));
    let gpa: number | undefined;
    {
      const t = translate(cur, write);
      // A translation whose permission lacks the access fails too: QEMU's
      // memory core checks iotlb.perm and sends the access to unassigned memory.
      if (isFault(t) || (t.perm & (write ? 2 : 1)) === 0) {
        result.faulted = true;
        result.faultIovas.push(cur);
      } else {
        // As QEMU: (translated_addr & ~addr_mask) | (addr & addr_mask).
        const addr = (t.translatedAddr & ~t.addrMask) | (cur & t.addrMask);
        if (addr + BigInt(n) <= GPA_LIMIT) gpa = Number(addr);
        else result.unassigned = true;
      }
    }
    visit(gpa, offset, n);
    offset += n;
    cur = (cur + BigInt(n)) & IOVA_MASK;
  }
}

/** Scratch for the RAM probes of memories without RamExtentSource (a chunk is at most one page). */
const PROBE = new Uint8Array(4096);

/**
 * Visits the runs of [gpa, gpa + n) that are RAM (`ram(at, offset, count)`)
 * after a whole-chunk access failed, in a number of memory calls that does
 * not grow with n (a DMA of 16 MiB to unassigned addresses used to probe
 * every byte). With RamExtentSource (SparseRam) the runs are exact. Without
 * it, RAM is found from each end of the chunk by binary search on whole-range
 * reads (a read of a range succeeds only when all of it is RAM, so the RAM
 * prefix and the RAM suffix are monotone): exact whenever the chunk's page
 * holds at most two RAM/non-RAM boundaries; a RAM island strictly inside a
 * hole of one page is read as zeros / not written.
 */
function eachRamRun(mem: GuestMemory, gpa: number, n: number, ram: (at: number, offset: number, count: number) => void): void {
  const end = gpa + n;
  const extents = ramExtentOf(mem);
  if (extents !== undefined) {
    let a = gpa;
    while (a < end) {
      const run = extents.ramExtent(a, end);
      // Progress is guaranteed even against a memory that answers nonsense.
      const stop = run.end > a && run.end <= end ? run.end : end;
      if (run.ram) ram(a, a - gpa, stop - a);
      a = stop;
    }
    return;
  }
  const isRam = (at: number, count: number): boolean => count === 0 || mem.read(at, PROBE.subarray(0, count));
  // RAM prefix: the largest k with [gpa, gpa + k) all RAM (k = n is known to fail). A chunk with no
  // RAM at either end (the common case: wholly unassigned) costs one probe per end.
  let lo = 0;
  let hi = isRam(gpa, 1) ? n : 1;
  while (hi - lo > 1) {
    const mid = lo + ((hi - lo) >>> 1);
    if (isRam(gpa, mid)) lo = mid;
    else hi = mid;
  }
  const prefix = lo;
  // RAM suffix: the smallest q with [q, end) all RAM ([gpa + prefix, end) is known to fail).
  lo = gpa + prefix;
  hi = end;
  if (isRam(end - 1, 1)) {
    hi = end - 1;
    while (hi - lo > 1) {
      const mid = lo + ((hi - lo) >>> 1);
      if (isRam(mid, end - mid)) hi = mid;
      else lo = mid;
    }
  }
  if (prefix > 0) ram(gpa, 0, prefix);
  if (hi < end) ram(hi, hi - gpa, end - hi);
}

/**
 * A device reads `len` bytes at `iova` through the IOMMU, page chunk by page
 * chunk. A faulting chunk reads as zeros and later chunks are still read.
 *
 * A chunk that translates to addresses outside RAM reads as zero where there
 * is no RAM: QEMU dispatches such an access to unassigned memory, whose reads
 * return 0 (MEMTX_DECODE_ERROR, which the DMA engine does not see as an
 * IOMMU fault), and the parts of the chunk that are RAM are read.
 */
export function dmaRead(mem: GuestMemory, translate: DmaTranslate, iova: bigint, len: number): DmaReadResult {
  const data = new Uint8Array(len);
  const result: DmaReadResult = { data, faulted: false, faultIovas: [], unassigned: false };
  eachChunk(translate, iova, len, false, result, (gpa, offset, n) => {
    if (gpa === undefined) return;
    const dst = data.subarray(offset, offset + n);
    if (mem.read(gpa, dst)) return;
    // Partly or wholly outside RAM: zeros where nothing is (dst may hold garbage from the failed read).
    result.unassigned = true;
    dst.fill(0);
    eachRamRun(mem, gpa, n, (at, off, count) => {
      if (!mem.read(at, dst.subarray(off, off + count))) dst.fill(0, off, off + count);
    });
  });
  return result;
}

/**
 * A device writes `data` at `iova` through the IOMMU, page chunk by page
 * chunk. Bytes of a faulting chunk are dropped; later chunks are still
 * written. Bytes that translate to addresses outside RAM are dropped (QEMU:
 * writes to unassigned memory are ignored) while the rest of the chunk lands.
 */
export function dmaWrite(mem: GuestMemory, translate: DmaTranslate, iova: bigint, data: Uint8Array): DmaResult {
  const result: DmaResult = { faulted: false, faultIovas: [], unassigned: false };
  eachChunk(translate, iova, data.length, true, result, (gpa, offset, n) => {
    if (gpa === undefined) return;
    const src = data.subarray(offset, offset + n);
    if (mem.write(gpa, src)) return;
    result.unassigned = true;
    eachRamRun(mem, gpa, n, (at, off, count) => mem.write(at, src.subarray(off, off + count)));
  });
  return result;
}
