/**
 * A real Linux guest on v86 uses the VT-d model (issue 11): the guest's
 * unmodified intel-iommu driver finds the unit in the DMAR table, turns on
 * queued invalidation, puts the virtio-9p device in a translated domain, and
 * a 1 MiB file written and read back over 9p survives, with every DMA
 * translated by the model and none faulting. The run is recorded and must
 * replay clean, and a VfioListener shadowing the 9p device's address space in
 * caching mode must see no contract violation. `npm run test:guest`.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replayTrace } from '../../src/trace';
import { bootGuest, guestDir, parseSerial } from './boot';
import type { BootResult, GuestReport } from './boot';

const log = (line: string): void => { process.stdout.write(`${line}\n`); };

describe('a Linux 6.1 guest on v86 with the VT-d model (iommu.strict=1)', () => {
  let run: BootResult;
  let guest: GuestReport;
  let tracePath: string;
  const tmp = mkdtempSync(join(tmpdir(), 'viommu-guest-'));

  beforeAll(async () => {
    const dir = guestDir(log);
    log(`[guest] files in ${dir}; booting (about a minute)`);
    tracePath = join(tmp, 'guest.jsonl');
    const out = createWriteStream(tracePath);
    run = await bootGuest({
      dir, iommu: true, vfio: true,
      record: (chunk) => { out.write(chunk); },
      onLine: (l) => { if (/^(VIOMMU-|\[host\])|DMAR|Kernel panic/.test(l)) log(`  | ${l}`); },
      onTick: (ms, vtd) => {
        if (Math.round(ms / 1000) % 10 === 0 && vtd !== undefined) {
          log(`[guest] ${(ms / 1000).toFixed(0)} s: ${vtd.stats.translations} translations, ${vtd.stats.invalidations} invalidations, ${vtd.stats.faults} faults`);
        }
      },
    });
    run.vtd!.flush();
    await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
    guest = parseSerial(run.serial);
    const s = run.vtd!.stats;
    log(`[guest] done in ${(run.doneMs / 1000).toFixed(1)} s (marker VIOMMU-BOOTED at ${(run.bootedMs / 1000).toFixed(1)} s): `
      + `${s.translations} translations, ${s.invalidations} invalidation-queue submissions, ${s.faults} faults, `
      + `${s.dmaReadBytes + s.dmaWriteBytes} DMA bytes, ${s.interruptsNotDelivered} interrupts not delivered, ${s.timeMs.toFixed(0)} ms in viommu`);
  }, 40 * 60 * 1000);

  afterAll(() => { rmSync(tmp, { recursive: true, force: true }); });

  test('the guest found the DMAR unit at the table\'s base', () => {
    expect(guest.dmesg.some((l) => /DMAR: Host address width 39/.test(l))).toBe(true);
    expect(guest.dmesg.some((l) => /DMAR: DRHD base: 0x0*fed90000 flags: 0x1/.test(l))).toBe(true);
    expect(guest.dmesg.some((l) => /dmar0: reg_base_addr fed90000/.test(l))).toBe(true);
  });

  test('queued invalidation is on, and the guest used it', () => {
    expect(guest.dmesg.some((l) => /dmar0: Using Queued invalidation/.test(l))).toBe(true);
    expect(run.vtd!.stats.invalidations).toBeGreaterThan(0);
  });

  test('the 9p device sits in a translated IOMMU group, and its DMA went through the model', () => {
    const nine = run.vtd!.devices.find((d) => d.name === 'virtio_9p')!;
    const bdf = `0000:00:${(nine.sid >> 3).toString(16).padStart(2, '0')}.${nine.sid & 7}`;
    const group = guest.groups.find((g) => g.devices.includes(bdf));
    expect(group?.type).toMatch(/^DMA(-FQ)?$/);
    expect(run.vtd!.stats.untranslatedDmas).toBe(0);
    expect(run.vtd!.stats.translations).toBeGreaterThan(256); // 1 MiB each way is 512 pages at least
  });

  test('the file read back equals what was written, on the guest and on the host', () => {
    expect(guest.file).toBeDefined();
    expect(guest.file!.read).toBe(guest.file!.written);
    expect(run.hostFile?.length).toBe(1 << 20);
    expect(createHash('sha256').update(run.hostFile!).digest('hex')).toBe(guest.file!.written);
  });

  test('no DMA faulted', () => {
    expect(run.vtd!.stats.faults).toBe(0);
  });

  test('the recorded trace replays clean', async () => {
    const report = await replayTrace(createReadStream(tracePath));
    expect(report.malformed).toBeUndefined();
    expect(report.mismatches.slice(0, 5)).toEqual([]);
    expect(report.violations.slice(0, 5)).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.events).toBeGreaterThan(1000);
    expect(run.vtd!.recorder!.warnings).toEqual([]);
  });

  test('a VfioListener on the 9p address space (caching mode) saw no contract violation', () => {
    expect(run.vtd!.violations()).toBe(0);
    const st = run.vfio!.stats();
    expect(st.maps).toBeGreaterThan(0);
    expect(st.unmaps).toBeGreaterThan(0);
    expect(st.mapErrors).toBe(0);
    expect(st.unmapErrors).toBe(0);
  });
});
