// bench/suites/gpu.ts on a machine without a GPU: it runs nothing and still lists every row the GPU check reports (matmul, attention fwd+bwd and bwd alone, each bandwidth op beside the copy, LoRA, training tokens/s and MFU), each saying why it did not run.
import { describe, expect, it } from 'vitest';
import { gpuSuite } from '../../bench/suites/gpu.js';
import { kernels } from '../../lib/engine/kernels.js';

describe.skipIf(kernels.cudaAvailable().ok)('the gpu bench suite without a GPU', () => {
  it('lists every row, none with a value, each naming the reason', async () => {
    const rows = await gpuSuite.run({ device: 'cuda', threads: 1, quick: true });
    const names = rows.map((r) => r.name);
    for (const t of [2048, 4096]) {
      expect(names.filter((n) => n.includes(`t=${t} h=16 hkv=4 d=128 causal`))).toEqual([
        `attention fwd+bwd b=${8192 / t} t=${t} h=16 hkv=4 d=128 causal`,
        `attention bwd b=${8192 / t} t=${t} h=16 hkv=4 d=128 causal`,
      ]);
    }
    const bandwidth = names.filter((n) => n.startsWith('bandwidth '));
    expect(bandwidth[0]).toMatch(/^bandwidth device-to-device copy/);
    for (const op of ['residual add', 'RMSNorm fwd', 'RMSNorm bwd', 'RoPE fwd', 'RoPE bwd', 'SwiGLU fwd', 'SwiGLU bwd', 'cross-entropy', 'AdamW step', 'embedding fwd', 'embedding bwd']) {
      expect(bandwidth.some((n) => n.startsWith(`bandwidth ${op}`)), op).toBe(true);
    }
    expect(names).toContain('train step base (full) MFU');
    expect(rows.find((r) => r.name === 'train step base (full) MFU')).toMatchObject({ unit: '%', higherIsBetter: true });
    for (const r of rows) {
      expect(Number.isNaN(r.value), r.name).toBe(true);
      expect(r.peerSkipped, r.name).toMatch(/^not run: no GPU: /);
    }
  });
});
