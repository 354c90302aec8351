/**
 * The `viommu` command. Exit status (trace-v1 "What a replayer reports"):
 * 0 every expectation held and no contract rule was broken, 1 otherwise,
 * 2 malformed trace, unreadable file or usage error.
 */
import { stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { BATCH_HELP, isBatchReplay, runBatch } from './commands/batch';
import { REPORT_HELP, runReport } from './commands/report';
import { runImportQemuLog } from '../trace/importers/qemu-log';
import { replayTrace } from '../trace/replay';
import type { ReplayReport, ReplayViolation, ReplayMismatch, ReportEntry } from '../trace/replay';
import { TraceWriter } from '../trace/writer';
import { ProgressBar } from './progress';

/** Where the command writes; process.stdout / process.stderr by default. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

const VERSION = '0.1.0';

const HELP = `viommu: an emulated guest IOMMU (Intel VT-d), its notifier contract, and trace tools

Usage:
  viommu replay <trace> [--json] [--record OUT]   replay a trace and check every expectation
  viommu replay <dir | glob | trace...> [-j N]    replay many traces on worker threads
  viommu check <trace> [--json]                   check the notifier contract only
  viommu report <trace> -o OUT.html               HTML picture of each listener's view
  viommu import qemu-log <log> [-o OUT]           convert a QEMU trace log into a trace
  viommu help [command]                           this help, or a command's
  viommu --version

Traces are trace-v1 JSON Lines (.jsonl, or gzip-compressed).
Exit status: 0 all held, 1 mismatch or contract violation, 2 malformed trace,
unreadable file or usage error.
`;

const REPLAY_HELP = `Usage: viommu replay <trace> [--json] [--record OUT]

Replays <trace> (.jsonl or .jsonl.gz) against the model its header names
(intel-vtd, or none for a notification-only trace) and checks every
expectation (mem.expect, mmio.read, dma.*, translate, notify, view.expect,
msi.expect) and every rule of the notifier contract (C1..C10).

Options:
  --json          print one JSON report object on stdout instead of text
  --record OUT    write the same trace to OUT with every expect filled in
                  from this run (gzip-compressed when OUT ends in .gz)
  -h, --help      this help

Exit status: 0 all held, 1 mismatch or violation, 2 malformed trace (line
and reason given; nothing past it is replayed), unreadable file, usage error.
`;

const CHECK_HELP = `Usage: viommu check <trace> [--json]

Checks the notifier contract only: each notifier.add (C1) and each
notification (notify lines of a model-none trace, or what the model sends to
the trace's listeners) against C2..C6 and C10. Other expectations are not
reported. Prints each violation and a table of violations per rule and
listener.

Options:
  --json          print one JSON report object on stdout
  -h, --help      this help

Exit status: 0 no violation, 1 violations, 2 malformed trace, unreadable
file, usage error.
`;

/** A progress bar is shown for traces at least this large, on a terminal. */
const PROGRESS_MIN_BYTES = 32 << 20;

class UsageError extends Error {}

/** Entry point of the `viommu` command; returns the exit status. */
export async function main(argv: string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '-h':
      case '--help':
        io.stdout.write(HELP);
        return command === undefined ? 2 : 0;
      case '-V':
      case '--version':
        io.stdout.write(`viommu ${VERSION}\n`);
        return 0;
      case 'help': {
        const topic = rest[0];
        io.stdout.write(
          topic === 'replay' ? REPLAY_HELP + '\n' + BATCH_HELP
            : topic === 'check' ? CHECK_HELP
              : topic === 'report' ? REPORT_HELP
                : HELP,
        );
        return topic === undefined || ['replay', 'check', 'import', 'report'].includes(topic) ? 0 : 2;
      }
      case 'replay':
        // Several traces, a directory, a glob or --jobs: the batch replayer (commands/batch).
        if (isBatchReplay(rest)) return await runBatch(rest, io);
        return await replayCommand(rest, io, false);
      case 'check':
        return await replayCommand(rest, io, true);
      case 'import':
        return await importCommand(rest, io);
      case 'report':
        return await runReport(rest, io);
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`viommu: ${e.message}\nRun "viommu --help" for usage.\n`);
      return 2;
    }
    io.stderr.write(`viommu: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
}

async function importCommand(argv: string[], io: CliIo): Promise<number> {
  const [kind, ...rest] = argv;
  if (kind === undefined || kind === '-h' || kind === '--help') {
    io.stdout.write('Usage: viommu import qemu-log <log[.gz]> [-o OUT]\n');
    return kind === undefined ? 2 : 0;
  }
  if (kind !== 'qemu-log') throw new UsageError(`unknown import format "${kind}" (known: qemu-log)`);
  return runImportQemuLog(rest, io);
}

function parse(argv: string[], check: boolean): { file: string; json: boolean; record: string | undefined; help: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        ...(check ? {} : { record: { type: 'string' } }),
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values as { json?: boolean; help?: boolean; record?: string };
  if (v.help) return { file: '', json: false, record: undefined, help: true };
  if (parsed.positionals.length === 0) throw new UsageError('missing trace file');
  if (parsed.positionals.length > 1) throw new UsageError(`unexpected argument "${parsed.positionals[1]}"`);
  if (v.record === '') throw new UsageError('--record needs a file name');
  return { file: parsed.positionals[0]!, json: v.json ?? false, record: v.record, help: false };
}

async function replayCommand(argv: string[], io: CliIo, check: boolean): Promise<number> {
  const args = parse(argv, check);
  if (args.help) {
    io.stdout.write(check ? CHECK_HELP : REPLAY_HELP + '\n' + BATCH_HELP);
    return 0;
  }
  let size: number;
  try {
    const st = await stat(args.file);
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch (e) {
    io.stderr.write(`viommu: cannot read ${args.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return 2;
  }
  const bar = io.stderr.isTTY && size >= PROGRESS_MIN_BYTES ? new ProgressBar(io.stderr, size) : undefined;
  let writer: TraceWriter | undefined;
  if (args.record !== undefined) {
    try {
      writer = await TraceWriter.open(args.record);
    } catch (e) {
      io.stderr.write(`viommu: cannot write ${args.record}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      return 2;
    }
  }
  let report: ReplayReport;
  try {
    report = await replayTrace(args.file, {
      ...(writer ? { record: (line: string) => writer.line(line), afterChunk: () => writer.drained() } : {}),
      ...(bar ? { onProgress: (bytes: number) => bar.update(bytes) } : {}),
    });
  } catch (e) {
    bar?.clear();
    await writer?.abandon();
    io.stderr.write(`viommu: cannot read ${args.file}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  bar?.clear();
  if (writer && report.malformed) {
    await writer.abandon(); // nothing past a malformed line is replayed: no half trace is left behind
  } else if (writer) {
    try {
      await writer.close();
    } catch (e) {
      io.stderr.write(`viommu: cannot write ${args.record}: ${(e as Error).message}\n`);
      return 2;
    }
  }
  if (check) {
    report.mismatches = [];
    report.mismatchCount = 0;
    report.ok = report.violationCount === 0 && report.malformed === undefined;
  }
  if (args.json) {
    io.stdout.write(JSON.stringify({ file: args.file, ...report }, (_k, v: unknown) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v)) + '\n');
  } else {
    printReport(io, args.file, report, check);
  }
  if (report.malformed) {
    io.stderr.write(`viommu: ${args.file}:${report.malformed.line}: malformed trace: ${report.malformed.reason}\n`);
    return 2;
  }
  return report.ok ? 0 : 1;
}

function entryText(e: ReportEntry | undefined): string {
  if (!e) return '';
  return `${e.type ? e.type + ' ' : ''}iova ${e.iova} mask ${e.mask} -> ${e.translated} ${e.perm}`;
}

function valueText(v: unknown): string {
  if (v === null || v === undefined) return '(nothing)';
  if (typeof v === 'string') return v.length > 200 ? v.slice(0, 197) + '...' : v;
  if (Array.isArray(v) && v.length === 0) return '[] (nothing)';
  const s = JSON.stringify(v);
  return s.length > 400 ? s.slice(0, 397) + '...' : s;
}

function printMismatch(io: CliIo, m: ReplayMismatch): void {
  io.stdout.write(`line ${m.line}: ${m.op}: ${m.message}\n`);
  if (m.expected !== null || m.got !== null) {
    io.stdout.write(`  expected: ${valueText(m.expected)}\n  got:      ${valueText(m.got)}\n`);
  }
}

function printViolation(io: CliIo, v: ReplayViolation): void {
  io.stdout.write(`line ${v.line}: ${v.rule} violation${v.listener !== undefined ? ` (listener ${v.listener})` : ''}: ${v.message}\n`);
  if (v.entry) io.stdout.write(`  event: ${entryText(v.entry)}\n`);
}

function printReport(io: CliIo, file: string, r: ReplayReport, check: boolean): void {
  // In line order, mismatches and violations interleaved.
  const items: Array<{ line: number; m?: ReplayMismatch; v?: ReplayViolation }> = [
    ...r.mismatches.map((m) => ({ line: m.line, m })),
    ...r.violations.map((v) => ({ line: v.line, v })),
  ].sort((a, b) => a.line - b.line);
  for (const it of items) {
    if (it.m) printMismatch(io, it.m);
    else printViolation(io, it.v!);
  }
  const listed = r.mismatches.length + r.violations.length;
  if (listed < r.mismatchCount + r.violationCount) {
    io.stdout.write(`(${r.mismatchCount + r.violationCount - listed} more not listed)\n`);
  }
  if (check) printRuleTable(io, r);
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  const status = r.malformed ? 'MALFORMED' : r.ok ? 'OK' : 'FAILED';
  const parts = [plural(r.events, 'event')];
  if (!check) parts.push(plural(r.mismatchCount, 'mismatch').replace('mismatchs', 'mismatches'));
  parts.push(plural(r.violationCount, 'violation'));
  io.stdout.write(`${check ? 'check' : 'replay'} ${file} (model ${r.model || '?'}): ${parts.join(', ')}: ${status}\n`);
}

/** `check`: violations per rule and listener. */
function printRuleTable(io: CliIo, r: ReplayReport): void {
  if (r.violations.length === 0) return;
  const counts = new Map<string, number>();
  for (const v of r.violations) {
    const key = `${v.rule}\t${v.listener ?? '-'}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const rows = [...counts].map(([k, n]) => [...k.split('\t'), String(n)] as [string, string, string])
    .sort((a, b) => Number(a[0].slice(1)) - Number(b[0].slice(1)) || a[1].localeCompare(b[1]));
  const head: [string, string, string] = ['rule', 'listener', 'count'];
  const w = [0, 1, 2].map((i) => Math.max(head[i]!.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) => row.map((c, i) => (i === 2 ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ') + '\n';
  io.stdout.write('\n' + fmt(head) + fmt(w.map((n) => '-'.repeat(n))));
  for (const row of rows) io.stdout.write(fmt(row));
  io.stdout.write('\n');
}
