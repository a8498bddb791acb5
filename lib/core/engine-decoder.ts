// A StepDecoder over the engine's KV-cache decode session: the prompts go through once, then one token per
// sequence per step; the engine returns only each sequence's next-token logits.
import type { Engine } from '../engine/engine.js';
import type { StepDecoder } from './decode.js';

export function engineDecoder(engine: Engine, maxNewTokens: number): StepDecoder {
  const V = engine.config.vocab_size;
  let batch = 0;
  const split = (logits: Float32Array) => Array.from({ length: batch }, (_, b) => logits.subarray(b * V, (b + 1) * V));
  const maxPositions = engine.config.max_position_embeddings;
  return {
    vocabSize: V,
    maxPositions,
    async start(prompts) {
      batch = prompts.length;
      const length = prompts[0]?.length ?? 0;
      if (prompts.some((p) => p.length !== length)) throw new Error('engineDecoder: the prompts of one batch must have the same length');
      for (const p of prompts) {
        const bad = p.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= V);
        if (bad >= 0) throw new RangeError(`engineDecoder: the tokenizer gave token id ${p[bad]}, outside the model's vocabulary [0, ${V}): the tokenizer does not belong to this model`);
      }
      const tokens = new Int32Array(batch * length);
      prompts.forEach((p, b) => tokens.set(p, b * length));
      // the session's KV cache holds the prompt and every token fed back (all but the last generated)
      const room = Math.max(1, Math.min(maxNewTokens, maxPositions - length));
      return split(await engine.decodeStart(tokens, { batch, promptLength: length, maxNewTokens: room }));
    },
    async next(tokens) {
      return split(await engine.decodeNext(Int32Array.from(tokens)));
    },
    async reorder(rows) {
      await engine.decodeReorder(Int32Array.from(rows));
    },
    end() {
      engine.decodeEnd();
    },
  };
}
