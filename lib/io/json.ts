// Reading a JSON file with errors that name the file: cannot read (and why), or not valid JSON (and where).
import { readTextFile } from './regular-file.js';

/** Reads and parses `path`; failures are raised through `error` (default: a plain Error) with the path first. */
export function readJsonFile(path: string, error: (message: string) => Error = (m) => new Error(m)): unknown {
  let text: string;
  try {
    text = readTextFile(path);
  } catch (err) {
    throw error(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
}
