/**
 * Replay figures: model-none replay speed through the real reader and engine,
 * peak heap while replaying a multi-GB stream (constant memory), and the
 * guest-memory read that VT-d page walks call twice per entry.
 */
import { Readable } from 'node:stream';
import type { BenchFigure, BenchSuite } from './harness';
import { gc, medianMs, opsPerSecond } from './harness';
import { replayTrace } from '../src/trace/replay';
import { SparseRam } from '../src/memory/sparse-ram';

const HEADER = '{"trace":"viommu","version":1,"model":"none","config":{},"ram":[],"source":"bench"}\n';
const LISTENERS = ['vfio', 'vfio-b', 'vfio-c'];

/**
 * A legal block of notify lines that leaves every view empty, so it can be
 * repeated: each listener maps `pages` entries (4 KiB and 2 MiB) and unmaps them.
 */
function block(pages: number): { text: string; lines: number } {
  const out: string[] = [];
  for (const id of LISTENERS) {
    for (let i = 0; i < pages; i++) {
      const big = i % 16 === 15;
      const iova = big ? 0x40000000 + i * 0x200000 : 0x100000 + i * 0x1000;
      const mask = big ? '0x1fffff' : '0xfff';
      const xl = big ? 0x80000000 + i * 0x200000 : 0x10000000 + i * 0x1000;
      out.push(`{"op":"notify","id":"${id}","type":"MAP","iova":"0x${iova.toString(16)}","mask":"${mask}","translated":"0x${xl.toString(16)}","perm":"rw"}`);
    }
    for (let i = 0; i < pages; i++) {
      const big = i % 16 === 15;
      const iova = big ? 0x40000000 + i * 0x200000 : 0x100000 + i * 0x1000;
      const mask = big ? '0x1fffff' : '0xfff';
      out.push(`{"op":"notify","id":"${id}","type":"UNMAP","iova":"0x${iova.toString(16)}","mask":"${mask}","translated":"0x0","perm":"none"}`);
    }
  }
  return { text: out.join('\n') + '\n', lines: out.length };
}

function registrations(): string {
  return LISTENERS.map((id) => `{"op":"notifier.add","id":"${id}","sid":"0x20","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffffffffffff"}\n`).join('');
}

/** A model-none trace of about `lines` lines, in memory. */
function traceBuffer(lines: number): { buf: Buffer; lines: number } {
  const b = block(1024);
  const reps = Math.max(1, Math.round(lines / b.lines));
  return { buf: Buffer.from(HEADER + registrations() + b.text.repeat(reps)), lines: 1 + LISTENERS.length + reps * b.lines };
}

/** A lazily generated stream of `bytes` bytes of trace (never held in memory). */
function traceStream(bytes: number): { stream: Readable; lines: () => number } {
  const b = block(1024);
  const chunk = Buffer.from(b.text.repeat(Math.max(1, Math.floor((4 << 20) / b.text.length))));
  const linesPerChunk = b.lines * Math.max(1, Math.floor((4 << 20) / b.text.length));
  let sent = 0;
  let lines = 1 + LISTENERS.length;
  let first = true;
  const stream = new Readable({
    read() {
      if (first) {
        first = false;
        this.push(Buffer.from(HEADER + registrations()));
        return;
      }
      if (sent >= bytes) {
        this.push(null);
        return;
      }
      sent += chunk.length;
      lines += linesPerChunk;
      this.push(chunk);
    },
  });
  return { stream, lines: () => lines };
}

export const suite: BenchSuite = async () => {
  const figures: BenchFigure[] = [];

  const { buf, lines } = traceBuffer(600_000);
  let ok = true;
  const cpuTimes: number[] = [];
  const ms = await (async () => {
    const times: number[] = [];
    await replayTrace(buf); // warm-up (JIT)
    for (let i = 0; i < 3; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const r = await replayTrace(buf);
      times.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpuTimes.push((c.user + c.system) / 1000);
      ok &&= r.ok && r.events === lines - 1;
    }
    times.sort((a, b) => a - b);
    cpuTimes.sort((a, b) => a - b);
    return times[1]!;
  })();
  if (!ok) throw new Error('replay bench: the generated trace did not replay clean');
  figures.push({
    key: 'replayLinesPerSec', label: `model-none replay, ${(lines / 1e3).toFixed(0)}k notify lines in memory (reader + engine)`,
    value: lines / (ms / 1000), unit: 'lines/s', target: '>= 1e6',
  });
  figures.push({
    key: 'replayLinesPerCpuSec', label: 'same, per second of process CPU time (robust when the machine is shared)',
    value: lines / (cpuTimes[1]! / 1000), unit: 'lines/s',
  });

  // Constant memory: a multi-GB stream, generated lazily.
  const target = Number(process.env['REPLAY_BENCH_BYTES'] ?? 2 * 2 ** 30);
  gc();
  const base = process.memoryUsage().heapUsed;
  let peak = base;
  const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().heapUsed); }, 20);
  const { stream, lines: streamed } = traceStream(target);
  const t0 = performance.now();
  const r = await replayTrace(stream, { onProgress: () => { peak = Math.max(peak, process.memoryUsage().heapUsed); } });
  const secs = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  if (!r.ok || r.events !== streamed() - 1) throw new Error('replay bench: the streamed trace did not replay clean');
  const gb = (target / 2 ** 30).toFixed(target >= 2 ** 30 ? 0 : 2);
  figures.push({
    key: 'replayPeakHeapMB', label: `peak heapUsed replaying a ${gb} GiB generated stream (${(streamed() / 1e6).toFixed(1)}M lines, ${secs.toFixed(0)} s)`,
    value: peak / 2 ** 20, unit: 'MB', target: 'constant',
  });
  figures.push({
    key: 'replayStreamLinesPerSec', label: `same stream: lines replayed per second`,
    value: streamed() / secs, unit: 'lines/s',
  });

  // Guest memory reads as a page walk does them (aligned u32 on written pages of a 4 GiB region).
  const ram = new SparseRam([{ base: 0, size: 2 ** 32 }]);
  const addrs = new Float64Array(4096);
  for (let i = 0; i < addrs.length; i++) {
    addrs[i] = ((i * 2654435761) % 2 ** 20) * 4096 + (i % 512) * 8;
    ram.writeU32(addrs[i]!, i);
  }
  let sink = 0;
  figures.push({
    key: 'sparseRamReadU32PerSec', label: 'SparseRam.readU32, aligned, 4096 pages spread over 4 GiB',
    value: opsPerSecond(() => { for (let i = 0; i < 4096; i++) sink ^= ram.readU32(addrs[i]!); }, 4096),
    unit: 'reads/s',
  });
  void medianMs;
  if (sink === 0.5) figures.push({ key: 'never', label: '', value: 0, unit: '' });
  return figures;
};
