/**
 * The `viommu` command (arguments parsed by commander). Exit status
 * (trace-v1 "What a replayer reports"): 0 every expectation held and no
 * contract rule was broken, 1 otherwise, 2 malformed trace, unreadable
 * file or usage error (commander's own errors included: an unknown option
 * or command, a missing argument). `main` never exits the process: the
 * status is returned, so that tests run it in-process with their own `io`.
 */
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { isBatchReplay, expandTargets, runBatch, UsageError } from './commands/batch';
import { runImportQemuLog } from './commands/import';
import { runReport } from './commands/report';
import { replayOne } from './commands/replay';
import { errorMessage } from '../trace/batch';
import { processIo } from './io';
import type { CliIo } from './io';
import { packageVersion } from './version';

export type { CliIo } from './io';

const EXIT_STATUS = `
Exit status (trace-v1): 0 every expectation held and no contract rule was
broken, 1 a mismatch or a violation, 2 a malformed trace (its line and
reason are printed; nothing past it is replayed), an unreadable file or a
usage error.`;

const REPLAY_DETAILS = `
One trace: replays it against the model its header names (intel-vtd, or
none for a notification-only trace) and checks every expectation
(mem.expect, mmio.read, dma.*, translate, notify, view.expect, msi.expect)
and every rule of the notifier contract (C1..C10). A trace is trace-v1
JSON Lines, plain or gzip-compressed; - reads it from standard input.

Many traces (several files, a directory, a glob, or --jobs): each is
replayed on its own, on N worker threads, with one row per trace: events,
expectations (lines that check something against the reference run),
mismatches, contract violations, time, status. A directory means every
*.jsonl / *.jsonl.gz under it; a glob may use * and ? (within a path
segment) and ** (any number of directories): quote it so that the shell
leaves it alone. The batch's exit status is its worst trace's. A progress
bar appears on stderr when it is a terminal.

--json prints one report object per trace, one per line, in the same shape
for one trace or many (docs/report-format.md).`;

const CHECK_DETAILS = `
Checks the notifier contract only: each notifier.add (C1) and each
notification (the notify lines of a model-none trace, or what the model
sends to the trace's listeners) against C2..C6 and C10. Lists each
violation, then a table of violations per rule and listener. Mismatches of
other expectations do not change the exit status (--json still counts them).`;

const CHECK_EXIT = `
Exit status: 0 no violation, 1 violations, 2 a malformed trace, an
unreadable file or a usage error.`;

const REPORT_DETAILS = `
Writes one self-contained HTML page (no external resources): for each
listener, a picture of its view over the run (compressed IOVA axis across,
trace line down) with MAP, UNMAP, contract violations and translation
faults marked, then the violations and the mismatches. - as the trace reads
standard input; -o - writes the page to standard output.`;

const REPORT_EXIT = `
Exit status: as replay's (on a malformed trace the page is still written,
up to the bad line).`;

const IMPORT_DETAILS = `
Formats: qemu-log, the text log QEMU's intel-iommu prints with
-trace 'vtd_*' (log backend; -msg timestamp=on prefixes are fine), plain or
gzip-compressed (detected by content). Each vtd_page_walk_one line is one
notification QEMU delivered; the trace declares one MAP|UNMAP listener per
device address space. The summary (lines read, used and skipped per event
kind) goes to stdout, or to stderr when the trace does. - as the log reads
standard input.`;

const IMPORT_EXIT = `
Exit status: 0 imported, 2 the log cannot be read or is not a QEMU
intel-iommu trace log (no vtd_* line at all), the output cannot be written,
or a usage error.`;

/** Output options name a file, or `-` for standard output. */
const FILE_HINT = '(- for standard output)';

/** An option argument parser for whole numbers in [min, max]. */
function wholeNumber(min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`It must be a whole number from ${min} to ${max}.`);
    }
    return n;
  };
}

