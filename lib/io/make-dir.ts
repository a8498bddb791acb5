// Creating a folder and its parents one level at a time. Node's mkdirSync(recursive) spins forever where
// a parent refuses new entries without saying EEXIST (/proc/x); this fails at once, naming the path.
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fsError } from './fs-errors.js';

/** Makes `path` (and missing parents); returns the first folder it created, or null when it existed. */
export function makeDir(path: string, what = 'folder'): string | null {
  const target = resolve(path);
  const missing: string[] = [];
  for (let dir = target; ; dir = dirname(dir)) {
    let isDir: boolean;
    try {
      isDir = statSync(dir).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fsError(err, `create the ${what}`, path);
      missing.push(dir);
      if (dirname(dir) === dir) break;
      continue;
    }
    if (!isDir) throw new Error(`cannot create the ${what} '${path}': '${dir}' exists and is not a directory`);
    break;
  }
  missing.reverse();
  for (const dir of missing) {
    try {
      mkdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && statSync(dir).isDirectory()) continue;
      throw fsError(err, `create the ${what}`, path === dir ? path : `${path}' ('${dir}`);
    }
  }
  return missing[0] ?? null;
}
