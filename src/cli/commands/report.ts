/**
 * `viommu report <trace> -o report.html`: replays the trace and writes a
 * self-contained HTML page with a picture of each listener's view over the
 * run, its violations and faults, and the mismatch list (src/report).
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { collectRun } from '../../report/collect';
import { renderReport } from '../../report/html';
import type { CommandIo } from './batch';

export const REPORT_HELP = `Usage: viommu report <trace> -o OUT.html [--max-marks N]

Replays <trace> (.jsonl or .jsonl.gz) and writes a self-contained HTML page
(no external resources): for each listener, a picture of its view over the
run (compressed IOVA axis across, trace line down) with MAP, UNMAP,
contract violations and translation faults marked, then the violations and
the mismatches.

Options:
  -o, --output OUT   the HTML file to write (required)
  --max-marks N      draw at most N marks (default 20000; the counts stay exact)
  -h, --help         this help

Exit status: as replay (0 all held, 1 mismatch or violation, 2 malformed
trace — the page is still written, up to the bad line — unreadable file or
usage error).
`;

/** `viommu report`; returns the exit status. */
export async function runReport(argv: string[], io: CommandIo): Promise<number> {
  const usage = (msg: string) => {
    io.stderr.write(`viommu: ${msg}\nRun "viommu report --help" for usage.\n`);
    return 2;
  };
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { output: { type: 'string', short: 'o' }, 'max-marks': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) {
    io.stdout.write(REPORT_HELP);
    return 0;
  }
  if (parsed.positionals.length === 0) return usage('missing trace file');
  if (parsed.positionals.length > 1) return usage(`unexpected argument "${parsed.positionals[1]}"`);
  if (v.output === undefined || v.output === '') return usage('missing -o OUT.html');
  let maxMarks = 20000;
  if (v['max-marks'] !== undefined) {
    maxMarks = Number(v['max-marks']);
    if (!Number.isInteger(maxMarks) || maxMarks < 0) return usage(`--max-marks needs a whole number, not "${v['max-marks']}"`);
  }
  const file = parsed.positionals[0]!;
  let run;
  try {
    run = await collectRun(file, { maxMarks });
  } catch (e) {
    io.stderr.write(`viommu: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  try {
    await writeFile(v.output, renderReport(run, file));
  } catch (e) {
    io.stderr.write(`viommu: cannot write ${v.output}: ${(e as Error).message}\n`);
    return 2;
  }
  const r = run.report;
  io.stdout.write(`report ${v.output}: ${file}: ${r.events} events, ${r.mismatchCount} mismatches, ${r.violationCount} violations, `
    + `${run.totals.map} MAP, ${run.totals.unmap} UNMAP, ${run.totals.fault} faults${run.marks.length < run.totals.map + run.totals.unmap + run.totals.violation + run.totals.fault ? ` (${run.marks.length} marks drawn)` : ''}\n`);
  if (r.malformed) {
    io.stderr.write(`viommu: ${file}:${r.malformed.line}: malformed trace: ${r.malformed.reason}\n`);
    return 2;
  }
  return r.ok ? 0 : 1;
}
