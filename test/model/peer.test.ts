// The PyTorch bench peers run through bench/peer.ts: a result where Python and torch exist, a reason
// (never an exception) where they do not or where a peer fails.
import { describe, expect, it } from 'vitest';
import { findPython, runPeer } from '../../bench/peer.js';
import { presetConfig } from '../../lib/model/config.js';

const found = await findPython();
const haveTorch = 'python' in found;
if (!haveTorch) console.warn(`peer tests that need PyTorch are skipped: ${found.reason}`);

describe('bench peers', () => {
  it('finds a Python with torch, or says why not', () => {
    if ('python' in found) {
      expect(found.python.length).toBeGreaterThan(0);
      expect(found.torchVersion).toMatch(/^\d+\.\d+/);
    } else {
      expect(found.reason.length).toBeGreaterThan(0);
    }
  });

  it('explains a missing Python instead of throwing', async () => {
    const none = await findPython({ candidates: ['/nonexistent/python3-for-test'] });
    expect('reason' in none && none.reason).toMatch(/\/nonexistent\/python3-for-test: ENOENT/);
    const r = await runPeer('matmul', { m: 8, n: 8, k: 8 }, { python: '/nonexistent/python3-for-test' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/did not start/);
  });

  it('refuses an unknown peer with a reason', async () => {
    const r = await runPeer('no_such_peer', {});
    expect(r).toEqual({ ok: false, reason: expect.stringMatching(/no peer 'no_such_peer'/) });
    const bad = await runPeer('../matmul', {});
    expect(bad.ok).toBe(false);
  });

  it.skipIf(!haveTorch)('runs the matmul peer for a small shape', async () => {
    const r = await runPeer('matmul', { m: 64, n: 48, k: 32, threads: 1, repeats: 3 });
    if (!r.ok) throw new Error(r.reason);
    expect(r.result.torch).toBe((found as { torchVersion: string }).torchVersion);
    expect(r.result).toMatchObject({ m: 64, n: 48, k: 32, threads: 1, device: 'cpu', dtype: 'float32' });
    expect(r.result.gflops).toBeGreaterThan(0);
    expect(r.result.msPerCall).toBeGreaterThan(0);
    // gflops and msPerCall describe the same measurement.
    expect(r.result.gflops as number).toBeCloseTo((2 * 64 * 48 * 32) / ((r.result.msPerCall as number) * 1e6), 6);
  });

  it.skipIf(!haveTorch)('sends every timed call as a sample (matmul, attention), SDPA for attention on torch 2', async () => {
    const m = await runPeer('matmul', { m: 32, n: 16, k: 8, threads: 1, repeats: 4 });
    if (!m.ok) throw new Error(m.reason);
    expect(m.result.samplesMs).toHaveLength(4);
    expect(Math.min(...(m.result.samplesMs as number[]))).toBeCloseTo(m.result.msMin as number, 9);
    const a = await runPeer('attention', { batch: 1, heads: 4, kvHeads: 2, seq: 16, headDim: 8, threads: 1, repeats: 3 });
    if (!a.ok) throw new Error(a.reason);
    expect(a.result.samplesFwdBwdMs).toHaveLength(3);
    const major = Number((found as { torchVersion: string }).torchVersion.split('.')[0]);
    if (major >= 2) expect(a.result.impl).toMatch(/^sdpa/);
  });

  it.skipIf(!haveTorch)('checks the train-step peer\'s compile flag', async () => {
    const r = await runPeer('train_step', { config: presetConfig('tiny'), batch: 1, seq: 1, compile: 'yes' });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/config\.compile must be true or false, got 'yes'/);
  });

  it.skipIf(!haveTorch)('returns the peer\'s own message for a bad config', async () => {
    const r = await runPeer('matmul', { m: 64, n: 64, k: -1, threads: 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toMatch(/exited with code 2/);
      expect(r.reason).toMatch(/config\.k must be an integer >= 1, got -1/);
    }
  });

  it.skipIf(!haveTorch)('kills a peer that runs past its timeout', async () => {
    const r = await runPeer('matmul', { m: 2048, n: 2048, k: 2048, threads: 1, repeats: 1000 }, { timeoutMs: 1500 });
    expect(r).toEqual({ ok: false, reason: expect.stringMatching(/ran past the 1500 ms timeout/) });
  });
});
