/**
 * TraceRecorder with a request-based model (virtio-iommu): config space,
 * features, requests, fault reports the emulator takes, device reset, DMA,
 * listeners; the recording must replay clean, must not change what the
 * emulator observes, and each QEMU 7.2 capture in fixtures/qemu-virtio-iommu
 * re-recorded through the recorder must replay clean with QEMU's own
 * answers. Also: the `virtio.reset` op (trace v1) parses, writes back
 * byte for byte and replays; the recorder refuses ops the model lacks, and
 * does not record what trace v1 cannot say (a PASID listener).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IOMMUAccessFlags } from '../../src/core/access';
import { isFault } from '../../src/core/model';
import type { IOMMUModel } from '../../src/core/model';
import type { IOMMUNotifier } from '../../src/core/notifier-list';
import { IOMMUNotifierFlag } from '../../src/core/tlb-entry';
import type { IOMMUTLBEvent } from '../../src/core/tlb-entry';
import { SparseRam, dmaRead, dmaWrite } from '../../src/memory';
import { createVirtioIommu, encodeAttach, encodeDetach, encodeMap, encodeProbe, encodeUnmap } from '../../src/models/virtio-iommu';
import { formatEvent, formatHeader, parseEvent, parseHeader, readTraceAll, replayTrace } from '../../src/trace';
import type { TraceEvent } from '../../src/trace';
import { TraceRecorder } from '../../src/trace/recorder';
import { expectCleanReplay, traceBytes } from './recorder-replay';
import type { RecordedNotifierHandle } from '../../src/trace/recorder';

const { RO, WO } = IOMMUAccessFlags;
const { MAP, UNMAP } = IOMMUNotifierFlag;
const RAM = [{ base: 0, size: 0x100_0000 }];
const CONFIG = { bootBypass: false, endpoints: ['0x20', '0x28'] };
const A = 0x20;
const B = 0x28;
/** VIRTIO_F_VERSION_1 and the device features QEMU 7.2 offers and a Linux driver takes (virtio 1.2 5.13.3), BYPASS_CONFIG included. */
const FEATURES = 0x1_0000_0077n;

/** What the emulator can call: the model itself, or the recorder in front of it. */
interface Host {
  configRead(offset: number, size: number): bigint;
  configWrite(offset: number, size: number, value: bigint): void;
  features(value: bigint): void;
  request(data: Uint8Array, writable: number): Uint8Array;
  takeEvent(): Uint8Array | undefined;
  reset(): void;
  dmaRead(sid: number, iova: bigint, len: number): { data: Uint8Array; faulted: boolean };
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): { faulted: boolean };
  translate(sid: number, iova: bigint, access: IOMMUAccessFlags): ReturnType<IOMMUModel['translate']>;
  register(sid: number, n: IOMMUNotifier, id: string): { dispose(): void };
}

function bareHost(ram: SparseRam): Host {
  const m = createVirtioIommu(CONFIG, ram);
  const t = (sid: number) => (iova: bigint, w: boolean) => m.translate(sid, iova, w ? WO : RO);
  return {
    configRead: (o, s) => m.virtioConfigRead(o, s),
    configWrite: (o, s, v) => m.virtioConfigWrite(o, s, v),
    features: (v) => m.virtioFeatures(v),
    request: (d, w) => m.virtioRequest(d, w),
    takeEvent: () => m.virtioTakeEvent(),
    reset: () => m.virtioReset(),
    dmaRead: (sid, iova, len) => dmaRead(ram, t(sid), iova, len),
    dmaWrite: (sid, iova, data) => dmaWrite(ram, t(sid), iova, data),
    translate: (sid, iova, a) => m.translate(sid, iova, a),
    register: (sid, n) => m.addressSpace(sid).registerNotifier(n),
  };
}

