// Training checkpoints: weights, AdamW state, data position and counters. A save writes a temporary folder
// (its manifest.json, with each file's size and SHA-256, last), renames it into place, then moves the
// `latest` pointer; no moment of a save leaves the run without a loadable checkpoint. Reading checks
// every field, every checksum and every optimizer value, and resume takes the newest checkpoint that
// verifies, whatever `latest` says.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileDigest, type FileDigest } from '../io/checksum.js';
import { faultPoint } from '../io/fault.js';
import { fsError } from '../io/fs-errors.js';
import { readSafetensors, writeSafetensors, type TensorSource } from '../model/safetensors.js';
import type { Engine } from '../engine/engine.js';
import type { DataPosition } from './data.js';

/** 2: with manifest.json (checksums). Version 1 checkpoints (no manifest) still load, unverified. */
export const CHECKPOINT_VERSION = 2;
export const MANIFEST_FILE = 'manifest.json';
const FILES = ['model.safetensors', 'optimizer.safetensors', 'state.json'] as const;

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
  /** A `data.source: 'file'` run's file as it was read (its path alone does not say whether it changed). */
  dataFile?: FileDigest;
  savedAt: string;
}

export interface CheckpointManifest {
  version: number;
  step: number;
  files: Record<string, FileDigest>;
}

const pad = (step: number) => String(step).padStart(8, '0');
const NAME = /^step-(\d{8})$/;
/** A checkpoint moved aside while its step was saved again; a candidate until the save completes. */
const ASIDE = /^step-(\d{8})\.old-\d+$/;
/** What a killed save leaves (the run folder's lock says no live save owns it). */
const DEBRIS = /^(step-\d{8}\.tmp-\d+|\.latest\.tmp-\d+)$/;

export function checkpointDir(runDir: string, step: number): string {
  return join(runDir, 'checkpoints', `step-${pad(step)}`);
}

function writeDurable(path: string, text: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'w');
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    throw fsError(err, 'write', path);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* some file systems cannot fsync a directory; the rename is still atomic */
  }
}

