// The learning-rate schedule: linear warmup, then cosine decay to minLr (the paper: cosine, no warmup). The
// decay follows the steps done, or the elapsed fraction of a time budget (whichever is further along).

export interface ScheduleOptions {
  lr: number;
  totalSteps: number;
  warmupSteps: number;
  /** The floor the cosine decays to (default 0). */
  minLr?: number;
  kind?: 'cosine' | 'constant';
}

/**
 * The learning rate of step `step` (0-based). `timeFraction`, for a run with a time budget, is the part of
 * the budget used before this step (0 … 1).
 */
export function learningRate(step: number, o: ScheduleOptions, timeFraction = 0): number {
  const minLr = o.minLr ?? 0;
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  if (o.kind === 'constant') return o.lr;
  const decaySteps = Math.max(1, o.totalSteps - o.warmupSteps);
  const progress = Math.min(1, Math.max((step - o.warmupSteps) / decaySteps, timeFraction));
  return minLr + 0.5 * (o.lr - minLr) * (1 + Math.cos(Math.PI * progress));
}
