/**
 * Boots the issue-11 guest (tools/guest/build.sh) on v86, with or without the
 * VT-d model, and reports what the guest printed and what the unit counted.
 * Shared by the guest test (linux.guest.ts, `npm run test:guest`) and the
 * demo (demo.ts, `npm run demo:linux`). Not part of `npm test`: a boot takes
 * about a minute.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { attachIntelVtd } from '../../src/v86';
import type { V86IntelVtd } from '../../src/v86';
import { VfioContainer, VfioListener } from '../../src/listeners';

/** The repository: the nearest directory above this file with tools/guest/build.sh (this file also runs compiled, from build/guest). */
function repoRoot(): string {
  for (let d = __dirname; ; d = dirname(d)) {
    if (existsSync(join(d, 'tools/guest/build.sh'))) return d;
    if (dirname(d) === d) throw new Error(`no tools/guest/build.sh above ${__dirname}`);
  }
}

/** The part of v86's `V86` class used here (v86.d.ts; the package is ESM-only, this file is CommonJS). */
export interface V86Emulator {
  add_listener(event: string, listener: (arg: unknown) => void): void;
  run(): Promise<void> | void;
  stop(): Promise<void> | void;
  destroy(): Promise<void> | void;
  read_file(path: string): Promise<Uint8Array>;
}
type V86Constructor = new (options: Record<string, unknown>) => V86Emulator;

let v86Class: V86Constructor | undefined;

/**
 * v86's `V86` class. The npm package is `"type": "module"`, but its
 * `build/libv86.js` is a plain script that exports through `module.exports`
 * when it sees one; it is evaluated here with a CommonJS `module`, which works
 * under Node and inside jest's sandbox alike (jest cannot load the .mjs).
 */
export function loadV86(): V86Constructor {
  if (v86Class !== undefined) return v86Class;
  const file = require.resolve('v86/build/libv86.js');
  const mod: { exports: Record<string, unknown> } = { exports: {} };
  const run = new Function('module', 'exports', 'require', '__filename', '__dirname', readFileSync(file, 'utf8'));
  run.call(globalThis, mod, mod.exports, require, file, dirname(file));
  const V86 = mod.exports['V86'];
  if (typeof V86 !== 'function') throw new Error(`${file} did not export V86 (is the v86 devDependency installed?)`);
  v86Class = V86 as V86Constructor;
  return v86Class;
}

