// Floating-point operation counts of the benchmarked workloads, so a row's rate can be set beside the
// machine's measured FMA peak (an FMA counts 2). Model FLOPs, as MFU counts them: the work the math needs,
// not what an implementation adds (a checkpointed step's recomputed forward, softmax's exp, packing).
import type { LlamaConfig, LoraOptions } from '../lib/model/config.js';

function positive(where: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${where}: ${name} must be an integer >= 1, got ${v}`);
}

/** C[m, n] = A[m, k] B[k, n]: m n k multiply-adds, 2 m n k FLOPs. */
export function matmulFlops(m: number, n: number, k: number): number {
  for (const [name, v] of [['m', m], ['n', n], ['k', k]] as const) positive('matmulFlops()', name, v);
  return 2 * m * n * k;
}

export interface AttentionShape {
  /** Batch, sequence, query heads, head dimension (key-value heads do not change the count). */
  b: number;
  t: number;
  h: number;
  d: number;
  /** Causal (the default): query i scores keys 0..i, t (t + 1) / 2 pairs per head; else t^2. */
  causal?: boolean;
}

/** Query-key pairs scored per head. */
function pairs(t: number, causal: boolean): number {
  return causal ? (t * (t + 1)) / 2 : t * t;
}

/**
 * Attention forward: S = Q K^T and O = P V, 2 d FLOPs each per query-key pair, so 4 b h d pairs.
 * Backward: dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q, 8 b h d pairs (twice the forward).
 */
export function attentionFlops(shape: AttentionShape, pass: 'forward' | 'backward' | 'both' = 'both'): number {
  for (const key of ['b', 't', 'h', 'd'] as const) positive('attentionFlops()', `shape.${key}`, shape[key]);
  const unit = 2 * shape.b * shape.h * shape.d * pairs(shape.t, shape.causal ?? true);
  return pass === 'forward' ? 2 * unit : pass === 'backward' ? 4 * unit : 6 * unit;
}

/** The weights that multiply activations in a LLaMA forward: every layer's seven linears and the LM head. */
export function linearParameters(config: LlamaConfig): { perLayer: Record<string, [number, number]>; total: number } {
  const C = config.hidden_size;
  const F = config.intermediate_size;
  const kv = (C / config.num_attention_heads) * config.num_key_value_heads;
  // [out, in] of each linear.
  const perLayer: Record<string, [number, number]> = {
    q_proj: [C, C], k_proj: [kv, C], v_proj: [kv, C], o_proj: [C, C],
    gate_proj: [F, C], up_proj: [F, C], down_proj: [C, F],
  };
  const layer = Object.values(perLayer).reduce((s, [o, i]) => s + o * i, 0);
  // The LM head is a matmul whether or not it shares the embedding's weights; the embedding is a lookup.
  return { perLayer, total: config.num_hidden_layers * layer + config.vocab_size * C };
}

/**
 * One training step (forward and backward) over batch × seq tokens, in FLOPs:
 * - full fine-tuning: 6 · P · tokens (forward 2, input gradient 2, weight gradient 2 per weight and token),
 *   P the linear weights of linearParameters();
 * - LoRA: 4 · P · tokens for the frozen weights (no weight gradient), plus 6 · r · (in + out) · tokens per
 *   adapted linear per layer (A and B trained), the frozen product's input gradient included above;
 * - plus attention forward and backward per layer (attentionFlops, causal).
 * The optimizer's element-wise update, norms and the softmax are not counted (a few FLOPs per element,
 * not per multiply-add), nor a checkpointed step's recomputation.
 */
export function trainStepFlops(config: LlamaConfig, batch: number, seq: number, lora: LoraOptions | null = null): number {
  positive('trainStepFlops()', 'batch', batch);
  positive('trainStepFlops()', 'seq', seq);
  const tokens = batch * seq;
  const { perLayer, total } = linearParameters(config);
  let flops: number;
  if (!lora) {
    flops = 6 * total * tokens;
  } else {
    positive('trainStepFlops()', 'lora.r', lora.r);
    const targets = lora.targets.includes('all-linear') ? Object.keys(perLayer) : lora.targets;
    let adapter = 0;
    for (const name of targets) {
      const shape = perLayer[name];
      if (!shape) throw new RangeError(`trainStepFlops(): lora.targets has '${name}', not one of ${Object.keys(perLayer).join(', ')}`);
      adapter += lora.r * (shape[0] + shape[1]);
    }
    flops = 4 * total * tokens + 6 * config.num_hidden_layers * adapter * tokens;
  }
  const heads = config.num_attention_heads;
  const attention = attentionFlops({ b: batch, t: seq, h: heads, d: config.hidden_size / heads });
  return flops + config.num_hidden_layers * attention;
}
