/** Shared by the recorder tests: a recorded trace (its lines) replayed, and held to being clean. */
import { replayTrace } from '../../src/trace';
import type { ReplayReport } from '../../src/trace';

/** The lines as a trace file's bytes. */
export const traceBytes = (lines: readonly string[]): Buffer => Buffer.from(lines.join('\n') + '\n');

/** Replays `lines`; expects no mismatch, no contract violation and every event replayed. Returns the report. */
export async function expectCleanReplay(lines: readonly string[]): Promise<ReplayReport> {
  const report = await replayTrace(traceBytes(lines));
  expect(report.mismatches).toEqual([]);
  expect(report.violations).toEqual([]);
  expect(report.ok).toBe(true);
  expect(report.events).toBe(lines.length - 1);
  return report;
}
