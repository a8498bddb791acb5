// What an engine's own arrays will take before they are allocated (weights, and for what is trained its
// gradient and AdamW's two moments, all fp32; frozen matrices in bf16 on request), and the memory this
// machine (or its cgroup) has, so that Engine.create refuses with the numbers instead of being OOM-killed.
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { LlamaConfig, LoraOptions } from '../model/config.js';
import { llamaTensorShapes } from '../model/hf-checkpoint.js';
import { loraTensorShapes } from '../model/peft.js';

export interface ModelMemory {
  parameters: number;
  trainable: number;
  bytes: number;
}

const numel = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);

export function modelMemory(config: LlamaConfig, lora: LoraOptions | null, frozenWeights: 'fp32' | 'bf16' = 'fp32'): ModelMemory {
  let parameters = 0;
  let trainable = 0;
  let bytes = 0;
  for (const shape of llamaTensorShapes(config).values()) {
    const n = numel(shape);
    parameters += n;
    if (lora) bytes += n * (frozenWeights === 'bf16' && shape.length === 2 ? 2 : 4);
    else {
      trainable += n;
      bytes += n * 16; // weight, gradient, exp_avg, exp_avg_sq
    }
  }
  if (lora) {
    for (const shape of loraTensorShapes(config, lora).values()) {
      const n = numel(shape);
      parameters += n;
      trainable += n;
      bytes += n * 16;
    }
  }
  return { parameters, trainable, bytes };
}

/**
 * The bytes of memory this process may use: the machine's, or less under a cgroup limit;
 * PUZZLE_LLAMA_MEMORY_LIMIT (bytes) lowers it further (to run a job inside a share of a machine).
 */
export function availableMemory(): { bytes: number; source: string } {
  let bytes = totalmem();
  let source = 'this machine';
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const limit = Number(readFileSync(file, 'utf8').trim());
      if (Number.isFinite(limit) && limit > 0 && limit < bytes) {
        bytes = limit;
        source = `the cgroup limit (${file})`;
      }
      break;
    } catch {
      /* no such limit */
    }
  }
  const env = process.env.PUZZLE_LLAMA_MEMORY_LIMIT;
  if (env !== undefined && env !== '') {
    const limit = Number(env);
    if (!Number.isSafeInteger(limit) || limit <= 0) throw new RangeError(`PUZZLE_LLAMA_MEMORY_LIMIT must be a number of bytes, got '${env}'`);
    if (limit < bytes) {
      bytes = limit;
      source = 'PUZZLE_LLAMA_MEMORY_LIMIT';
    }
  }
  return { bytes, source };
}

export const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
