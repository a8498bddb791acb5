// Reading a JSON file with errors that name the file: cannot read (and why), or not valid JSON (and where).
import { readFileSync } from 'node:fs';

/** Reads and parses `path`; failures are raised through `error` (default: a plain Error) with the path first. */
export function readJsonFile(path: string, error: (message: string) => Error = (m) => new Error(m)): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw error(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
}
