/**
 * Progress bars on the terminal (cli-progress): bytes read of one large
 * trace, or traces finished in a batch. Drawn only when the stream is a
 * terminal (so nothing lands in redirected stderr or a CI log), on stderr so
 * that stdout stays the report, and erased when done.
 */
import { SingleBar } from 'cli-progress';

/** A running bar; `stop()` erases it (always call it: the bar's redraw timer runs until then). */
export interface Progress {
  update(value: number): void;
  stop(): void;
}

const MIB = 1 << 20;

/**
 * Starts a bar counting `total` bytes or traces on `stream`, or returns
 * undefined when `stream` is not a terminal.
 */
export function startProgress(
  stream: NodeJS.WritableStream & { isTTY?: boolean },
  total: number,
  unit: 'bytes' | 'traces',
): Progress | undefined {
  if (stream.isTTY !== true) return undefined;
  const bytes = unit === 'bytes';
  const bar = new SingleBar({
    stream: stream as NodeJS.WritableStream,
    format: bytes
      ? '[{bar}] {percentage}% {doneMiB}/{totalMiB} MiB, eta {eta_formatted}'
      : '[{bar}] {percentage}% {value}/{total} traces, eta {eta_formatted}',
    barCompleteChar: '#',
    barIncompleteChar: '.',
    barsize: 30,
    clearOnComplete: true,
    hideCursor: false,
    fps: 10,
  });
  const mib = (n: number) => (n / MIB).toFixed(0);
  bar.start(total, 0, bytes ? { doneMiB: '0', totalMiB: mib(total) } : {});
  return {
    update: (value) => bar.update(value, bytes ? { doneMiB: mib(value) } : {}),
    stop: () => bar.stop(),
  };
}
