/**
 * What a command reads and writes. Injected so that `main(argv, io)` runs in
 * tests without touching the process's own streams.
 */
import { errorMessage } from '../trace/batch';
import type { TraceInput } from '../trace/reader';

/** Where the command writes, and what `-` reads; process.stdout / stderr / stdin by default. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** What an input named `-` reads (default process.stdin). */
  stdin?: NodeJS.ReadableStream;
}

/** The process's own streams. */
export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}

/** A trace or log input: `-` is standard input, anything else a path. */
export function inputOf(name: string, io: CliIo): TraceInput {
  return name === '-' ? ((io.stdin ?? process.stdin) as unknown as AsyncIterable<Uint8Array>) : name;
}

/** An I/O error as one line: the errno code first when there is one (ENOENT, ENOSPC, ...). */
export function ioErrorText(e: unknown): string {
  const message = errorMessage(e);
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && !message.startsWith(code) ? `${code}: ${message}` : message;
}