/** The guest's files: bzImage, initramfs.cpio.gz, bios.bin, vgabios.bin. */
export function guestDir(log: (line: string) => void = () => {}): string {
  const fromEnv = process.env['VIOMMU_GUEST_DIR'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  log('building or finding the guest (tools/guest/build.sh; the first build takes about 15 minutes)');
  const out = execFileSync('bash', [join(repoRoot(), 'tools/guest/build.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const dir = out.trim().split('\n').pop();
  if (dir === undefined || dir === '') throw new Error('tools/guest/build.sh printed no guest directory');
  return dir;
}

export interface BootOptions {
  dir: string;
  /** With the VT-d model (DMAR table, 9p DMA translated). */
  iommu: boolean;
  /** Record a trace v1 into this callback (iommu only). */
  record?: (chunk: Uint8Array) => void;
  /** Attach a VfioListener to the 9p device's address space (iommu only). */
  vfio?: boolean;
  /** Called with each complete serial line, and with progress notes. */
  onLine?: (line: string) => void;
  /** Called about once a second while the guest runs. */
  onTick?: (elapsedMs: number, vtd: V86IntelVtd | undefined) => void;
  /** Give up after this long (default 10 minutes). */
  timeoutMs?: number;
}

export interface BootResult {
  serial: string[];
  /** Milliseconds from start to the VIOMMU-BOOTED / VIOMMU-DONE markers. */
  bootedMs: number;
  doneMs: number;
  /** The 9p file as the host sees it after the run. */
  hostFile: Uint8Array | undefined;
  vtd: V86IntelVtd | undefined;
  vfio: VfioListener | undefined;
}

/** MMIO base of the unit: QEMU q35's DMAR base. */
export const VTD_BASE = 0xfed90000;
/** Kernel command line: serial console, strict invalidation (an IOTLB flush per unmap). */
export const CMDLINE = 'console=ttyS0 iommu.strict=1 intel_iommu=on';

export async function bootGuest(options: BootOptions): Promise<BootResult> {
  const V86 = loadV86();
  const file = (name: string): ArrayBuffer => {
    const b = readFileSync(join(options.dir, name));
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  };
  const emulator = new V86({
    wasm_path: require.resolve('v86/build/v86.wasm'),
    bios: { buffer: file('bios.bin') },
    vga_bios: { buffer: file('vgabios.bin') },
    bzimage: { buffer: file('bzImage') },
    initrd: { buffer: file('initramfs.cpio.gz') },
    cmdline: CMDLINE,
    memory_size: 128 * 1024 * 1024,
    acpi: true,
    filesystem: {},
    autostart: false,
    disable_speaker: true,
    disable_keyboard: true,
    disable_mouse: true,
    fastboot: true,
  });
  const serial: string[] = [];
  let partial = '';
  let vtd: V86IntelVtd | undefined;
  let vfio: VfioListener | undefined;
  const start = performance.now();
  let bootedMs = NaN;
  return new Promise<BootResult>((resolvePromise, reject) => {
    let finished = false;
    const timeout = setTimeout(() => { void finish(new Error(`guest did not print VIOMMU-DONE within ${(options.timeoutMs ?? 600_000) / 1000} s; last lines:\n${serial.slice(-20).join('\n')}`)); }, options.timeoutMs ?? 600_000);
    const tick = setInterval(() => options.onTick?.(performance.now() - start, vtd), 1000);
    const finish = async (error?: Error): Promise<void> => {
      if (finished) return;
      finished = true;
      clearTimeout(timeout);
      clearInterval(tick);
      const doneMs = performance.now() - start;
      try {
        await emulator.stop();
        let hostFile: Uint8Array | undefined;
        if (error === undefined) {
          try { hostFile = await emulator.read_file('/data'); } catch { hostFile = undefined; }
        }
        await emulator.destroy();
        if (error !== undefined) reject(error);
        else resolvePromise({ serial, bootedMs, doneMs, hostFile, vtd, vfio });
      } catch (e) {
        reject(e);
      }
    };
    emulator.add_listener('serial0-output-byte', (arg) => {
      const c = String.fromCharCode(arg as number);
      if (c !== '\n') { if (c !== '\r') partial += c; return; }
      const line = partial;
      partial = '';
      serial.push(line);
      options.onLine?.(line);
      if (line.startsWith('VIOMMU-BOOTED')) bootedMs = performance.now() - start;
      if (line.startsWith('VIOMMU-DONE')) void finish();
      if (/Kernel panic/.test(line)) void finish(new Error(`guest kernel panic:\n${serial.slice(-30).join('\n')}`));
    });
    emulator.add_listener('emulator-loaded', () => {
      try {
        if (options.iommu) {
          const record = options.record;
          vtd = attachIntelVtd(emulator, {
            base: VTD_BASE,
            devices: ['virtio_9p'],
            ...(record !== undefined ? { record: { writeBytes: record, source: 'viommu test/guest (v86 Linux 6.1 guest)' } } : {}),
          });
          if (options.vfio === true) {
            const nine = vtd.devices.find((d) => d.name === 'virtio_9p')!;
            vfio = new VfioListener(new VfioContainer(), { name: 'vfio-9p' });
            vfio.attach(vtd.addressSpace(nine.sid));
          }
        }
        options.onLine?.(`[host] emulator loaded; starting the guest ${options.iommu ? 'with' : 'without'} the VT-d model`);
        void emulator.run();
      } catch (e) {
        void finish(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

/** The markers the guest's /init prints (tools/guest/init). */
export interface GuestReport {
  dmesg: string[];
  groups: Array<{ id: string; type: string; devices: string[] }>;
  file: { written: string; read: string; start: number; end: number } | undefined;
}

export function parseSerial(serial: readonly string[]): GuestReport {
  const dmesg = serial.filter((l) => l.startsWith('VIOMMU-DMESG ')).map((l) => l.slice('VIOMMU-DMESG '.length));
  const groups = serial.flatMap((l) => {
    const m = /^VIOMMU-GROUP (\S+) type=(\S*) devices=(.*)$/.exec(l);
    return m === null ? [] : [{ id: m[1]!, type: m[2]!, devices: m[3]!.trim().split(/\s+/).filter((d) => d !== '') }];
  });
  let file: GuestReport['file'];
  for (const l of serial) {
    const m = /^VIOMMU-FILE written=(\S+) read=(\S+) start=(\S+) end=(\S+)$/.exec(l);
    if (m !== null) file = { written: m[1]!, read: m[2]!, start: Number(m[3]), end: Number(m[4]) };
  }
  return { dmesg, groups, file };
}