function recordedHost(rec: TraceRecorder, handles: Map<string, RecordedNotifierHandle>): Host {
  return {
    configRead: (o, s) => rec.virtioConfigRead(o, s),
    configWrite: (o, s, v) => rec.virtioConfigWrite(o, s, v),
    features: (v) => rec.virtioFeatures(v),
    request: (d, w) => rec.virtioRequest(d, w),
    takeEvent: () => rec.virtioTakeEvent(),
    reset: () => rec.virtioReset(),
    dmaRead: (sid, iova, len) => rec.dmaRead(sid, iova, len),
    dmaWrite: (sid, iova, data) => rec.dmaWrite(sid, iova, data),
    translate: (sid, iova, a) => rec.translate(sid, iova, a),
    register: (sid, n, id) => {
      const h = rec.addressSpace(sid).registerNotifier(n, id);
      handles.set(id, h);
      return h;
    },
  };
}

const hexOf = (b: Uint8Array | undefined) => (b === undefined ? 'none' : Buffer.from(b).toString('hex'));
const pattern = (seed: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (seed * 29 + i * 13) & 0xff);

/** A driver's session; returns what the emulator observed, in order. */
function session(ram: SparseRam, host: Host, checkpoint: (id: string) => void = () => {}): string[] {
  const seen: string[] = [];
  const listener = (name: string, flags: number, start = 0n, end = 0xffff_ffff_ffffn): IOMMUNotifier => ({
    flags, start, end,
    notify: (e: IOMMUTLBEvent) => seen.push(`${name} ${e.type} ${e.entry.iova.toString(16)}/${e.entry.addrMask.toString(16)} ${e.entry.translatedAddr.toString(16)} ${e.entry.perm}`),
  });
  const req = (d: Uint8Array, w = 4) => seen.push(`req ${hexOf(host.request(d, w))}`);
  const ev = () => seen.push(`event ${hexOf(host.takeEvent())}`);

  host.features(FEATURES);
  for (const [o, s] of [[0, 8], [8, 8], [16, 8], [24, 4], [28, 4], [32, 4], [36, 1], [38, 2]] as const) seen.push(`cfg ${o} ${host.configRead(o, s)}`);
  host.configWrite(36, 1, 0n); // bypass stays off
  host.register(A, listener('vfio', MAP | UNMAP), 'vfio');
  host.register(A, listener('vhost', UNMAP), 'vhost');
  host.register(B, listener('other', MAP | UNMAP, 0n, 0xf_ffffn), 'other');
  req(encodeAttach(1, A));
  req(encodeAttach(2, B));
  req(encodeMap(1, 0x10000n, 0x1ffffn, 0x20_0000n, 3));
  req(encodeMap(1, 0x40000n, 0x40fffn, 0x30_0000n, 1));
  req(encodeMap(2, 0n, 0x1f_ffffn, 0x40_0000n, 3));
  req(encodeMap(1, 0x1f000n, 0x20fffn, 0x50_0000n, 3)); // overlaps: S_INVAL
  req(encodeProbe(A), 512 + 4);

  ram.write(0x20_0000, pattern(1, 0x3000)); // the guest CPU fills a buffer
  seen.push(`dmar ${hexOf(host.dmaRead(A, 0x10010n, 0x1800).data)}`);
  seen.push(`dmaw ${host.dmaWrite(A, 0x40000n, pattern(2, 16)).faulted}`); // read-only: fault report
  ev();
  const t = host.translate(A, 0x5_0000n, RO); // unmapped: fault report
  seen.push(`xlate ${isFault(t) ? 'fault' : t.translatedAddr.toString(16)}`);
  ev();
  ev(); // none left
  seen.push(`dmar ${hexOf(host.dmaRead(B, 0x1_0000n, 64).data)}`);
  checkpoint('vfio');

  host.register(A, listener('late', MAP | UNMAP, 0x1_8000n, 0xf_ffffn), 'late'); // replay (C7)
  checkpoint('late');
  req(encodeUnmap(1, 0x10000n, 0x1ffffn));
  req(Uint8Array.of(3, 0)); // short head: device error, needs reset
  req(encodeMap(1, 0x60000n, 0x60fffn, 0x60_0000n, 3)); // ignored until reset
  host.reset(); // listeners lose everything (C8)
  checkpoint('vfio');
  host.features(FEATURES);
  req(encodeAttach(1, A));
  req(encodeMap(1, 0x70000n, 0x70fffn, 0x70_0000n, 2));
  seen.push(`dmaw ${host.dmaWrite(A, 0x70100n, pattern(3, 32)).faulted}`);
  req(encodeDetach(1, A));
  seen.push(`cfg bypass ${host.configRead(36, 1)}`);
  return seen;
}

