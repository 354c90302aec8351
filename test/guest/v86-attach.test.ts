/**
 * viommu/v86 without booting anything (part of `npm test`): the DMAR table's
 * bytes against the VT-d specification §8.1/§8.3 and ACPI's checksum rule,
 * and attachIntelVtd against a stand-in of the v86 internals it uses (the
 * real emulator runs in linux.guest.ts, `npm run test:guest`).
 */
import { attachIntelVtd, buildDmarTable, V86InternalError, V86_VERSION } from '../../src/v86';

describe('buildDmarTable', () => {
  const t = buildDmarTable({ base: 0xfed90000, hostAddressWidth: 39 });
  const v = new DataView(t.buffer, t.byteOffset, t.byteLength);

  test('ACPI header: signature, length, revision, and the bytes sum to 0 mod 256', () => {
    expect(String.fromCharCode(...t.subarray(0, 4))).toBe('DMAR');
    expect(v.getUint32(4, true)).toBe(t.length);
    expect(t.length).toBe(48 + 16);
    expect(t[8]).toBe(1);
    expect(t.reduce((s, b) => (s + b) & 0xff, 0)).toBe(0);
  });

  test('host address width is stored as width - 1, no flags (no interrupt remapping)', () => {
    expect(t[36]).toBe(38);
    expect(t[37]).toBe(0);
  });

  test('one DRHD with INCLUDE_PCI_ALL at the base, segment 0, no device scope', () => {
    expect(v.getUint16(48, true)).toBe(0);
    expect(v.getUint16(50, true)).toBe(16);
    expect(t[52]).toBe(1);
    expect(v.getUint16(54, true)).toBe(0);
    expect(v.getBigUint64(56, true)).toBe(0xfed90000n);
  });

  test('refuses a base that is not 4 KiB aligned and a width out of range', () => {
    expect(() => buildDmarTable({ base: 0xfed90800, hostAddressWidth: 39 })).toThrow(/4 KiB aligned/);
    expect(() => buildDmarTable({ base: 0xfed90000, hostAddressWidth: 0 })).toThrow(/host address width/);
  });
});

/** A stand-in for the v86 internals attachIntelVtd touches, with 1 MiB of RAM. */
function fakeEmulator() {
  const buffer = new ArrayBuffer(1 << 20);
  const maps: Array<{ addr: number; size: number; r32: (a: number) => number; w32: (a: number, v: number) => void; r8: (a: number) => number }> = [];
  let negotiated = false;
  const queue = { cpu: {} as unknown };
  const virtio = {
    pci_id: 0x30,
    queues: [queue],
    device_feature: new Uint32Array(4),
    driver_feature: new Uint32Array(4),
    is_feature_negotiated: (bit: number) => bit === 33 && negotiated,
  };
  const cpu = {
    io: {
      mmap_register(addr: number, size: number, r8: (a: number) => number, _w8: unknown, r32: (a: number) => number, w32: (a: number, v: number) => void) {
        maps.push({ addr, size, r8, r32, w32 });
      },
    },
    option_roms: [] as Array<{ name: string; data: Uint8Array }>,
    devices: { virtio_9p: { virtio } } as Record<string, unknown>,
    mem8: new Uint8Array(buffer),
    wasm_memory: { buffer },
    memory_size: [1 << 20],
    jit_dirty_cache: () => {},
    acpi_enabled: [1],
  };
  return { emulator: { v86: { cpu } }, cpu, maps, queue, virtio, negotiate: () => { negotiated = true; } };
}

interface QueueCpu { write32(a: number, v: number): void; read32s(a: number): number; read_blob(a: number, n: number): Uint8Array }

