/**
 * TraceRecorder: a realistic VT-d guest session (tables, queued invalidation,
 * page-selective / domain / global invalidations, DMA, faults with fault-event
 * MSIs, a MAP|UNMAP notifier in caching mode, an UNMAP-only one, a late one
 * that gets a replay, translation off and on) recorded live, then replayed by
 * the trace engine: it must replay with zero mismatches and zero violations.
 * Also: recording does not change what the emulator observes, and a shared
 * trace re-recorded through the recorder replays clean.
 */
import { createWriteStream, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IOMMUAccessFlags } from '../../src/core/access';
import { isFault } from '../../src/core/model';
import type { IOMMUModel } from '../../src/core/model';
import type { IOMMUNotifier } from '../../src/core/notifier-list';
import { IOMMUNotifierFlag } from '../../src/core/tlb-entry';
import type { IOMMUTLBEvent } from '../../src/core/tlb-entry';
import { SparseRam, dmaRead, dmaWrite } from '../../src/memory';
import { createIntelVtd } from '../../src/models/intel-vtd';
import { formatEvent, readTraceAll, replayTrace, TraceWriter } from '../../src/trace';
import { gunzipSync } from 'node:zlib';
import { TraceRecorder } from '../../src/trace/recorder';
import { expectCleanReplay, traceBytes } from './recorder-replay';
import type { RecordedNotifierHandle } from '../../src/trace/recorder';
import { FSTS, G1, K4, M2, VtdGuest } from '../conformance/vtd-guest';

const { RO, WO, RW } = IOMMUAccessFlags;
const { MAP, UNMAP } = IOMMUNotifierFlag;
const RAM = [{ base: 0, size: 0x800_0000 }];
const CONFIG = { awBits: 39 as const, cachingMode: true };
const SID = 0x20;

/** What the host emulator can do: the same calls with or without a recorder. */
interface Host {
  mmioWrite(reg: number, size: 4 | 8, value: bigint): void;
  mmioRead(reg: number, size: 4 | 8): bigint;
  dmaRead(sid: number, iova: bigint, len: number): { data: Uint8Array; faulted: boolean };
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): { faulted: boolean };
  translate(sid: number, iova: bigint, access: IOMMUAccessFlags): ReturnType<IOMMUModel['translate']>;
  register(sid: number, n: IOMMUNotifier, id: string): { dispose(): void };
  onMsi(f: (addr: bigint, data: number) => void): void;
}

function bareHost(ram: SparseRam): Host {
  const m = createIntelVtd(CONFIG, ram);
  const t = (sid: number) => (iova: bigint, w: boolean) => m.translate(sid, iova, w ? WO : RO);
  return {
    mmioWrite: (r, s, v) => m.mmioWrite(r, s, v),
    mmioRead: (r, s) => m.mmioRead(r, s),
    dmaRead: (sid, iova, len) => dmaRead(ram, t(sid), iova, len),
    dmaWrite: (sid, iova, data) => dmaWrite(ram, t(sid), iova, data),
    translate: (sid, iova, a) => m.translate(sid, iova, a),
    register: (sid, n) => m.addressSpace(sid).registerNotifier(n),
    onMsi: (f) => m.events.on('msi', (x) => f(x.address, x.data)),
  };
}

function recordedHost(rec: TraceRecorder): Host {
  return {
    mmioWrite: (r, s, v) => rec.mmioWrite(r, s, v),
    mmioRead: (r, s) => rec.mmioRead(r, s),
    dmaRead: (sid, iova, len) => rec.dmaRead(sid, iova, len),
    dmaWrite: (sid, iova, data) => rec.dmaWrite(sid, iova, data),
    translate: (sid, iova, a) => rec.translate(sid, iova, a),
    register: (sid, n, id) => rec.addressSpace(sid).registerNotifier(n, id),
    onMsi: (f) => rec.model.events.on('msi', (x) => f(x.address, x.data)),
  };
}

const pattern = (seed: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (seed * 31 + i * 7) & 0xff);
const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');

/**
 * The guest session. Returns what the emulator observed, in order (register
 * values, DMA results, notifications, MSIs), to compare runs.
 */
