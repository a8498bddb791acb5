// The run folder under misuse and damage: a fresh start never overwrites what is there, one writer at a
// time (the lock), resume picks the newest checkpoint that verifies whatever `latest` says, and corrupt
// or mismatched state (checksums, optimizer moments, data position, a replaced data file, a torn
// metrics line) is refused or repaired with a message naming the file.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensorsSync } from '../../lib/model/safetensors.js';
import { checkpointDir, findResumeCheckpoint } from '../../lib/train/checkpoint.js';
import { train } from '../../lib/train/train.js';
import type { TrainOptions } from '../../lib/train/options.js';

const work = mkdtempSync(join(tmpdir(), 'puzzle-run-folder-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const small = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
const base = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({ out: join(work, out), config: small, steps: 6, batchSize: 4, lr: 3e-3, threads: 1, checkpointEvery: 2, ...extra });
const losses = (r: { history: Array<{ loss: number }> }) => r.history.map((h) => h.loss);

/** A 4-step run stopped (with its checkpoint) after step 2. */
async function stopped(name: string, extra: Partial<TrainOptions> = {}) {
  const controller = new AbortController();
  return train(base(name, { steps: 4, ...extra, signal: controller.signal, onStep: (s) => s.step === 1 && controller.abort() }));
}

let reference: number[] | null = null;
async function uninterrupted(): Promise<number[]> {
  reference ??= losses(await train(base('reference')));
  return reference;
}

describe('a fresh start never overwrites what is in the folder', () => {
  it("refuses a user's folder and a finished run whose checkpoints were cleaned up, changing nothing", async () => {
    const out = join(work, 'users');
    mkdirSync(join(out, 'model'), { recursive: true });
    writeFileSync(join(out, 'model', 'weights.bin'), 'mine');
    writeFileSync(join(out, 'metrics.jsonl'), 'my notes\n');
    writeFileSync(join(out, 'report.html'), '<p>mine</p>');
    await expect(train(base('users'))).rejects.toThrow(/users already holds metrics\.jsonl, model, report\.html but no checkpoint to resume.*nothing was changed/);
    expect(readFileSync(join(out, 'model', 'weights.bin'), 'utf8')).toBe('mine');
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).toBe('my notes\n');
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toBe('<p>mine</p>');

    const done = await train(base('cleaned', { steps: 2 }));
    rmSync(join(done.out, 'checkpoints'), { recursive: true });
    await expect(train(base('cleaned', { steps: 2 }))).rejects.toThrow(/already holds .*model.* but no checkpoint/);
    expect(existsSync(join(done.out, 'model', 'model.safetensors'))).toBe(true);
  });

  it('trains into a folder holding only unrelated files, and leaves them be', async () => {
    const out = join(work, 'with-data');
    mkdirSync(out);
    writeFileSync(join(out, 'train.jsonl'), 'x');
    const r = await train(base('with-data', { steps: 2 }));
    expect(r.stepsDone).toBe(2);
    expect(readFileSync(join(out, 'train.jsonl'), 'utf8')).toBe('x');
    expect(existsSync(join(out, 'run.lock'))).toBe(false); // released
  });
});

describe('one writer per run folder', () => {
  it('refuses a second train() on a folder in use, and a --resume beside a live run', async () => {
    const controller = new AbortController();
    let second: Promise<unknown> | null = null;
    const first = train(
      base('two-writers', {
        steps: 4,
        signal: controller.signal,
        onStep: (s) => {
          if (s.step === 1 && !second) {
            second = train(base('two-writers', { steps: 4 })).then(
              () => 'accepted',
              (e: Error) => e.message,
            );
          }
          if (s.step === 2) controller.abort();
        },
      }),
    );
    const r = await first;
    expect(await second).toMatch(/two-writers is in use by this process \(puzzle-llama train, since .*\): one writer per run folder/);
    // a resume from another process while this one runs: its lock names our pid
    writeFileSync(join(work, 'two-writers', 'run.lock'), JSON.stringify({ pid: process.ppid, host: (await import('node:os')).hostname(), startedAt: 'then', purpose: 'puzzle-llama train' }));
    await expect(train(base('two-writers', { steps: 4, resume: true }))).rejects.toThrow(new RegExp(`in use by process ${process.ppid} on .*one writer per run folder`));
    rmSync(join(work, 'two-writers', 'run.lock'));
    const resumed = await train(base('two-writers', { steps: 4, resume: true }));
    expect(resumed.stepsDone).toBe(4);
    expect(r.stopped).toBe(true);
  });

  it('takes over the lock of a dead process and says so', async () => {
    await stopped('stale');
    const dead = spawn(process.execPath, ['-e', '0']);
    const pid = dead.pid!;
    await new Promise((resolve) => dead.on('exit', resolve));
    writeFileSync(join(work, 'stale', 'run.lock'), JSON.stringify({ pid, host: (await import('node:os')).hostname(), startedAt: '2020-01-01T00:00:00.000Z', purpose: 'puzzle-llama train' }));
    const notes: string[] = [];
    const r = await train(base('stale', { steps: 4, resume: true, onNote: (n) => notes.push(n) }));
    expect(r.stepsDone).toBe(4);
    expect(notes.join('\n')).toMatch(new RegExp(`took over .*run\\.lock from process ${pid} .*since 2020-01-01.*no longer running`));
  });
});

describe('resume takes the newest checkpoint that verifies', () => {
  it('resumes, bit for bit, when `latest` is missing (a kill between the two renames) and deletes nothing', async () => {
    const controller = new AbortController();
    await train(base('no-latest', { signal: controller.signal, onStep: (s) => s.step === 3 && controller.abort() }));
    rmSync(join(work, 'no-latest', 'checkpoints', 'latest'));
    const before = readdirSync(join(work, 'no-latest', 'checkpoints')).sort();
    expect(before).toEqual(['step-00000002', 'step-00000004']);
    await expect(train(base('no-latest'))).rejects.toThrow(/already holds a run/);
    expect(readdirSync(join(work, 'no-latest', 'checkpoints')).sort()).toEqual(before);
    const notes: string[] = [];
    const r = await train(base('no-latest', { resume: true, onNote: (n) => notes.push(n) }));
    expect(notes.join('\n')).toMatch(/checkpoints\/latest is missing; resuming from .*step-00000004/);
    expect(losses(r)).toEqual(await uninterrupted());
  });

  it('passes over a checkpoint whose bytes changed (checksum), naming the file, and resumes from the one before', async () => {
    const controller = new AbortController();
    await train(base('flipped', { signal: controller.signal, onStep: (s) => s.step === 3 && controller.abort() }));
    const file = join(checkpointDir(join(work, 'flipped'), 4), 'model.safetensors');
    const bytes = readFileSync(file);
    bytes[bytes.length - 3] ^= 0x10; // one bit of one weight
    writeFileSync(file, bytes);
    const choice = findResumeCheckpoint(join(work, 'flipped'));
    expect(choice.checkpoint).toBe(checkpointDir(join(work, 'flipped'), 2));
    expect(choice.skipped[0].reason).toMatch(/step-00000004\/model\.safetensors: checksum mismatch/);
    const notes: string[] = [];
    const r = await train(base('flipped', { resume: true, onNote: (n) => notes.push(n) }));
    expect(notes.join('\n')).toMatch(/passed over a checkpoint that does not verify: .*model\.safetensors: checksum mismatch/);
    expect(losses(r)).toEqual(await uninterrupted());
  });

  it('refuses clearly when no checkpoint verifies, and changes nothing', async () => {
    await train(base('all-bad', { steps: 2 }));
    const file = join(checkpointDir(join(work, 'all-bad'), 2), 'optimizer.safetensors');
    writeFileSync(file, readFileSync(file).subarray(0, 100)); // truncated
    const metrics = readFileSync(join(work, 'all-bad', 'metrics.jsonl'), 'utf8');
    await expect(train(base('all-bad', { steps: 4, resume: true }))).rejects.toThrow(/no checkpoint .* is complete and intact.*nothing was changed[\s\S]*optimizer\.safetensors: 100 bytes, the manifest says/);
    expect(readFileSync(join(work, 'all-bad', 'metrics.jsonl'), 'utf8')).toBe(metrics);
  });

  it('saving a step that exists (resuming a finished run) keeps a loadable checkpoint throughout', async () => {
    const done = await train(base('finished', { steps: 2 }));
    const again = await train(base('finished', { steps: 2, resume: true }));
    expect(again.stepsDone).toBe(2);
    expect(readdirSync(join(done.out, 'checkpoints')).sort()).toEqual(['latest', 'step-00000002']);
    expect(findResumeCheckpoint(done.out).checkpoint).toBe(checkpointDir(done.out, 2));
  });
});

describe('corrupt or mismatched state is refused, naming the file', () => {
  it('refuses negative second moments (a flipped sign bit) before loading anything', async () => {
    const r = await stopped('moments');
    const dir = checkpointDir(r.out, 2);
    const opt = readSafetensors(join(dir, 'optimizer.safetensors'));
    const tensors = new Map([...opt.tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: [...t.shape], data: new Float32Array(t.data as Float32Array) }]));
    const name = [...tensors.keys()].find((n) => n.startsWith('exp_avg_sq.'))!;
    tensors.get(name)!.data[5] = -Math.abs(tensors.get(name)!.data[5]) - 1e-3;
    writeSafetensorsSync(join(dir, 'optimizer.safetensors'), tensors, { format: 'pt' });
    rmSync(join(dir, 'manifest.json')); // (past the checksums too: the values themselves are checked)
    writeFileSync(join(dir, 'state.json'), readFileSync(join(dir, 'state.json'), 'utf8').replace('"version": 2', '"version": 1'));
    await expect(train(base('moments', { steps: 4, resume: true }))).rejects.toThrow(new RegExp(`optimizer\\.safetensors: tensor '${name.replace(/\./g, '\\.')}'\\[5\\] is -.*a second moment is finite and ≥ 0`));
  });

  it('refuses an absurd data position at once instead of replaying the stream for ever', async () => {
    const r = await stopped('position');
    const dir = checkpointDir(r.out, 2);
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
    state.data.consumed = 1e15;
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ ...state, version: 1 }));
    rmSync(join(dir, 'manifest.json'));
    await expect(train(base('position', { steps: 4, resume: true }))).rejects.toThrow(/state\.json: data\.consumed is 1000000000000000, but 2 steps of 4 × 1 puzzles read 8/);
  });

  it('refuses a data file replaced between a stop and --resume', async () => {
    const data = join(work, 'data.jsonl');
    const lines = (seed: number) => Array.from({ length: 20 }, (_, i) => JSON.stringify({ numbers: [i + seed, 2], target: i + seed + 2, response: `${i + seed}+2=${i + seed + 2}` })).join('\n') + '\n';
    writeFileSync(data, lines(100));
    await stopped('replaced', { data: { source: 'file', path: data } });
    writeFileSync(data, lines(200));
    await expect(train(base('replaced', { steps: 4, resume: true, data: { source: 'file', path: data } }))).rejects.toThrow(/the data file .*data\.jsonl changed since the checkpoint .* was saved .*a resumed run must read the same data/);
  });

  it('drops a torn last line of metrics.jsonl (a kill mid-write) and resumes', async () => {
    const controller = new AbortController();
    await train(base('torn', { signal: controller.signal, onStep: (s) => s.step === 3 && controller.abort() }));
    const metrics = join(work, 'torn', 'metrics.jsonl');
    writeFileSync(metrics, readFileSync(metrics, 'utf8') + '{"step":4,"loss":0.12');
    const notes: string[] = [];
    const r = await train(base('torn', { resume: true, onNote: (n) => notes.push(n) }));
    expect(notes.join('\n')).toMatch(/metrics\.jsonl: dropped a torn last line \(line 5/);
    expect(readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss)).toEqual(await uninterrupted());
    // a bad line in the middle is not a torn write: refused, naming the line
    writeFileSync(metrics, '{"step":0}\nnot json\n{"step":1}\n');
    renameSync(join(work, 'torn', 'checkpoints', 'step-00000006'), join(work, 'torn', 'checkpoints', 'step-00000004x'));
    await expect(train(base('torn', { resume: true }))).rejects.toThrow(/metrics\.jsonl:2: not valid JSON/);
  });
});