describe('attachIntelVtd', () => {
  test('installs the table, maps the register page and routes the queue', () => {
    const f = fakeEmulator();
    const vtd = attachIntelVtd(f.emulator, { base: 0xfed90000, devices: ['virtio_9p'] });
    expect(f.cpu.option_roms).toEqual([{ name: 'acpi/dmar', data: vtd.dmar }]);
    expect(f.maps.map((m) => [m.addr, m.size])).toEqual([[0xfed80000, 0x20000]]);
    // VER (offset 0) reads 1.0 (0x10) at the base, and nothing outside the page.
    expect(f.maps[0]!.r32(0xfed90000)).toBe(0x10);
    expect(f.maps[0]!.r8(0xfed90000)).toBe(0x10);
    expect(f.maps[0]!.r32(0xfed80000)).toBe(0);
    // CAP.CM (bit 7): caching mode, so MAP notifiers (a VfioListener) can register.
    expect((f.maps[0]!.r32(0xfed90008) >>> 7) & 1).toBe(1);
    expect(vtd.model.config.cachingMode).toBe(true);
    expect(vtd.devices).toEqual([{ name: 'virtio_9p', sid: 0x30 }]);
    // VIRTIO_F_ACCESS_PLATFORM is offered (bit 33: word 1, bit 1).
    expect(f.virtio.device_feature[1]! & 2).toBe(2);
    expect(f.virtio.driver_feature[1]! & 2).toBe(2);
    expect(f.queue.cpu).not.toBe(f.cpu);
  });

  test('DMA is untranslated until the driver accepts ACCESS_PLATFORM, then goes through the unit', () => {
    const f = fakeEmulator();
    const vtd = attachIntelVtd(f.emulator, { base: 0xfed90000, devices: ['virtio_9p'] });
    const q = f.queue.cpu as QueueCpu;
    q.write32(0x100, 0x11223344);
    expect(vtd.stats.untranslatedDmas).toBe(1);
    expect(vtd.stats.translations).toBe(0);
    f.negotiate();
    // Translation is off (GSTS.TES = 0): the unit passes DMA through, but it is asked.
    expect(q.read32s(0x100)).toBe(0x11223344);
    q.write32(-4, 0x55667788 | 0); // int32 address 0xfffffffc: outside RAM, dropped, no exception
    expect(q.read_blob(0xffe, 4)).toHaveLength(4);
    expect(vtd.stats.translations).toBe(1 + 1 + 2);
    expect(vtd.stats.dmaWriteBytes).toBe(4);
    expect(vtd.stats.faults).toBe(0);
  });

  test('a missing v86 internal fails with its name and the pinned version', () => {
    expect(() => attachIntelVtd({}, { base: 0xfed90000, devices: [] })).toThrow(V86InternalError);
    const f = fakeEmulator();
    (f.cpu.io as { mmap_register?: unknown }).mmap_register = undefined;
    expect(() => attachIntelVtd(f.emulator, { base: 0xfed90000, devices: [] })).toThrow(`cpu.io.mmap_register is missing (viommu/v86 was written against v86 ${V86_VERSION}`);
    const g = fakeEmulator();
    delete (g.virtio as { queues?: unknown }).queues;
    expect(() => attachIntelVtd(g.emulator, { base: 0xfed90000, devices: ['virtio_9p'] })).toThrow(/cpu\.devices\.virtio_9p\.virtio\.queues/);
  });

  test('bad options are refused before anything is installed', () => {
    const f = fakeEmulator();
    expect(() => attachIntelVtd(f.emulator, { base: 0x1000, devices: [] })).toThrow(/inside guest RAM/);
    expect(() => attachIntelVtd(f.emulator, { base: 0xfed90010, devices: [] })).toThrow(/4 KiB aligned/);
    expect(() => attachIntelVtd(f.emulator, { base: 0xfed90000, devices: ['virtio_net'] })).toThrow(/no virtio_net/);
    f.cpu.acpi_enabled = [0];
    expect(() => attachIntelVtd(f.emulator, { base: 0xfed90000, devices: [] })).toThrow(/acpi: true/);
    expect(f.cpu.option_roms).toEqual([]);
    expect(f.maps).toEqual([]);
  });
});
