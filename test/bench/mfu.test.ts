// bench/mfu.ts: the FLOPs a LLaMA training token costs and the MFU of a step, against counts worked by hand, and its checks.
import { describe, expect, it } from 'vitest';
import { mfu, trainingFlopsPerToken } from '../../bench/mfu.js';
import { presetConfig } from '../../lib/model/config.js';

describe('trainingFlopsPerToken', () => {
  it("is 6 per parameter plus attention's 12·L·H·D·T", () => {
    const config = presetConfig('base'); // 12 layers, 12 heads of 64
    expect(trainingFlopsPerToken(config, 1e6, 256)).toBe(6e6 + 12 * 12 * 12 * 64 * 256);
    // Attention grows with the sequence, the parameter term does not.
    const d = trainingFlopsPerToken(config, 1e6, 512) - trainingFlopsPerToken(config, 1e6, 256);
    expect(d).toBe(12 * 12 * 768 * 256);
  });

  it('names the field at fault', () => {
    const config = presetConfig('base');
    expect(() => trainingFlopsPerToken(config, 0, 256)).toThrow('trainingFlopsPerToken(): parameters must be a positive number, got 0');
    expect(() => trainingFlopsPerToken({ ...config, num_attention_heads: NaN }, 1, 256)).toThrow('config.num_attention_heads must be a positive number, got NaN');
  });
});

describe('mfu', () => {
  it('is model FLOP/s over the peak', () => {
    // 209k tokens/s at ~0.5 GFLOP a token on a 989 TFLOP/s peak: about a tenth.
    expect(mfu(209_000, 5e8, 989e12)).toBeCloseTo((209_000 * 5e8) / 989e12, 12);
    expect(mfu(2, 3, 12)).toBe(0.5);
    expect(() => mfu(1, 1, Number.POSITIVE_INFINITY)).toThrow('mfu(): peakFlops must be a positive number, got Infinity');
  });
});
