/**
 * One replay with a tap: the trace replayer (./replay) run over the reader,
 * with a look at every event before it is applied and, optionally, at the
 * model it builds. The batch runner counts expectations through it and the
 * HTML report collects each listener's deliveries and the model's faults,
 * without changing what the replayer checks or reports.
 */
import type { IOMMUModel } from '../core/model';
import { modelFactory } from './models';
import type { ModelFactory } from './models';
import { readTrace } from './reader';
import type { ReadTraceOptions, TraceHandler, TraceInput } from './reader';
import { Replayer } from './replay';
import type { ReplayOptions, ReplayReport } from './replay';
import { TraceFormatError } from './types';
import type { TraceEvent, TraceHeader, TraceOp } from './types';

/** What a tap sees. Every callback is optional. */
export interface ReplayTap {
  /** The header, before the replayer sees it. */
  header?(header: TraceHeader): void;
  /**
   * Each event, before the replayer applies it. With `fast` (the default),
   * canonical `notify` lines of a model-none trace take the replayer's
   * byte-level fast path and are not shown here.
   */
  event?(event: TraceEvent): void;
  /** The model the replayer will drive (model traces only), to observe or wrap it; returns the model to use. */
  model?(model: IOMMUModel): IOMMUModel;
  /** Let model-none notify lines take the fast path (default true). */
  fast?: boolean;
}

/** Ops that check something against the reference run (trace-v1), when they carry `expect` where it is optional. */
export function isExpectation(ev: TraceEvent, modelNone: boolean): boolean {
  switch (ev.op as TraceOp) {
    case 'mem.expect':
    case 'view.expect':
    case 'msi.expect':
    case 'virtio.event.expect':
      return true;
    case 'notify':
      // In a model-none trace a notify line is the stream itself (a contract check, not an expectation).
      return !modelNone;
    case 'mmio.read':
    case 'dma.read':
    case 'dma.write':
    case 'translate':
    case 'virtio.config.read':
    case 'virtio.request':
      return (ev as { expect?: unknown }).expect !== undefined;
    default:
      return false;
  }
}

/** The result of a tapped replay: the replayer's report and the header (undefined when line 1 was malformed). */
export interface TappedReplay {
  report: ReplayReport;
  header: TraceHeader | undefined;
}

/**
 * Replays `file` (a path, bytes or a stream such as stdin) as `replayTrace`
 * does (same report; a malformed trace gives a report with `malformed` set;
 * an unreadable input throws), showing the events to `tap` on the way.
 */
export async function replayTapped(
  file: TraceInput, tap: ReplayTap, options: ReplayOptions & ReadTraceOptions = {},
): Promise<TappedReplay> {
  let header: TraceHeader | undefined;
  let factory: ModelFactory | undefined;
  const wrapModel = tap.model;
  const replayer = new Replayer(wrapModel === undefined ? options : {
    ...options,
    // Resolved in header() below, before the replayer asks for it.
    createModel: (config, mem) => wrapModel(factory!(config, mem)),
  });
  const handler: TraceHandler = {
    header(h) {
      header = h;
      if (wrapModel !== undefined && h.model !== 'none') {
        try {
          factory = options.createModel ?? modelFactory(h.model);
        } catch (e) {
          // The same diagnosis the replayer gives for an unknown model.
          throw new TraceFormatError(1, (e as Error).message);
        }
      }
      tap.header?.(h);
      replayer.header(h);
    },
    event(ev) {
      tap.event?.(ev);
      replayer.event(ev);
    },
  };
  if (tap.fast !== false) handler.fastLine = (buf, start, end, line) => replayer.fastLine(buf, start, end, line);
  try {
    const { lines } = await readTrace(file, handler, options);
    return { report: replayer.finish(lines), header };
  } catch (e) {
    if (e instanceof TraceFormatError) {
      const report = replayer.report(e.line - 1);
      report.malformed = { line: e.line, reason: e.reason };
      report.ok = false;
      return { report, header };
    }
    throw e;
  }
}
