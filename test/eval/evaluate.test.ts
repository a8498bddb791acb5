// evaluate() over stub decoders (test-only): a decoder that always answers correctly scores 1.0, garbage 0;
// constrained decoding never writes a malformed step; pass@k follows its estimator.
import { describe, expect, it } from 'vitest';
import { ConstrainedState } from '../../lib/core/constrained.js';
import { chooseToken, type StepDecoder } from '../../lib/core/decode.js';
import { evaluateWithDecoder, passAtK, type EvalShard, type ResponseRecord } from '../../lib/eval/evaluate.js';
import { formatEvalTable } from '../../lib/eval/table.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';
import { loadBenchmarkSet } from '../../lib/puzzle/benchmark-sets.js';
import { parsePrompt } from '../../lib/puzzle/format.js';
import { Rng } from '../../lib/puzzle/rng.js';
import { solve } from '../../lib/puzzle/solve.js';
import { synthesize } from '../../lib/puzzle/synthesize.js';
import { verify } from '../../lib/puzzle/verify.js';

const tok = new PuzzleTokenizer();

/** Reads the prompt back from the query tokens and writes `answer(prompt)` one token at a time. */
function scriptedDecoder(answer: (prompt: string, rng: Rng) => string): StepDecoder {
  let scripts: number[][] = [];
  let pos = 0;
  const rng = new Rng(5);
  const logitsAt = () =>
    scripts.map((s) => {
      const l = new Float32Array(tok.vocabSize).fill(-10);
      l[pos < s.length ? s[pos] : tok.eos] = 10;
      return l;
    });
  return {
    vocabSize: tok.vocabSize,
    async start(prompts) {
      scripts = prompts.map((p) => {
        const prompt = tok.decode(p); // drops <bos> and <ans>
        return [...tok.encode(answer(prompt, rng)), tok.eos];
      });
      pos = 0;
      return logitsAt();
    },
    async next() {
      pos++;
      return logitsAt();
    },
    end() {},
  };
}

/** Uniform logits: with a mask, decoding is a random walk through what the mask allows. */
function uniformDecoder(): StepDecoder {
  let batch = 0;
  const rows = () => Array.from({ length: batch }, () => new Float32Array(tok.vocabSize));
  return {
    vocabSize: tok.vocabSize,
    async start(prompts) {
      batch = prompts.length;
      return rows();
    },
    async next() {
      return rows();
    },
    end() {},
  };
}

