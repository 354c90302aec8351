/**
 * `viommu import qemu-log <log[.gz]> [-o OUT]`: a QEMU `-trace 'vtd_*'` log
 * (`-`: standard input) into a model-none trace (src/trace/importers/qemu-log).
 * Without -o, or with `-o -`, the trace goes to stdout and the summary to
 * stderr. Exit status 0, or 2 when the input cannot be read, is not a QEMU
 * intel-iommu trace log, or the output cannot be written.
 */
import { formatImportSummary, importQemuLog, isQemuTraceLog } from '../../trace/importers/qemu-log';
import { ioErrorText } from '../io';
import type { CliIo } from '../io';
import { openOutput } from '../../trace/output-file';

export async function runImportQemuLog(file: string, output: string, io: CliIo): Promise<number> {
  const fail = (msg: string): number => {
    io.stderr.write(`viommu import qemu-log: ${msg}\n`);
    return 2;
  };
  let out;
  try {
    out = await openOutput(output, io.stdout);
  } catch (e) {
    return fail(`cannot write ${output}: ${ioErrorText(e)}`);
  }
  const input = file === '-' ? (io.stdin ?? process.stdin) : file;
  let summary;
  try {
    // An output error (full disk, /dev/full) ends the import instead of waiting for 'drain' forever.
    summary = await Promise.race([importQemuLog(input, out.stream, file === '-' ? { sourceName: 'stdin' } : {}), out.failed]);
  } catch (e) {
    await out.abandon();
    return fail(out.error !== undefined ? `cannot write ${output}: ${ioErrorText(out.error)}` : ioErrorText(e));
  }
  if (!isQemuTraceLog(summary)) {
    await out.abandon();
    return fail(`${summary.source} is not a QEMU intel-iommu trace log: none of its ${summary.lines} line(s) is a vtd_* trace event `
      + `(run QEMU with -trace 'vtd_*' and the log backend)`);
  }
  try {
    await out.commit();
  } catch (e) {
    return fail(`cannot write ${output}: ${ioErrorText(e)}`);
  }
  const report = out.toStdout ? io.stderr : io.stdout;
  report.write(`viommu import qemu-log: ${formatImportSummary(summary)}`);
  if (!out.toStdout) report.write(`wrote ${output}\n`);
  return 0;
}
