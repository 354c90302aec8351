/**
 * `viommu replay` over many traces: a directory, a glob, several files, or
 * any target with `--jobs N`. Replays on worker threads (src/trace/batch)
 * and prints one row per trace (or, with --json, one report per trace, the
 * same report a single replay prints); the exit status is the worst trace's
 * (0 all clean, 1 any mismatch or violation, 2 any malformed or unreadable).
 */
import { statSync } from 'node:fs';
import { expandGlob, hasGlob, tracesInDir } from '../../trace/batch-glob';
import { batchStatus, resultStatus, runBatchReplay } from '../../trace/batch';
import type { BatchResult } from '../../trace/batch';
import type { CliIo } from '../io';
import { startProgress } from '../progress';
import { traceReportLine } from '../report-json';
import { textTable } from '../table';

/** A usage error (exit 2), reported with the command's help hint. */
export class UsageError extends Error {}

/**
 * Whether `viommu replay` with these targets is a batch: more than one
 * target, a target that is a directory or a glob, or `--jobs` given.
 */
export function isBatchReplay(targets: readonly string[], jobs: number | undefined): boolean {
  if (jobs !== undefined || targets.length > 1) return true;
  const t = targets[0];
  if (t === undefined || t === '-') return false;
  if (hasGlob(t)) return true;
  try {
    return statSync(t).isDirectory();
  } catch {
    return false;
  }
}

/** The trace files named by the targets, in order, without duplicates. */
export function expandTargets(targets: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (f: string) => { if (!seen.has(f)) { seen.add(f); out.push(f); } };
  for (const t of targets) {
    if (t === '-') throw new UsageError('standard input (-) can only be replayed on its own, without --jobs');
    let isDir = false;
    try { isDir = statSync(t).isDirectory(); } catch { /* a file that is not there: its row says so */ }
    if (isDir) {
      const found = tracesInDir(t);
      if (found.length === 0) throw new UsageError(`no trace (*.jsonl, *.jsonl.gz) under ${t}`);
      found.forEach(add);
    } else if (hasGlob(t)) {
      const found = expandGlob(t);
      if (found.length === 0) throw new UsageError(`no file matches ${t}`);
      found.forEach(add);
    } else {
      add(t);
    }
  }
  return out;
}

function statusText(r: BatchResult): string {
  if (r.error !== undefined) return 'UNREADABLE';
  if (r.malformed !== undefined) return `MALFORMED line ${r.malformed.line}`;
  return resultStatus(r) === 0 ? 'ok' : 'FAILED';
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** The batch table: one row per trace, the columns `replay --help` describes. */
export function formatTable(results: readonly BatchResult[]): string {
  const rows = results.map((r) => [
    r.file, String(r.events), String(r.expectations), String(r.mismatchCount), String(r.violationCount),
    r.ms >= 1000 ? seconds(r.ms) : `${r.ms.toFixed(1)} ms`, statusText(r),
  ]);
  return textTable(['trace', 'events', 'expectations', 'mismatches', 'violations', 'time', 'status'], rows, [1, 2, 3, 4, 5]);
}

/**
 * Replays the batch `files` (see isBatchReplay; `jobs` worker threads) and
 * prints the table or the reports; returns the exit status.
 */
export async function runBatch(files: readonly string[], options: { jobs?: number; json: boolean }, io: CliIo): Promise<number> {
  const bar = startProgress(io.stderr, files.length, 'traces');
  let finished = 0;
  const t0 = process.hrtime.bigint();
  let results: BatchResult[];
  try {
    results = await runBatchReplay(files, {
      ...(options.jobs === undefined ? {} : { jobs: options.jobs }),
      // The table lists counts only; the lists are kept for --json.
      ...(options.json ? {} : { maxReported: 0 }),
      onResult: () => bar?.update(++finished),
    });
  } finally {
    bar?.stop();
  }
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (options.json) {
    for (const r of results) io.stdout.write(traceReportLine('replay', r));
  } else {
    io.stdout.write(formatTable(results));
    const count = (s: number) => results.filter((r) => resultStatus(r) === s).length;
    const summed = results.reduce((a, r) => a + r.ms, 0);
    // Wall time is what the user waited; the per-trace times add up across worker threads (CPU-like time).
    io.stdout.write(`${results.length} trace${results.length === 1 ? '' : 's'}: ${count(0)} clean, ${count(1)} failed, `
      + `${count(2)} malformed or unreadable (${seconds(wallMs)} wall time; ${seconds(summed)} summed over traces)\n`);
  }
  for (const r of results) {
    if (r.error !== undefined) io.stderr.write(`viommu: cannot read ${r.file}: ${r.error}\n`);
    else if (r.malformed !== undefined) io.stderr.write(`viommu: ${r.file}:${r.malformed.line}: malformed trace: ${r.malformed.reason}\n`);
  }
  return batchStatus(results);
}
