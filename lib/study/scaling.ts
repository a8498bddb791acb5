// The scaling study: pass@1 against the number of training puzzles (each seen once) for model sizes, the
// trend of the paper's Table 2 (1M / 10M / 100M puzzles) asked of other sizes.
import type { LlamaConfig } from '../model/config.js';
import { lineChart } from '../report/html.js';
import { pass1, type StudyDefinition, type StudyArm } from './study.js';

export interface ScalingOptions {
  scale: 'cpu' | 'gpu';
  /** Training puzzle counts (default: 4k, 12k, 36k on a CPU; 100k, 1M, 10M on a GPU). */
  volumes?: number[];
}

const SIZES: Record<'cpu' | 'gpu', Array<{ name: string; preset: string; config?: Partial<LlamaConfig> }>> = {
  cpu: [
    { name: '2x128', preset: 'mini', config: { num_hidden_layers: 2 } },
    { name: 'mini (4x128)', preset: 'mini' },
    { name: 'tiny (4x192)', preset: 'tiny' },
  ],
  gpu: [
    { name: 'tiny (4x192)', preset: 'tiny' },
    { name: 'small (6x384)', preset: 'small' },
    { name: 'base (12x768)', preset: 'base' },
  ],
};

export function scalingStudy(o: ScalingOptions): StudyDefinition {
  const volumes = o.volumes ?? (o.scale === 'cpu' ? [4000, 12000, 36000] : [100_000, 1_000_000, 10_000_000]);
  const batch = o.scale === 'cpu' ? 32 : 256;
  const arms: StudyArm[] = [];
  for (const size of SIZES[o.scale]) {
    for (const count of volumes) {
      arms.push({
        name: `${size.name.split(' ')[0]}-${count}`,
        params: { model: size.name, puzzles: count },
        train: { preset: size.preset, config: size.config, steps: Math.max(1, Math.round(count / batch)), batchSize: batch, lr: o.scale === 'cpu' ? 2e-3 : 1e-3, checkpointEvery: 500, device: o.scale === 'cpu' ? 'cpu' : 'cuda' },
        data: { count, seed: 1234, n: [5, 6, 7], maxValue: 60, responses: 'canonical', order: 'as-drawn' },
      });
    }
  }
  return {
    name: 'scaling',
    question: 'Does more training data help every model size, as Table 2 of the paper shows for open-llama-3B? Each arm trains from scratch on fresh canonical-response puzzles, each seen once, batch ' + batch + '.',
    arms,
    evalSets: ['id'],
    columns: ['model', 'puzzles'],
    charts: (results) =>
      (['constrained', 'free'] as const).map((mode) => ({
        title: `in-domain pass@1 (${mode} decoding) against training puzzles`,
        svg: lineChart(
          SIZES[o.scale].map((size) => ({
            name: size.name,
            points: results.filter((r) => r.params.model === size.name).map((r) => ({ x: Number(r.params.puzzles), y: pass1(r, 'id', mode) })),
          })),
          { xLabel: 'training puzzles', yLabel: 'pass@1', logX: true, yRange: [0, 1] },
        ),
      })),
  };
}
