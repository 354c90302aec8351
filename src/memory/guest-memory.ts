/**
 * Consumer-side access to guest-physical memory (as rust-vmm's vm-memory: the
 * IOMMU reads its tables and queues through this, and never manages regions).
 * An emulator implements it over its own RAM; `SparseRam` is the
 * implementation the replayer and tests use.
 *
 * Addresses are guest-physical byte addresses as JS numbers. Every address a
 * machine can back is below 2^53 (x86 and Arm physical addresses are at most
 * 52 bits), so numbers are exact; an address at or above 2^53, negative or
 * fractional is outside RAM. Little-endian, as the VT-d structures are.
 *
 * An access that touches any byte outside RAM fails: the method returns
 * `false` / `-1` / `undefined` and nothing is written (the model turns that
 * into its fault, as a DMA to nothing would fail on a real machine). Methods
 * never throw for an address.
 */
export interface GuestMemory {
  /** Copies `dst.length` bytes from `gpa` into `dst`. False if any byte is outside RAM (dst then unspecified). */
  read(gpa: number, dst: Uint8Array): boolean;
  /** Writes `src` at `gpa`. False, and nothing written, if any byte is outside RAM. */
  write(gpa: number, src: Uint8Array): boolean;
  /** Little-endian u32 at `gpa`, or -1 if outside RAM. */
  readU32(gpa: number): number;
  /** Little-endian u64 at `gpa`, or undefined if outside RAM. */
  readU64(gpa: number): bigint | undefined;
  writeU32(gpa: number, value: number): boolean;
  writeU64(gpa: number, value: bigint): boolean;
}

/**
 * An optional capability of a GuestMemory: where RAM starts and stops. A DMA
 * that reaches guest-physical addresses with no RAM behind them (unassigned)
 * then handles each run of RAM or non-RAM in one step instead of probing
 * byte by byte (`dmaRead`/`dmaWrite` feature-detect it; SparseRam has it).
 */
export interface RamExtentSource {
  /**
   * Whether `gpa` is RAM, and the end (exclusive, at most `end`) of the run
   * of addresses from `gpa` that are all RAM or all not RAM. `gpa` < `end`;
   * an address that is not an integer in [0, 2^53) is not RAM.
   */
  ramExtent(gpa: number, end: number): { ram: boolean; end: number };
}

/** The RAM-extent capability of `mem`, or undefined. */
export function ramExtentOf(mem: GuestMemory): RamExtentSource | undefined {
  return typeof (mem as Partial<RamExtentSource>).ramExtent === 'function' ? (mem as GuestMemory & RamExtentSource) : undefined;
}
