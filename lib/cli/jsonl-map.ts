// Shared by `verify` and `solve`: one JSON output line per input line, in order; a malformed input line
// gets an output line saying why (and a message on stderr), processing goes on, and the exit status is 1.
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
  /** The output object for a good record. */
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
    for await (const { lineNumber, text } of readLines(spec.input, io.stdin)) {
      total++;
      const parsed = parsePuzzleLine(text, spec.need);
      let result: object;
      if (parsed.ok) {
        result = spec.map(parsed.record);
      } else {
        bad++;
        const error = `line ${lineNumber}: ${parsed.error}`;
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
