// SHA-256 of a file's bytes, read in 4 MiB pieces (checkpoints and data files can be gigabytes).
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { fsError } from './fs-errors.js';

export interface FileDigest {
  bytes: number;
  sha256: string;
}

export function fileDigest(path: string): FileDigest {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fsError(err, 'read', path);
  }
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(4 << 20);
    let bytes = 0;
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, bytes);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
      bytes += n;
    }
    return { bytes, sha256: hash.digest('hex') };
  } catch (err) {
    throw fsError(err, 'read', path);
  } finally {
    closeSync(fd);
  }
}
