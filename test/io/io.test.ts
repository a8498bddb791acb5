// lib/io under misuse: the folder lock (exclusive, stale takeover, no stealing a live lock), makeDir on
// /proc (a hang with mkdir -p), values shown as they are (1e400 is Infinity), and exported model folders
// with the usual mode (not mkdtemp's 0700).
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDir } from '../../lib/io/make-dir.js';
import { acquireLock, LOCK_FILE } from '../../lib/io/run-lock.js';
import { show } from '../../lib/io/show.js';
import { saveHfModel } from '../../lib/model/hf-checkpoint.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';
import { PRESETS } from '../../lib/model/config.js';

const work = mkdtempSync(join(tmpdir(), 'puzzle-io-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the folder lock', () => {
  it('holds pid, host and start time; a second taker is refused; release frees it', () => {
    const lock = acquireLock(work, 'test');
    const owner = JSON.parse(readFileSync(join(work, LOCK_FILE), 'utf8'));
    expect(owner).toMatchObject({ pid: process.pid, host: hostname(), purpose: 'test' });
    expect(Number.isNaN(Date.parse(owner.startedAt))).toBe(false);
    expect(() => acquireLock(work, 'other')).toThrow(/in use by this process \(test, since .*\): one writer per run folder/);
    lock.release();
    lock.release(); // idempotent
    acquireLock(work, 'again').release();
  });

  it('refuses a live process of this host, and one of another host (whose liveness it cannot check)', () => {
    writeFileSync(join(work, LOCK_FILE), JSON.stringify({ pid: process.ppid, host: hostname(), startedAt: 'x', purpose: 'train' }));
    expect(() => acquireLock(work, 't')).toThrow(new RegExp(`in use by process ${process.ppid} on ${hostname()}`));
    writeFileSync(join(work, LOCK_FILE), JSON.stringify({ pid: 1, host: 'elsewhere', startedAt: 'x', purpose: 'train' }));
    expect(() => acquireLock(work, 't')).toThrow(/in use by process 1 on elsewhere .*if that process is gone, delete .*run\.lock/);
    writeFileSync(join(work, LOCK_FILE), '{"pid":');
    expect(() => acquireLock(work, 't')).toThrow(/an unreadable lock.*delete/);
    rmSync(join(work, LOCK_FILE));
  });

  it("takes over a dead process's lock and reports whose it was", () => {
    const dead = 2 ** 22 + 12345; // above pid_max's default range: no such process
    writeFileSync(join(work, LOCK_FILE), JSON.stringify({ pid: dead, host: hostname(), startedAt: 'then', purpose: 'train' }));
    const lock = acquireLock(work, 'new');
    expect(lock.tookOver).toMatchObject({ pid: dead, startedAt: 'then' });
    expect(JSON.parse(readFileSync(join(work, LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    lock.release();
  });
});

describe('paths and values', () => {
  it('makeDir fails at once under /proc, where mkdir -p spins for ever', () => {
    expect(() => makeDir('/proc/x/y', 'run folder')).toThrow(/cannot create the run folder '\/proc\/x\/y'/);
    expect(makeDir(join(work, 'a', 'b'))).toBe(join(work, 'a'));
    expect(makeDir(join(work, 'a', 'b'))).toBeNull();
    writeFileSync(join(work, 'file'), '');
    expect(() => makeDir(join(work, 'file', 'x'))).toThrow(/cannot create the folder '.*file\/x': a part of the path is not a directory \(ENOTDIR\)/);
  });

  it('shows values as they are', () => {
    expect(show(JSON.parse('1e400'))).toBe('Infinity');
    expect(show(NaN)).toBe('NaN');
    expect(show({ lr: -Infinity })).toBe('{"lr":"-Infinity"}');
    expect(show(undefined)).toBe('undefined');
    expect(show('tpu')).toBe('"tpu"');
  });

  it('exports model folders with the usual mode, not 0700', async () => {
    const config = { ...PRESETS.tiny, vocab_size: 24 };
    const dir = join(work, 'model');
    const old = process.umask(0o022);
    try {
      await saveHfModel(dir, { config, tensors: (_name, shape) => new Float32Array(shape.reduce((a, d) => a * d, 1)), tokenizer: new PuzzleTokenizer() });
    } finally {
      process.umask(old);
    }
    expect(statSync(dir).mode & 0o777).toBe(0o755);
  });
});
