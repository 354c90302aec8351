/**
 * `viommu/v86`: puts the Intel VT-d model into the v86 JavaScript PC emulator
 * (npm `v86`, pinned to V86_VERSION), so that a real Linux guest's unmodified
 * intel-iommu driver programs the model and v86's virtio devices DMA through
 * it (issue 11; README "A real Linux guest on v86").
 *
 * ```ts
 * const emulator = new V86({ ..., acpi: true, autostart: false, filesystem: {} });
 * emulator.add_listener('emulator-loaded', () => {
 *   const vtd = attachIntelVtd(emulator, { base: 0xfed90000, devices: ['virtio_9p'] });
 *   emulator.run();
 * });
 * ```
 *
 * What it does, and which v86 internals that takes (every one is looked up,
 * and a missing one fails with V86InternalError naming it, so a v86 upgrade
 * breaks loudly here and nowhere else: this file is the only one that knows
 * v86's insides):
 * - the DMAR table: SeaBIOS installs every fw_cfg file named `acpi/*` as an
 *   ACPI table, and v86 serves `cpu.option_roms` as its fw_cfg directory, so
 *   pushing `{name: 'acpi/dmar', data}` before the guest starts gives it a
 *   DMAR table (v86 must be built with `acpi: true`);
 * - the registers: `cpu.io.mmap_register(block, 0x20000, ...)` (v86 maps
 *   memory in 128 KiB blocks) routes the 4 KiB register page at `base` to the
 *   model's `mmioRead`/`mmioWrite`;
 * - DMA: each virtio device's `VirtQueue` reads and writes guest memory only
 *   through its `cpu` field (`read16`, `read32s`, `write16`, `write32`,
 *   `read_blob`, `write_blob`; its buffer chains copy it), so replacing it
 *   with an object that goes through the model's page-by-page `dmaRead` /
 *   `dmaWrite` puts the device behind the IOMMU. The device also offers
 *   VIRTIO_F_ACCESS_PLATFORM (virtio 1.2 §6, bit 33), without which Linux
 *   hands it guest-physical addresses instead of IOVAs. Its requester id is
 *   its devfn on bus 0 (v86's `pci_id`).
 *
 * What v86 lacks: MSI. The model's fault and invalidation-completion
 * interrupts are counted (`stats.interruptsNotDelivered`), not delivered;
 * Linux polls invalidation wait descriptors, so it boots and DMAs without
 * them. v86's IDE controller reads guest memory directly and cannot be routed,
 * so a guest under test should not use ATA.
 */
import type { IOMMUAddressSpace } from '../core/model';
import type { IOMMUNotifier, NotifierHandle } from '../core/notifier-list';
import type { DmaReadResult, DmaResult } from '../memory/dma';
import type { GuestMemory } from '../memory/guest-memory';
import { createIntelVtd } from '../models/intel-vtd';
import type { IntelVtd, VtdConfig } from '../models/intel-vtd';
import { TraceRecorder } from '../trace/recorder';

/** The v86 release whose internals this module was written against (npm `v86`). */
export const V86_VERSION = '0.5.462';

/** A v86 internal this module needs is missing or not what it expects (another v86 version). */
export class V86InternalError extends Error {
  override readonly name = 'V86InternalError';
  constructor(readonly internal: string, why: string) {
    super(`viommu/v86: v86 internal ${internal} ${why} (viommu/v86 was written against v86 ${V86_VERSION}; pin that version)`);
  }
}

/** The virtio devices of v86 (the keys of its `cpu.devices`) that can be put behind the IOMMU. */
export type V86VirtioDevice = 'virtio_9p' | 'virtio_console' | 'virtio_net' | 'virtio_balloon';

const VIRTIO_DEVICES: ReadonlySet<string> = new Set(['virtio_9p', 'virtio_console', 'virtio_net', 'virtio_balloon']);

