// Preparing a run's folder (rank 0's job in a data-parallel run): refuse what cannot be continued, decide
// between a fresh start and a resume from the latest checkpoint, write the config used, and cut
// metrics.jsonl and evals.jsonl back to the checkpoint so that a resumed run reads as one that never stopped.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { latestCheckpoint, readCheckpointState } from './checkpoint.js';
import { openPuzzleStream, type DataPosition } from './data.js';
import { fingerprint, type ResolvedTrainOptions, type StepRecord } from './options.js';

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
}

export function metricsPath(o: ResolvedTrainOptions): string {
  return join(o.out, 'metrics.jsonl');
}

export function evalsPath(o: ResolvedTrainOptions): string {
  return join(o.out, 'evals.jsonl');
}

/** The steps in metrics.jsonl before `upTo`. */
export function readHistory(path: string, upTo: number): StepRecord[] {
  if (!existsSync(path)) return [];
  const out: StepRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as StepRecord;
    if (r.step < upTo) out.push(r);
  }
  return out;
}

/** Everything that can be refused is refused here, before an engine is made or a file is changed. */
export function prepareRunFolder(o: ResolvedTrainOptions, extra: Record<string, unknown>): RunPlan {
  let plan: RunPlan = { resume: null };
  if (existsSync(join(o.out, 'checkpoints'))) {
    const latest = latestCheckpoint(o.out);
    if (latest && !o.resume) {
      throw new Error(`train(): ${o.out} already holds a run (latest checkpoint ${latest}); pass resume: true (--resume) to continue it, or another out folder`);
    }
    if (latest) {
      const state = readCheckpointState(latest);
      if (state.fingerprint !== fingerprint(o)) {
        throw new Error(`train(): the options differ from those of the run in ${o.out}; a resumed run must keep its model, data, batch, schedule and seed`);
      }
      if (state.step > o.steps) throw new Error(`train(): the checkpoint is at step ${state.step}, beyond steps = ${o.steps}`);
      plan = { resume: { checkpoint: latest, step: state.step, data: state.data, worldSize: state.worldSize ?? null, trainedSeconds: state.trainedSeconds ?? 0 } };
    }
  } else if (o.resume) {
    throw new Error(`train(): resume was asked for but ${o.out} holds no checkpoint`);
  }
  const probe = openPuzzleStream(o.data);
  try {
    probe.next(); // a missing or malformed data file fails here, before any training
  } finally {
    probe.close();
  }

  mkdirSync(o.out, { recursive: true });
  writeFileAtomic(join(o.out, 'train-config.json'), JSON.stringify({ ...o, ...extra }, null, 2) + '\n');
  const metrics = metricsPath(o);
  const evals = evalsPath(o);
  if (plan.resume) {
    const start = plan.resume.step;
    writeFileAtomic(metrics, readHistory(metrics, start).map((r) => JSON.stringify(r) + '\n').join(''));
    if (existsSync(evals)) {
      const kept = readFileSync(evals, 'utf8').split('\n').filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= start);
      writeFileAtomic(evals, kept.map((l) => l + '\n').join(''));
    }
  } else {
    writeFileSync(metrics, '');
  }
  return plan;
}
