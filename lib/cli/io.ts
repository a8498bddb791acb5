// Where a command reads and writes: the process's streams by default, fakes in tests.
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync, type Stats } from 'node:fs';
import { fsError } from '../io/fs-errors.js';
import { once } from 'node:events';
import { dirname, basename, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export interface CliIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean; columns?: number };
}

export function processIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
}

/** A sink for text output: a file written atomically (temp file, then rename) or a stream with backpressure. */
export interface TextSink {
  /** Writes text, or UTF-8 bytes; the caller may reuse the bytes' memory once the promise resolves. */
  write(text: string | Uint8Array): Promise<void>;
  /** Finishes the output: renames the temp file into place, or flushes the stream. */
  close(): Promise<void>;
  /** Drops a partial file output (on error): the destination is left as it was. */
  abort(): void;
}

/**
 * Opens `out` for text output. A regular file (new or existing) is written to a temporary file beside it
 * and renamed into place on close; Ctrl-C or SIGTERM meanwhile removes the temporary file, and those left
 * by killed processes (their pid is gone) are swept. An existing device or FIFO (/dev/null, a pipe) is
 * written directly: renaming over it would replace it. A folder is refused.
 */
export function openTextSink(out: string, io: CliIo): TextSink {
  if (out === '-') return streamSink(io.stdout);
  let existing: Stats | null = null;
  try {
    existing = statSync(out);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(err, 'write', out);
  }
  if (existing?.isDirectory() || (!existing && /[/\\]$/.test(out))) {
    throw new Error(`cannot write '${out}': it is a directory; --out names a file (or - for stdout)`);
  }
  if (existing && !existing.isFile()) return directSink(out);
  const prefix = `.${basename(out)}.tmp-`;
  const tmp = join(dirname(out), `${prefix}${process.pid}-${Date.now()}`);
  sweepStaleTemps(dirname(out), prefix);
  let fd: number;
  try {
    fd = openSync(tmp, 'w', 0o666);
  } catch (err) {
    throw fsError(err, 'write', out);
  }
  let open = true;
  const drop = () => {
    if (!open) return;
    open = false;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true });
  };
  // A signal's default action would leave the temporary file behind: remove it, then die of the signal.
  const onSignal = (signal: NodeJS.Signals) => {
    drop();
    process.kill(process.pid, signal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    async write(text) {
      try {
        writeAll(fd, text);
      } catch (err) {
        throw fsError(err, 'write', out);
      }
      // Let the event loop run between chunks: a signal handler (Ctrl-C) only runs there.
      await new Promise((resolve) => setImmediate(resolve));
    },
    async close() {
      if (!open) return;
      try {
        fsyncSync(fd);
        closeSync(fd);
        open = false;
        renameSync(tmp, out);
      } catch (err) {
        open = true;
        drop();
        throw fsError(err, 'write', out);
      }
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
    abort: drop,
  };
}

/** Writes all of `data` (writeSync may write less than it is given, to a pipe for one). */
function writeAll(fd: number, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** Removes `prefix<pid>-<time>` files of processes that no longer run (what a kill -9 leaves). */
function sweepStaleTemps(dir: string, prefix: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)-\d+$/.exec(name.slice(prefix.length));
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') rmSync(join(dir, name), { force: true });
    }
  }
}

/** Writes straight to an existing device or FIFO. */
function directSink(out: string): TextSink {
  let fd: number;
  try {
    fd = openSync(out, 'w');
  } catch (err) {
    throw fsError(err, 'write', out);
  }
  let open = true;
  const finish = () => {
    if (open) closeSync(fd);
    open = false;
  };
  return {
    async write(text) {
      try {
        writeAll(fd, text);
      } catch (err) {
        throw fsError(err, 'write', out);
      }
    },
    async close() {
      finish();
    },
    abort: finish,
  };
}

function streamSink(stream: Writable): TextSink {
  let broken: Error | null = null;
  const onError = (err: Error) => {
    broken = err;
  };
  stream.on('error', onError);
  return {
    async write(text) {
      if (broken) throw broken;
      // a stream may hold on to what it is given: bytes the caller will reuse are copied
      if (!stream.write(typeof text === 'string' ? text : Buffer.from(text))) await Promise.race([once(stream, 'drain'), once(stream, 'error')]);
      if (broken) throw broken;
    },
    async close() {
      stream.off('error', onError);
    },
    abort() {
      stream.off('error', onError);
    },
  };
}

/** True for the error a closed downstream pipe gives (`… | head`): output stops quietly. */
export function isBrokenPipe(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'EPIPE';
}
