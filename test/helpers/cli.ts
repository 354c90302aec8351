/** Captured standard output and error for CLI tests (the commands take their streams as `io`). */
import { Readable, Writable } from 'node:stream';
import { main } from '../../src/cli/main';

/** A writable that keeps what it was given; `isTTY`/`columns` as a test wants them. */
export class Capture extends Writable {
  text = '';
  bytes: Buffer[] = [];
  isTTY = false;
  columns = 80;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    this.bytes.push(Buffer.from(chunk));
    cb();
  }
}

/** A pair of captures to pass as `io` (standard input: `stdin`, default empty), with what was written. */
export function sink(stdin: Buffer | string = ''): {
  io: { stdout: Capture; stderr: Capture; stdin: Readable }; readonly out: string; readonly err: string;
} {
  const io = { stdout: new Capture(), stderr: new Capture(), stdin: Readable.from([Buffer.from(stdin)]) };
  return { io, get out() { return io.stdout.text; }, get err() { return io.stderr.text; } };
}

/** Runs `viommu ...argv` in-process. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string; stdout: Buffer }> {
  return cli.withStdin('', ...argv);
}

/** Runs `viommu ...argv` in-process with `stdin` as standard input (what `-` reads). */
cli.withStdin = async (stdin: Buffer | string, ...argv: string[]): Promise<{ code: number; out: string; err: string; stdout: Buffer }> => {
  const s = sink(stdin);
  const code = await main(argv, s.io);
  return { code, out: s.out, err: s.err, stdout: Buffer.concat(s.io.stdout.bytes) };
};