export interface AttachIntelVtdOptions {
  /**
   * Guest-physical base of the unit's 4 KiB register page (4 KiB aligned,
   * above RAM and below 4 GiB; QEMU's q35 uses 0xfed90000). The whole
   * 128 KiB v86 block around it is taken: other addresses in it read 0.
   */
  base: number;
  /** The virtio devices whose DMA goes through the unit. Each must exist in the emulator. */
  devices: readonly V86VirtioDevice[];
  /** Records a trace v1 of the run (docs/trace-format.md) into `writeBytes`; call `flush()` at the end. */
  record?: { writeBytes: (chunk: Uint8Array) => void; source?: string };
  /**
   * Model options besides `cachingMode` (always on, so listeners such as a
   * VfioListener can register MAP notifiers) and `awBits` (39, matching the
   * DMAR table's host address width). Interrupt remapping stays off: the
   * table does not announce it and v86 has no MSI to remap.
   */
  config?: Partial<Pick<VtdConfig, 'passThrough'>>;
}

/** Counters of an attached unit, live while the guest runs. */
export interface V86VtdStats {
  /** Page translations requested by device DMA (one per 4 KiB page a DMA touches). */
  translations: number;
  /** DMA translation faults (the model's `fault` events). */
  faults: number;
  /** Invalidation-queue submissions (guest writes of IQT). */
  invalidations: number;
  /** Bytes devices read from / wrote to guest memory through the unit. */
  dmaReadBytes: number;
  dmaWriteBytes: number;
  /** DMA by a routed device before its driver accepted VIRTIO_F_ACCESS_PLATFORM (goes to guest-physical addresses, untranslated). */
  untranslatedDmas: number;
  mmioReads: number;
  mmioWrites: number;
  /** Byte-wide register writes, which VT-d does not define (ignored). */
  ignoredByteWrites: number;
  /** MSIs the model sent (fault events, invalidation completions) that v86 cannot deliver. */
  interruptsNotDelivered: number;
  /** Wall-clock milliseconds spent inside the unit (register accesses and DMA), recorder included. */
  timeMs: number;
}

/** One routed device. */
export interface V86RoutedDevice {
  name: V86VirtioDevice;
  /** Requester id: bus 0, its devfn. */
  sid: number;
}

/** Where a listener registers on a routed device (a VfioListener's NotifierSource). */
export type V86AddressSpace = Pick<IOMMUAddressSpace, 'registerNotifier'>;

/** The attached unit. */
export interface V86IntelVtd {
  /** The model (built by the recorder when recording). For inspection: drive it only through the guest. */
  readonly model: IntelVtd;
  readonly devices: readonly V86RoutedDevice[];
  readonly stats: Readonly<V86VtdStats>;
  /** The DMAR table given to the guest. */
  readonly dmar: Uint8Array;
  /** The recorder, when `record` was given. */
  readonly recorder: TraceRecorder | undefined;
  /** Where listeners register for requester id `sid` (recorded in the trace when recording). */
  addressSpace(sid: number): V86AddressSpace;
  /** Contract violations detected on the routed devices' notifier lists so far. */
  violations(): number;
  /** Writes the recorder's last trace chunk (no-op without `record`). */
  flush(): void;
}

// ---------------------------------------------------------------------------
// The ACPI DMAR table (Intel VT-d specification rev 4.1, §8.1 and §8.3).

/** Options of the DMAR table. */
export interface DmarTableOptions {
  /** Register base of the one DRHD (4 KiB aligned). */
  base: number | bigint;
  /** Host address width in bits (the table stores width - 1). */
  hostAddressWidth: number;
}

const ACPI_HEADER = 36;
const DMAR_FIXED = ACPI_HEADER + 12;
const DRHD_LEN = 16;

/**
 * An ACPI DMAR table with one DRHD that has INCLUDE_PCI_ALL (every PCI device
 * of segment 0 is behind it) and no device scope, flags 0 (no interrupt
 * remapping, no x2APIC opt-out), checksummed so the bytes sum to 0 mod 256.
 */
