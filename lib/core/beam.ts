// Beam search: K hypotheses per puzzle, extended a token at a time and ranked by the model's own
// log-probability of their text (log-softmax over the whole vocabulary, before any constraint's mask), so
// that in constrained decoding a step whose forced result the model did not expect costs what the model
// thinks it costs. The answer is the most probable hypothesis that ended with <eos>. One beam is greedy.
import type { Puzzle } from '../puzzle/types.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { encodeQuery } from './sft.js';
import { ConstrainedState } from './constrained.js';
import { responseText, roomToGenerate, type Decoded, type StepDecoder } from './decode.js';

export interface BeamOptions {
  beams: number;
  maxNewTokens: number;
  /** Only well-formed steps over available numbers with correct results. */
  constrained: boolean;
  signal?: AbortSignal;
}

interface Hypothesis {
  tokens: number[];
  /** Sum of the model's log-probabilities of the tokens. */
  score: number;
  state: ConstrainedState | null;
}

interface Candidate {
  parent: number;
  token: number;
  score: number;
}

/** log-softmax of one row of logits, in float64. */
function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  const z = max + Math.log(sum);
  return Float64Array.from(logits, (x) => x - z);
}

/** Higher score first; ties to the parent's rank, then to the lower token id. */
const byRank = (a: Candidate, b: Candidate) => b.score - a.score || a.parent - b.parent || a.token - b.token;

/**
 * A hypothesis's `count` best allowed extensions. K + 1 of each are enough: the K live hypotheses of the
 * next step are the best K extensions that do not end, and only one token (<eos>) ends one.
 */
function bestExtensions(h: Hypothesis, parent: number, logits: Float32Array, count: number): Candidate[] {
  const lp = logSoftmax(logits);
  const mask = h.state ? h.state.allowed() : null;
  const best: Candidate[] = [];
  for (let t = 0; t < lp.length; t++) {
    if (mask && !mask[t]) continue;
    const c = { parent, token: t, score: h.score + lp[t] };
    if (best.length === count && byRank(c, best[count - 1]) >= 0) continue;
    // insertion into the short sorted list
    let at = Math.min(best.length, count - 1);
    if (best.length === count) best.pop();
    while (at > 0 && byRank(c, best[at - 1]) < 0) at--;
    best.splice(at, 0, c);
  }
  return best;
}

/**
 * One response per puzzle by beam search with `beams` hypotheses each. The session holds puzzles × beams
 * rows; between tokens the decoder's rows are reordered so that each continues its parent hypothesis.
 * Ties are broken by the parent's rank, then the lower token id, so the result is deterministic.
 */
export async function beamSearchBatch(decoder: StepDecoder, tokenizer: Tokenizer, puzzles: readonly Puzzle[], options: BeamOptions): Promise<Decoded[]> {
  const K = options.beams;
  if (!Number.isInteger(K) || K < 1) throw new RangeError(`beamSearchBatch(): beams must be a positive integer, got ${K}`);
  if (K > 1 && !decoder.reorder) throw new Error('beamSearchBatch(): beam search needs a decoder that can reorder its rows (StepDecoder.reorder)');
  const prompts = puzzles.map((p) => encodeQuery(tokenizer, p));
  const maxNewTokens = roomToGenerate(decoder, prompts, options.maxNewTokens, 'beamSearchBatch()');

  // live[i][j] sits in row i*K + j; a puzzle starts with one hypothesis (its other rows idle)
  let live: Hypothesis[][] = puzzles.map((p) => [{ tokens: [], score: 0, state: options.constrained ? new ConstrainedState(tokenizer, p) : null }]);
  const best: Array<Hypothesis | null> = puzzles.map(() => null); // the most probable finished one
  const done = puzzles.map(() => false);
  let logits = await decoder.start(prompts.flatMap((p) => Array.from({ length: K }, () => p)));
  try {
    for (let step = 0; step < maxNewTokens; step++) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
      const rows = Array.from({ length: puzzles.length * K }, (_, r) => r);
      const feed = new Array<number>(puzzles.length * K).fill(tokenizer.eos);
      const next: Hypothesis[][] = puzzles.map((_, i) => {
        if (done[i]) return [];
        const candidates: Candidate[] = [];
        live[i].forEach((h, j) => candidates.push(...bestExtensions(h, j, logits[i * K + j], K + 1)));
        candidates.sort(byRank);
        const kept: Hypothesis[] = [];
        for (let rank = 0; rank < candidates.length && kept.length < K; rank++) {
          const c = candidates[rank];
          const parent = live[i][c.parent];
          if (c.token === tokenizer.eos) {
            // a hypothesis ends here when it is among the K best extensions
            if (rank < K && (best[i] === null || c.score > best[i]!.score)) best[i] = { tokens: [...parent.tokens, c.token], score: c.score, state: null };
            continue;
          }
          let state = parent.state;
          if (state) {
            state = state.clone();
            state.advance(c.token);
          }
          rows[i * K + kept.length] = i * K + c.parent;
          feed[i * K + kept.length] = c.token;
          kept.push({ tokens: [...parent.tokens, c.token], score: c.score, state });
        }
        // scores only fall as hypotheses grow: none still open can beat a finished one that is better
        if (best[i] !== null && (kept.length === 0 || kept[0].score <= best[i]!.score)) done[i] = true;
        return kept;
      });
      live = next;
      if (done.every(Boolean) || step === maxNewTokens - 1) break;
      await decoder.reorder?.(rows);
      logits = await decoder.next(feed);
    }
  } finally {
    decoder.end();
  }
  return puzzles.map((_, i) => {
    const finished = best[i];
    const chosen = finished ?? live[i][0];
    const ids = finished ? finished.tokens.slice(0, -1) : chosen.tokens;
    return { response: responseText(tokenizer, ids), tokens: chosen.tokens.length, stopped: finished !== null };
  });
}