function record(): { lines: string[]; seen: string[]; rec: TraceRecorder } {
  const ram = new SparseRam(RAM);
  const lines: string[] = [];
  const handles = new Map<string, RecordedNotifierHandle>();
  const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'virtio-iommu', config: CONFIG, write: (l) => lines.push(l), source: 'recorder test' });
  const seen = session(ram, recordedHost(rec, handles), (id) => rec.expectView(handles.get(id)!));
  return { lines, seen, rec };
}

const text = traceBytes;
const opsOf = (lines: string[]) => lines.slice(1).map((l) => (JSON.parse(l) as { op: string }).op);

describe('TraceRecorder with virtio-iommu', () => {
  test('a recorded session replays with zero mismatches and zero violations', async () => {
    const { lines, rec } = record();
    const ops = new Set(opsOf(lines));
    for (const op of ['virtio.features', 'virtio.config.read', 'virtio.config.write', 'virtio.request', 'virtio.event.expect', 'virtio.reset',
      'mem.write', 'dma.read', 'dma.write', 'translate', 'notifier.add', 'notify', 'view.expect']) {
      expect(ops).toContain(op);
    }
    expect(rec.warnings).toEqual([]);
    await expectCleanReplay(lines);
  });

  test('recording does not change what the emulator observes', () => {
    const ram = new SparseRam(RAM);
    const plain = session(ram, bareHost(ram));
    expect(record().seen).toEqual(plain);
    // The session saw the spec's answers: S_OK (0), the overlap S_INVAL (4), two fault reports, no third.
    expect(plain.filter((s) => s.startsWith('req 04'))).toHaveLength(1);
    expect(plain.filter((s) => s.startsWith('event ') && s !== 'event none')).toHaveLength(2);
    expect(plain).toContain('event none');
  });

  test('the reset is recorded where it happened, followed by the UNMAPs it caused', () => {
    const { lines } = record();
    const i = lines.findIndex((l) => l === '{"op":"virtio.reset"}');
    expect(i).toBeGreaterThan(0);
    const after = lines.slice(i + 1).map((l) => JSON.parse(l) as { op: string; type?: string; id?: string });
    const group = after.slice(0, after.findIndex((e) => e.op !== 'notify'));
    expect(group.length).toBeGreaterThan(0);
    expect(group.every((e) => e.type === 'UNMAP')).toBe(true);
  });

  test('a tampered request answer or fault report fails replay (the expectations are real)', async () => {
    const { lines } = record();
    const tampered = [...lines];
    const i = lines.findIndex((l) => l.includes('"op":"virtio.request"') && l.endsWith('"expect":"00000000"}'));
    tampered[i] = tampered[i]!.replace('"expect":"00000000"', '"expect":"01000000"');
    const j = lines.findIndex((l) => l.includes('"op":"virtio.event.expect"'));
    tampered[j] = tampered[j]!.replace(/"data":"(..)/, (_m, b: string) => `"data":"${b === '00' ? '01' : '00'}`);
    const report = await replayTrace(text(tampered));
    expect(report.mismatches.map((m) => m.op).sort()).toEqual(['virtio.event.expect', 'virtio.request']);
  });

  test('virtio ops on a model without them throw, naming the model, and record nothing', () => {
    const ram = new SparseRam(RAM);
    const lines: string[] = [];
    const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: {}, write: (l) => lines.push(l) });
    expect(() => rec.virtioRequest(encodeAttach(1, A), 4)).toThrow(/virtio.request needs a virtio-iommu model; this one is intel-vtd/);
    expect(() => rec.virtioReset()).toThrow(/intel-vtd/);
    expect(() => rec.mmioRead(0, 4)).not.toThrow();
    const vrec = new TraceRecorder({ memory: ram, ram: RAM, model: 'virtio-iommu', config: CONFIG, write: (l) => lines.push(l) });
    expect(() => vrec.mmioRead(0, 4)).toThrow(/virtio-iommu has no MMIO registers/);
    expect(opsOf(lines).filter((op) => op !== 'mmio.read')).toEqual([]);
  });

  test('a listener on a PASID address space is recorded with notifier.add\'s pasid and replays on that address space', async () => {
    const ram = new SparseRam(RAM);
    const lines: string[] = [];
    const rec = new TraceRecorder({ memory: ram, ram: RAM, model: 'intel-vtd', config: { cachingMode: true, scalableMode: true }, write: (l) => lines.push(l) });
    const h = rec.addressSpace(A, 5).registerNotifier({ flags: MAP | UNMAP, start: 0n, end: 0xffff_ffffn, notify: () => {} }, 'p');
    expect(h.registered).toBe(true);
    expect(rec.warnings).toEqual([]);
    rec.expectView(h);
    h.dispose();
    const add = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((o) => o['op'] === 'notifier.add');
    expect(add).toMatchObject({ id: 'p', sid: '0x20', pasid: 5 });
    const { events } = await readTraceAll(Buffer.from(text(lines)));
    expect(events.find((e) => e.op === 'notifier.add')).toMatchObject({ sid: A, pasid: 5 });
    expect((await replayTrace(text(lines))).ok).toBe(true);
  });
});

/** Drives a recorder from a capture's driver and device actions (its expectations dropped: the recorder fills its own). */
async function reRecord(file: string): Promise<{ lines: string[]; original: TraceEvent[] }> {
  const { header, events } = await readTraceAll(file);
  const ram = new SparseRam(header.ram);
  const lines: string[] = [];
  const rec = new TraceRecorder({ memory: ram, ram: header.ram, model: header.model, config: header.config, write: (l) => lines.push(l) });
  const handles = new Map<string, RecordedNotifierHandle>();
  for (const ev of events) {
    switch (ev.op) {
      case 'mem.write': ram.write(Number(ev.gpa), ev.data); break; // guest CPU: not seen by the recorder
      case 'virtio.config.read': rec.virtioConfigRead(ev.offset, ev.size); break;
      case 'virtio.config.write': rec.virtioConfigWrite(ev.offset, ev.size, ev.value); break;
      case 'virtio.features': rec.virtioFeatures(ev.value); break;
      case 'virtio.request': rec.virtioRequest(ev.data, ev.writable); break;
      case 'virtio.event.expect': rec.virtioTakeEvent(); break;
      case 'virtio.reset': rec.virtioReset(); break;
      case 'dma.read': rec.dmaRead(ev.sid, ev.iova, ev.len, ev.pasid); break;
      case 'dma.write': rec.dmaWrite(ev.sid, ev.iova, ev.data, ev.pasid); break;
      case 'translate': rec.translate(ev.sid, ev.iova, ev.access, ev.pasid); break;
      case 'notifier.add':
        handles.set(ev.id, rec.addressSpace(ev.sid).registerNotifier({ flags: ev.flags, start: ev.start, end: ev.end, notify: () => {} }, ev.id));
        break;
      case 'notifier.del': handles.get(ev.id)!.dispose(); break;
      case 'view.expect': rec.expectView(handles.get(ev.id)!); break;
      default: break;
    }
  }
  return { lines, original: events };
}

describe('QEMU 7.2 virtio-iommu captures re-recorded through the recorder', () => {
  const dir = join(__dirname, '../../fixtures/qemu-virtio-iommu');
  const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort();

  test('there are captures', () => {
    expect(files.length).toBeGreaterThanOrEqual(15);
  });

  test.each(files)('%s replays clean, with QEMU\'s answers', async (name) => {
    const { lines, original } = await reRecord(join(dir, name));
    await expectCleanReplay(lines);
    // What the live run recorded is what QEMU answered in the capture: same requests, same answers, same fault reports.
    const recorded = lines.slice(1).map((l) => parseEvent(l, 0));
    const answers = (evs: TraceEvent[]) => evs.flatMap((e) => {
      if (e.op === 'virtio.request') return [`req ${hexOf(e.data)} -> ${hexOf(e.expect)}`];
      if (e.op === 'virtio.event.expect') return [`event ${hexOf(e.data)}`];
      if (e.op === 'virtio.config.read') return [`cfg ${e.offset}/${e.size} -> ${e.expect}`];
      if (e.op === 'dma.read' || e.op === 'dma.write') return [`${e.op} ${e.iova} -> ${e.expect instanceof Uint8Array ? hexOf(e.expect) : String(e.expect)}`];
      return [];
    });
    expect(answers(recorded)).toEqual(answers(original));
  });
});

describe('the virtio.reset op (trace v1)', () => {
  // Requests built from the virtio 1.2 5.13.6 layouts (little-endian): ATTACH domain 1 endpoint 0x20;
  // MAP domain 1 [0x10000, 0x1ffff] -> 0x200000 READ|WRITE.
  const lines = [
    '{"trace":"viommu","version":1,"model":"virtio-iommu","config":{"bootBypass":false},"ram":[{"base":"0x0","size":"0x1000000"}]}',
    '{"op":"virtio.features","value":"0x100000077"}',
    '{"op":"notifier.add","id":"v","sid":"0x20","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffff"}',
    '{"op":"virtio.request","data":"0100000001000000200000000000000000000000","writable":4,"expect":"00000000"}',
    '{"op":"virtio.request","data":"03000000010000000000010000000000ffff010000000000000020000000000003000000","writable":4,"expect":"00000000"}',
    '{"op":"view.expect","id":"v","entries":[{"iova":"0x10000","mask":"0xffff","translated":"0x200000","perm":"rw"}]}',
    '{"op":"translate","sid":"0x20","iova":"0x10040","access":"r","expect":{"translated":"0x200000","mask":"0xfff","perm":"rw"}}',
    '{"op":"virtio.reset","note":"the driver writes status 0"}',
    '{"op":"view.expect","id":"v","entries":[]}',
    '{"op":"translate","sid":"0x20","iova":"0x10040","access":"r","expect":{"fault":true}}',
  ];

  test('it parses, and every line writes back byte for byte', () => {
    expect(formatHeader(parseHeader(lines[0]!))).toBe(lines[0]);
    for (let i = 1; i < lines.length; i++) expect(formatEvent(parseEvent(lines[i]!, i + 1))).toBe(lines[i]);
    expect(parseEvent('{"op":"virtio.reset"}', 2)).toEqual({ op: 'virtio.reset', line: 2 });
  });

  test('it replays: mappings and the attachment are gone, bypass stays off (the endpoint faults)', async () => {
    const r = await replayTrace(text(lines));
    expect(r.mismatches).toEqual([]);
    expect(r.violations).toEqual([]);
    expect(r.ok).toBe(true);
  });

  test('without the reset, the same expectations fail (the op does something)', async () => {
    const r = await replayTrace(text(lines.filter((l) => !l.includes('virtio.reset'))));
    expect(r.ok).toBe(false);
    expect(r.mismatches.map((m) => m.op).sort()).toEqual(['translate', 'view.expect']);
  });

  test('on a model without it, virtio.reset is a mismatch naming the model', async () => {
    const vtd = ['{"trace":"viommu","version":1,"model":"intel-vtd","config":{},"ram":[]}', '{"op":"virtio.reset"}'];
    const r = await replayTrace(text(vtd));
    expect(r.mismatches).toEqual([expect.objectContaining({ line: 2, op: 'virtio.reset' })]);
    expect(readFileSync(join(__dirname, '../../docs/trace-format.md'), 'utf8')).toMatch(/\| `virtio.reset` \|/);
  });
});
