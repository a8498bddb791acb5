// The package's public face offers what docs/ARCHITECTURE.md's import line promises.
import { describe, expect, it } from 'vitest';
import * as api from '../lib/index.js';

describe('puzzle-llama exports', () => {
  it("has the names of the documented import line", () => {
    for (const name of ['synthesize', 'verify', 'solve', 'train', 'evaluate', 'Engine'] as const) expect(typeof api[name], name).toBe('function');
    expect(api.benchmarkSets.map((s) => s.id)).toContain('ood-form');
    expect(typeof api.kernels.matmul).toBe('function');
  });
});
