// Beam search over StepDecoders whose logits depend on each row's whole sequence, so that a row
// continuing the wrong hypothesis after a reorder shows up in the result.
import { describe, expect, it } from 'vitest';
import { beamSearchBatch } from '../../lib/core/beam.js';
import { decodeBatch, type StepDecoder } from '../../lib/core/decode.js';
import { evaluateWithDecoder, parseDecodingMode } from '../../lib/eval/evaluate.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';
import { Rng } from '../../lib/puzzle/rng.js';
import { verify } from '../../lib/puzzle/verify.js';
import type { Puzzle } from '../../lib/puzzle/types.js';

const tok = new PuzzleTokenizer();

/** A model given as logits of a sequence (prompt and generated tokens); rows follow reorder(). */
function sequenceDecoder(logitsOf: (seq: readonly number[]) => Float32Array, withReorder = true): StepDecoder & { reorders: number } {
  let rows: number[][] = [];
  const out = () => rows.map(logitsOf);
  const decoder: StepDecoder & { reorders: number } = {
    vocabSize: tok.vocabSize,
    reorders: 0,
    async start(prompts) {
      rows = prompts.map((p) => [...p]);
      return out();
    },
    async next(tokens) {
      tokens.forEach((t, b) => rows[b].push(t));
      return out();
    },
    end() {},
  };
  if (withReorder) {
    decoder.reorder = async (order) => {
      decoder.reorders++;
      rows = order.map((r) => [...rows[r]]);
    };
  }
  return decoder;
}

/** Pseudo-random logits fixed by the sequence. */
function hashed(seq: readonly number[]): Float32Array {
  let h = 17;
  for (const t of seq) h = (Math.imul(h, 31) + t + 1) >>> 0;
  const rng = new Rng(h);
  return Float32Array.from({ length: tok.vocabSize }, () => 4 * rng.nextFloat());
}

/** log-probability of `text` (then <eos>) under a sequence model. */
function logProb(logitsOf: (seq: readonly number[]) => Float32Array, prompt: number[], text: string): number {
  const seq = [...prompt];
  let total = 0;
  for (const t of [...tok.encode(text), tok.eos]) {
    const l = logitsOf(seq);
    const max = Math.max(...l);
    const z = max + Math.log(l.reduce((a, x) => a + Math.exp(x - max), 0));
    total += l[t] - z;
    seq.push(t);
  }
  return total;
}

const puzzles: Puzzle[] = [
  { numbers: [3, 4, 10], target: 17 },
  { numbers: [6, 2, 5], target: 8 },
  { numbers: [7, 7, 1], target: 0 },
];

describe('beam search', () => {
  it('with one beam is greedy decoding, free and constrained', async () => {
    for (const constrained of [false, true]) {
      const greedy = await decodeBatch(sequenceDecoder(hashed), tok, puzzles, { maxNewTokens: 40, temperature: 0, topK: 0, constrained, rng: new Rng(1) });
      const beam = await beamSearchBatch(sequenceDecoder(hashed), tok, puzzles, { beams: 1, maxNewTokens: 40, constrained });
      expect(beam).toEqual(greedy);
    }
  });

  it('finds the more probable answer that greedy decoding passes by', async () => {
    // after the query: '1' (p 0.6) leads to a flat distribution, '2' (p 0.4) to a certain <eos>
    const one = tok.encode('1')[0];
    const two = tok.encode('2')[0];
    const model = (seq: readonly number[]) => {
      const l = new Float32Array(tok.vocabSize).fill(-30);
      const last = seq[seq.length - 1];
      if (last === tok.ans) {
        l[one] = Math.log(0.6);
        l[two] = Math.log(0.4);
      } else if (last === two) l[tok.eos] = 0;
      else l.fill(0);
      return l;
    };
    const p = [puzzles[0]];
    const [greedy] = await decodeBatch(sequenceDecoder(model), tok, p, { maxNewTokens: 6, temperature: 0, topK: 0, constrained: false, rng: new Rng(1) });
    const decoder = sequenceDecoder(model);
    const [beam] = await beamSearchBatch(decoder, tok, p, { beams: 2, maxNewTokens: 6, constrained: false });
    expect(greedy.response.startsWith('1')).toBe(true);
    expect(beam).toEqual({ response: '2', tokens: 2, stopped: true });
    expect(decoder.reorders).toBeGreaterThan(0);
  });

  it('returns the most probable of what it kept, and constrained beams write only valid steps', async () => {
    const query = (p: Puzzle) => [tok.bos, ...tok.encode(`${p.numbers.join(', ')}: ${p.target}`), tok.ans];
    for (const constrained of [false, true]) {
      const wide = await beamSearchBatch(sequenceDecoder(hashed), tok, puzzles, { beams: 6, maxNewTokens: 30, constrained });
      const greedy = await beamSearchBatch(sequenceDecoder(hashed), tok, puzzles, { beams: 1, maxNewTokens: 30, constrained });
      wide.forEach((d, i) => {
        if (constrained) {
          expect(d.stopped).toBe(true);
          const v = verify(puzzles[i], d.response);
          expect(v.ok || v.reason === 'final-value-differs').toBe(true);
        }
        // on these models the wide search never does worse than greedy's finished answer
        if (constrained && d.stopped && greedy[i].stopped) expect(logProb(hashed, query(puzzles[i]), d.response)).toBeGreaterThanOrEqual(logProb(hashed, query(puzzles[i]), greedy[i].response) - 1e-9);
      });
    }
  });

  it('refuses what it cannot do, naming it', async () => {
    await expect(beamSearchBatch(sequenceDecoder(hashed, false), tok, puzzles, { beams: 2, maxNewTokens: 5, constrained: false })).rejects.toThrow(/needs a decoder that can reorder/);
    await expect(beamSearchBatch(sequenceDecoder(hashed), tok, puzzles, { beams: 0, maxNewTokens: 5, constrained: false })).rejects.toThrow(/beams must be a positive integer, got 0/);
    expect(parseDecodingMode('constrained-beam4')).toEqual({ constrained: true, beams: 4 });
    expect(parseDecodingMode('free')).toEqual({ constrained: false, beams: 1 });
    for (const bad of ['beam4', 'constrained-beam1', 'free-beam65', 'free-beam', 'Free', 7]) expect(() => parseDecodingMode(bad)).toThrow(/is not one of 'free', 'constrained'/);
    await expect(evaluateWithDecoder(sequenceDecoder(hashed), tok, { modes: ['constrained-beam0' as 'free'] })).rejects.toThrow(/evaluate\(\): modes: decoding mode "constrained-beam0"/);
    await expect(evaluateWithDecoder(sequenceDecoder(hashed), tok, { modes: ['constrained-beam64'], batchSize: 2048 })).rejects.toThrow(/batchSize 2048 × 64 beams is 131072 decoding rows, more than a session holds \(65536\)/);
    await expect(evaluateWithDecoder(sequenceDecoder(hashed), tok, { modes: ['free-beam2'], samples: 3 })).rejects.toThrow(/beam search gives one deterministic response, so it takes samples 1 and temperature 0/);
  });

  it('scores beam modes beside greedy ones in evaluate()', async () => {
    const r = await evaluateWithDecoder(sequenceDecoder(hashed), tok, { sets: ['id'], limit: 6, modes: ['constrained', 'constrained-beam3'] });
    expect(r.scores.map((s) => s.mode)).toEqual(['constrained', 'constrained-beam3']);
    expect(r.records.filter((x) => x.mode === 'constrained-beam3')).toHaveLength(6);
    for (const x of r.records) expect(x.ok || x.reason === 'final-value-differs').toBe(true);
  });
});
