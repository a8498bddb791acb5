// withEnv: variables set for the call only, restored (or removed) afterwards, also when the call throws.
import { describe, expect, it } from 'vitest';
import { withEnv } from '../../lib/engine/env.js';

describe('withEnv', () => {
  it('sets variables for the call and restores them, also after a throw', async () => {
    process.env.PUZZLE_LLAMA_TEST_KEEP = 'before';
    delete process.env.PUZZLE_LLAMA_TEST_NEW;
    const seen = await withEnv({ PUZZLE_LLAMA_TEST_KEEP: 'during', PUZZLE_LLAMA_TEST_NEW: '1' }, async () => [
      process.env.PUZZLE_LLAMA_TEST_KEEP,
      process.env.PUZZLE_LLAMA_TEST_NEW,
    ]);
    expect(seen).toEqual(['during', '1']);
    expect(process.env.PUZZLE_LLAMA_TEST_KEEP).toBe('before');
    expect('PUZZLE_LLAMA_TEST_NEW' in process.env).toBe(false);
    await expect(withEnv({ PUZZLE_LLAMA_TEST_KEEP: 'x' }, async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(process.env.PUZZLE_LLAMA_TEST_KEEP).toBe('before');
    delete process.env.PUZZLE_LLAMA_TEST_KEEP;
  });
});
