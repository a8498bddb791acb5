// The curriculum study: ordering and filtering the synthetic data against more of it, at one model size.
// Arms: the paper's synthetic chains (at 1x and 2x the steps), canonical solutions, canonical-only (puzzles
// without a canonical solution filtered out), canonical ordered by N (5 first) and easiest shape first.
import { passChart } from '../train/report.js';
import type { ResponseKind } from '../puzzle/canonical.js';
import { pass1, type ArmData, type StudyArm, type StudyDefinition } from './study.js';

export interface CurriculumOptions {
  scale: 'cpu' | 'gpu';
  /** Steps of the 1x arms (default 600 on a CPU, 4000 on a GPU). */
  steps?: number;
}

export function curriculumStudy(o: CurriculumOptions): StudyDefinition {
  const steps = o.steps ?? (o.scale === 'cpu' ? 600 : 4000);
  const batch = o.scale === 'cpu' ? 32 : 256;
  const arm = (name: string, responses: ResponseKind, order: ArmData['order'], times: number): StudyArm => ({
    name,
    params: { data: `${responses}${order === 'as-drawn' ? '' : `, ${order}`}`, steps: steps * times },
    train: { preset: o.scale === 'cpu' ? 'mini' : 'base', steps: steps * times, batchSize: batch, lr: o.scale === 'cpu' ? 2e-3 : 1e-3, checkpointEvery: 500, device: o.scale === 'cpu' ? 'cpu' : 'cuda' },
    data: { count: steps * times * batch, seed: 1234, n: [5, 6, 7], maxValue: 60, responses, order },
  });
  const arms = [
    arm('synthetic', 'synthetic', 'as-drawn', 1),
    arm('synthetic-2x', 'synthetic', 'as-drawn', 2),
    arm('canonical', 'canonical', 'as-drawn', 1),
    arm('canonical-only', 'canonical-only', 'as-drawn', 1),
    arm('canonical-by-n', 'canonical', 'by-n', 1),
    arm('canonical-easy-first', 'canonical', 'by-difficulty', 1),
  ];
  return {
    name: 'curriculum',
    question: `Does choosing, filtering or ordering the synthetic data buy more than twice the volume? The ${o.scale === 'cpu' ? 'mini' : 'base'} preset from scratch, ${steps} steps of ${batch} puzzles per arm (twice that for synthetic-2x), each puzzle seen once.`,
    arms,
    evalSets: ['id', 'ood-form'],
    columns: ['data'],
    charts: (results) =>
      ['id', 'ood-form'].map((set) => ({
        title: `${set} pass@1 per arm`,
        svg: passChart(results.flatMap((r) => (['free', 'constrained'] as const).map((mode) => ({ set: r.name, mode, pass1: pass1(r, set, mode) })))),
      })),
  };
}