export function buildDmarTable(options: DmarTableOptions): Uint8Array {
  const base = BigInt(options.base);
  const haw = options.hostAddressWidth;
  if (base < 0n || base >= 1n << 64n || (base & 0xfffn) !== 0n) throw new RangeError(`buildDmarTable: base 0x${base.toString(16)} is not a 4 KiB aligned 64-bit address`);
  if (!Number.isInteger(haw) || haw < 1 || haw > 64) throw new RangeError(`buildDmarTable: host address width ${haw} is not 1..64`);
  const t = new Uint8Array(DMAR_FIXED + DRHD_LEN);
  const v = new DataView(t.buffer);
  const ascii = (at: number, s: string): void => { for (let i = 0; i < s.length; i++) t[at + i] = s.charCodeAt(i); };
  // ACPI table header (ACPI 6.5 §5.2.6).
  ascii(0, 'DMAR');
  v.setUint32(4, t.length, true);
  t[8] = 1; // revision
  ascii(10, 'VIOMMU'); // OEMID, 6 bytes
  ascii(16, 'V86VTD  '); // OEM table id, 8 bytes
  v.setUint32(24, 1, true); // OEM revision
  ascii(28, 'VIOM'); // creator id
  v.setUint32(32, 1, true); // creator revision
  // DMAR fields (§8.1): host address width N-1, flags, 10 reserved bytes.
  t[36] = haw - 1;
  t[37] = 0;
  // DRHD (§8.3): type 0, length, flags bit 0 INCLUDE_PCI_ALL, size 0 (one
  // 4 KiB register page), segment 0, register base address.
  const d = DMAR_FIXED;
  v.setUint16(d, 0, true);
  v.setUint16(d + 2, DRHD_LEN, true);
  t[d + 4] = 1;
  t[d + 5] = 0;
  v.setUint16(d + 6, 0, true);
  v.setBigUint64(d + 8, base, true);
  let sum = 0;
  for (const b of t) sum = (sum + b) & 0xff;
  t[9] = (256 - sum) & 0xff;
  return t;
}

// ---------------------------------------------------------------------------
// v86 internals: the structural types this module relies on, and their lookup.

interface V86Cpu {
  io: { mmap_register(addr: number, size: number, r8: (a: number) => number, w8: (a: number, v: number) => void, r32: (a: number) => number, w32: (a: number, v: number) => void): void };
  option_roms: Array<{ name: string; data: Uint8Array }>;
  devices: Record<string, unknown>;
  mem8: Uint8Array;
  wasm_memory: { buffer: ArrayBuffer };
  memory_size: Uint32Array | number[];
  jit_dirty_cache(start: number, end: number): void;
  acpi_enabled?: ArrayLike<number>;
}

interface V86VirtQueue { cpu: unknown }

interface V86VirtIO {
  pci_id: number;
  queues: V86VirtQueue[];
  device_feature: Uint32Array;
  driver_feature: Uint32Array;
  is_feature_negotiated(bit: number): boolean;
}

function internal<T>(owner: unknown, path: string, key: string, kind: 'object' | 'function' | 'number'): T {
  const value = owner === null || owner === undefined ? undefined : (owner as Record<string, unknown>)[key];
  if (kind === 'object' ? value === null || typeof value !== 'object' : typeof value !== kind) {
    throw new V86InternalError(path, value === undefined ? 'is missing' : `is a ${typeof value}, not a ${kind}`);
  }
  return value as T;
}

/** The emulator's CPU object (`emulator.v86.cpu`), checked for what this module uses. */
function v86Cpu(emulator: unknown): V86Cpu {
  const v86 = internal<object>(emulator, 'emulator.v86', 'v86', 'object');
  const cpu = internal<V86Cpu>(v86, 'emulator.v86.cpu', 'cpu', 'object');
  const io = internal<object>(cpu, 'cpu.io', 'io', 'object');
  internal(io, 'cpu.io.mmap_register', 'mmap_register', 'function');
  if (!Array.isArray(cpu.option_roms)) throw new V86InternalError('cpu.option_roms', 'is not an array (the fw_cfg file list)');
  internal(cpu, 'cpu.devices', 'devices', 'object');
  internal(cpu, 'cpu.mem8', 'mem8', 'object');
  internal(internal(cpu, 'cpu.wasm_memory', 'wasm_memory', 'object'), 'cpu.wasm_memory.buffer', 'buffer', 'object');
  internal(cpu, 'cpu.memory_size', 'memory_size', 'object');
  internal(cpu, 'cpu.jit_dirty_cache', 'jit_dirty_cache', 'function');
  return cpu;
}

