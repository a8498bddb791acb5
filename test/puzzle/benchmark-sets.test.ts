// The shipped evaluation sets: exactly what their seeds generate, the right cells, no shared puzzle.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchmarkSetText, benchmarkSets, dataDir, generateBenchmarkSets, loadBenchmarkSet } from '../../lib/puzzle/benchmark-sets.js';
import { puzzleKey } from '../../lib/puzzle/key.js';
import { verify } from '../../lib/puzzle/verify.js';

describe('evaluation sets', () => {
  const generated = generateBenchmarkSets();

  it('match their seeds byte for byte', () => {
    for (const set of benchmarkSets) {
      const shipped = readFileSync(join(dataDir(), `${set.id}.jsonl`), 'utf8');
      expect(shipped === benchmarkSetText(generated.get(set.id) ?? []), `data/${set.id}.jsonl differs from its seeds`).toBe(true);
    }
  });

  it('hold the cells of the paper’s table: V, N and counts', () => {
    const expected: Record<string, [number, Record<number, number>]> = {
      id: [60, { 5: 1000, 6: 1000, 7: 1000 }],
      'ood-num-100': [100, { 5: 1000, 6: 1000, 7: 1000 }],
      'ood-num-1000': [1000, { 5: 1000, 6: 1000, 7: 1000 }],
      'ood-form': [60, { 8: 1000 }],
      'ood-form-10': [60, { 10: 500 }],
      'ood-form-12': [60, { 12: 500 }],
    };
    for (const [id, [v, cells]] of Object.entries(expected)) {
      const puzzles = loadBenchmarkSet(id);
      const counts: Record<number, number> = {};
      for (const p of puzzles) {
        counts[p.numbers.length] = (counts[p.numbers.length] ?? 0) + 1;
        expect(p.numbers.every((x) => x >= 1 && x <= v)).toBe(true);
        expect(verify(p, p.response).ok).toBe(true);
      }
      expect(counts, id).toEqual(cells);
    }
  });

  it('never repeat a puzzle, within or across sets', () => {
    const keys = new Set<string>();
    let total = 0;
    for (const set of benchmarkSets) {
      for (const p of loadBenchmarkSet(set.id)) {
        keys.add(puzzleKey(p));
        total++;
      }
    }
    expect(keys.size).toBe(total);
    expect(total).toBe(11000);
  });
});
