// A time budget ends a run by the clock (the step reached is reported); length buckets keep every puzzle,
// cut padding and resume at the same batch; evaluation takes a user's JSONL file as a set and breaks
// failures down by reason.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeExample, responseHead } from '../../lib/core/sft.js';
import { evaluate } from '../../lib/eval/run.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';
import { learningRate } from '../../lib/train/schedule.js';
import { GlobalBatches } from '../../lib/train/batches.js';
import { openPuzzleStream } from '../../lib/train/data.js';
import { train } from '../../lib/train/train.js';

const work = mkdtempSync(join(tmpdir(), 'puzzle-budget-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const small = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };
const synth = { source: 'synth' as const, n: [5, 6, 7], maxValue: 60, seed: 5, responses: 'canonical' as const };

describe('time budget', () => {
  it('stops when the budget is spent and says so', async () => {
    const r = await train({ out: join(work, 'budget'), config: small, timeBudget: 2, batchSize: 8, threads: 1, data: synth, checkpointEvery: 0 });
    expect(r.endedBy).toBe('time');
    expect(r.stepsDone).toBeGreaterThan(0);
    expect(r.stepsDone).toBe(r.history.length);
    expect(r.trainedSeconds).toBeGreaterThanOrEqual(2);
    // the learning rate decays with the elapsed fraction after warmup
    expect(r.history.at(-1)!.lr).toBeLessThan(r.history[Math.min(r.history.length - 1, r.options.warmupSteps)].lr + 1e-12);
  });

  it('the cosine follows whichever is further along: steps or time', () => {
    const o = { lr: 1, totalSteps: 1000, warmupSteps: 0 };
    expect(learningRate(0, o, 0.5)).toBeCloseTo(0.5, 6);
    expect(learningRate(500, o, 0)).toBeCloseTo(0.5, 6);
    expect(learningRate(0, o, 1)).toBeCloseTo(0, 6);
  });

  it('refuses a run with neither steps nor a budget, and a bad budget', async () => {
    await expect(train({ out: join(work, 'none'), config: small })).rejects.toThrow(/steps .* or timeBudget/);
    await expect(train({ out: join(work, 'bad'), config: small, timeBudget: -1 })).rejects.toThrow(/timeBudget/);
  });
});

describe('length buckets', () => {
  const tokenizer = new PuzzleTokenizer();
  const take = (buckets: number, batches: number, start?: { consumed: number; skipBatches?: number }) => {
    const stream = openPuzzleStream(synth, start);
    const b = new GlobalBatches(stream, tokenizer, 8, buckets, 1234, start);
    const out = Array.from({ length: batches }, () => b.next().map((e) => e.ids.join(',')));
    return { out, position: b.position() };
  };

  it('hands out every puzzle of a window once, with less padding', () => {
    const plain = take(1, 8).out.flat().sort();
    const bucketed = take(8, 8);
    expect(bucketed.out.flat().sort()).toEqual(plain);
    const waste = (batches: string[][]) => {
      let real = 0;
      let padded = 0;
      for (const b of batches) {
        const lengths = b.map((ids) => ids.split(',').length);
        real += lengths.reduce((a, x) => a + x, 0);
        padded += Math.max(...lengths) * lengths.length;
      }
      return 1 - real / padded;
    };
    expect(waste(bucketed.out)).toBeLessThan(waste(take(1, 8).out));
  });

  it('resumes mid-window at the same batch', () => {
    const whole = take(4, 6).out;
    const first = take(4, 3);
    expect(first.position).toEqual({ consumed: 0, skipBatches: 3 });
    expect(take(4, 3, first.position).out).toEqual(whole.slice(3));
  });

  it('encodes the same examples as the plain batches (answers unchanged)', () => {
    const stream = openPuzzleStream(synth);
    const p = stream.next();
    expect(take(1, 1).out[0][0]).toBe(encodeExample(tokenizer, p).ids.join(','));
  });

  it('cutTails cuts that fraction of the examples after their first fold: prefixes of the full ones', () => {
    expect(responseHead('3+9=12, 4/7=0, 0*8=0, 12+0=12')).toBe('3+9=12, 4/7=0');
    expect(responseHead('26/34=0, 0*57=0, 56+0=56')).toBe('26/34=0');
    expect(responseHead('2+5=7, 7-7=0')).toBeNull(); // the step that makes 0 is the last one
    expect(responseHead('58-51=7, 6-7=-1, 3*-1=-3')).toBeNull();
    const full = new GlobalBatches(openPuzzleStream(synth), tokenizer, 8, 1, 1234).next();
    const cut = new GlobalBatches(openPuzzleStream(synth), tokenizer, 8, 1, 1234, { consumed: 0 }, 0.5).next();
    let shorter = 0;
    full.forEach((f, i) => {
      expect(cut[i].queryLength).toBe(f.queryLength);
      expect(f.ids.slice(0, cut[i].ids.length)).toEqual(cut[i].ids);
      if (cut[i].ids.length < f.ids.length) shorter++;
    });
    expect(shorter).toBeGreaterThan(0);
    expect(shorter).toBeLessThan(8);
    const all = new GlobalBatches(openPuzzleStream(synth), tokenizer, 8, 1, 1234, { consumed: 0 }, 1).next();
    // every example with a step that makes 0 before its last (all canonical ones) is cut at 1
    expect(all.filter((e) => e.ids.at(-1) !== tokenizer.eos).length).toBeGreaterThan(shorter);
  });
});

describe('evaluation on a JSONL file of puzzles', () => {
  it('takes a file as a set, names it, and breaks failures down by reason', async () => {
    const file = join(work, 'mine.jsonl');
    writeFileSync(file, '{"numbers":[3,9,4,7,8],"target":12}\n\n{"numbers":[1,2,3],"target":6}\n');
    const run = await train({ out: join(work, 'eval-model'), config: small, steps: 2, batchSize: 8, threads: 1, data: synth, checkpointEvery: 0 });
    const r = await evaluate({ model: run.model!, sets: [file], modes: ['free', 'constrained'], threads: 1 });
    expect(r.scores.map((s) => s.id)).toEqual([file, file]);
    for (const s of r.scores) {
      expect(s.count).toBe(2);
      expect(s.responses).toBe(2);
      const failed = Object.values(s.failures).reduce((a, b) => a + (b ?? 0), 0);
      expect(failed).toBe(Math.round(2 * (1 - s.pass1)));
    }
    expect(r.table).toMatch(/failures by the verifier's reason/);
    await expect(evaluate({ model: run.model!, sets: [join(work, 'missing.jsonl')], threads: 1 })).rejects.toThrow(/missing\.jsonl' does not exist/);
    writeFileSync(join(work, 'bad.jsonl'), '{"numbers":[1,2],"target":3}\nnot json\n');
    await expect(evaluate({ model: run.model!, sets: [join(work, 'bad.jsonl')], threads: 1 })).rejects.toThrow(/bad\.jsonl:2/);
  });
});
