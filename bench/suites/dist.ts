// `--suite dist`: data parallelism. Measured: all-reduce bus bandwidth (NCCL's definition) of our
// communicator beside torch.distributed's on the same backend in the same run (Gloo over loopback with two
// ranks on the CPU; NCCL at world size 1 on a GPU), with this machine's memcpy bandwidth as the limit; and
// tiny-preset training with 2 ranks of 1 thread against 1 process of 2 threads. Modelled: step time and
// throughput on 1-16 nodes of 8 GPUs (bench/scaling/model.ts), with and without overlapping the
// all-reduces with the backward pass.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Communicator, glooAvailable } from '../../lib/engine/communicator.js';
import { ncclLibraryCandidates } from '../../lib/dist/nccl-library.js';
import { startStoreServer } from '../../lib/dist/store-server.js';
import { packageRoot } from '../../lib/io/package-root.js';
import type { BenchOptions, BenchRow, BenchSuite } from '../suite.js';
import { loadScalingInputs, modelStep } from '../scaling/model.js';
import { runPeer } from './peers.js';

const MiB = 1 << 20;

/** GB/s of copying `bytes` within memory (Buffer.copy: a memcpy), the best of a few. */
function memcpyGBs(bytes: number): number {
  const a = Buffer.alloc(bytes, 1);
  const b = Buffer.alloc(bytes);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    a.copy(b);
    best = Math.min(best, performance.now() - t0);
  }
  return bytes / (best / 1000) / 1e9;
}

const busGBs = (bytes: number, seconds: number, ranks: number) => (ranks > 1 ? ((2 * (ranks - 1)) / ranks) * (bytes / seconds) / 1e9 : bytes / seconds / 1e9);

/** Our communicator's all-reduce times: Gloo with two ranks in this process, or NCCL alone on GPU 0. */
async function ourAllReduce(backend: 'gloo' | 'nccl', ranks: number, sizes: number[], iterations: number): Promise<{ seconds: number[]; library: string }> {
  const server = await startStoreServer({ host: '127.0.0.1', port: 0, worldSize: ranks });
  const store = { host: '127.0.0.1', port: server.port };
  const comms = await Promise.all(
    Array.from({ length: ranks }, (_, rank) =>
      Communicator.create({ backend, rank, worldSize: ranks, store, timeoutMs: 120_000, deviceIndex: 0, ncclLibraries: backend === 'nccl' ? ncclLibraryCandidates() : undefined }),
    ),
  );
  try {
    const seconds: number[] = [];
    for (const bytes of sizes) {
      const times = await Promise.all(comms.map((c) => c.timeAllReduce({ bytes, iterations })));
      seconds.push(Math.max(...times.map((t) => t.seconds)));
    }
    return { seconds, library: comms[0].library };
  } finally {
    for (const c of comms) c.close();
    await server.close();
  }
}

/** Median tokens/s of a short training run (rank 0's metrics), started as the CLI starts it. */
async function trainRate(args: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  const out = mkdtempSync(join(tmpdir(), 'puzzle-llama-bench-dist-'));
  try {
    const bin = join(packageRoot(), 'bin', 'puzzle-llama.js');
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [bin, ...args.map((a) => (a === '{out}' ? join(out, 'run') : a))], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
      child.on('close', (c) => {
        if (c !== 0) process.stderr.write(err);
        resolve(c);
      });
    });
    if (code !== 0) throw new Error(`puzzle-llama ${args.join(' ')} exited with ${code}`);
    const rates = readFileSync(join(out, 'run', 'metrics.jsonl'), 'utf8').trim().split('\n').slice(3).map((l) => JSON.parse(l).tokensPerSecond as number).sort((a, b) => a - b);
    return rates[Math.floor(rates.length / 2)];
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

