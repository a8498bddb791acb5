// The process group, two ranks in one process: rank 0's decisions and refusals reach rank 1, ranks that
// would pick different communicators are refused, and a failure is explained by the rank that left.
import { describe, expect, it } from 'vitest';
import { joinGroup } from '../../lib/dist/group.js';
import type { World } from '../../lib/dist/env.js';
import { freePort } from './free-port.js';

async function twoRanks(timeoutMs = 5000) {
  const port = await freePort();
  const world = (rank: number): World => ({ rank, worldSize: 2, localRank: rank, localWorldSize: 2, masterAddr: '127.0.0.1', masterPort: port, storePort: port, source: 'environment' });
  const g0 = await joinGroup(world(0), { timeoutMs });
  const g1 = await joinGroup(world(1), { timeoutMs });
  return [g0, g1] as const;
}

describe('the process group', () => {
  it('shares rank 0\'s decision, or its refusal', async () => {
    const [g0, g1] = await twoRanks();
    const [a, b] = await Promise.all([g0.decide('x', () => ({ step: 7 })), g1.decide('x', () => ({ step: -1 }))]);
    expect(a).toEqual({ step: 7 });
    expect(b).toEqual({ step: 7 });
    const refusal = g0.decide('y', () => {
      throw new Error('the folder holds a run');
    });
    await expect(refusal).rejects.toThrow('the folder holds a run');
    await expect(g1.decide('y', () => 0)).rejects.toThrow(/rank 0 refused the run: the folder holds a run/);
    await Promise.all([g1.close(), g0.close()]);
  });

  it('refuses ranks that would pick different communicators', async () => {
    const [g0, g1] = await twoRanks();
    const results = await Promise.allSettled([g0.connect('gloo'), g1.connect('nccl')]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason.message).toMatch(/rank 0 on the CPU \(Gloo\), rank 1 on a GPU \(NCCL\); give every rank the same --device/);
    }
    await Promise.all([g1.close(), g0.close()]);
  });

  it('explains a failure by the rank that left, with the reason it posted', async () => {
    const [g0, g1] = await twoRanks();
    await g1.close(new Error('CUDA out of memory on rank 1'));
    const e = await g0.explain(new Error('all-reduce failed: Connection closed by peer'));
    expect(e.message).toMatch(/^data-parallel training failed on rank 0 of 2: rank 1 left the run: CUDA out of memory on rank 1\. all-reduce failed/);
    // a local error with every peer alive is left as it is
    const [h0, h1] = await twoRanks();
    expect((await h0.explain(new Error('out of memory'))).message).toBe('out of memory');
    await Promise.all([h1.close(), h0.close(), g0.close()]);
  });
});
