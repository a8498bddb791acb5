// The package's public face offers what DESIGN.md's import line promises.
import { describe, expect, it } from 'vitest';
import * as api from '../lib/index.js';

describe('puzzle-llama exports', () => {
  it("has DESIGN.md's names", () => {
    for (const name of ['synthesize', 'verify', 'solve', 'train', 'evaluate', 'Engine'] as const) expect(typeof api[name], name).toBe('function');
    expect(api.benchmarkSets.map((s) => s.id)).toContain('ood-form');
    expect(typeof api.kernels.matmul).toBe('function');
  });
});
