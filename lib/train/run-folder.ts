// A run's folder (rank 0's job in a data-parallel run): take its lock, refuse what cannot be continued
// or would overwrite someone's files, decide between a fresh start (an empty or new folder only) and a
// resume from the newest checkpoint that verifies, write the config used, and cut metrics.jsonl and
// evals.jsonl back to the checkpoint so that a resumed run reads as one that never stopped.
import { existsSync, readFileSync, readdirSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { fileDigest, type FileDigest } from '../io/checksum.js';
import { makeDir } from '../io/make-dir.js';
import { acquireLock, type RunLock } from '../io/run-lock.js';
import { findResumeCheckpoint, removeCheckpointDebris } from './checkpoint.js';
import { openPuzzleStream, type DataPosition } from './data.js';
import { fingerprint, type ResolvedTrainOptions, type StepRecord } from './options.js';

/** What a run writes in its folder: a fresh start refuses a folder that holds any of them. */
export const RUN_ENTRIES = ['train-config.json', 'metrics.jsonl', 'evals.jsonl', 'checkpoints', 'model', 'adapter', 'report.html'];

/** What prepareRunFolder() decided: every rank starts from it. */
export interface RunPlan {
  resume: {
    /** The checkpoint folder (rank 0 loads it and broadcasts its state). */
    checkpoint: string;
    step: number;
    data: DataPosition;
    /** The world size the checkpoint was written by (null: before data parallelism existed). */
    worldSize: number | null;
    /** Seconds of training before the checkpoint (0 when the checkpoint does not say). */
    trainedSeconds: number;
  } | null;
  /** The data file's size and checksum (file sources), recorded in every checkpoint. */
  dataFile: FileDigest | null;
}

export function metricsPath(o: ResolvedTrainOptions): string {
  return join(o.out, 'metrics.jsonl');
}

export function evalsPath(o: ResolvedTrainOptions): string {
  return join(o.out, 'evals.jsonl');
}

/**
 * The JSON lines of `path`. A last line cut short by a kill (no newline, not valid JSON) is dropped and
 * reported through `onTorn`; a bad line anywhere else is an error naming the file and line.
 */
export function readJsonLines<T>(path: string, onTorn?: (message: string) => void): T[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  const out: T[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch (err) {
      if (i === lines.length - 1 && !text.endsWith('\n')) {
        onTorn?.(`${path}: dropped a torn last line (line ${i + 1}, ${line.length} characters; a kill while it was written)`);
        break;
      }
      throw new Error(`${path}:${i + 1}: not valid JSON (${(err as Error).message})`);
    }
  }
  return out;
}

/** The steps in metrics.jsonl before `upTo`. */
export function readHistory(path: string, upTo: number, onTorn?: (message: string) => void): StepRecord[] {
  return readJsonLines<StepRecord>(path, onTorn).filter((r) => r.step < upTo);
}

/**
 * Takes the folder's lock and prepares it (prepareRunFolder); on a refusal, releases the lock and removes
 * the folder again if this call created it (and it is still empty).
 */
export function openRunFolder(o: ResolvedTrainOptions, extra: Record<string, unknown>, note: (message: string) => void): { plan: RunPlan; lock: RunLock } {
  if (existsSync(o.out) && !statSync(o.out).isDirectory()) throw new Error(`train(): out '${o.out}' exists and is not a folder`);
  let created: string | null;
  try {
    created = makeDir(o.out, 'run folder');
  } catch (err) {
    throw new Error(`train(): ${(err as Error).message}`);
  }
  let lock: RunLock;
  try {
    lock = acquireLock(o.out, 'puzzle-llama train');
  } catch (err) {
    if (created) removeIfEmpty(created);
    throw new Error(`train(): ${(err as Error).message}`);
  }
  if (lock.tookOver) {
    const t = lock.tookOver;
    note(`took over ${lock.path} from process ${t.pid} on ${t.host} (${t.purpose}, since ${t.startedAt}), which is no longer running`);
  }
  try {
    return { plan: prepareRunFolder(o, extra, note), lock };
  } catch (err) {
    lock.release();
    if (created) removeIfEmpty(created);
    throw err;
  }
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir); // fails, harmlessly, unless empty
  } catch {
    /* kept */
  }
}

/**
 * Everything that can be refused is refused here, before an engine is made or a file is changed.
 * The caller holds the folder's lock.
 */
