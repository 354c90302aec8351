/**
 * The one JSON report every `--json` output is made of (docs/report-format.md,
 * schema docs/report-schema.json): one object per trace, on one line. A
 * single-trace `replay` or `check` prints one; a batch prints one per trace,
 * in the order of the traces, whatever the number of worker threads.
 */
import { hex } from '../core/guest-addr';
import { resultStatus } from '../trace/batch';
import type { BatchResult } from '../trace/batch';
import type { ReplayMismatch, ReplayViolation, ReportEntry } from '../trace/replay';

/** Bumped on any change a reader of the reports could notice. */
export const REPORT_SCHEMA_VERSION = 1;

/** One trace's report (docs/report-format.md). */
export interface TraceReportJson {
  schemaVersion: typeof REPORT_SCHEMA_VERSION;
  /** The command that judged the trace: `check` judges the notifier contract only. */
  command: 'replay' | 'check';
  /** The trace as named on the command line (`-` for standard input). */
  file: string;
  /** The header's model; null when the header was never read. */
  model: string | null;
  /** This trace's exit status (trace-v1 "What a replayer reports"); for `check`, mismatches do not count. */
  status: 0 | 1 | 2;
  /** status === 0. */
  ok: boolean;
  events: number;
  expectations: number;
  /** Exact counts; the lists keep the first 1000 of each. */
  mismatchCount: number;
  mismatches: ReplayMismatch[];
  violationCount: number;
  violations: Array<Omit<ReplayViolation, 'listener' | 'entry'> & { listener: string | null; entry: ReportEntry | null }>;
  malformed: { line: number; reason: string } | null;
  /** Why the trace could not be read at all; null when it could. */
  error: string | null;
  /** Wall time of this trace's replay. */
  timeMs: number;
}

/** The report of one result. */
export function traceReportJson(command: 'replay' | 'check', r: BatchResult): TraceReportJson {
  const status = resultStatus(r, command === 'check');
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    command,
    file: r.file,
    model: r.model ?? null,
    status,
    ok: status === 0,
    events: r.events,
    expectations: r.expectations,
    mismatchCount: r.mismatchCount,
    mismatches: r.mismatches,
    violationCount: r.violationCount,
    // Absent fields become null so that every report has every key.
    violations: r.violations.map((v) => ({ ...v, listener: v.listener ?? null, entry: v.entry ?? null })),
    malformed: r.malformed ?? null,
    error: r.error ?? null,
    timeMs: Math.round(r.ms * 1000) / 1000,
  };
}

/** The report as one line of JSON (bigints in mismatch values as 0x hex, as the trace writes them). */
export function traceReportLine(command: 'replay' | 'check', r: BatchResult): string {
  return JSON.stringify(traceReportJson(command, r), (_k, v: unknown) => (typeof v === 'bigint' ? hex(v) : v)) + '\n';
}
