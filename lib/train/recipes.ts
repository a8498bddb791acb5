// Named training recipes: the options measured to learn the most within a ten-minute budget on a given kind
// of machine (the results table in the README says how each choice was measured). `train --recipe NAME`
// and `start` take them; options given beside a recipe win.
import { NOPE_ROPE_FACTOR } from '../model/config.js';
import type { TrainOptions } from './options.js';

export interface Recipe {
  name: string;
  description: string;
  options: Partial<TrainOptions>;
}

export const RECIPES: Record<string, Recipe> = {
  'cpu-10min': {
    name: 'cpu-10min',
    description: 'the main job: the mini preset without positional encoding (NoPE) from scratch on two CPU cores, canonical-only responses with cores of at most two candidates, batch 32 in length buckets of 8, lr 2e-3, cosine over the time budget',
    options: {
      preset: 'mini',
      // NoPE: the one lever that lets free decoding write N 8's seven steps after training on N 5-7
      config: { rope_scaling: { rope_type: 'linear', factor: NOPE_ROPE_FACTOR } },
      batchSize: 32,
      lengthBuckets: 8,
      lr: 2e-3,
      warmupSteps: 50,
      data: { source: 'synth', n: [5, 6, 7], maxValue: 60, seed: 1234, responses: 'canonical-only', maxCore: 2 },
      timeBudget: 480,
      device: 'cpu',
    },
  },
  'gpu-10min': {
    name: 'gpu-10min',
    description: 'the base preset (75.5M parameters) from scratch on one H100/H200 in ten minutes, canonical responses, batch 256, lr 1e-3',
    options: {
      preset: 'base',
      batchSize: 256,
      lr: 1e-3,
      warmupSteps: 200,
      data: { source: 'synth', n: [5, 6, 7], maxValue: 60, seed: 1234, responses: 'canonical' },
      timeBudget: 600,
      device: 'cuda',
      checkpointEvery: 1000,
    },
  },
};

/** A recipe by name; throws listing the known ones. */
export function recipe(name: string): Recipe {
  const r = Object.hasOwn(RECIPES, name) ? RECIPES[name] : undefined;
  if (!r) throw new RangeError(`unknown recipe '${name}'; recipes: ${Object.keys(RECIPES).join(', ')}`);
  return r;
}
