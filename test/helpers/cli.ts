/** Captured standard output and error for CLI tests (the commands take their streams as `io`). */
import { Writable } from 'node:stream';
import { main } from '../../src/cli/main';

/** A writable that keeps what it was given; `isTTY`/`columns` as a test wants them. */
export class Capture extends Writable {
  text = '';
  isTTY = false;
  columns = 80;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** A pair of captures to pass as `io`, with what was written. */
export function sink(): { io: { stdout: Capture; stderr: Capture }; readonly out: string; readonly err: string } {
  const io = { stdout: new Capture(), stderr: new Capture() };
  return { io, get out() { return io.stdout.text; }, get err() { return io.stderr.text; } };
}

/** Runs `viommu ...argv` in-process. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const s = sink();
  const code = await main(argv, s.io);
  return { code, out: s.out, err: s.err };
}
