// Model FLOPs utilization of a training step: the FLOPs a LLaMA forward + backward needs per token (6N + 12·L·H·D·T, the count PaLM, nanoGPT and llm.c report MFU with) over the step's time and a measured bf16 peak.
import type { NativeLlamaConfig } from '../lib/engine/native.js';

function positive(where: string, name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${where}: ${name} must be a positive number, got ${v}`);
  return v;
}

/**
 * FLOPs of one trained token at sequence length `seq`: 6 per parameter (forward 2, backward 4: the
 * matmuls against every weight, the tied embedding counted once as the LM head) plus attention's
 * 12·layers·heads·headDim·seq (QKᵀ and PV, forward and backward, without the causal half: the count MFU
 * figures are given in, so ours compares with theirs).
 */
export function trainingFlopsPerToken(config: NativeLlamaConfig, parameters: number, seq: number): number {
  const w = 'trainingFlopsPerToken()';
  positive(w, 'parameters', parameters);
  positive(w, 'seq', seq);
  const layers = positive(w, 'config.num_hidden_layers', config.num_hidden_layers);
  const heads = positive(w, 'config.num_attention_heads', config.num_attention_heads);
  const headDim = positive(w, 'config.hidden_size', config.hidden_size) / heads;
  return 6 * parameters + 12 * layers * heads * headDim * seq;
}

/** The fraction of `peakFlops` (FLOP/s) a step reaches at `tokensPerSecond`. */
export function mfu(tokensPerSecond: number, flopsPerToken: number, peakFlops: number): number {
  const w = 'mfu()';
  return (positive(w, 'tokensPerSecond', tokensPerSecond) * positive(w, 'flopsPerToken', flopsPerToken)) / positive(w, 'peakFlops', peakFlops);
}
