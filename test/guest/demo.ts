/**
 * `npm run demo:linux`: boots the issue-11 Linux guest on v86 with the VT-d
 * model, shows the guest's console lines about the IOMMU and live counters,
 * and writes a trace v1 of the run (replay it with `npx viommu replay`).
 *
 * Options: `--trace FILE` (default build/guest/viommu-guest.jsonl, which git ignores), `--no-trace` (no
 * recorder), `--no-vfio` (no VfioListener on the 9p device), `--no-iommu` (the
 * same guest without the unit, for the timing comparison), `--all` (every
 * console line).
 */
import { createWriteStream } from 'node:fs';
import { CMDLINE, bootGuest, guestDir, parseSerial } from './boot';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const iommu = !args.includes('--no-iommu');
  const trace = iommu && !args.includes('--no-trace');
  const withVfio = iommu && !args.includes('--no-vfio');
  const all = args.includes('--all');
  const ti = args.indexOf('--trace');
  const tracePath = ti >= 0 ? args[ti + 1] : 'build/guest/viommu-guest.jsonl';
  if (tracePath === undefined) throw new Error('--trace needs a file name');
  const dir = guestDir((l) => console.log(l));
  console.log(`guest: ${dir}\nkernel command line: ${CMDLINE}\n${iommu ? `VT-d model at 0xfed90000${trace ? `, trace -> ${tracePath}` : ''}${withVfio ? ', VfioListener on 9p' : ''}` : 'no IOMMU'}`);
  const out = trace ? createWriteStream(tracePath) : undefined;
  const tty = process.stdout.isTTY === true;
  let status = '';
  const show = (line: string): void => {
    if (tty && status !== '') process.stdout.write('\r\x1b[K');
    console.log(line);
    if (tty && status !== '') process.stdout.write(status);
  };
  const cpu0 = process.cpuUsage();
  const run = await bootGuest({
    dir, iommu, vfio: withVfio,
    ...(out !== undefined ? { record: (chunk: Uint8Array) => { out.write(chunk); } } : {}),
    onLine: (l) => { if (all || /^(VIOMMU-|\[host\])|DMAR|iommu|Kernel panic/i.test(l)) show(`  | ${l}`); },
    onTick: (ms, vtd) => {
      const s = vtd?.stats;
      status = s === undefined
        ? `[${(ms / 1000).toFixed(0)} s] running`
        : `[${(ms / 1000).toFixed(0)} s] translations ${s.translations}  faults ${s.faults}  invalidations ${s.invalidations}  DMA ${((s.dmaReadBytes + s.dmaWriteBytes) / 1024).toFixed(0)} KiB  in viommu ${(100 * s.timeMs / ms).toFixed(1)}%`;
      if (tty) process.stdout.write(`\r\x1b[K${status}`);
      else if (Math.round(ms / 1000) % 5 === 0) console.log(status);
    },
  });
  if (tty) process.stdout.write('\n');
  if (out !== undefined) {
    run.vtd!.flush();
    await new Promise<void>((res) => out.end(() => res()));
  }
  const g = parseSerial(run.serial);
  const ok = g.file !== undefined && g.file.read === g.file.written;
  const cpu = process.cpuUsage(cpu0);
  console.log(`\nVIOMMU-BOOTED after ${(run.bootedMs / 1000).toFixed(1)} s, VIOMMU-DONE after ${(run.doneMs / 1000).toFixed(1)} s (process CPU time ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s)`);
  if (g.file !== undefined) console.log(`9p file (1 MiB) write + read back: ${ok ? 'equal' : 'DIFFERENT'}, ${(g.file.end - g.file.start).toFixed(2)} s of guest time`);
  for (const gr of g.groups) console.log(`IOMMU group ${gr.id}: ${gr.type} ${gr.devices.join(' ')}`);
  if (run.vtd !== undefined) {
    const s = run.vtd.stats;
    console.log(`translations ${s.translations} (${(s.translations / (run.doneMs / 1000)).toFixed(0)}/s), faults ${s.faults}, invalidation-queue submissions ${s.invalidations}, `
      + `DMA read ${s.dmaReadBytes} B, written ${s.dmaWriteBytes} B, MMIO ${s.mmioReads} reads / ${s.mmioWrites} writes, interrupts not delivered ${s.interruptsNotDelivered}`);
    console.log(`time in viommu: ${s.timeMs.toFixed(0)} ms of ${run.doneMs.toFixed(0)} ms (${(100 * s.timeMs / run.doneMs).toFixed(1)}%${trace ? ', recorder included' : ''})`);
    if (run.vfio !== undefined) {
      const v = run.vfio.stats();
      console.log(`vfio listener on 9p: ${v.maps} maps, ${v.unmaps} unmaps, ${v.mapErrors + v.unmapErrors} errors; contract violations ${run.vtd.violations()}`);
    }
    if (trace) console.log(`trace: ${tracePath} (replay: npx viommu replay ${tracePath})`);
  }
  if (!ok) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
