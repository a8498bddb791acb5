// The extrapolation study: pass@1 for N = 5 … 12 and 15 candidates after training on N = 5–7 alone. The
// shipped sets cover 5–8, 10 and 12; the study writes sets for 9, 11 and 15 (V 60, fixed seeds).
import { join } from 'node:path';
import { lineChart } from '../report/html.js';
import { generatedSetFile } from './data.js';
import { pass1, type ArmResult, type StudyDefinition } from './study.js';

export interface ExtrapolationOptions {
  scale: 'cpu' | 'gpu';
  /** The study folder (the generated sets are written in it). */
  out: string;
  /** Evaluate this model folder instead of training one (e.g. the main job's runs/main/model). */
  model?: string;
  steps?: number;
  /** Puzzles per generated set. */
  generated?: number;
}

/** N -> the set and the N within it that measures it. */
function sources(out: string, generated: number): Array<{ n: number; set: string }> {
  const made = (n: number) => generatedSetFile(join(out, 'data'), n, generated, 2_406_021_00 + 100 + n);
  return [
    { n: 5, set: 'id' },
    { n: 6, set: 'id' },
    { n: 7, set: 'id' },
    { n: 8, set: 'ood-form' },
    { n: 9, set: made(9) },
    { n: 10, set: 'ood-form-10' },
    { n: 11, set: made(11) },
    { n: 12, set: 'ood-form-12' },
    { n: 15, set: made(15) },
  ];
}

export function extrapolationStudy(o: ExtrapolationOptions): StudyDefinition {
  const src = sources(o.out, o.generated ?? 300);
  const steps = o.steps ?? (o.scale === 'cpu' ? 1500 : 4000);
  const batch = o.scale === 'cpu' ? 32 : 256;
  const byN = (r: ArmResult, mode: 'free' | 'constrained') => src.map(({ n, set }) => ({ x: n, y: pass1(r, set, mode, n) }));
  return {
    name: 'extrapolation',
    question: 'How far past the N = 5–7 it was trained on does a model solve puzzles? (The paper stops at N = 8.)',
    arms: [
      {
        name: o.model ? 'given-model' : `${o.scale === 'cpu' ? 'mini' : 'base'}-n567`,
        params: { model: o.model ?? `${o.scale === 'cpu' ? 'mini' : 'base'}, ${steps} steps of ${batch}`, 'trained on': 'N 5-7, V 60' },
        model: o.model,
        train: { preset: o.scale === 'cpu' ? 'mini' : 'base', steps, batchSize: batch, lr: o.scale === 'cpu' ? 2e-3 : 1e-3, checkpointEvery: 500, device: o.scale === 'cpu' ? 'cpu' : 'cuda' },
        data: { count: steps * batch, seed: 1234, n: [5, 6, 7], maxValue: 60, responses: 'canonical', order: 'as-drawn' },
      },
    ],
    evalSets: [...new Set(src.map((s) => s.set))],
    columns: ['model', 'trained on'],
    charts: (results) =>
      results.length === 0
        ? []
        : [
            {
              title: 'pass@1 against N (trained on 5–7)',
              svg: lineChart(
                (['constrained', 'free'] as const).map((mode) => ({ name: mode, points: byN(results[0], mode) })),
                { xLabel: 'N (candidates)', yLabel: 'pass@1', yRange: [0, 1] },
              ),
            },
          ],
    table: (results) => ({
      header: ['model', 'decoding', ...src.map(({ n }) => `N ${n}`)],
      rows: results.flatMap((r) =>
        (['free', 'constrained'] as const).map((mode) => [String(r.params.model), mode, ...byN(r, mode).map((p) => (Number.isFinite(p.y) ? p.y.toFixed(3) : '-'))]),
      ),
    }),
  };
}
