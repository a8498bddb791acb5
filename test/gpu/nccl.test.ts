// The NCCL path at world size 1: a training step whose gradients go through NCCL's all-reduce (buckets on
// the communicator's stream, ordered against the engine's with events) equals a plain step bit for bit,
// and the host collectives return what one rank gives. With PUZZLE_LLAMA_GPU_SELFTEST=1 the same checks
// run through Gloo on the CPU. NCCL is loaded as the engine loads it (lib/dist/nccl-library.ts).
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Communicator } from '../../lib/engine/communicator.js';
import { Engine } from '../../lib/engine/engine.js';
import { ncclLibraryCandidates } from '../../lib/dist/nccl-library.js';
import { startStoreServer, type StoreServer } from '../../lib/dist/store-server.js';
import { PRESETS, type LlamaConfig } from '../../lib/model/config.js';
import { compareExact, flushReport } from './report.js';

const cuda = inject('cuda');
const target = inject('target');
const backend = target === 'cuda' ? 'nccl' : 'gloo';

// The tiny preset with an untied head and a vocabulary that is no multiple of anything.
const config: LlamaConfig = { ...PRESETS.tiny, vocab_size: 301, tie_word_embeddings: false };

let server: StoreServer | null = null;
let comm: Communicator | null = null;
let unavailable: string | null = null;

afterAll(async () => {
  comm?.close();
  await server?.close();
  flushReport(import.meta.url);
});

async function communicator(): Promise<Communicator | null> {
  if (comm || unavailable) return comm;
  server = await startStoreServer({ host: '127.0.0.1', port: 0, worldSize: 1 });
  try {
    comm = await Communicator.create({ backend, rank: 0, worldSize: 1, store: { host: '127.0.0.1', port: server.port }, timeoutMs: 60_000, deviceIndex: 0, ncclLibraries: backend === 'nccl' ? ncclLibraryCandidates() : undefined });
  } catch (err) {
    if (!/could not be loaded/.test((err as Error).message)) throw err;
    unavailable = (err as Error).message;
    console.log(`NCCL tests skipped: ${unavailable}`);
  }
  return comm;
}

describe.skipIf(!cuda.ok)(`the ${backend} communicator at world size 1 (${cuda.device ?? 'no GPU'})`, () => {
  it('a step with gradients all-reduced in buckets equals a plain step, bit for bit', async (ctx) => {
    const c = await communicator();
    if (!c) return ctx.skip();
    console.log(`communicator: ${c.library}`);
    const lora = { r: 8, alpha: 16, dropout: 0.1, targets: ['q_proj', 'v_proj', 'down_proj'] };
    for (const l of [null, lora]) {
      const plain = await Engine.create({ config, lora: l, device: target, seed: 7 });
      const reduced = await Engine.create({ config, lora: l, device: target, seed: 7 });
      // small buckets: several all-reduces per backward pass, overlapping it
      reduced.attachCommunicator(c, { bucketBytes: 64 << 10 });
      await reduced.broadcastState(0);
      const B = 4;
      const T = 33;
      const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % config.vocab_size);
      const targets = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -100 : tokens[i + 1]));
      for (let s = 0; s < 3; s++) {
        const a = await plain.forwardBackward(tokens, targets, { batch: B, seq: T, dropoutSeed: 5 + s, lossTokens: 100 });
        const b = await reduced.forwardBackward(tokens, targets, { batch: B, seq: T, dropoutSeed: 5 + s, lossTokens: 100, reduceGradients: true });
        expect(b.loss).toBe(a.loss);
        await plain.step({ lr: 1e-3, maxGradNorm: 1 });
        await reduced.step({ lr: 1e-3, maxGradNorm: 1 });
      }
      const tag = l ? 'lora' : 'full';
      for (const name of plain.trainableNames()) {
        const cmp = compareExact(`${backend}.worldSize1`, `${tag} ${name}`, reduced.getParameter(name), plain.getParameter(name));
        expect(cmp.ok, `${name}: ${cmp.maxAbsErr}`).toBe(true);
      }
      plain.dispose();
      reduced.dispose();
    }
  });

  it('host collectives return one rank\'s values', async (ctx) => {
    const c = await communicator();
    if (!c) return ctx.skip();
    const x = Float32Array.from({ length: 1001 }, (_, i) => i * 0.25 - 7);
    const y = x.slice();
    await c.allReduce(y);
    expect([...y]).toEqual([...x]);
    await c.allReduce(y, { op: 'average' });
    expect([...y]).toEqual([...x]);
    const h = Uint16Array.from([0x3f80, 0xc040, 0x0000]);
    await c.allReduce(h);
    expect([...h]).toEqual([0x3f80, 0xc040, 0x0000]);
    const b = new Uint8Array([1, 2, 3]);
    await c.broadcast(b, 0);
    expect([...b]).toEqual([1, 2, 3]);
    expect(await c.allGatherJson({ hello: 'world' })).toEqual([{ hello: 'world' }]);
    await c.barrier();
    for (const bytes of [1 << 20, 64 << 20, 256 << 20]) {
      const t = await c.timeAllReduce({ bytes, iterations: 10 });
      console.log(`${backend} all-reduce of ${bytes >> 20} MiB at world size 1: ${(t.seconds * 1e6).toFixed(0)} us (${(bytes / t.seconds / 1e9).toFixed(1)} GB/s algorithm bandwidth)`);
    }
  });
});
