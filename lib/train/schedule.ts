// The learning-rate schedule: linear warmup, then cosine decay to minLr (the paper: cosine, no warmup).

export interface ScheduleOptions {
  lr: number;
  totalSteps: number;
  warmupSteps: number;
  /** The floor the cosine decays to (default 0). */
  minLr?: number;
  kind?: 'cosine' | 'constant';
}

/** The learning rate of step `step` (0-based). */
export function learningRate(step: number, o: ScheduleOptions): number {
  const minLr = o.minLr ?? 0;
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  if (o.kind === 'constant') return o.lr;
  const decaySteps = Math.max(1, o.totalSteps - o.warmupSteps);
  const progress = Math.min(1, (step - o.warmupSteps) / decaySteps);
  return minLr + 0.5 * (o.lr - minLr) * (1 + Math.cos(Math.PI * progress));
}