/** The VirtIO transport object of device `name`, checked. */
function v86VirtIO(cpu: V86Cpu, name: string): V86VirtIO {
  if (!VIRTIO_DEVICES.has(name)) throw new RangeError(`viommu/v86: ${name} is not a v86 virtio device (${[...VIRTIO_DEVICES].join(', ')})`);
  const device = cpu.devices[name];
  if (device === undefined || device === null) throw new RangeError(`viommu/v86: the emulator has no ${name} (enable it in the V86 options, e.g. filesystem: {} for virtio_9p)`);
  const virtio = internal<V86VirtIO>(device, `cpu.devices.${name}.virtio`, 'virtio', 'object');
  const at = `cpu.devices.${name}.virtio`;
  internal(virtio, `${at}.pci_id`, 'pci_id', 'number');
  if (!Array.isArray(virtio.queues) || virtio.queues.length === 0) throw new V86InternalError(`${at}.queues`, 'is not a non-empty array of VirtQueue');
  for (const q of virtio.queues) internal(q, `${at}.queues[].cpu`, 'cpu', 'object');
  for (const f of ['device_feature', 'driver_feature'] as const) {
    if (!(virtio[f] instanceof Uint32Array) || virtio[f].length < 2) throw new V86InternalError(`${at}.${f}`, 'is not a Uint32Array of feature words');
  }
  internal(virtio, `${at}.is_feature_negotiated`, 'is_feature_negotiated', 'function');
  return virtio;
}

// ---------------------------------------------------------------------------
// Guest memory: v86's RAM, the wasm memory at cpu.mem8.

/** The part of GuestMemory device DMA needs; the model reads its tables through it. */
class V86Ram implements GuestMemory {
  private buf: ArrayBuffer | undefined;
  private u8 = new Uint8Array(0);
  private dv = new DataView(new ArrayBuffer(0));
  readonly size: number;

  constructor(private readonly cpu: V86Cpu) {
    this.size = Number(cpu.memory_size[0]);
    if (!Number.isInteger(this.size) || this.size <= 0) throw new V86InternalError('cpu.memory_size[0]', `is ${String(cpu.memory_size[0])}, not a RAM size`);
  }

  /**
   * A direct view of RAM. `cpu.mem8` is a Proxy that builds a new view on every
   * access (v86 lets wasm memory grow); the view is rebuilt when the buffer changes.
   */
  private ram(): Uint8Array {
    const buffer = this.cpu.wasm_memory.buffer;
    if (buffer !== this.buf) {
      const m = this.cpu.mem8;
      this.u8 = new Uint8Array(buffer, m.byteOffset, this.size);
      this.dv = new DataView(buffer, m.byteOffset, this.size);
      this.buf = buffer;
    }
    return this.u8;
  }

  private inside(gpa: number, len: number): boolean {
    return Number.isInteger(gpa) && gpa >= 0 && gpa + len <= this.size;
  }

  read(gpa: number, dst: Uint8Array): boolean {
    if (!this.inside(gpa, dst.length)) return false;
    dst.set(this.ram().subarray(gpa, gpa + dst.length));
    return true;
  }

  write(gpa: number, src: Uint8Array): boolean {
    if (!this.inside(gpa, src.length)) return false;
    this.ram().set(src, gpa);
    // The JIT caches compiled guest code per page: a DMA over code must drop it, as v86's own write_blob does.
    this.cpu.jit_dirty_cache(gpa, gpa + src.length);
    return true;
  }

  readU32(gpa: number): number {
    if (!this.inside(gpa, 4)) return -1;
    this.ram();
    return this.dv.getUint32(gpa, true);
  }

  readU64(gpa: number): bigint | undefined {
    if (!this.inside(gpa, 8)) return undefined;
    this.ram();
    return this.dv.getBigUint64(gpa, true);
  }

  writeU32(gpa: number, value: number): boolean {
    if (!this.inside(gpa, 4)) return false;
    this.ram();
    this.dv.setUint32(gpa, value >>> 0, true);
    this.cpu.jit_dirty_cache(gpa, gpa + 4);
    return true;
  }

  writeU64(gpa: number, value: bigint): boolean {
    if (!this.inside(gpa, 8)) return false;
    this.ram();
    this.dv.setBigUint64(gpa, BigInt.asUintN(64, value), true);
    this.cpu.jit_dirty_cache(gpa, gpa + 8);
    return true;
  }
}

// ---------------------------------------------------------------------------

/** What the adapter drives: the model itself, or the recorder in front of it. */
interface Driver {
  mmioRead(offset: number, size: 4 | 8): bigint;
  mmioWrite(offset: number, size: 4 | 8, value: bigint): void;
  dmaRead(sid: number, iova: bigint, len: number): DmaReadResult;
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): DmaResult;
}

