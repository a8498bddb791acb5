// File-system errors that say which path and what went wrong in words ("no space left on device"), for
// the errors Node raises without a path (ENOSPC on write) or with only a code.
import { constants } from 'node:os';

const WORDS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EEXIST: 'it already exists',
  ENOTEMPTY: 'the directory is not empty',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'the name is too long',
  EXDEV: 'it is on another file system',
};

/** An Error saying `cannot ACTION 'PATH': WORDS (CODE)`, keeping the original code; non-errno errors pass through. */
export function fsError(err: unknown, action: string, path: string): Error {
  const e = err as NodeJS.ErrnoException;
  if (!e || typeof e.code !== 'string' || !(e.code in constants.errno || e.code in WORDS)) return err as Error;
  const out = new Error(`cannot ${action} '${path}': ${WORDS[e.code] ?? e.message} (${e.code})`) as NodeJS.ErrnoException;
  out.code = e.code;
  return out;
}

/** Runs `fn`, turning an errno error into fsError(action, path). */
export function withPath<T>(action: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fsError(err, action, path);
  }
}
