// Fault injection into checkpoint saves: the real `puzzle-llama train` is SIGKILLed (PUZZLE_LLAMA_FAULT=
// kill@K, lib/io/fault.ts) at every write, rename and removal of its checkpoint saves in turn, or sees
// that operation fail with ENOSPC; then `--resume` must finish with the losses and the model bytes of an
// uninterrupted run, leave no debris, and report the stale lock it took over, or refuse with a clear
// message when the kill came before any checkpoint existed. Nothing may be lost.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/io/package-root.js';

const bin = join(packageRoot(), 'bin', 'puzzle-llama.js');
const work = mkdtempSync(join(tmpdir(), 'puzzle-faults-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const config = join(work, 'config.json');
writeFileSync(config, JSON.stringify({ config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }, checkpointEvery: 2, keepCheckpoints: 1 }));

function trainCli(out: string, extra: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [bin, 'train', '--out', out, '--steps', '4', '--batch-size', '4', '--threads', '1', '--config', config, ...extra], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, PUZZLE_LLAMA_FAULT: '', PUZZLE_LLAMA_FAULT_TRACE: '', ...env },
  });
  return { code: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
}

const losses = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
const modelHash = (out: string) => createHash('sha256').update(readFileSync(join(out, 'model', 'model.safetensors'))).digest('hex');
const debris = (out: string) => (existsSync(join(out, 'checkpoints')) ? readdirSync(join(out, 'checkpoints')).filter((d) => /tmp|old/.test(d)) : []);

/** The labelled fault points of one command, in order. */
function points(out: string, extra: string[]): string[] {
  const trace = join(work, `trace-${Math.random().toString(36).slice(2)}`);
  const r = trainCli(out, extra, { PUZZLE_LLAMA_FAULT_TRACE: trace });
  expect(r.code, r.stderr).toBe(0);
  return readFileSync(trace, 'utf8').trim().split('\n').map((l) => l.split('\t')[1]);
}

let reference: { losses: number[]; model: string };
let fresh: string[];
let again: string[];

beforeAll(() => {
  const out = join(work, 'reference');
  fresh = points(out, []);
  reference = { losses: losses(out), model: modelHash(out) };
  again = points(out, ['--resume']); // a finished run resumed: its last step is saved again
});

/** After a fault: --resume either finishes as if nothing happened or refuses (only before any checkpoint). */
function expectRecovered(out: string, label: string, anyCheckpointBefore: boolean): boolean {
  const r = trainCli(out, ['--resume']);
  if (!anyCheckpointBefore && r.code !== 0) {
    expect(r.stderr, label).toMatch(/holds no checkpoint \(a run stopped before its first checkpoint cannot be resumed/);
    return false;
  }
  expect(r.code, `${label}: ${r.stderr}`).toBe(0);
  expect(losses(out), label).toEqual(reference.losses); // bit for bit
  expect(modelHash(out), label).toBe(reference.model);
  expect(debris(out), label).toEqual([]);
  expect(readdirSync(out), label).not.toContain('run.lock');
  return true;
}

describe('checkpoint saves under faults', () => {
  it('has fault points at every write and rename of a save', () => {
    expect(fresh).toContain('write step-00000002.tmp/model.safetensors');
    expect(fresh).toContain('write step-00000002.tmp/manifest.json');
    expect(fresh).toContain('rename step-00000002.tmp into place');
    expect(fresh).toContain('rename latest');
    expect(fresh).toContain('remove step-00000002'); // keepCheckpoints 1
    expect(again).toContain('rename step-00000004 aside');
    expect(again).toContain('remove step-00000004.old');
  });

  it('resumes bit-identically after a SIGKILL at every point of a run', () => {
    const firstComplete = fresh.indexOf('rename step-00000002.tmp into place');
    for (let k = 1; k <= fresh.length; k++) {
      const out = join(work, `kill-${k}`);
      const killed = trainCli(out, [], { PUZZLE_LLAMA_FAULT: `kill@${k}` });
      expect(killed.signal, `kill@${k} (${fresh[k - 1]}): ${killed.stderr}`).toBe('SIGKILL');
      if (expectRecovered(out, `kill@${k} (${fresh[k - 1]})`, k > firstComplete + 1)) {
        const twice = trainCli(out, ['--resume']); // a finished run resumes to the same end
        expect(twice.code, twice.stderr).toBe(0);
        expect(modelHash(out)).toBe(reference.model);
      }
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('reports the stale lock of the killed process when it resumes', () => {
    const out = join(work, 'kill-lock');
    const k = fresh.indexOf('rename latest') + 1;
    expect(trainCli(out, [], { PUZZLE_LLAMA_FAULT: `kill@${k}` }).signal).toBe('SIGKILL');
    const r = trainCli(out, ['--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/train: took over .*run\.lock from process \d+ .*no longer running/);
  });

  it('keeps a loadable checkpoint when a kill hits the save of a step that already exists', () => {
    for (let k = 1; k <= again.length; k++) {
      const out = join(work, `again-${k}`);
      expect(trainCli(out, []).code).toBe(0);
      const killed = trainCli(out, ['--resume'], { PUZZLE_LLAMA_FAULT: `kill@${k}` });
      expect(killed.signal, `kill@${k} (${again[k - 1]})`).toBe('SIGKILL');
      expectRecovered(out, `again kill@${k} (${again[k - 1]})`, true);
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('fails a save on a full disk with the path named, keeps the last checkpoint, and resumes', () => {
    for (let k = 1; k <= fresh.length; k++) {
      const label = `enospc@${k} (${fresh[k - 1]})`;
      const out = join(work, `full-${k}`);
      const r = trainCli(out, [], { PUZZLE_LLAMA_FAULT: `enospc@${k}` });
      if (/^remove /.test(fresh[k - 1])) continue; // (a removal does not fail with ENOSPC)
      expect(r.code, label).toBe(1);
      expect(r.stderr, label).toMatch(/puzzle-llama train: cannot \w[\w ]* '[^']*': no space left on device \(ENOSPC\)/);
      expect(debris(out), label).toEqual([]);
      expectRecovered(out, label, k > fresh.indexOf('rename step-00000002.tmp into place') + 1);
      rmSync(out, { recursive: true, force: true });
    }
  });
});