function session(ram: SparseRam, host: Host): string[] {
  const seen: string[] = [];
  const listener = (name: string, flags: number, start = 0n, end = (1n << 64n) - 1n): IOMMUNotifier => ({
    flags, start, end,
    notify: (e: IOMMUTLBEvent) => seen.push(`${name} ${e.type} ${e.entry.iova.toString(16)}/${e.entry.addrMask.toString(16)} ${e.entry.translatedAddr.toString(16)} ${e.entry.perm}`),
  });
  host.onMsi((a, d) => seen.push(`msi ${a.toString(16)} ${d}`));
  const guest = new VtdGuest(ram, host, { awBits: 39, sid: SID });
  seen.push(`ver ${host.mmioRead(0x0, 4)}`, `cap ${host.mmioRead(0x8, 8)}`, `ecap ${host.mmioRead(0x10, 8)}`);
  guest.setup();
  guest.enableFaultEvents(0xfee0_0000, 0x41);
  seen.push(`gsts ${host.mmioRead(0x1c, 4)}`);
  host.register(SID, listener('vfio', MAP | UNMAP), 'vfio');
  host.register(SID, listener('window', MAP | UNMAP, 0x4010_0000n, 0x23_ffff_ffffn), 'window');
  host.register(SID, listener('vhost', UNMAP), 'vhost');

  // 4 KiB pages at 1 GiB, a 2 MiB page, a 1 GiB page; invalidate each change.
  for (let i = 0n; i < 4n; i++) guest.map(G1 + i * K4, 0x40_0000n + i * K4, K4, RW);
  guest.invalidate(G1, 4n * K4);
  guest.map(G1 + 2n * M2, 0x60_0000n, M2, RO);
  guest.invalidate(G1 + 2n * M2, M2);
  guest.map(3n * G1, 0x4000_0000n, G1, WO);
  guest.invalidate(3n * G1, G1);

  // Device DMA: the guest CPU fills a buffer (invisible to the IOMMU), the device reads it and writes elsewhere.
  ram.write(0x40_0000, pattern(1, 0x1800));
  seen.push(`dmar ${hexOf(host.dmaRead(SID, G1 + 0x10n, 0x1800).data)}`);
  seen.push(`dmaw ${host.dmaWrite(SID, G1 + 2n * M2 + 0x100n, pattern(2, 64)).faulted}`); // read-only page: fault
  seen.push(`dmaw ${host.dmaWrite(SID, G1 + 3n * K4 + 0x800n, pattern(3, 0x1000)).faulted}`); // crosses into an unmapped page
  seen.push(`fsts ${host.mmioRead(FSTS, 4)}`);
  host.mmioWrite(FSTS, 4, 0x2n); // clear PPF
  const t = host.translate(SID, G1 + 2n * M2 + 0x1234n, RO);
  seen.push(`xlate ${isFault(t) ? 'fault' : t.translatedAddr.toString(16)}`);

  // The guest rewrites the DMA buffer and the device reads it again (shadow sees the change).
  ram.write(0x40_0010, pattern(9, 32));
  seen.push(`dmar ${hexOf(host.dmaRead(SID, G1 + 0x10n, 64).data)}`);

  // Change a mapping in place, then split the 2 MiB page into 4 KiB pages and merge it back.
  guest.map(G1 + K4, 0x50_0000n, K4, RO);
  guest.invalidate(G1 + K4, K4);
  guest.map(G1 + 2n * M2 + 5n * K4, 0x70_0000n, K4, RW);
  guest.invalidate(G1 + 2n * M2, M2);
  guest.map(G1 + 2n * M2, 0x60_0000n, M2, RW);
  guest.invalidate(0n, 'domain');

  // A late listener: replay of what is mapped (C7); one listener leaves.
  const late = host.register(SID, listener('late', MAP | UNMAP, 0n, 0xffff_ffffn), 'late');
  guest.unmap(G1 + 2n * K4, K4);
  guest.invalidate(G1 + 2n * K4, K4);
  late.dispose();

  // Translation off (C8) and on again; a global invalidation brings the mappings back.
  guest.disableTranslation();
  seen.push(`dma-off ${hexOf(host.dmaRead(SID, 0x40_0000n, 16).data)}`);
  guest.enableTranslation();
  guest.invalidate(0n, 'global');
  seen.push(`dmar ${hexOf(host.dmaRead(SID, G1, 32).data)}`);
  seen.push(`gsts ${host.mmioRead(0x1c, 4)}`);
  return seen;
}

