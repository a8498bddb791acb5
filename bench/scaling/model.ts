// The data-parallel scaling model of `--suite dist`: one GPU's step (forward and other work, then the backward
// pass layer by layer) and ring all-reduces of the gradient buckets on NCCL's bus bandwidth, with the buckets
// either overlapping the rest of the backward pass (as train() reduces them) or all reduced after it.
// Its inputs (gpu-inputs.json) say which numbers were measured and which are assumed.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PRESETS, type LlamaConfig } from '../../lib/model/config.js';

export interface Network {
  intraNodeBusGBs: number;
  intraNodeLatencyUs: number;
  interNodeBusGBs: number;
  interNodeLatencyUs: number;
  why: string;
}

export interface Workload {
  name: string;
  tokensPerGpu: number;
  /** One GPU's training step, without communication. */
  stepSeconds: number;
  stepSource: string;
  /** The backward pass's share of the step (during which buckets can reduce). */
  backwardShare: number;
  backwardShareSource: string;
  /** The model (a preset name) and, for LoRA on every projection, its rank; null: full training. */
  preset: keyof typeof PRESETS;
  loraRank: number | null;
  /** Bytes of each reduced gradient element (4: fp32). */
  reducedBytesPerParameter: number;
}

/** The gradients data parallelism sums: every parameter, or LoRA's A and B on all seven projections. */
export function reducedParameters(config: LlamaConfig, loraRank: number | null): number {
  const C = config.hidden_size;
  const F = config.intermediate_size;
  const kv = (C / config.num_attention_heads) * config.num_key_value_heads;
  const shapes: Array<[number, number]> = [[C, C], [kv, C], [kv, C], [C, C], [F, C], [F, C], [C, F]]; // [out, in]
  if (loraRank !== null) return config.num_hidden_layers * shapes.reduce((a, [o, i]) => a + loraRank * (o + i), 0);
  const layer = shapes.reduce((a, [o, i]) => a + o * i, 0) + 2 * C;
  return config.num_hidden_layers * layer + config.vocab_size * C * (config.tie_word_embeddings ? 1 : 2) + C;
}

export interface ScalingInputs {
  device: string;
  measured: string;
  gpusPerNode: number;
  network: Network;
  bucketBytes: number;
  workloads: Workload[];
}

/** The inputs: $PUZZLE_LLAMA_SCALING_INPUTS, else bench/scaling/gpu-inputs.json (found from bench/ or dist/bench/). */
export function loadScalingInputs(path = process.env.PUZZLE_LLAMA_SCALING_INPUTS): ScalingInputs & { path: string } {
  let file = path;
  if (!file) {
    let dir = dirname(fileURLToPath(import.meta.url));
    for (let i = 0; i < 4 && !file; i++, dir = dirname(dir)) {
      for (const candidate of [join(dir, 'gpu-inputs.json'), join(dir, 'bench', 'scaling', 'gpu-inputs.json')]) {
        try {
          readFileSync(candidate);
          file = candidate;
          break;
        } catch {
          // look further up
        }
      }
    }
  }
  if (!file) throw new Error('bench/scaling/gpu-inputs.json was not found');
  return { ...(JSON.parse(readFileSync(file, 'utf8')) as ScalingInputs), path: file };
}

/** A ring all-reduce of `bytes` over `ranks` at bus bandwidth `busGBs` (NCCL's definition: 2(n-1)/n of the bytes cross each link). */
export function allReduceSeconds(bytes: number, ranks: number, busGBs: number, latencyUs: number): number {
  if (ranks <= 1) return 0;
  return ((2 * (ranks - 1)) / ranks) * (bytes / (busGBs * 1e9)) + latencyUs * 1e-6;
}

export interface ModelledStep {
  nodes: number;
  ranks: number;
  /** All gradient all-reduces back to back. */
  commSeconds: number;
  /** Step time with every bucket reduced after the backward pass. */
  serialSeconds: number;
  /** Step time with buckets reduced while the backward pass goes on. */
  overlappedSeconds: number;
  /** Global tokens/s with overlap, and its fraction of perfect scaling. */
  tokensPerSecond: number;
  efficiency: number;
}

/** One step on `nodes` nodes of `gpusPerNode` GPUs (one node: NVLink; more: the inter-node links bound the ring). */
export function modelStep(w: Workload, inputs: Pick<ScalingInputs, 'network' | 'gpusPerNode' | 'bucketBytes'>, nodes: number): ModelledStep {
  const ranks = nodes * inputs.gpusPerNode;
  const net = inputs.network;
  const [bus, latency] = nodes === 1 ? [net.intraNodeBusGBs, net.intraNodeLatencyUs] : [net.interNodeBusGBs, net.interNodeLatencyUs];
  const config = PRESETS[w.preset];
  const layers = config.num_hidden_layers;
  const total = reducedParameters(config, w.loraRank) * w.reducedBytesPerParameter;
  const backward = w.stepSeconds * w.backwardShare;
  const rest = w.stepSeconds - backward;
  // Buckets fill from the last layer's gradients back; each goes once it holds bucketBytes (the last at the end).
  const perLayerBytes = total / layers;
  const perLayerSeconds = backward / layers;
  let commEnd = 0;
  let commTotal = 0;
  let pending = 0;
  for (let done = 1; done <= layers; done++) {
    pending += perLayerBytes;
    if (pending >= inputs.bucketBytes || done === layers) {
      const ready = done * perLayerSeconds;
      const t = allReduceSeconds(pending, ranks, bus, latency);
      commEnd = Math.max(commEnd, ready) + t;
      commTotal += t;
      pending = 0;
    }
  }
  const overlappedSeconds = rest + Math.max(backward, commEnd);
  const serialSeconds = w.stepSeconds + allReduceSeconds(total, ranks, bus, latency);
  const tokensPerSecond = (ranks * w.tokensPerGpu) / overlappedSeconds;
  return { nodes, ranks, commSeconds: commTotal, serialSeconds, overlappedSeconds, tokensPerSecond, efficiency: w.stepSeconds / overlappedSeconds };
}