export function prepareRunFolder(o: ResolvedTrainOptions, extra: Record<string, unknown>, note: (message: string) => void = () => {}): RunPlan {
  const debris = removeCheckpointDebris(o.out);
  if (debris.length) note(`removed what interrupted checkpoint saves left in ${join(o.out, 'checkpoints')}: ${debris.join(', ')}`);
  const dataFile = o.data.source === 'file' ? fileDigest(o.data.path) : null;
  let plan: RunPlan = { resume: null, dataFile };
  const choice = findResumeCheckpoint(o.out);
  const hasCheckpoints = choice.checkpoint !== null || choice.skipped.length > 0;
  if (hasCheckpoints && !o.resume) {
    throw new Error(`train(): ${o.out} already holds a run (checkpoint ${choice.checkpoint ?? choice.skipped[0].dir}); pass resume: true (--resume) to continue it, or another out folder`);
  }
  if (o.resume) {
    if (!hasCheckpoints) throw new Error(`train(): resume was asked for but ${o.out} holds no checkpoint (a run stopped before its first checkpoint cannot be resumed: start it again in another out folder)`);
    if (!choice.checkpoint || !choice.state) {
      throw new Error(`train(): no checkpoint in ${join(o.out, 'checkpoints')} is complete and intact, so there is nothing to resume (nothing was changed):\n${choice.skipped.map((s) => `  ${s.reason}`).join('\n')}`);
    }
    const state = choice.state;
    const where = `the checkpoint ${choice.checkpoint}`;
    if (state.fingerprint !== fingerprint(o)) {
      throw new Error(`train(): the options differ from those of the run in ${o.out}; a resumed run must keep its model, data, batch, schedule and seed`);
    }
    if (state.step > o.steps) throw new Error(`train(): ${where} is at step ${state.step}, beyond steps = ${o.steps}`);
    // Each step reads batchSize × gradAccumulation puzzles: any other position is corrupt (and a huge one
    // would replay the stream for ever).
    // (With length buckets the position is a window's start plus the batches taken from it.)
    const expected = state.step * o.batchSize * o.gradAccumulation;
    const skip = state.data.skipBatches ?? 0;
    if (!Number.isSafeInteger(skip) || skip < 0 || skip >= o.lengthBuckets || state.data.consumed + skip * o.batchSize !== expected) {
      throw new Error(`train(): ${join(choice.checkpoint, 'state.json')}: data.consumed is ${state.data.consumed}${skip ? ` (and ${skip} batches of its window)` : ''}, but ${state.step} steps of ${o.batchSize} × ${o.gradAccumulation} puzzles read ${expected}: the checkpoint is corrupt`);
    }
    if (dataFile && state.dataFile && (dataFile.sha256 !== state.dataFile.sha256 || dataFile.bytes !== state.dataFile.bytes)) {
      throw new Error(
        `train(): the data file ${(o.data as { path: string }).path} changed since ${where} was saved (${dataFile.bytes} bytes, SHA-256 ${dataFile.sha256.slice(0, 16)}…; ` +
          `it was ${state.dataFile.bytes} bytes, ${state.dataFile.sha256.slice(0, 16)}…): a resumed run must read the same data`,
      );
    }
    for (const s of choice.skipped) note(`passed over a checkpoint that does not verify: ${s.reason}`);
    if (choice.pointer !== choice.checkpoint) {
      note(`checkpoints/latest ${choice.pointer ? `names ${choice.pointer}` : 'is missing'}; resuming from ${choice.checkpoint}, the newest checkpoint that verifies`);
    }
    if (!choice.verified) note(`${choice.checkpoint} predates checksums (no ${'manifest.json'}): loaded unverified`);
    plan = { resume: { checkpoint: choice.checkpoint, step: state.step, data: state.data, worldSize: state.worldSize ?? null, trainedSeconds: state.trainedSeconds ?? 0 }, dataFile };
  } else {
    // A fresh start writes these names: none may be there already (a finished run whose checkpoints were
    // cleaned up, a user's own files). Other files in the folder are left alone.
    const present = readdirSync(o.out).filter((f) => RUN_ENTRIES.includes(f) && !(f === 'checkpoints' && readdirSync(join(o.out, f)).length === 0));
    if (present.length > 0) {
      throw new Error(`train(): ${o.out} already holds ${present.join(', ')} but no checkpoint to resume; a new run would overwrite them: choose another out folder (nothing was changed)`);
    }
  }
  const probe = openPuzzleStream(o.data);
  try {
    probe.next(); // a missing or malformed data file fails here, before any training
  } finally {
    probe.close();
  }

  writeFileAtomic(join(o.out, 'train-config.json'), JSON.stringify({ ...o, ...extra }, null, 2) + '\n');
  const metrics = metricsPath(o);
  const evals = evalsPath(o);
  if (plan.resume) {
    const start = plan.resume.step;
    writeFileAtomic(metrics, readHistory(metrics, start, note).map((r) => JSON.stringify(r) + '\n').join(''));
    if (existsSync(evals)) {
      const kept = readJsonLines<{ step: number }>(evals, note).filter((r) => r.step <= start);
      writeFileAtomic(evals, kept.map((r) => JSON.stringify(r) + '\n').join(''));
    }
  } else {
    writeFileSync(metrics, '');
  }
  return plan;
}