/** Writes a checkpoint of `engine` at `state.step`; keeps the newest `keep` checkpoints. */
export async function saveCheckpoint(runDir: string, engine: Engine, state: CheckpointState, keep = 2): Promise<string> {
  const root = join(runDir, 'checkpoints');
  const final = checkpointDir(runDir, state.step);
  const name = `step-${pad(state.step)}`;
  const tmp = `${final}.tmp-${process.pid}`;
  try {
    if (!existsSync(root)) {
      faultPoint('mkdir checkpoints', root);
      mkdirSync(root);
    }
    rmSync(tmp, { recursive: true, force: true });
    faultPoint(`mkdir ${name}.tmp`, tmp);
    mkdirSync(tmp);
  } catch (err) {
    throw fsError(err, 'create the checkpoint folder', tmp);
  }
  try {
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
    for (const [file, tensors] of [['model.safetensors', weights], ['optimizer.safetensors', optimizer]] as const) {
      const path = join(tmp, file);
      try {
        faultPoint(`write ${name}.tmp/${file}`, path);
        await writeSafetensors(path, tensors, { format: 'pt' });
      } catch (err) {
        throw fsError(err, 'write', path);
      }
    }
    faultPoint(`write ${name}.tmp/state.json`, join(tmp, 'state.json'));
    writeDurable(join(tmp, 'state.json'), JSON.stringify(state, null, 2) + '\n');
    const manifest: CheckpointManifest = { version: CHECKPOINT_VERSION, step: state.step, files: {} };
    for (const file of FILES) manifest.files[file] = fileDigest(join(tmp, file));
    faultPoint(`write ${name}.tmp/${MANIFEST_FILE}`, join(tmp, MANIFEST_FILE));
    writeDurable(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  // A step saved again (a finished run resumed, or a resume from an older checkpoint): the old folder is
  // moved aside, not deleted, until the new one is in place; resume also looks at folders moved aside.
  const aside = `${final}.old-${process.pid}`;
  let movedAside = false;
  try {
    if (existsSync(final)) {
      faultPoint(`rename ${name} aside`, final);
      renameSync(final, aside);
      movedAside = true;
    }
    faultPoint(`rename ${name}.tmp into place`, final);
    renameSync(tmp, final);
    fsyncDir(root);
  } catch (err) {
    if (movedAside && !existsSync(final)) renameSync(aside, final);
    rmSync(tmp, { recursive: true, force: true });
    throw fsError(err, 'move the checkpoint into place', final);
  }
  // The pointer moves only once the checkpoint is complete.
  const pointer = join(root, 'latest');
  const pointerTmp = join(root, `.latest.tmp-${process.pid}`);
  try {
    faultPoint('write .latest.tmp', pointerTmp);
    writeDurable(pointerTmp, `${name}\n`);
    faultPoint('rename latest', pointer);
    renameSync(pointerTmp, pointer);
  } catch (err) {
    rmSync(pointerTmp, { force: true });
    throw fsError(err, 'write', pointer);
  }
  if (movedAside) {
    faultPoint(`remove ${name}.old`);
    rmSync(aside, { recursive: true, force: true });
  }
  // Keep the newest `keep` checkpoints up to this step (this one included). Those of a later step (a
  // future this run abandoned, say a corrupt one resume passed over) are left alone: a later save of
  // that step replaces them.
  const others = listCheckpoints(runDir)
    .filter((d) => d !== name)
    .map((d) => ({ d, step: stepOf(d), aside: ASIDE.test(d) }))
    .sort((a, b) => b.step - a.step || Number(a.aside) - Number(b.aside));
  const older = others.filter((e) => e.step < state.step);
  const drop = [...others.filter((e) => e.step === state.step), ...older.slice(Math.max(0, keep - 1))];
  for (const e of drop) {
    faultPoint(`remove ${e.d}`);
    rmSync(join(root, e.d), { recursive: true, force: true });
  }
  return final;
}

const stepOf = (d: string) => Number((NAME.exec(d) ?? ASIDE.exec(d))![1]);

/** Checkpoint folders (and folders moved aside) of a run, oldest first. */
function listCheckpoints(runDir: string): string[] {
  const root = join(runDir, 'checkpoints');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((d) => NAME.test(d) || ASIDE.test(d))
    .sort();
}

/** Removes what killed saves left in checkpoints/ (call only while holding the run folder's lock). */
export function removeCheckpointDebris(runDir: string): string[] {
  const root = join(runDir, 'checkpoints');
  if (!existsSync(root)) return [];
  const removed = readdirSync(root).filter((d) => DEBRIS.test(d));
  for (const d of removed) rmSync(join(root, d), { recursive: true, force: true });
  return removed;
}

/** What the `latest` pointer names, or null when there is none (a pointer that names nothing is reported). */
export function latestCheckpoint(runDir: string): string | null {
  const pointer = join(runDir, 'checkpoints', 'latest');
  if (!existsSync(pointer)) return null;
  const name = readFileSync(pointer, 'utf8').trim();
  if (!NAME.test(name)) throw new Error(`${pointer}: corrupt checkpoint pointer (got ${JSON.stringify(name.slice(0, 40))})`);
  const dir = join(runDir, 'checkpoints', name);
  if (!existsSync(dir)) throw new Error(`${pointer} names ${name}, which does not exist`);
  return dir;
}

export interface ResumeChoice {
  /** The newest checkpoint that verified, or null when none did. */
  checkpoint: string | null;
  state: CheckpointState | null;
  /** Whether its files were checked against a manifest (false for version 1 checkpoints). */
  verified: boolean;
  /** Every newer candidate that was passed over, with why. */
  skipped: Array<{ dir: string; reason: string }>;
  /** What `latest` names (null: no pointer, or an unreadable one). */
  pointer: string | null;
}

/** The newest checkpoint of the run that verifies (state, manifest, checksums), whatever `latest` says. */
export function findResumeCheckpoint(runDir: string): ResumeChoice {
  let pointer: string | null = null;
  try {
    pointer = latestCheckpoint(runDir);
  } catch {
    pointer = null;
  }
  const candidates = listCheckpoints(runDir)
    .map((d) => ({ d, step: stepOf(d), aside: ASIDE.test(d) }))
    .sort((a, b) => b.step - a.step || Number(a.aside) - Number(b.aside));
  const skipped: ResumeChoice['skipped'] = [];
  for (const c of candidates) {
    const dir = join(runDir, 'checkpoints', c.d);
    try {
      const { state, verified } = verifyCheckpoint(dir, c.step);
      return { checkpoint: dir, state, verified, skipped, pointer };
    } catch (err) {
      skipped.push({ dir, reason: (err as Error).message });
    }
  }
  return { checkpoint: null, state: null, verified: false, skipped, pointer };
}

/** Checks a checkpoint folder completely (files, manifest, checksums, state); throws naming what is wrong. */
export function verifyCheckpoint(dir: string, expectStep?: number): { state: CheckpointState; verified: boolean } {
  const state = readCheckpointState(dir);
  if (expectStep !== undefined && state.step !== expectStep) throw new Error(`${join(dir, 'state.json')}: step is ${state.step}, but the folder is named for step ${expectStep}`);
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) {
    if (state.version >= 2) throw new Error(`${manifestPath}: missing (an incomplete checkpoint)`);
    for (const f of FILES) if (!existsSync(join(dir, f))) throw new Error(`${join(dir, f)}: missing (an incomplete checkpoint)`);
    return { state, verified: false };
  }
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (err) {
    throw new Error(`${manifestPath}: unreadable (${(err as Error).message})`);
  }
  if (typeof manifest?.files !== 'object' || manifest.files === null) throw new Error(`${manifestPath}: files is invalid`);
  for (const f of FILES) {
    const want = manifest.files[f];
    if (!want || !Number.isSafeInteger(want.bytes) || typeof want.sha256 !== 'string') throw new Error(`${manifestPath}: no valid entry for ${f}`);
    const path = join(dir, f);
    if (!existsSync(path)) throw new Error(`${path}: missing`);
    const got = fileDigest(path);
    if (got.bytes !== want.bytes) throw new Error(`${path}: ${got.bytes} bytes, the manifest says ${want.bytes} (truncated or replaced)`);
    if (got.sha256 !== want.sha256) throw new Error(`${path}: checksum mismatch (SHA-256 ${got.sha256.slice(0, 16)}…, the manifest says ${want.sha256.slice(0, 16)}…): the file is corrupt`);
  }
  return { state, verified: true };
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
  if (state?.version !== 1 && state?.version !== CHECKPOINT_VERSION) throw bad('version', state?.version);
  if (!Number.isInteger(state.step) || state.step < 0) throw bad('step', state.step);
  if (!Number.isInteger(state.adamStep) || state.adamStep < 0) throw bad('adamStep', state.adamStep);
  if (!Number.isSafeInteger(state.data?.consumed) || state.data.consumed < 0) throw bad('data.consumed', state.data?.consumed);
  if (typeof state.fingerprint !== 'string') throw bad('fingerprint', state.fingerprint);
  if (state.worldSize !== undefined && (!Number.isInteger(state.worldSize) || state.worldSize < 1)) throw bad('worldSize', state.worldSize);
  if (state.dataFile !== undefined && (typeof state.dataFile?.sha256 !== 'string' || !Number.isSafeInteger(state.dataFile.bytes))) throw bad('dataFile', state.dataFile);
  return state;
}

/** The first value of an optimizer tensor that AdamW could not have produced (non-finite; v < 0), or -1. */
function badMoment(data: Float32Array, second: boolean): number {
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (!Number.isFinite(x) || (second && x < 0)) return i;
  }
  return -1;
}

