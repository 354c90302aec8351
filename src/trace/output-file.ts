/**
 * Where an output file goes: `TraceWriter.open()` and the CLI's `replay
 * --record OUT`, `report -o OUT` and `import qemu-log -o OUT` follow one rule
 * (issue 12, item 2):
 *
 * - `-` is standard output (the command's own report then goes to stderr);
 * - a symbolic link is followed: its target is written and the link stays
 *   a link (as `cp` or a shell redirection do);
 * - an existing file that is not a regular file (a device such as
 *   /dev/null or /dev/full, a FIFO, a socket) is written through, never
 *   replaced: renaming over it would put a regular file where the node was;
 * - a regular file, or a new one, is written to a temporary file beside it
 *   and renamed over it only by `commit()`: a failed or abandoned run leaves
 *   the old file as it was, and `--record` onto the trace being read cannot
 *   destroy it.
 */
import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { lstat, readlink, rename, rm, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createGzip } from 'node:zlib';

/** An output being written; finish with `commit()` or `abandon()`. */
export interface OutputFile {
  /** Where to write (a gzip stream in front of the file when asked for). */
  readonly stream: NodeJS.WritableStream;
  /** True when the output is standard output (`-`). */
  readonly toStdout: boolean;
  /** The first write error, if any so far (writing on after one is pointless: check it). */
  readonly error: Error | undefined;
  /** Rejects with the first write error (never resolves): race it against a wait for 'drain'. */
  readonly failed: Promise<never>;
  /** Flushes everything and puts the file in place; rejects with the first write error (the temporary file is then removed). */
  commit(): Promise<void>;
  /** Gives up: a regular file keeps its old content; what went to stdout or through a special file stays written. */
  abandon(): Promise<void>;
}

/** Symbolic links resolve at most this deep (Linux's own limit, MAXSYMLINKS). */
const MAX_LINKS = 40;

/**
 * The path a write to `path` lands on: symbolic links followed one by one, so
 * that a dangling link still names the file that writing through it creates.
 */
async function followLinks(path: string): Promise<string> {
  let p = path;
  for (let i = 0; i < MAX_LINKS; i++) {
    let isLink: boolean;
    try {
      isLink = (await lstat(p)).isSymbolicLink();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return p; // created by the write
      throw e;
    }
    if (!isLink) return p;
    p = resolve(dirname(p), await readlink(p));
  }
  throw Object.assign(new Error(`ELOOP: too many symbolic links: ${path}`), { code: 'ELOOP' });
}

/**
 * Opens `name` for writing by the rule above (gzip-compressed when `gzip`).
 * Rejects with the OS error when it cannot be opened, before anything is
 * written, so that a command fails before doing its work.
 */
export async function openOutput(name: string, stdout: NodeJS.WritableStream, options: { gzip?: boolean } = {}): Promise<OutputFile> {
  const toStdout = name === '-';
  let file: WriteStream | undefined;
  let tmp: string | undefined;
  let target = name;
  if (!toStdout) {
    target = await followLinks(name);
    let special = false;
    try {
      special = !(await stat(target)).isFile();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    tmp = special ? undefined : `${target}.${process.pid}.tmp`;
    const f = createWriteStream(tmp ?? target);
    await new Promise<void>((ok, fail) => {
      f.once('ready', () => { f.off('error', fail); ok(); });
      f.once('error', fail);
    });
    file = f;
  }
  const sinkOf = file ?? stdout;
  let error: Error | undefined;
  let fail: (e: Error) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => { fail = reject; });
  failed.catch(() => undefined); // observed through `error` and commit() as well
  const onError = (e: Error) => {
    if (error === undefined) { error = e; fail(e); }
  };
  if (file) file.on('error', onError);
  let stream: NodeJS.WritableStream = sinkOf;
  let gz: ReturnType<typeof createGzip> | undefined;
  if (options.gzip) {
    gz = createGzip();
    gz.on('error', onError);
    gz.pipe(sinkOf as NodeJS.WritableStream, { end: file !== undefined }); // stdout is not ours to end
    stream = gz;
  }

  const finishStdout = async (): Promise<void> => {
    if (gz) {
      const g = gz;
      await new Promise<void>((ok) => { g.once('end', () => ok()); g.end(); });
    }
    // Resolves once everything written before has been handed to stdout.
    await new Promise<void>((ok) => { stdout.write('', () => ok()); });
  };
  const finishFile = async (f: WriteStream): Promise<void> => {
    if (error === undefined) {
      await new Promise<void>((ok) => {
        f.once('close', () => ok());
        (gz ?? f).end();
      });
    } else {
      f.destroy();
    }
  };

  return {
    stream,
    toStdout,
    get error() { return error; },
    failed,
    async commit() {
      if (file === undefined) {
        await finishStdout();
      } else {
        await finishFile(file);
      }
      if (error !== undefined) {
        if (tmp !== undefined) await rm(tmp, { force: true });
        throw error;
      }
      if (tmp !== undefined) await rename(tmp, target);
    },
    async abandon() {
      gz?.destroy();
      file?.destroy();
      if (tmp !== undefined) await rm(tmp, { force: true });
    },
  };
}
