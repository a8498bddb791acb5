// Turning a model's next-token logits into responses: greedy or sampled (temperature, top-k), optionally
// constrained by the verifier's state. The model is anything that implements StepDecoder.
import { Rng } from '../puzzle/rng.js';
import type { Puzzle } from '../puzzle/types.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { encodeQuery } from './sft.js';
import { ConstrainedState } from './constrained.js';

/** A model seen one token at a time, for a whole batch; the engine's decode session implements it. */
export interface StepDecoder {
  readonly vocabSize: number;
  /** Positions the model can hold (prompt plus generated tokens); unlimited when absent. */
  readonly maxPositions?: number;
  /** Reads the prompts; resolves to each sequence's logits for its next token. */
  start(prompts: number[][]): Promise<Float32Array[]>;
  /** Feeds one token to every sequence (finished ones too); resolves to the next logits. */
  next(tokens: number[]): Promise<Float32Array[]>;
  /** Beam search: sequence b continues sequence rows[b] from here on (only beam search needs it). */
  reorder?(rows: number[]): Promise<void>;
  /** Frees the session's memory (KV cache). */
  end(): void;
}

export interface DecodeOptions {
  maxNewTokens: number;
  /** 0: greedy. */
  temperature: number;
  /** 0: the whole vocabulary. */
  topK: number;
  /** Only well-formed steps over available numbers with correct results. */
  constrained: boolean;
  rng: Rng;
  signal?: AbortSignal;
}

export interface Decoded {
  response: string;
  /** Tokens generated (the <eos> included when one was written). */
  tokens: number;
  /** True when the model wrote <eos> within maxNewTokens. */
  stopped: boolean;
}

/** Chooses a token from logits: argmax (lowest id on ties) or a sample; masked-out ids are never chosen. */
export function chooseToken(logits: Float32Array, mask: Uint8Array | null, temperature: number, topK: number, rng: Rng): number {
  const V = logits.length;
  if (temperature <= 0) {
    let best = -1;
    let bestValue = -Infinity;
    for (let i = 0; i < V; i++) {
      if (mask && !mask[i]) continue;
      const x = logits[i];
      if (best < 0 || x > bestValue) {
        best = i;
        bestValue = x;
      }
    }
    if (best < 0) throw new Error('chooseToken(): the mask allows no token');
    return best;
  }
  const ids: number[] = [];
  for (let i = 0; i < V; i++) if (!mask || mask[i]) ids.push(i);
  if (ids.length === 0) throw new Error('chooseToken(): the mask allows no token');
  ids.sort((a, b) => logits[b] - logits[a] || a - b);
  const kept = topK > 0 ? ids.slice(0, topK) : ids;
  const top = logits[kept[0]];
  const weights = kept.map((i) => (Number.isFinite(logits[i]) ? Math.exp((logits[i] - top) / temperature) : 0));
  const total = weights.reduce((a, b) => a + b, 0);
  let r = rng.nextFloat() * total;
  for (let j = 0; j < kept.length; j++) {
    r -= weights[j];
    if (r < 0) return kept[j];
  }
  return kept[kept.length - 1];
}

/** Generates one response per puzzle with one decoding session for the whole batch. */
export async function decodeBatch(decoder: StepDecoder, tokenizer: Tokenizer, puzzles: readonly Puzzle[], options: DecodeOptions): Promise<Decoded[]> {
  const prompts = puzzles.map((p) => encodeQuery(tokenizer, p));
  const maxNewTokens = roomToGenerate(decoder, prompts, options.maxNewTokens, 'decodeBatch()');
  const states = options.constrained ? puzzles.map((p) => new ConstrainedState(tokenizer, p)) : null;
  const generated: number[][] = puzzles.map(() => []);
  const done = puzzles.map(() => false);
  let logits = await decoder.start(prompts);
  try {
    for (let step = 0; step < maxNewTokens; step++) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
      const chosen = puzzles.map((_, i) => {
        if (done[i]) return tokenizer.eos;
        const mask = states ? states[i].allowed() : null;
        const id = chooseToken(logits[i], mask, options.temperature, options.topK, options.rng);
        states?.[i].advance(id);
        if (id === tokenizer.eos) done[i] = true;
        else generated[i].push(id);
        return id;
      });
      if (done.every(Boolean) || step === maxNewTokens - 1) break;
      logits = await decoder.next(chosen);
    }
  } finally {
    decoder.end();
  }
  return generated.map((ids, i) => ({ response: responseText(tokenizer, ids), tokens: ids.length + (done[i] ? 1 : 0), stopped: done[i] }));
}

/** A response's text; special tokens in the middle of an answer are kept visible so the verifier rejects them. */
export function responseText(tokenizer: Tokenizer, ids: readonly number[]): string {
  return ids.map((id) => tokenizer.tokenText(id)).join('');
}

/** How many tokens the prompts leave to generate, at most `maxNewTokens`; throws when none. */
export function roomToGenerate(decoder: StepDecoder, prompts: readonly number[][], maxNewTokens: number, where: string): number {
  const longest = Math.max(...prompts.map((p) => p.length));
  // the last generated token is never fed back, so a prompt of P tokens leaves maxPositions − P + 1 to generate
  const room = decoder.maxPositions === undefined ? maxNewTokens : Math.min(maxNewTokens, decoder.maxPositions - longest + 1);
  if (room < 1) throw new RangeError(`${where}: a prompt of ${longest} tokens leaves no room in ${decoder.maxPositions} positions`);
  return room;
}
