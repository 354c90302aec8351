/**
 * `viommu replay <trace>` and `viommu check <trace>` on one trace (`-`:
 * standard input). Exit status (trace-v1 "What a replayer reports"): 0 every
 * expectation held and no contract rule was broken (check: no rule broken),
 * 1 otherwise, 2 malformed trace (its line and reason are printed; nothing
 * past it is replayed), unreadable input, unwritable output.
 */
import { hex } from '../../core/guest-addr';
import { stat } from 'node:fs/promises';
import { replaySummary, resultStatus } from '../../trace/batch';
import type { BatchResult, SummaryOptions } from '../../trace/batch';
import type { ReplayMismatch, ReplayViolation, ReportEntry } from '../../trace/replay';
import { inputOf, ioErrorText } from '../io';
import type { CliIo } from '../io';
import { openOutput } from '../../trace/output-file';
import type { OutputFile } from '../../trace/output-file';
import { TraceWriter } from '../../trace/writer';
import { startProgress } from '../progress';
import type { Progress } from '../progress';
import { traceReportLine } from '../report-json';
import { textTable } from '../table';

/** A progress bar is shown for traces at least this large, on a terminal. */
const PROGRESS_MIN_BYTES = 32 << 20;

export interface ReplayArgs {
  json: boolean;
  /** `replay --record OUT` (`-`: stdout). */
  record?: string;
}

/** `viommu replay <trace>` (check false) or `viommu check <trace>`; returns the exit status. */
export async function replayOne(file: string, args: ReplayArgs, io: CliIo, check: boolean): Promise<number> {
  let out: OutputFile | undefined;
  if (args.record !== undefined) {
    try {
      out = await openOutput(args.record, io.stdout, { gzip: args.record.endsWith('.gz') });
    } catch (e) {
      io.stderr.write(`viommu: cannot write ${args.record}: ${ioErrorText(e)}\n`);
      return 2;
    }
  }
  // With the recorded trace on stdout, the report goes to stderr.
  const reportTo = out?.toStdout ? io.stderr : io.stdout;
  const lines = out && TraceWriter.over(out);
  const bar = await progressFor(file, io);
  const options: SummaryOptions = {};
  if (lines) {
    options.record = (line) => lines.line(line);
    options.afterChunk = () => lines.drained();
  }
  if (bar) options.onProgress = (bytes) => bar.update(bytes);
  let r: BatchResult;
  try {
    r = await replaySummary(file, options, inputOf(file, io));
  } finally {
    bar?.stop();
  }
  if (out && lines) {
    if (r.malformed !== undefined || r.error !== undefined) {
      await lines.abandon(); // nothing past a malformed line is replayed: no half trace is left in place of OUT
    } else {
      try {
        await lines.close();
      } catch (e) {
        io.stderr.write(`viommu: cannot write ${args.record}: ${ioErrorText(e)}\n`);
        return 2;
      }
    }
  }
  if (args.json) reportTo.write(traceReportLine(check ? 'check' : 'replay', r));
  else if (r.error === undefined) printReport(reportTo, r, check);
  if (r.error !== undefined) io.stderr.write(`viommu: cannot read ${file}: ${r.error}\n`);
  else if (r.malformed) io.stderr.write(`viommu: ${file}:${r.malformed.line}: malformed trace: ${r.malformed.reason}\n`);
  return resultStatus(r, check);
}

/** A byte-count bar for a large trace file when stderr is a terminal. */
async function progressFor(file: string, io: CliIo): Promise<Progress | undefined> {
  if (file === '-' || io.stderr.isTTY !== true) return undefined;
  try {
    const st = await stat(file);
    return st.isFile() && st.size >= PROGRESS_MIN_BYTES ? startProgress(io.stderr, st.size, 'bytes') : undefined;
  } catch {
    return undefined; // the replay reports why it cannot be read
  }
}

function entryText(e: ReportEntry | undefined): string {
  if (!e) return '';
  return `${e.type ? e.type + ' ' : ''}iova ${e.iova} mask ${e.mask} -> ${e.translated} ${e.perm}`;
}

function valueText(v: unknown): string {
  if (v === null || v === undefined) return '(nothing)';
  if (typeof v === 'string') return v.length > 200 ? v.slice(0, 197) + '...' : v;
  if (Array.isArray(v) && v.length === 0) return '[] (nothing)';
  const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? hex(x) : x));
  return s.length > 400 ? s.slice(0, 397) + '...' : s;
}

function printMismatch(out: NodeJS.WritableStream, m: ReplayMismatch): void {
  out.write(`line ${m.line}: ${m.op}: ${m.message}\n`);
  if (m.expected !== null || m.got !== null) {
    out.write(`  expected: ${valueText(m.expected)}\n  got:      ${valueText(m.got)}\n`);
  }
}

function printViolation(out: NodeJS.WritableStream, v: ReplayViolation): void {
  out.write(`line ${v.line}: ${v.rule} violation${v.listener !== undefined ? ` (listener ${v.listener})` : ''}: ${v.message}\n`);
  if (v.entry) out.write(`  event: ${entryText(v.entry)}\n`);
}

const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : w.endsWith('h') ? 'es' : 's'}`;

/** The text report: findings in line order, then (check) the rule table, then one summary line. */
function printReport(out: NodeJS.WritableStream, r: BatchResult, check: boolean): void {
  // check is about the notifier contract only: mismatches are counted in --json, not listed here.
  const mismatches = check ? [] : r.mismatches;
  const items: Array<{ line: number; m?: ReplayMismatch; v?: ReplayViolation }> = [
    ...mismatches.map((m) => ({ line: m.line, m })),
    ...r.violations.map((v) => ({ line: v.line, v })),
  ].sort((a, b) => a.line - b.line);
  for (const it of items) {
    if (it.m) printMismatch(out, it.m);
    else printViolation(out, it.v!);
  }
  const total = (check ? 0 : r.mismatchCount) + r.violationCount;
  if (items.length < total) out.write(`(${total - items.length} more not listed)\n`);
  if (check) printRuleTable(out, r.violations);
  const status = r.malformed ? 'MALFORMED' : resultStatus(r, check) === 0 ? 'OK' : 'FAILED';
  const parts = [plural(r.events, 'event')];
  if (!check) parts.push(plural(r.mismatchCount, 'mismatch'));
  parts.push(plural(r.violationCount, 'violation'));
  out.write(`${check ? 'check' : 'replay'} ${r.file} (model ${r.model ?? '?'}): ${parts.join(', ')}: ${status}\n`);
}

/** `check`: violations per rule and listener. */
function printRuleTable(out: NodeJS.WritableStream, violations: readonly ReplayViolation[]): void {
  if (violations.length === 0) return;
  const counts = new Map<string, number>();
  for (const v of violations) {
    const key = `${v.rule}\t${v.listener ?? '-'}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const rows = [...counts].map(([k, n]) => [...k.split('\t'), String(n)] as [string, string, string])
    .sort((a, b) => Number(a[0].slice(1)) - Number(b[0].slice(1)) || a[1].localeCompare(b[1]));
  out.write('\n' + textTable(['rule', 'listener', 'count'], rows, [2]) + '\n');
}
