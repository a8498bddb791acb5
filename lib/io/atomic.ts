// Whole-file writes that are atomic: the text goes to a temporary file beside the target, then a rename
// replaces the target, so a reader (or a crash) never sees half a file.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fsError } from './fs-errors.js';

export function writeFileAtomic(path: string, data: string | NodeJS.ArrayBufferView): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw fsError(err, 'write', path);
  }
}
