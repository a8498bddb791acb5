// Shared by `verify` and `solve`: one JSON output line per input line (blank lines included), in order; a
// malformed input line, or one whose record the command refuses, gets an output line saying why (and a
// message on stderr), processing goes on, and the exit status is 1.
import { existsSync } from 'node:fs';
import { parsePuzzleLine, readLines, type PuzzleRecord } from '../puzzle/jsonl.js';
import { CliError } from './errors.js';
import { openTextSink, type CliIo } from './io.js';

export interface JsonlMap {
  command: string;
  input: string;
  output: string;
  /** String fields every line must have. */
  need: readonly ('response' | 'prompt')[];
  /** The output object for a good record (an error thrown here answers that line as malformed). */
  map(record: PuzzleRecord): object;
  /** The output object for a line that could not be read. */
  malformed(error: string): object;
}

export async function mapJsonl(spec: JsonlMap, io: CliIo): Promise<number> {
  if (spec.input !== '-' && !existsSync(spec.input)) {
    throw new CliError(`puzzle-llama ${spec.command}: --in file '${spec.input}' does not exist`);
  }
  const sink = openTextSink(spec.output, io);
  let total = 0;
  let bad = 0;
  try {
    let chunk = '';
    for await (const { lineNumber, text } of readLines(spec.input, io.stdin, true)) {
      total++;
      const parsed: { ok: true; record: PuzzleRecord } | { ok: false; error: string } =
        text.trim() === '' ? { ok: false, error: 'the line is blank (a JSON object with "numbers" and "target" was expected)' } : parsePuzzleLine(text, spec.need);
      let result: object | null = null;
      let failure = parsed.ok ? null : parsed.error;
      if (parsed.ok) {
        try {
          result = spec.map(parsed.record);
        } catch (err) {
          failure = (err as Error).message;
        }
      }
      if (failure !== null) {
        bad++;
        const error = `line ${lineNumber}: ${failure}`;
        io.stderr.write(`puzzle-llama ${spec.command}: ${error}\n`);
        result = spec.malformed(error);
      }
      chunk += JSON.stringify(result) + '\n';
      if (chunk.length > 65536) {
        await sink.write(chunk);
        chunk = '';
      }
    }
    if (chunk) await sink.write(chunk);
    await sink.close();
  } catch (err) {
    sink.abort();
    throw err;
  }
  if (bad > 0) {
    io.stderr.write(`puzzle-llama ${spec.command}: ${bad} of ${total} lines were malformed\n`);
    return 1;
  }
  return 0;
}
