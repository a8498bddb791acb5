// The Gloo communicator, two ranks in one process (each connects and runs collectives on a worker thread
// of its own): sums and averages in f32 and bf16 against values computed here, broadcast, all-gather of
// unequal lengths, the failure of a collective whose peer has gone, and argument checks.
import { afterEach, describe, expect, it } from 'vitest';
import { Communicator, glooAvailable } from '../../lib/engine/communicator.js';
import { startStoreServer, type StoreServer } from '../../lib/dist/store-server.js';
import { bf16BitsToF32 as fromBf16, f32ToBf16Bits as toBf16 } from '../../lib/model/safetensors.js';

const gloo = glooAvailable();
if (!gloo) console.warn('Gloo tests skipped: this addon was built without Gloo (apt-get install libgloo-dev, then rebuild)');

let server: StoreServer | null = null;
const comms: Communicator[] = [];
afterEach(async () => {
  for (const c of comms.splice(0)) c.close();
  await server?.close();
  server = null;
});

async function pair(timeoutMs = 20_000): Promise<[Communicator, Communicator]> {
  server = await startStoreServer({ host: '127.0.0.1', port: 0, worldSize: 2 });
  const store = { host: '127.0.0.1', port: server.port };
  const made = await Promise.all([0, 1].map((rank) => Communicator.create({ backend: 'gloo', rank, worldSize: 2, store, timeoutMs })));
  comms.push(...made);
  return made as [Communicator, Communicator];
}

describe.skipIf(!gloo)('the Gloo communicator', () => {
  it('sums and averages f32 and bf16 buffers in place, the same bits on every rank', async () => {
    const [a, b] = await pair();
    const n = 100_003; // not a multiple of anything
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 3);
    const y = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.7));
    const xs = x.slice();
    const ys = y.slice();
    await Promise.all([a.allReduce(xs), b.allReduce(ys)]);
    for (let i = 0; i < n; i += 997) expect(xs[i]).toBe(Math.fround(x[i] + y[i]));
    expect(Buffer.from(xs.buffer).equals(Buffer.from(ys.buffer))).toBe(true);

    const xa = x.slice();
    const ya = y.slice();
    await Promise.all([a.allReduce(xa, { op: 'average' }), b.allReduce(ya, { op: 'average' })]);
    for (let i = 0; i < n; i += 997) expect(xa[i]).toBe(Math.fround(Math.fround(x[i] + y[i]) * 0.5));

    const hx = Uint16Array.from(x.subarray(0, 1000), (v) => toBf16(v));
    const hy = Uint16Array.from(y.subarray(0, 1000), (v) => toBf16(v));
    const [px, py] = [hx.slice(), hy.slice()];
    await Promise.all([a.allReduce(px), b.allReduce(py)]);
    for (let i = 0; i < 1000; i++) expect(px[i]).toBe(toBf16(fromBf16(hx[i]) + fromBf16(hy[i])));
    expect([...px]).toEqual([...py]);
  });

  it('broadcasts from any root and gathers bytes of unequal length in rank order', async () => {
    const [a, b] = await pair();
    const da = new Float64Array([1, 2, 3]);
    const db = new Float64Array(3);
    await Promise.all([a.broadcast(da, 0), b.broadcast(db, 0)]);
    expect([...db]).toEqual([1, 2, 3]);
    const ea = new Uint8Array(4);
    const eb = Uint8Array.from([9, 8, 7, 6]);
    await Promise.all([a.broadcast(ea, 1), b.broadcast(eb, 1)]);
    expect([...ea]).toEqual([9, 8, 7, 6]);
    const [ga, gb] = await Promise.all([a.allGatherJson({ r: 0, s: '' }), b.allGatherJson({ r: 1, s: 'x'.repeat(5000) })]);
    expect(ga).toEqual(gb);
    expect(ga.map((g) => g.s.length)).toEqual([0, 5000]);
    await Promise.all([a.barrier(), b.barrier()]);
    const [ta, tb] = await Promise.all([a.timeAllReduce({ bytes: 1 << 20, iterations: 3 }), b.timeAllReduce({ bytes: 1 << 20, iterations: 3 })]);
    expect(ta.seconds).toBeGreaterThan(0);
    expect(tb.seconds).toBeGreaterThan(0);
  });

  it('fails a collective whose peer has gone, naming the operation and the rank, and stays failed', async () => {
    const [a, b] = await pair();
    b.close();
    const t0 = Date.now();
    const err = await a.allReduce(new Float32Array(1 << 16)).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/allReduce\(\): all-reduce of 65536 f32 \(0.26 MB\) failed on gloo rank 0 of 2: .*(Connection|closed|reset)/i);
    expect(Date.now() - t0).toBeLessThan(10_000);
    await expect(a.barrier()).rejects.toThrow(/failed earlier and cannot be used again/);
  });

  it('times out a collective that a silent peer never joins', async () => {
    const [a] = await pair(1500);
    const t0 = Date.now();
    await expect(a.allReduce(new Float32Array(8))).rejects.toThrow(/failed on gloo rank 0 of 2: .*Timed out/i);
    expect(Date.now() - t0).toBeLessThan(8000);
  });

  it('refuses bad arguments by name', async () => {
    const [a] = await pair();
    await expect(a.allReduce(new Float32Array(4), { dtype: 'bf16' })).rejects.toThrow(/data must be a Uint16Array \(bf16 bits\) for dtype 'bf16'/);
    await expect(a.allReduce(new Float32Array(4), { op: 'max' as never })).rejects.toThrow(/op must be 'sum' or 'average', got 'max'/);
    await expect(a.broadcast(new Uint8Array(1), 2)).rejects.toThrow(/root = 2 is out of range \[0, 1\]/);
    await expect(Communicator.create({ backend: 'mpi' as never, rank: 0, worldSize: 1, store: { host: '127.0.0.1', port: 1 } })).rejects.toThrow(/backend must be 'gloo' or 'nccl', got 'mpi'/);
    await expect(Communicator.create({ backend: 'gloo', rank: 2, worldSize: 2, store: { host: '127.0.0.1', port: 1 } })).rejects.toThrow(/rank = 2 is out of range \[0, 1\]/);
  });

  it('says NCCL needs the CUDA build in a CPU build', async () => {
    server = await startStoreServer({ host: '127.0.0.1', port: 0, worldSize: 1 });
    const { loadAddon } = await import('../../lib/engine/loader.js');
    if (loadAddon().build !== 'cpu') return;
    await expect(Communicator.create({ backend: 'nccl', rank: 0, worldSize: 1, store: { host: '127.0.0.1', port: server.port } })).rejects.toThrow(/NCCL needs the CUDA build/);
  });
});
