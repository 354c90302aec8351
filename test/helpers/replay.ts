/** Replays a trace file and lists everything that did not hold, one line each (empty when clean). */
import { replayTrace } from '../../src/trace';

export async function replayProblems(file: string): Promise<{ problems: string[]; events: number; ok: boolean }> {
  const report = await replayTrace(file);
  const problems = [
    ...(report.malformed ? [`malformed at line ${report.malformed.line}: ${report.malformed.reason}`] : []),
    ...report.mismatches.map((m) => `line ${m.line} ${m.op}: ${m.message}`),
    ...report.violations.map((v) => `line ${v.line} ${v.rule}: ${v.message}`),
  ];
  return { problems, events: report.events, ok: report.ok };
}