const REG_PAGE = 0x1000;
const V86_BLOCK = 0x20000;
/** VT-d register offsets (spec §11.4): the invalidation queue tail. */
const IQT_REG = 0x88;
/** VIRTIO_F_ACCESS_PLATFORM (virtio 1.2 §6): the device's DMA goes through the platform IOMMU. */
const VIRTIO_F_ACCESS_PLATFORM = 33;
const TWO32 = 2 ** 32;

/**
 * Installs an Intel VT-d unit into a v86 emulator that has been loaded but not
 * started (`autostart: false`, after its `emulator-loaded` event; `acpi: true`).
 * Throws V86InternalError when a v86 internal is missing, RangeError for bad options.
 */
export function attachIntelVtd(emulator: unknown, options: AttachIntelVtdOptions): V86IntelVtd {
  const cpu = v86Cpu(emulator);
  const base = options.base;
  if (!Number.isInteger(base) || base % REG_PAGE !== 0 || base < 0 || base + REG_PAGE > TWO32) {
    throw new RangeError(`attachIntelVtd: base ${String(base)} is not a 4 KiB aligned address below 4 GiB`);
  }
  const ram = new V86Ram(cpu);
  if (base < ram.size) throw new RangeError(`attachIntelVtd: base 0x${base.toString(16)} is inside guest RAM (0..0x${ram.size.toString(16)})`);
  if (cpu.acpi_enabled !== undefined && !cpu.acpi_enabled[0]) throw new RangeError('attachIntelVtd: the emulator was built without acpi: true, so the guest would never see the DMAR table');
  if (cpu.option_roms.some((r) => r.name === 'acpi/dmar')) throw new RangeError('attachIntelVtd: the emulator already has an acpi/dmar table (attached twice?)');
  const virtios = options.devices.map((name) => ({ name, virtio: v86VirtIO(cpu, name) }));

  const config: Partial<VtdConfig> = { ...options.config, awBits: 39, cachingMode: true };
  const recorder = options.record === undefined ? undefined : new TraceRecorder({
    memory: ram,
    ram: [{ base: 0, size: ram.size }],
    model: 'intel-vtd',
    config: { ...config },
    writeBytes: options.record.writeBytes,
    source: options.record.source ?? `viommu/v86 (v86 ${V86_VERSION})`,
  });
  const model = (recorder?.model ?? createIntelVtd(config, ram)) as IntelVtd;
  const driver: Driver = recorder ?? model;

  const stats: V86VtdStats = {
    translations: 0, faults: 0, invalidations: 0, dmaReadBytes: 0, dmaWriteBytes: 0, untranslatedDmas: 0,
    mmioReads: 0, mmioWrites: 0, ignoredByteWrites: 0, interruptsNotDelivered: 0, timeMs: 0,
  };
  model.events.on('fault', () => { stats.faults++; });
  model.events.on('msi', () => { stats.interruptsNotDelivered++; });

  // Registers. Only the 4 KiB page at `base` is the unit's.
  const read32 = (addr: number): number => {
    const off = (addr >>> 0) - base;
    if (off < 0 || off >= REG_PAGE) return 0;
    const t0 = performance.now();
    stats.mmioReads++;
    const v = Number(driver.mmioRead(off & ~3, 4)) | 0;
    stats.timeMs += performance.now() - t0;
    return v;
  };
  const write32 = (addr: number, value: number): void => {
    const off = (addr >>> 0) - base;
    if (off < 0 || off >= REG_PAGE) return;
    const t0 = performance.now();
    stats.mmioWrites++;
    if ((off & ~3) === IQT_REG) stats.invalidations++;
    driver.mmioWrite(off & ~3, 4, BigInt(value >>> 0));
    stats.timeMs += performance.now() - t0;
  };
  // Byte reads come out of the aligned dword; byte writes are not defined for
  // VT-d registers (a read-modify-write would re-trigger write-1-to-clear bits).
  const read8 = (addr: number): number => (read32(addr & ~3) >>> (8 * (addr & 3))) & 0xff;
  const write8 = (addr: number): void => {
    const off = (addr >>> 0) - base;
    if (off >= 0 && off < REG_PAGE) stats.ignoredByteWrites++;
  };
  const block = Math.floor(base / V86_BLOCK) * V86_BLOCK;
  cpu.io.mmap_register(block, V86_BLOCK, read8, write8, read32, write32);

  // The DMAR table, served by fw_cfg to SeaBIOS.
  const dmar = buildDmarTable({ base, hostAddressWidth: 39 });
  cpu.option_roms.push({ name: 'acpi/dmar', data: dmar });

  // DMA.
  const devices: V86RoutedDevice[] = [];
  for (const { name, virtio } of virtios) {
    const sid = virtio.pci_id & 0xff;
    devices.push({ name, sid });
    const word = VIRTIO_F_ACCESS_PLATFORM >>> 5;
    const bit = 1 << (VIRTIO_F_ACCESS_PLATFORM & 31);
    // v86 copies device_feature to driver_feature at reset; both get the bit.
    virtio.device_feature[word]! |= bit;
    virtio.driver_feature[word]! |= bit;
    const dma = new DeviceDma(sid, virtio, ram, driver, stats);
    for (const q of virtio.queues) q.cpu = dma;
  }

  return {
    model,
    devices,
    stats,
    dmar,
    recorder,
    addressSpace(sid: number): V86AddressSpace {
      if (recorder !== undefined) return recorder.addressSpace(sid);
      const as = model.addressSpace(sid);
      return { registerNotifier: (n: IOMMUNotifier): NotifierHandle => as.registerNotifier(n) };
    },
    violations(): number {
      let n = 0;
      for (const d of devices) n += model.addressSpace(d.sid).notifiers.stats.violations;
      return n;
    },
    flush(): void {
      recorder?.flush();
    },
  };
}

