// A folder owned by one process at a time: a lock file holding the owner's pid, host and start time,
// created with O_EXCL. A lock whose process is dead (same host, no such pid) is stale and is taken over;
// the caller is told, so that it can report the takeover. A live owner, or one on another host whose
// liveness cannot be checked, is refused with who holds it.
import { closeSync, linkSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fsError } from './fs-errors.js';

export const LOCK_FILE = 'run.lock';

export interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
  /** What holds it (for the message), e.g. 'puzzle-llama train'. */
  purpose: string;
}

export interface RunLock {
  path: string;
  owner: LockOwner;
  /** The stale lock this one replaced, when it took one over. */
  tookOver: LockOwner | null;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

export class LockedError extends Error {
  constructor(
    message: string,
    readonly owner: LockOwner | null,
  ) {
    super(message);
    this.name = 'LockedError';
  }
}

function readOwner(path: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8'));
    if (Number.isInteger(o?.pid) && typeof o.host === 'string' && typeof o.startedAt === 'string') return { pid: o.pid, host: o.host, startedAt: o.startedAt, purpose: String(o.purpose ?? '') };
  } catch {
    /* unreadable or torn: judged below */
  }
  return null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const same = (a: LockOwner | null, b: LockOwner | null) => a !== null && b !== null && a.pid === b.pid && a.host === b.host && a.startedAt === b.startedAt;

/** Takes the lock of folder `dir` (which must exist), or throws a LockedError naming its owner. */
export function acquireLock(dir: string, purpose: string): RunLock {
  const path = join(dir, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), purpose };
  const text = JSON.stringify(owner) + '\n';
  // The lock appears complete or not at all: written to a file of our own, then hard-linked into place
  // (link fails with EEXIST when another process holds it).
  const mine = join(dir, `.${LOCK_FILE}.${process.pid}`);
  let tookOver: LockOwner | null = null;
  try {
    const fd = openSync(mine, 'w');
    try {
      writeSync(fd, text);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    rmSync(mine, { force: true });
    throw fsError(err, 'write the lock file', path);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(mine, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(err, 'create the lock file', path);
      }
      const holder = readOwner(path);
      const where = holder ? `process ${holder.pid} on ${holder.host} (${holder.purpose || 'unknown'}, since ${holder.startedAt})` : 'an unreadable lock';
      if (holder && holder.host === owner.host && holder.pid === process.pid) {
        throw new LockedError(`${dir} is in use by this process (${holder.purpose}, since ${holder.startedAt}): one writer per run folder`, holder);
      }
      if (!holder || holder.host !== owner.host || alive(holder.pid) || attempt >= 3) {
        const hint = holder && holder.host !== owner.host ? `; if that process is gone, delete ${path}` : holder ? '' : `; if no process uses the folder, delete ${path}`;
        throw new LockedError(`${dir} is in use by ${where}: one writer per run folder${hint}`, holder);
      }
      // Stale: move it aside, and check that what we moved is the stale lock we judged (another process
      // may have taken it over in between: then give its lock back).
      const aside = `${path}.stale-${process.pid}`;
      try {
        renameSync(path, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw fsError(err, 'take over the stale lock', path);
      }
      const moved = readOwner(aside);
      if (same(moved, holder)) {
        rmSync(aside, { force: true });
        tookOver = holder;
        continue;
      }
      try {
        linkSync(aside, path);
      } catch {
        /* someone else holds it now: the next attempt reports them */
      }
      rmSync(aside, { force: true });
    }
  } finally {
    rmSync(mine, { force: true });
  }
  let released = false;
  return {
    path,
    owner,
    tookOver,
    release() {
      if (released) return;
      released = true;
      if (same(readOwner(path), owner)) rmSync(path, { force: true });
    },
  };
}