/** Loads a checkpoint's tensors into `engine` (every name, shape and optimizer value checked first). */
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
  // Every value is checked before any is set: a refused checkpoint leaves the engine as it was.
  const moments = new Map<string, { expAvg: Float32Array; expAvgSq: Float32Array }>();
  for (const p of params) {
    if (!p.trainable) continue;
    const expAvg = optimizer.tensors.get(`exp_avg.${p.name}`)!.data as Float32Array;
    const expAvgSq = optimizer.tensors.get(`exp_avg_sq.${p.name}`)!.data as Float32Array;
    for (const [key, data, second] of [['exp_avg', expAvg, false], ['exp_avg_sq', expAvgSq, true]] as const) {
      const i = badMoment(data, second);
      if (i >= 0) {
        throw new Error(`${join(dir, 'optimizer.safetensors')}: tensor '${key}.${p.name}'[${i}] is ${data[i]}${second ? ', but a second moment is finite and ≥ 0' : ', but a first moment is finite'}: the optimizer state is corrupt`);
      }
    }
    moments.set(p.name, { expAvg, expAvgSq });
  }
  for (const p of params) {
    if (state.allParameters || p.trainable) engine.setParameter(p.name, model.tensors.get(p.name)!.data as Float32Array);
    const m = moments.get(p.name);
    if (m) engine.setOptimizerState(p.name, m);
  }
  engine.stepCount = state.adamStep;
  return state;
}