function record(): { lines: string[]; seen: string[]; rec: TraceRecorder } {
  const ram = new SparseRam(RAM);
  const lines: string[] = [];
  const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG, write: (l) => lines.push(l), source: 'recorder test' });
  const seen = session(ram, recordedHost(rec));
  return { lines, seen, rec };
}


/** Drives a recorder as an emulator would from a trace's guest actions (its expectations are dropped). */
async function reRecord(file: string): Promise<{ lines: string[]; notified: number; originalViews: string[] }> {
  const { header, events } = await readTraceAll(file);
  const ram = new SparseRam(header.ram);
  const lines: string[] = [];
  const rec = new TraceRecorder({ memory: ram, ram: header.ram, model: header.model, config: header.config, write: (l) => lines.push(l) });
  const handles = new Map<string, RecordedNotifierHandle>();
  const originalViews: string[] = [];
  let notified = 0;
  for (const ev of events) {
    switch (ev.op) {
      case 'mem.write': ram.write(Number(ev.gpa), ev.data); break; // guest CPU: not seen by the recorder
      case 'mmio.write': rec.mmioWrite(ev.reg, ev.size, ev.value); break;
      case 'mmio.read': rec.mmioRead(ev.reg, ev.size); break;
      case 'dma.read': rec.dmaRead(ev.sid, ev.iova, ev.len, ev.pasid); break;
      case 'dma.write': rec.dmaWrite(ev.sid, ev.iova, ev.data, ev.pasid); break;
      case 'translate': rec.translate(ev.sid, ev.iova, ev.access, ev.pasid); break;
      case 'notifier.add':
        handles.set(ev.id, rec.addressSpace(ev.sid).registerNotifier({ flags: ev.flags, start: ev.start, end: ev.end, notify: () => { notified++; } }, ev.id));
        break;
      case 'notifier.del': handles.get(ev.id)!.dispose(); break;
      case 'view.expect': rec.expectView(handles.get(ev.id)!); originalViews.push(formatEvent(ev)); break;
      default: break; // expectations: the recorder fills its own
    }
  }
  return { lines, notified, originalViews };
}

const text = traceBytes;

