// Training checkpoints: weights, AdamW state, data position and counters, written atomically (a temporary
// folder renamed into place, then the `latest` pointer replaced), and read back with validation.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensors, writeSafetensors, type TensorSource } from '../model/safetensors.js';
import type { Engine } from '../engine/engine.js';
import type { DataPosition } from './data.js';

export const CHECKPOINT_VERSION = 1;

export interface CheckpointState {
  version: number;
  /** Optimizer steps done. */
  step: number;
  /** The AdamW step counter (bias corrections). */
  adamStep: number;
  data: DataPosition;
  /** Fingerprint of the options that must not change across a resume (model shape, data, batch, seeds). */
  fingerprint: string;
  /** Whether model.safetensors holds every parameter (from scratch) or only the trainable ones (on a base model). */
  allParameters: boolean;
  /** The data-parallel world size that wrote it (absent in checkpoints from before data parallelism). */
  worldSize?: number;
  /** Seconds of training up to this step (a time budget's use; absent in older checkpoints). */
  trainedSeconds?: number;
  savedAt: string;
}

const pad = (step: number) => String(step).padStart(8, '0');

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, 'checkpoints', `step-${pad(step)}`);
}

/** Writes a checkpoint of `engine` at `state.step`; keeps the newest `keep` checkpoints. */
export async function saveCheckpoint(runDir: string, engine: Engine, state: CheckpointState, keep = 2): Promise<string> {
  const root = join(runDir, 'checkpoints');
  mkdirSync(root, { recursive: true });
  const final = checkpointDir(runDir, state.step);
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const params = engine.parameters();
  const weights = new Map<string, TensorSource>();
  const optimizer = new Map<string, TensorSource>();
  for (const p of params) {
    if (state.allParameters || p.trainable) weights.set(p.name, { dtype: 'F32', shape: p.shape, data: () => engine.getParameter(p.name) });
    if (p.trainable) {
      let cached: { expAvg: Float32Array; expAvgSq: Float32Array } | null = null;
      const get = () => (cached ??= engine.getOptimizerState(p.name));
      optimizer.set(`exp_avg.${p.name}`, { dtype: 'F32', shape: p.shape, data: () => get().expAvg });
      optimizer.set(`exp_avg_sq.${p.name}`, { dtype: 'F32', shape: p.shape, data: () => get().expAvgSq });
    }
  }
  await writeSafetensors(join(tmp, 'model.safetensors'), weights, { format: 'pt' });
  await writeSafetensors(join(tmp, 'optimizer.safetensors'), optimizer, { format: 'pt' });
  writeFileSync(join(tmp, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  // the pointer moves only once the checkpoint is complete
  writeFileAtomic(join(root, 'latest'), `${final.split('/').pop()}\n`);
  for (const old of listCheckpoints(runDir).slice(0, -keep)) rmSync(join(root, old), { recursive: true, force: true });
  return final;
}

function listCheckpoints(runDir: string): string[] {
  const root = join(runDir, 'checkpoints');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((d) => /^step-\d{8}$/.test(d))
    .sort();
}

/** The newest complete checkpoint of a run, or null when it has none. */
export function latestCheckpoint(runDir: string): string | null {
  const pointer = join(runDir, 'checkpoints', 'latest');
  if (!existsSync(pointer)) return null;
  const name = readFileSync(pointer, 'utf8').trim();
  if (!/^step-\d{8}$/.test(name)) throw new Error(`${pointer}: corrupt checkpoint pointer (got ${JSON.stringify(name.slice(0, 40))})`);
  const dir = join(runDir, 'checkpoints', name);
  if (!existsSync(dir)) throw new Error(`${pointer} names ${name}, which does not exist`);
  return dir;
}

/** Reads and checks a checkpoint's state.json (throws naming the file and field). */
export function readCheckpointState(dir: string): CheckpointState {
  const path = join(dir, 'state.json');
  let state: CheckpointState;
  try {
    state = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: unreadable checkpoint state (${(err as Error).message})`);
  }
  const bad = (field: string, value: unknown) => new Error(`${path}: ${field} is invalid, got ${JSON.stringify(value)}`);
  if (state?.version !== CHECKPOINT_VERSION) throw bad('version', state?.version);
  if (!Number.isInteger(state.step) || state.step < 0) throw bad('step', state.step);
  if (!Number.isInteger(state.adamStep) || state.adamStep < 0) throw bad('adamStep', state.adamStep);
  if (!Number.isInteger(state.data?.consumed) || state.data.consumed < 0) throw bad('data.consumed', state.data?.consumed);
  if (typeof state.fingerprint !== 'string') throw bad('fingerprint', state.fingerprint);
  if (state.worldSize !== undefined && (!Number.isInteger(state.worldSize) || state.worldSize < 1)) throw bad('worldSize', state.worldSize);
  return state;
}

/** Loads a checkpoint's tensors into `engine` (every name and shape checked first). */
export function loadCheckpoint(dir: string, engine: Engine): CheckpointState {
  const state = readCheckpointState(dir);
  const model = readSafetensors(join(dir, 'model.safetensors'));
  const optimizer = readSafetensors(join(dir, 'optimizer.safetensors'));
  const params = engine.parameters();
  const expect = (file: string, map: Map<string, { shape: readonly number[]; dtype: string }>, name: string, shape: readonly number[]) => {
    const t = map.get(name);
    if (!t) throw new Error(`${join(dir, file)}: tensor '${name}' is missing`);
    if (t.dtype !== 'F32' || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${join(dir, file)}: tensor '${name}' is ${t.dtype} [${t.shape.join(', ')}], expected F32 [${shape.join(', ')}]`);
    }
  };
  for (const p of params) {
    if (state.allParameters || p.trainable) expect('model.safetensors', model.tensors, p.name, p.shape);
    if (p.trainable) {
      expect('optimizer.safetensors', optimizer.tensors, `exp_avg.${p.name}`, p.shape);
      expect('optimizer.safetensors', optimizer.tensors, `exp_avg_sq.${p.name}`, p.shape);
    }
  }
  for (const p of params) {
    if (state.allParameters || p.trainable) engine.setParameter(p.name, model.tensors.get(p.name)!.data as Float32Array);
    if (p.trainable) {
      engine.setOptimizerState(p.name, {
        expAvg: optimizer.tensors.get(`exp_avg.${p.name}`)!.data as Float32Array,
        expAvgSq: optimizer.tensors.get(`exp_avg_sq.${p.name}`)!.data as Float32Array,
      });
    }
  }
  engine.stepCount = state.adamStep;
  return state;
}
