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
import type { ReadTraceOptions, TraceInput } from './reader';
import type { ReplayMismatch, ReplayOptions, ReplayViolation } from './replay';

/**
 * The result of one trace's replay: the replayer's counts and lists (the
 * lists keep the first `maxReported` of each; the counts stay exact), plus
 * what the batch table shows.
 */
export interface BatchResult {
  file: string;
  /** The header's model; undefined when the header was not read (unreadable or malformed line 1). */
  model: string | undefined;
  /** Events applied (header excluded). */
  events: number;
  /** Events that check something against the reference run (see `isExpectation`). */
  expectations: number;
  mismatchCount: number;
  violationCount: number;
  mismatches: ReplayMismatch[];
  violations: ReplayViolation[];
  /** Set when the trace is malformed (nothing past `line` was replayed). */
  malformed?: { line: number; reason: string };
  /** Set when the trace could not be read at all (missing file, corrupt gzip, worker failure). */
  error?: string;
  /** Wall time of this trace's replay, in milliseconds. */
  ms: number;
}

/**
 * Exit status of one result (trace-v1 "What a replayer reports"): 0 clean,
 * 1 mismatch or violation, 2 malformed or unreadable. `check` judges the
 * notifier contract only, so there a mismatch alone is not a failure.
 */
export function resultStatus(r: BatchResult, check = false): 0 | 1 | 2 {
  if (r.malformed !== undefined || r.error !== undefined) return 2;
  return (!check && r.mismatchCount > 0) || r.violationCount > 0 ? 1 : 0;
}

/** Exit status of a batch: that of its worst trace (0 for none). */
export function batchStatus(results: readonly BatchResult[]): 0 | 1 | 2 {
  let s: 0 | 1 | 2 = 0;
  for (const r of results) s = Math.max(s, resultStatus(r)) as 0 | 1 | 2;
  return s;
}

/**
 * The message of a thrown value. Not `instanceof Error`: errors made in
 * another realm (a vm context, as under jest) fail that test and would be
 * printed as "Error: ..." in one place and without the prefix in another.
 */
export function errorMessage(e: unknown): string {
  return typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string' ? (e as Error).message : String(e);
}

/** A result for a trace that could not be replayed at all. */
export function failedResult(file: string, error: string, ms = 0): BatchResult {
  return {
    file, model: undefined, events: 0, expectations: 0, mismatchCount: 0, violationCount: 0, mismatches: [], violations: [], error, ms,
  };
}

/** What `replaySummary` may be given besides the input. */
export type SummaryOptions = Pick<ReplayOptions, 'record' | 'maxReported'> & Pick<ReadTraceOptions, 'afterChunk' | 'onProgress'>;

/**
 * Replays one trace in this thread and summarises it (never throws: an
 * unreadable input gives a result with `error`). `file` names the input in
 * the result; `input` (default: `file`, a path) may be bytes or a stream.
 */
export async function replaySummary(file: string, options: SummaryOptions = {}, input: TraceInput = file): Promise<BatchResult> {
  const t0 = process.hrtime.bigint();
  // Counted from the same events, so a trace that fails part-way reports
  // how far it got consistently.
  let events = 0;
  let expectations = 0;
  let model: string | undefined;
  const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
  try {
    const { report } = await replayTapped(input, {
      header: (h) => { model = h.model; },
      event: (ev) => { events++; if (isExpectation(ev, model === 'none')) expectations++; },
    }, { ...options, name: file });
    const r: BatchResult = {
      file, model, events: report.events, expectations,
      mismatchCount: report.mismatchCount, violationCount: report.violationCount,
      mismatches: report.mismatches, violations: report.violations, ms: ms(),
    };
    if (report.malformed) r.malformed = report.malformed;
    return r;
  } catch (e) {
    return { ...failedResult(file, errorMessage(e), ms()), model, events, expectations };
  }
}

export interface BatchOptions {
  /** Worker threads (default: min(traces, available cores)); 1 replays in this thread. */
  jobs?: number;
  /** Called as each trace finishes (in completion order). */
  onResult?: (result: BatchResult, index: number) => void;
  /** How many mismatches and violations each result lists (default 1000, as the replayer); the counts stay exact. */
  maxReported?: number;
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
export interface BatchRequest { index: number; file: string; maxReported: number | undefined }
export interface BatchReply { index: number; result: BatchResult }

/**
 * Replays `files` (at most `jobs` at a time, on worker threads) and returns
 * one result per file, in the order of `files`. A trace that cannot be read,
 * or whose worker dies, gives a result with `error`; the others go on.
 */
export async function runBatchReplay(files: readonly string[], options: BatchOptions = {}): Promise<BatchResult[]> {
  const results: BatchResult[] = new Array(files.length);
  const summaryOptions = options.maxReported === undefined ? {} : { maxReported: options.maxReported };
  const jobs = Math.max(1, Math.min(options.jobs ?? availableParallelism(), files.length));
  const done = (index: number, r: BatchResult) => {
    results[index] = r;
    options.onResult?.(r, index);
  };
  if (jobs <= 1 || files.length <= 1) {
    for (let i = 0; i < files.length; i++) done(i, await replaySummary(files[i]!, summaryOptions));
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
        current = { index: next, file: files[next]!, maxReported: options.maxReported };
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
          done(current.index, failedResult(current.file, `worker failed: ${e.message}`));
          current = undefined;
        }
      });
      w.on('exit', () => {
        live--;
        if (current !== undefined) {
          done(current.index, failedResult(current.file, 'worker exited'));
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