/**
 * The stand-in for v86's `cpu` inside one device's VirtQueues: guest memory as
 * the device sees it, through the IOMMU (requester id `sid`) once its driver
 * negotiated VIRTIO_F_ACCESS_PLATFORM, guest-physical before that.
 */
class DeviceDma {
  private readonly small = new Uint8Array(4);
  private readonly smallView = new DataView(this.small.buffer);

  constructor(
    private readonly sid: number,
    private readonly virtio: V86VirtIO,
    private readonly ram: V86Ram,
    private readonly driver: Driver,
    private readonly stats: V86VtdStats,
  ) {}

  /** v86 computes addresses as int32 (`read32s` of a descriptor), so an IOVA at or above 2 GiB arrives negative. */
  private static iova(addr: number): number {
    return addr < 0 ? addr + TWO32 : addr;
  }

  private static pages(iova: number, len: number): number {
    return len === 0 ? 0 : Math.floor((iova + len - 1) / REG_PAGE) - Math.floor(iova / REG_PAGE) + 1;
  }

  private translated(): boolean {
    if (this.virtio.is_feature_negotiated(VIRTIO_F_ACCESS_PLATFORM)) return true;
    this.stats.untranslatedDmas++;
    return false;
  }

  read_blob(addr: number, len: number): Uint8Array {
    const iova = DeviceDma.iova(addr);
    if (!this.translated()) {
      const out = new Uint8Array(len);
      this.ram.read(iova, out);
      return out;
    }
    const t0 = performance.now();
    this.stats.translations += DeviceDma.pages(iova, len);
    this.stats.dmaReadBytes += len;
    const r = this.driver.dmaRead(this.sid, BigInt(iova), len);
    this.stats.timeMs += performance.now() - t0;
    return r.data;
  }

  write_blob(data: Uint8Array, addr: number): void {
    const iova = DeviceDma.iova(addr);
    if (!this.translated()) {
      this.ram.write(iova, data);
      return;
    }
    const t0 = performance.now();
    this.stats.translations += DeviceDma.pages(iova, data.length);
    this.stats.dmaWriteBytes += data.length;
    this.driver.dmaWrite(this.sid, BigInt(iova), data);
    this.stats.timeMs += performance.now() - t0;
  }

  read16(addr: number): number {
    const b = this.read_blob(addr, 2);
    return b[0]! | (b[1]! << 8);
  }

  read32s(addr: number): number {
    const b = this.read_blob(addr, 4);
    return b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24);
  }

  write16(addr: number, value: number): void {
    this.smallView.setUint16(0, value & 0xffff, true);
    this.write_blob(this.small.subarray(0, 2), addr);
  }

  write32(addr: number, value: number): void {
    this.smallView.setUint32(0, value >>> 0, true);
    this.write_blob(this.small, addr);
  }
}