/** The command tree; `run` receives each action's exit status. */
function program(io: CliIo, run: (status: Promise<number>) => void): Command {
  const p = new Command('viommu');
  p.description('An emulated guest IOMMU (Intel VT-d), its notifier contract, and trace tools.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'this help')
    .helpCommand(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => { io.stdout.write(s); },
      writeErr: (s) => { io.stderr.write(s); },
      outputError: (s, write) => write(`viommu: ${s}`),
    })
    .showSuggestionAfterError(true)
    .showHelpAfterError('(run "viommu --help" for usage)')
    .addHelpText('after', EXIT_STATUS);

  // Every command's help: usage, summary and details, arguments, options, exit status.
  const sub = (name: string, summary: string, details: string, exit: string): Command =>
    p.command(name).summary(summary).description(summary + '\n' + details)
      .helpOption('-h, --help', 'this help')
      .showHelpAfterError(`(run "viommu ${name} --help" for usage)`)
      .addHelpText('after', exit);

  sub('replay', 'replay traces and check every expectation and contract rule', REPLAY_DETAILS, EXIT_STATUS)
    .argument('<trace...>', 'trace files (- for standard input), directories or globs')
    .option('--json', 'print one JSON report per trace instead of text')
    .option('--record <OUT>', `write the trace again with every expect filled in from this run (gzip when OUT ends in .gz; one trace only) ${FILE_HINT}`)
    .addOption(new Option('-j, --jobs <N>', 'worker threads for many traces (default: one per core, at most one per trace; 1: this thread)').argParser(wholeNumber(1, 1024)))
    .action((targets: string[], o: { json?: boolean; record?: string; jobs?: number }) => {
      if (isBatchReplay(targets, o.jobs)) {
        if (o.record !== undefined) throw new UsageError('--record takes one trace');
        const files = expandTargets(targets);
        run(runBatch(files, { json: o.json ?? false, ...(o.jobs === undefined ? {} : { jobs: o.jobs }) }, io));
      } else {
        run(replayOne(targets[0]!, { json: o.json ?? false, ...(o.record === undefined ? {} : { record: o.record }) }, io, false));
      }
    });

  sub('check', 'check the notifier contract only (C1..C6, C10)', CHECK_DETAILS, CHECK_EXIT)
    .argument('<trace>', 'trace file (- for standard input)')
    .option('--json', 'print one JSON report instead of text')
    .action((trace: string, o: { json?: boolean }) => {
      run(replayOne(trace, { json: o.json ?? false }, io, true));
    });

  sub('report', 'write an HTML picture of each listener\'s view', REPORT_DETAILS, REPORT_EXIT)
    .argument('<trace>', 'trace file (- for standard input)')
    .requiredOption('-o, --output <OUT>', `the HTML file to write ${FILE_HINT}`)
    .addOption(new Option('--max-marks <N>', 'draw at most N notification and fault marks (the counts stay exact)').default(20000)
      .argParser(wholeNumber(0, Number.MAX_SAFE_INTEGER)))
    .action((trace: string, o: { output: string; maxMarks: number }) => {
      run(runReport(trace, { output: o.output, maxMarks: o.maxMarks }, io));
    });

  sub('import', 'convert a QEMU trace log into a trace', IMPORT_DETAILS, IMPORT_EXIT)
    .addArgument(new Argument('<format>', 'the log\'s format').choices(['qemu-log']))
    .argument('<log>', 'the log, .log or .log.gz (- for standard input)')
    .option('-o, --output <OUT>', `the trace to write ${FILE_HINT}`, '-')
    .action((_format: string, log: string, o: { output: string }) => {
      run(runImportQemuLog(log, o.output, io));
    });

  // `help [command]`: commander's own would print the general help for an unknown command and exit 0.
  p.command('help').summary('this help, or a command\'s').description('Prints this help, or a command\'s.')
    .argument('[command]', 'the command')
    .action((topic: string | undefined) => {
      if (topic === undefined) {
        p.outputHelp();
      } else {
        const c = p.commands.find((x) => x.name() === topic && x.name() !== 'help');
        if (c === undefined) throw new UsageError(`unknown command "${topic}" (commands: ${p.commands.map((x) => x.name()).join(', ')})`);
        c.outputHelp();
      }
      run(Promise.resolve(0));
    });
  return p;
}

/** Entry point of the `viommu` command; returns the exit status. */
export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  let status: Promise<number> = Promise.resolve(0);
  const p = program(io, (s) => {
    status = s;
    s.catch(() => undefined); // awaited below, once parsing has finished; never reported as unhandled meanwhile
  });
  try {
    await p.parseAsync(argv, { from: 'user' });
    return await status;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end parsing with exit code 0; a bare `viommu` (help on stderr) and every parse error are usage errors.
      if (e.exitCode === 0 && argv.length > 0) return 0;
      return 2;
    }
    if (e instanceof UsageError) {
      io.stderr.write(`viommu: ${e.message}\nRun "viommu --help" for usage.\n`);
      return 2;
    }
    io.stderr.write(`viommu: ${errorMessage(e)}\n`);
    return 2;
  }
}