describe('TraceRecorder', () => {
  test('a recorded VT-d session replays with zero mismatches and zero violations', async () => {
    const { lines, rec } = record();
    const ops = new Set(lines.slice(1).map((l) => (JSON.parse(l) as { op: string }).op));
    // The session exercised what the recorder must capture.
    for (const op of ['mem.write', 'mmio.write', 'mmio.read', 'dma.read', 'dma.write', 'translate', 'notifier.add', 'notifier.del', 'notify', 'msi.expect']) {
      expect(ops).toContain(op);
    }
    expect(rec.warnings).toEqual([]);
    await expectCleanReplay(lines);
  });

  test('recording does not change what the emulator observes', () => {
    const ram = new SparseRam(RAM);
    const plain = session(ram, bareHost(ram));
    const { seen } = record();
    expect(seen).toEqual(plain);
    expect(plain.length).toBeGreaterThan(20);
  });

  test('the DMA buffer the guest CPU wrote appears as mem.write before the dma.read that reads it', () => {
    const { lines } = record();
    const i = lines.findIndex((l) => l.includes('"op":"dma.read"'));
    const before = lines.slice(1, i).map((l) => JSON.parse(l) as { op: string; gpa?: string; data?: string });
    const buf = before.filter((e) => e.op === 'mem.write' && BigInt(e.gpa!) >= 0x40_0000n && BigInt(e.gpa!) < 0x40_2000n);
    const bytes = buf.reduce((n, e) => n + e.data!.length / 2, 0);
    expect(bytes).toBe(0x1800); // the whole pattern (it has no zero byte runs longer than the merge gap)
    // Pages the IOMMU never looked at are not in the trace.
    expect(lines.some((l) => l.includes('"gpa":"0x500000"'))).toBe(false);
  });

  test('a tampered recording fails replay (the expectations are real)', async () => {
    const { lines } = record();
    const i = lines.findIndex((l) => l.includes('"op":"dma.read"'));
    const tampered = [...lines];
    tampered[i] = tampered[i]!.replace(/"expect":"(..)/, (_m, b: string) => `"expect":"${b === '00' ? '01' : '00'}`);
    const j = lines.findIndex((l) => l.includes('"op":"notify"') && l.includes('"MAP"'));
    tampered[j] = tampered[j]!.replace('"perm":"rw"', '"perm":"r"').replace('"perm":"w"', '"perm":"rw"').replace('"perm":"r"', '"perm":"w"');
    const report = await replayTrace(text(tampered));
    expect(report.ok).toBe(false);
    expect(report.mismatches.map((m) => m.op).sort()).toEqual(['dma.read', 'notify']);
  });

  test('a shared vtd-notify trace, re-recorded through the recorder, replays clean', async () => {
    const file = join(__dirname, '../../fixtures/vtd-notify/notify-aw39-9100.jsonl');
    const original = await replayTrace(file);
    expect(original.ok).toBe(true);
    const { lines, notified, originalViews } = await reRecord(file);
    expect(notified).toBeGreaterThan(10);
    expect(originalViews.length).toBeGreaterThan(10);
    await expectCleanReplay(lines);
    // The views the live run recorded are the ones the original trace expects (computed there from the
    // guest's tables): the re-recorded trace with the original view.expect lines put back replays clean too.
    let k = 0;
    const merged = lines.map((l) => (l.includes('"op":"view.expect"') ? originalViews[k++]! : l));
    expect(k).toBe(originalViews.length);
    const strict = await replayTrace(text(merged));
    expect(strict.mismatches).toEqual([]);
    expect(strict.ok).toBe(true);
  });

  const qemuDir = join(__dirname, '../../fixtures/qemu-vtd');
  const qemuTraces = readdirSync(qemuDir).filter((f) => f.endsWith('.jsonl'));
  test.each(qemuTraces)('QEMU trace %s, replayed then re-recorded, replays clean', async (name) => {
    const file = join(qemuDir, name);
    const original = await replayTrace(file);
    const { lines } = await reRecord(file);
    const report = await replayTrace(text(lines));
    // As clean as the original is against this model (every QEMU trace is expected to be).
    expect(report.mismatches).toEqual(original.ok ? [] : report.mismatches);
    expect(report.violations).toEqual([]);
    expect(report.ok).toBe(original.ok);
    expect(lines.length).toBeGreaterThan(5);
  });

  test('the recorded trace is deterministic', () => {
    expect(record().lines).toEqual(record().lines);
  });

  test('a byte sink (writeBytes) receives the same trace as a line sink, in whole-line chunks, after flush()', async () => {
    const { lines } = record();
    const ram = new SparseRam(RAM);
    const chunks: Uint8Array[] = [];
    const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG, writeBytes: (c) => chunks.push(c), source: 'recorder test' });
    const seen = session(ram, recordedHost(rec));
    expect(seen).toEqual(record().seen);
    const before = Buffer.concat(chunks).length;
    rec.flush();
    const bytes = Buffer.concat(chunks);
    expect(bytes.length).toBeGreaterThan(before); // the tail arrives on flush()
    for (const c of chunks) expect(c[c.length - 1]).toBe(0x0a);
    expect(bytes.toString('utf8')).toBe(lines.join('\n') + '\n');
    expect(rec.stats.lines).toBe(lines.length);
    const report = await replayTrace(bytes);
    expect(report.mismatches).toEqual([]);
    expect(report.ok).toBe(true);
  });

  test('a byte sink into a gzip TraceWriter gives the same trace, and the file replays clean', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'viommu-rec-'));
    const file = join(dir, 'run.jsonl.gz');
    try {
      const writer = await TraceWriter.open(file);
      const ram = new SparseRam(RAM);
      const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG, writeBytes: (b) => writer.bytes(b), source: 'recorder test' });
      session(ram, recordedHost(rec));
      rec.flush();
      await writer.close();
      expect(gunzipSync(readFileSync(file)).toString('utf8')).toBe(record().lines.join('\n') + '\n');
      expect((await replayTrace(file)).ok).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a byte sink can queue the chunks on a file stream as they come (the file replays clean)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'viommu-rec-'));
    const file = join(dir, 'run.jsonl');
    try {
      const out = createWriteStream(file);
      const ram = new SparseRam(RAM);
      const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG, writeBytes: (b) => out.write(b), source: 'recorder test' });
      session(ram, recordedHost(rec));
      rec.flush();
      await new Promise<void>((resolve, reject) => { out.once('error', reject); out.end(() => resolve()); });
      expect(readFileSync(file, 'utf8')).toBe(record().lines.join('\n') + '\n');
      const report = await replayTrace(file);
      expect(report.mismatches).toEqual([]);
      expect(report.ok).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an operation started from an MSI callback is recorded after the outer operation, with a warning, and replays clean', async () => {
    const ram = new SparseRam(RAM);
    const lines: string[] = [];
    const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG, write: (l) => lines.push(l) });
    const guest = new VtdGuest(ram, recordedHost(rec), { awBits: 39, sid: SID });
    guest.setup();
    guest.enableFaultEvents(0xfee0_0000, 0x41);
    let fsts: bigint | undefined;
    rec.model.events.on('msi', () => { fsts ??= rec.mmioRead(FSTS, 4); }); // the guest's interrupt handler
    const n0 = lines.length;
    const t = rec.translate(SID, 0x1234_5000n, RO); // nothing mapped: a fault, reported by a fault event (VT-d 7.3)
    expect(isFault(t)).toBe(true);
    expect(fsts).toBeDefined();
    // The guest's table writes the walk read come first (mem.write), then the operation and what it caused.
    const ops = lines.slice(n0).map((l) => (JSON.parse(l) as { op: string }).op).filter((op) => op !== 'mem.write');
    expect(ops).toEqual(['translate', 'msi.expect', 'mmio.read']);
    expect(rec.warnings).toHaveLength(1);
    expect(rec.warnings[0]).toMatch(/started from inside another one/);
    const report = await replayTrace(text(lines));
    expect(report.mismatches).toEqual([]);
    expect(report.ok).toBe(true);
  });

  test('a recorder needs exactly one sink', () => {
    const ram = new SparseRam(RAM);
    const base = { memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG };
    expect(() => new TraceRecorder(base)).toThrow(/exactly one of the options write and writeBytes/);
    expect(() => new TraceRecorder({ ...base, write: () => {}, writeBytes: () => {} })).toThrow(/exactly one/);
  });

  test('a DMA payload that is not 4-byte aligned, odd-sized or larger than a chunk is recorded exactly', async () => {
    const ram = new SparseRam(RAM);
    const lines: string[] = [];
    const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: CONFIG, write: (l) => lines.push(l) });
    // Translation off: DMA addresses are guest-physical (VT-d 3.1 with GSTS.TES clear).
    const host = new Uint8Array(70_001 + 3);
    for (let i = 0; i < host.length; i++) host[i] = (i * 151 + 7) & 0xff;
    const data = host.subarray(3); // odd byte offset, odd length, 140 KiB of hex
    rec.dmaWrite(SID, 0x20_0001n, data);
    ram.write(0x20_0005, Uint8Array.of(0xab, 0xcd)); // the guest CPU changes two bytes the device then reads
    const r = rec.dmaRead(SID, 0x20_0000n, 70_010);
    expect(r.faulted).toBe(false);
    const events = lines.slice(1).map((l) => JSON.parse(l) as { op: string; data?: string; expect?: string; gpa?: string });
    expect(events.map((e) => e.op)).toEqual(['dma.write', 'mem.write', 'dma.read']);
    expect(events[0]!.data).toBe(Buffer.from(data).toString('hex'));
    expect(events[1]).toEqual({ op: 'mem.write', gpa: '0x200005', data: 'abcd' });
    expect(events[2]!.expect).toBe(Buffer.from(r.data).toString('hex'));
    const report = await replayTrace(text(lines));
    expect(report.mismatches).toEqual([]);
    expect(report.ok).toBe(true);
  });
});
