/**
 * Batch replay: many traces, each replayed on its own (./replay), spread
 * over worker threads. Each trace gives one summary row; the exit status of
 * the batch is that of its worst trace (trace-v1 "What a replayer reports":
 * 0 all clean, 1 a mismatch or violation, 2 a malformed or unreadable trace).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { isExpectation, replayTapped } from './batch-replay';

/** The summary of one trace's replay. */
export interface BatchResult {
  file: string;
  /** Events applied (header excluded). */
  ops: number;
  /** Events that check something against the reference run (see `isExpectation`). */
  expectations: number;
  mismatches: number;
  violations: number;
  /** Set when the trace is malformed (nothing past `line` was replayed). */
  malformed?: { line: number; reason: string };
  /** Set when the trace could not be read at all (missing file, corrupt gzip, worker failure). */
  error?: string;
  /** Wall time of this trace's replay, in milliseconds. */
  ms: number;
}

/** Exit status of one result: 0 clean, 1 mismatch or violation, 2 malformed or unreadable. */
export function resultStatus(r: BatchResult): 0 | 1 | 2 {
  if (r.malformed !== undefined || r.error !== undefined) return 2;
  return r.mismatches > 0 || r.violations > 0 ? 1 : 0;
}

/** Exit status of a batch: that of its worst trace (0 for none). */
export function batchStatus(results: readonly BatchResult[]): 0 | 1 | 2 {
  let s: 0 | 1 | 2 = 0;
  for (const r of results) s = Math.max(s, resultStatus(r)) as 0 | 1 | 2;
  return s;
}

/** Replays one trace in this thread and summarises it (never throws). */
export async function replaySummary(file: string): Promise<BatchResult> {
  const t0 = process.hrtime.bigint();
  // Counted from the same events, so a trace that fails part-way reports
  // how far it got consistently.
  let ops = 0;
  let expectations = 0;
  let none = false;
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  try {
    const { report } = await replayTapped(file, {
      header: (h) => { none = h.model === 'none'; },
      event: (ev) => { ops++; if (isExpectation(ev, none)) expectations++; },
    }, { maxReported: 0 });
    const r: BatchResult = {
      file, ops: report.events, expectations, mismatches: report.mismatchCount, violations: report.violationCount, ms: ms(),
    };
    if (report.malformed) r.malformed = report.malformed;
    return r;
  } catch (e) {
    return { file, ops, expectations, mismatches: 0, violations: 0, error: e instanceof Error ? e.message : String(e), ms: ms() };
  }
}

export interface BatchOptions {
  /** Worker threads (default: min(traces, available cores)); 1 replays in this thread. */
  jobs?: number;
  /** Called as each trace finishes (in completion order). */
  onResult?: (result: BatchResult, index: number) => void;
}

/**
 * How a worker is started. The compiled module (dist/trace/batch.js) finds
 * batch-worker.js next to it. Run from the TypeScript sources (tests under
 * ts-jest), there is no compiled worker: the worker then loads the sources
 * through TypeScript's transpiler (no type check), so tests need no build.
 */
function workerScript(): { filename: string; eval: boolean } {
  const js = join(__dirname, 'batch-worker.js');
  if (existsSync(js)) return { filename: js, eval: false };
  const ts = join(__dirname, 'batch-worker.ts');
  if (!existsSync(ts)) throw new Error(`batch worker not found next to ${__filename} (run npm run build)`);
  const tsc = require.resolve('typescript');
  const boot = `
    const ts = require(${JSON.stringify(tsc)});
    const fs = require('node:fs');
    require.extensions['.ts'] = function (m, filename) {
      const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
        fileName: filename,
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false },
      }).outputText;
      m._compile(out, filename);
    };
    require(${JSON.stringify(ts)});
  `;
  return { filename: boot, eval: true };
}

/** Message from the parent to a worker, and back. */
export interface BatchRequest { index: number; file: string }
export interface BatchReply { index: number; result: BatchResult }

/**
 * Replays `files` (at most `jobs` at a time, on worker threads) and returns
 * one result per file, in the order of `files`. A trace that cannot be read,
 * or whose worker dies, gives a result with `error`; the others go on.
 */
export async function runBatchReplay(files: readonly string[], options: BatchOptions = {}): Promise<BatchResult[]> {
  const results: BatchResult[] = new Array(files.length);
  const jobs = Math.max(1, Math.min(options.jobs ?? availableParallelism(), files.length));
  const done = (index: number, r: BatchResult) => {
    results[index] = r;
    options.onResult?.(r, index);
  };
  if (jobs <= 1 || files.length <= 1) {
    for (let i = 0; i < files.length; i++) done(i, await replaySummary(files[i]!));
    return results;
  }
  const script = workerScript();
  let next = 0;
  await new Promise<void>((resolve) => {
    let live = 0;
    const start = () => {
      if (next >= files.length) {
        if (live === 0) resolve();
        return;
      }
      live++;
      const w = new Worker(script.filename, { eval: script.eval });
      let current: BatchRequest | undefined;
      const feed = () => {
        if (next >= files.length) {
          current = undefined;
          void w.terminate();
          return;
        }
        current = { index: next, file: files[next]! };
        next++;
        w.postMessage(current);
      };
      w.on('message', (m: BatchReply) => {
        done(m.index, m.result);
        feed();
      });
      w.on('error', (e) => {
        // The worker is gone: its trace fails, a fresh worker takes the rest.
        if (current !== undefined) {
          done(current.index, { file: current.file, ops: 0, expectations: 0, mismatches: 0, violations: 0, error: `worker failed: ${e.message}`, ms: 0 });
          current = undefined;
        }
      });
      w.on('exit', () => {
        live--;
        if (current !== undefined) {
          done(current.index, { file: current.file, ops: 0, expectations: 0, mismatches: 0, violations: 0, error: 'worker exited', ms: 0 });
          current = undefined;
        }
        start();
        if (live === 0 && next >= files.length) resolve();
      });
      feed();
    };
    for (let i = 0; i < jobs; i++) start();
  });
  return results;
}
