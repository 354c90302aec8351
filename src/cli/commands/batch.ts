/**
 * `viommu replay` over many traces: a directory, a glob, several files, or
 * any target with `--jobs N`. Replays on worker threads (src/trace/batch)
 * and prints one row per trace; the exit status is the worst trace's
 * (0 all clean, 1 any mismatch or violation, 2 any malformed or unreadable).
 */
import { statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { expandGlob, hasGlob, tracesInDir } from '../../trace/batch-glob';
import { batchStatus, resultStatus, runBatchReplay } from '../../trace/batch';
import type { BatchResult } from '../../trace/batch';

/** Where a command writes (the same shape as main.ts's CliIo). */
export interface CommandIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export const BATCH_HELP = `Usage: viommu replay <dir | glob | trace...> [--jobs N] [--json]

Replays many traces (.jsonl, .jsonl.gz), each on its own, on N worker
threads, and prints one row per trace: events, expectations, mismatches,
contract violations and time. A directory means every trace under it
(recursively); a glob may use * and ? (within a path segment) and ** (any
number of directories); quote it so that the shell leaves it alone.

Options:
  -j, --jobs N    worker threads (default: the number of cores, at most one
                  per trace); 1 replays in this thread
  --json          print one JSON object per trace (one per line) instead of the table
  -h, --help      this help

Exit status: 0 every trace clean, 1 any mismatch or violation, 2 any
malformed or unreadable trace, or a usage error.
`;

/**
 * Whether `viommu replay <argv>` is a batch (for main.ts): more than one
 * target, a target that is a directory or a glob, or `--jobs`/`-j` given.
 */
export function isBatchReplay(argv: readonly string[]): boolean {
  const targets: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--jobs' || a === '-j' || a.startsWith('--jobs=') || (a.startsWith('-j') && a.length > 2)) return true;
    if (a === '--record') { i++; continue; }
    if (a.startsWith('-')) continue;
    targets.push(a);
  }
  if (targets.length > 1) return true;
  const t = targets[0];
  if (t === undefined) return false;
  if (hasGlob(t)) return true;
  try {
    return statSync(t).isDirectory();
  } catch {
    return false;
  }
}

class UsageError extends Error {}

/** The trace files named by the targets, in order, without duplicates. */
function expandTargets(targets: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (f: string) => { if (!seen.has(f)) { seen.add(f); out.push(f); } };
  for (const t of targets) {
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

function formatTable(results: readonly BatchResult[]): string {
  const head = ['trace', 'ops', 'expectations', 'mismatches', 'violations', 'time', 'status'];
  const rows = results.map((r) => [
    r.file, String(r.ops), String(r.expectations), String(r.mismatches), String(r.violations),
    r.ms >= 1000 ? `${(r.ms / 1000).toFixed(2)} s` : `${r.ms.toFixed(1)} ms`, statusText(r),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  // Numbers right-aligned, text left-aligned.
  const fmt = (row: string[]) => row.map((c, i) => (i >= 1 && i <= 5 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd() + '\n';
  return fmt(head) + fmt(w.map((n) => '-'.repeat(n))) + rows.map(fmt).join('');
}

/** `viommu replay` for a batch (see isBatchReplay); returns the exit status. */
export async function runBatch(argv: string[], io: CommandIo): Promise<number> {
  let files: string[];
  let jobs: number | undefined;
  let json = false;
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: argv,
        allowPositionals: true,
        options: { jobs: { type: 'string', short: 'j' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (parsed.values.help) {
      io.stdout.write(BATCH_HELP);
      return 0;
    }
    if (parsed.values.jobs !== undefined) {
      const n = Number(parsed.values.jobs);
      if (!Number.isInteger(n) || n < 1 || n > 1024) throw new UsageError(`--jobs needs a whole number from 1 to 1024, not "${parsed.values.jobs}"`);
      jobs = n;
    }
    json = parsed.values.json ?? false;
    if (parsed.positionals.length === 0) throw new UsageError('missing trace, directory or glob');
    files = expandTargets(parsed.positionals);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`viommu: ${e.message}\nRun "viommu replay --help" for usage.\n`);
      return 2;
    }
    throw e;
  }
  const results = await runBatchReplay(files, jobs === undefined ? {} : { jobs });
  if (json) {
    for (const r of results) io.stdout.write(JSON.stringify({ ...r, status: resultStatus(r) }) + '\n');
  } else {
    io.stdout.write(formatTable(results));
    for (const r of results) {
      if (r.error !== undefined) io.stderr.write(`viommu: cannot read ${r.file}: ${r.error}\n`);
      else if (r.malformed !== undefined) io.stderr.write(`viommu: ${r.file}:${r.malformed.line}: malformed trace: ${r.malformed.reason}\n`);
    }
    const count = (s: number) => results.filter((r) => resultStatus(r) === s).length;
    const total = results.reduce((a, r) => a + r.ms, 0);
    io.stdout.write(`${results.length} trace${results.length === 1 ? '' : 's'}: ${count(0)} clean, ${count(1)} failed, ${count(2)} malformed or unreadable (${(total / 1000).toFixed(2)} s replay time)\n`);
  }
  return batchStatus(results);
}