describe('evaluate', () => {
  it('scores a decoder that always answers correctly at 1.0', async () => {
    const decoder = scriptedDecoder((prompt) => solve(parsePrompt(prompt)!).response!);
    const result = await evaluateWithDecoder(decoder, tok, { sets: ['id', 'ood-form'], limit: 30, batchSize: 8 });
    for (const s of result.scores) {
      expect(s.pass1).toBe(1);
      expect(s.count).toBe(30);
    }
    expect(Object.keys(result.scores[0].byN)).toEqual(['5', '6', '7']);
    expect(result.records.every((r) => r.ok)).toBe(true);
    const table = formatEvalTable(result);
    expect(table).toMatch(/id\s+all\s+30\s+1\.000\s+0\.216\s+0\.383\s+0\.443/);
  });

  it('scores garbage at 0 with the verifier’s reasons', async () => {
    const decoder = scriptedDecoder(() => '1+1=3, 99*0=7');
    const result = await evaluateWithDecoder(decoder, tok, { sets: ['id'], limit: 12 });
    expect(result.scores[0].pass1).toBe(0);
    expect(new Set(result.records.map((r) => r.reason))).toEqual(new Set(['operand-not-available', 'too-many-steps', 'wrong-result'].filter((r) => result.records.some((x) => x.reason === r))));
    expect(result.records.every((r) => !r.ok && r.reason !== null)).toBe(true);
  });

  it('gives pass@k by the unbiased estimator when sampling', async () => {
    expect(passAtK(5, 0, 1)).toBe(0);
    expect(passAtK(5, 5, 3)).toBe(1);
    expect(passAtK(4, 1, 1)).toBeCloseTo(0.25, 12);
    expect(passAtK(4, 1, 2)).toBeCloseTo(0.5, 12); // 1 − C(3,2)/C(4,2)
    // correct on every other puzzle-sample, alternating
    let flip = 0;
    const decoder = scriptedDecoder((prompt) => (flip++ % 2 === 0 ? solve(parsePrompt(prompt)!).response! : '1+1=2'));
    const result = await evaluateWithDecoder(decoder, tok, { sets: ['id'], limit: 6, samples: 2, batchSize: 4 });
    expect(result.scores[0].pass1).toBeCloseTo(0.5, 12);
    expect(result.scores[0].passK).toBe(1);
  });

  it('reports free and constrained decoding side by side', async () => {
    const result = await evaluateWithDecoder(uniformDecoder(), tok, { sets: ['id'], limit: 20, modes: ['free', 'constrained'], maxNewTokens: 120 });
    const constrained = result.records.filter((r) => r.mode === 'constrained');
    expect(constrained.length).toBe(20);
    for (const r of constrained) expect(['final-value-differs', null]).toContain(r.reason);
    expect(result.scores.map((s) => s.mode).sort()).toEqual(['constrained', 'free']);
  });

  it('shards batches over ranks and gathers the same records and scores as one process', async () => {
    // Sampling with a masked uniform decoder: each batch samples from a stream of its own, so the results
    // do not depend on which rank decodes it.
    const options = { sets: ['id', 'ood-form'], limit: 10, modes: ['free', 'constrained'] as const, samples: 2, batchSize: 3, maxNewTokens: 60, seed: 7 };
    const whole = await evaluateWithDecoder(uniformDecoder(), tok, { ...options, modes: [...options.modes] });
    // two ranks in one process: gather() waits for both parts and hands each rank all of them in rank order
    type Part = { records: ResponseRecord[]; generatedTokens: number };
    const parts: Part[] = [];
    let release: (all: Part[]) => void = () => {};
    const all = new Promise<Part[]>((resolve) => (release = resolve));
    const shard = (rank: number): EvalShard => ({
      rank,
      worldSize: 2,
      gather: async (part) => {
        parts[rank] = part;
        if (parts.filter(Boolean).length === 2) release(parts);
        return all;
      },
    });
    const [a, b] = await Promise.all([0, 1].map((rank) => evaluateWithDecoder(uniformDecoder(), tok, { ...options, modes: [...options.modes], shard: shard(rank) })));
    expect(parts[0].records.length).toBeGreaterThan(0);
    expect(parts[1].records.length).toBeGreaterThan(0);
    const strip = (r: ResponseRecord[]) => r.map((x) => ({ ...x }));
    expect(strip(a.records)).toEqual(strip(whole.records));
    expect(strip(b.records)).toEqual(strip(whole.records));
    expect(a.scores).toEqual(whole.scores);
    expect(a.generatedTokens).toBe(whole.generatedTokens);
  });

  it('refuses bad options naming them', async () => {
    await expect(evaluateWithDecoder(uniformDecoder(), tok, { sets: ['nope'] })).rejects.toThrow(/unknown evaluation set 'nope'/);
    await expect(evaluateWithDecoder(uniformDecoder(), tok, { samples: 0 })).rejects.toThrow(/samples must be a positive integer, got 0/);
    await expect(evaluateWithDecoder(uniformDecoder(), tok, { temperature: -1 })).rejects.toThrow(/temperature/);
  });
});

describe('constrained decoding', () => {
  it('never produces a malformed step, whatever the model prefers', () => {
    const rng = new Rng(3);
    let complete = 0;
    for (const p of synthesize({ n: [2, 3, 5, 8], maxValue: 1000, count: 400, seed: 9 })) {
      const state = new ConstrainedState(tok, p);
      const ids: number[] = [];
      for (let i = 0; i < 400 && !state.finished; i++) {
        const mask = state.allowed();
        expect(mask.some((x) => x === 1)).toBe(true);
        const logits = new Float32Array(tok.vocabSize).map(() => rng.nextFloat() * 4);
        const id = chooseToken(logits, mask, 1.0, 0, rng);
        state.advance(id);
        if (id !== tok.eos) ids.push(id);
      }
      expect(state.finished).toBe(true);
      const verdict = verify(p, tok.decode(ids));
      expect(['final-value-differs', null], tok.decode(ids)).toContain(verdict.reason);
      complete++;
    }
    expect(complete).toBe(400);
  });

  it('lets the known solution through', () => {
    for (const p of loadBenchmarkSet('ood-num-1000').slice(0, 100)) {
      const state = new ConstrainedState(tok, p);
      for (const id of [...tok.encode(p.response), tok.eos]) state.advance(id);
      expect(state.finished).toBe(true);
    }
  });

  it('refuses a token the mask forbids', () => {
    const state = new ConstrainedState(tok, { numbers: [3, 4], target: 7 });
    expect(() => state.advance(tok.encode('9')[0])).toThrow(/not allowed/);
    for (const c of '3+4=') state.advance(tok.encode(c)[0]);
    expect(() => state.advance(tok.encode('8')[0])).toThrow(/not allowed/);
  });
});
