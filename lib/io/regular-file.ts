// Inputs that are read whole or at offsets (model files, data files) must be regular files: a FIFO or a
// device there would block forever or never end. A clear error instead, naming the path.
import { readFileSync, statSync, type Stats } from 'node:fs';

/** Throws unless `path` is a regular file (following links); `what` names it in the message. */
export function assertRegularFile(path: string, what = 'the file'): void {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${what} '${path}' does not exist` : `cannot read ${what} '${path}' (${code ?? (err as Error).message})`);
  }
  if (st.isFile()) return;
  throw new Error(`${what} '${path}' is not a regular file (${kindOf(st)})`);
}

/** In words, what a non-regular file is. */
export function kindOf(st: Stats): string {
  return st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO: it would block' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a file';
}

/** readFileSync(path, 'utf8') of a regular file only (a FIFO would block the process forever). */
export function readTextFile(path: string, what = 'the file'): string {
  assertRegularFile(path, what);
  return readFileSync(path, 'utf8');
}