async function allReduceRows(options: BenchOptions): Promise<BenchRow[]> {
  const backend = options.device === 'cuda' ? 'nccl' : 'gloo';
  const ranks = backend === 'nccl' ? 1 : 2;
  if (backend === 'gloo' && !glooAvailable()) {
    return [{ name: 'all-reduce (gloo)', unit: 'GB/s', value: 0, higherIsBetter: true, peerSkipped: 'this addon was built without Gloo (apt-get install libgloo-dev, then rebuild)' }];
  }
  const sizes = options.quick ? [64 << 10, 4 * MiB, 64 * MiB] : [64 << 10, MiB, 4 * MiB, 16 * MiB, 64 * MiB];
  const iterations = options.quick ? 5 : 20;
  const ours = await ourAllReduce(backend, ranks, sizes, iterations);
  const peer = await runPeer('allreduce', { backend, world_size: ranks, sizes, iterations, threads: 1 });
  const memcpy = backend === 'gloo' ? memcpyGBs(64 * MiB) : null;
  return sizes.map((bytes, i) => {
    const value = busGBs(bytes, ours.seconds[i], ranks);
    const p = peer.ok ? (peer.result.results as Array<{ bytes: number; seconds: number }>)[i] : undefined;
    return {
      name: `all-reduce f32 ${bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes >> 10} KiB`}, ${ranks} rank${ranks > 1 ? 's' : ''} (${backend}${ranks > 1 ? ', loopback' : ''})`,
      unit: 'GB/s bus',
      value,
      higherIsBetter: true,
      ...(p ? { peer: busGBs(p.bytes, p.seconds, ranks), peerName: `torch.distributed ${backend}, torch ${String(peer.ok && peer.result.torchVersion)}` } : { peerSkipped: peer.ok ? 'no result' : peer.reason }),
      note: `${(ours.seconds[i] * 1e3).toFixed(3)} ms each; ${ours.library}${memcpy ? `; ${((100 * value) / memcpy).toFixed(0)}% of this machine's memcpy (${memcpy.toFixed(1)} GB/s), the bound of a loopback transfer` : ''}`,
    };
  });
}

async function trainingRows(options: BenchOptions): Promise<BenchRow[]> {
  if (options.device !== 'cpu' || !glooAvailable()) return [];
  const steps = options.quick ? 12 : 40;
  const common = ['--out', '{out}', '--steps', String(steps), '--batch-size', '32', '--checkpoint-every', '0'];
  const single = await trainRate(['train', ...common, '--threads', '2']);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const dp = await trainRate(['launch', '--nproc-per-node', '2', '--master-port', String(port), 'train', ...common, '--threads', '1']);
  return [
    {
      name: 'train tiny, global batch 32: 2 ranks x 1 thread (Gloo)',
      unit: 'tokens/s',
      value: dp,
      higherIsBetter: true,
      peer: single,
      peerName: '1 process x 2 threads',
      note: 'median step of rank 0 (synthesis, step and all-reduce included); both on this machine\'s two cores',
    },
  ];
}

function scalingRows(): BenchRow[] {
  const inputs = loadScalingInputs();
  const rows: BenchRow[] = [];
  for (const w of inputs.workloads) {
    const one = w.tokensPerGpu / w.stepSeconds;
    for (const nodes of [1, 2, 4, 8, 16]) {
      const m = modelStep(w, inputs, nodes);
      rows.push({
        name: `modelled: ${w.name}, ${nodes} node${nodes > 1 ? 's' : ''} x ${inputs.gpusPerNode} GPUs`,
        unit: 'tokens/s',
        value: m.tokensPerSecond,
        higherIsBetter: true,
        peer: m.ranks * one,
        peerName: 'perfect scaling of one GPU',
        note: `step ${(m.overlappedSeconds * 1e3).toFixed(1)} ms overlapped, ${(m.serialSeconds * 1e3).toFixed(1)} ms reduced after the backward pass (all-reduces ${(m.commSeconds * 1e3).toFixed(1)} ms); one GPU's step ${w.stepSource}`,
      });
    }
  }
  rows.push({
    name: 'modelled: inputs',
    unit: '',
    value: 0,
    higherIsBetter: true,
    note: `${inputs.path}: step times from ${inputs.measured}; network ${inputs.network.why}`,
  });
  return rows;
}

export const distSuite: BenchSuite = {
  name: 'dist',
  description: 'data parallelism: all-reduce bus bandwidth beside torch.distributed, 2-rank training, and a model of 1-16 nodes of 8 GPUs',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    return [...(await allReduceRows(options)), ...(await trainingRows(options)), ...scalingRows()];
  },
};
