/**
 * `viommu report <trace> -o report.html`: replays the trace and writes a
 * self-contained HTML page with a picture of each listener's view over the
 * run, its violations and faults, and the mismatch list (src/report).
 */
import { collectRun } from '../../report/collect';
import { renderReport } from '../../report/html';
import { inputOf, ioErrorText } from '../io';
import type { CliIo } from '../io';
import { openOutput } from '../../trace/output-file';

/** `viommu report`; returns the exit status (replay's). */
export async function runReport(file: string, options: { output: string; maxMarks: number }, io: CliIo): Promise<number> {
  let out;
  try {
    out = await openOutput(options.output, io.stdout);
  } catch (e) {
    io.stderr.write(`viommu: cannot write ${options.output}: ${ioErrorText(e)}\n`);
    return 2;
  }
  let run;
  try {
    run = await collectRun(inputOf(file, io), { maxMarks: options.maxMarks });
  } catch (e) {
    await out.abandon();
    io.stderr.write(`viommu: cannot read ${file}: ${ioErrorText(e)}\n`);
    return 2;
  }
  try {
    out.stream.write(renderReport(run, file));
    await out.commit();
  } catch (e) {
    io.stderr.write(`viommu: cannot write ${options.output}: ${ioErrorText(e)}\n`);
    return 2;
  }
  const r = run.report;
  // With the page on stdout, the summary goes to stderr.
  (out.toStdout ? io.stderr : io.stdout).write(`report ${options.output}: ${file}: ${r.events} events, ${r.mismatchCount} mismatches, ${r.violationCount} violations, `
    + `${run.totals.map} MAP, ${run.totals.unmap} UNMAP, ${run.totals.fault} faults${run.marks.length < run.totals.map + run.totals.unmap + run.totals.violation + run.totals.fault ? ` (${run.marks.length} marks drawn)` : ''}\n`);
  if (r.malformed) {
    io.stderr.write(`viommu: ${file}:${r.malformed.line}: malformed trace: ${r.malformed.reason}\n`);
    return 2;
  }
  return r.ok ? 0 : 1;
}
