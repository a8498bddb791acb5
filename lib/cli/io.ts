// Where a command reads and writes: the process's streams by default, fakes in tests.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
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
  write(text: string): Promise<void>;
  /** Finishes the output: renames the temp file into place, or flushes the stream. */
  close(): Promise<void>;
  /** Drops a partial file output (on error): the destination is left as it was. */
  abort(): void;
}

export function openTextSink(out: string, io: CliIo): TextSink {
  if (out === '-') return streamSink(io.stdout);
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${Date.now()}`);
  const fd = openSync(tmp, 'w');
  let open = true;
  return {
    async write(text) {
      writeSync(fd, text);
    },
    async close() {
      if (!open) return;
      open = false;
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, out);
    },
    abort() {
      if (!open) return;
      open = false;
      closeSync(fd);
      rmSync(tmp, { force: true });
    },
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
      if (!stream.write(text)) await Promise.race([once(stream, 'drain'), once(stream, 'error')]);
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
