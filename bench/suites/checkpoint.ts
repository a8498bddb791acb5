// Model-folder I/O at open-llama-3b scale: write a sharded BF16 checkpoint with saveHfModel, stream every
// tensor back as float32 with openHfCheckpoint, and report throughput and peak memory against the sizes of
// the largest tensor and of all the weights. Each phase runs in a fresh child process, so its peak RSS is
// its own.
import { fork } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PRESETS, type LlamaConfig } from '../../lib/model/config.js';
import { Engine } from '../../lib/engine/engine.js';
import { PAPER_LORA } from '../../lib/train/options.js';
import { DEFAULT_MAX_SHARD_BYTES, llamaTensorShapes, openHfCheckpoint, saveHfModel } from '../../lib/model/hf-checkpoint.js';
import type { BenchRow, BenchSuite } from '../suite.js';

/** openlm-research/open_llama_3b's shape (the engine's preset of that name). */
export const OPEN_LLAMA_3B: LlamaConfig = PRESETS['open-llama-3b'];

const PHASE_FLAG = '--checkpoint-bench-phase';
const MB = 1024 * 1024;

type Phase = 'write' | 'read' | 'read-reuse' | 'engine-load' | 'engine-load-bf16';

interface PhaseResult {
  phase: Phase;
  seconds: number;
  /** Seconds spent making random weights (write only; not I/O). */
  generateSeconds: number;
  /** Bytes of BF16 weights on disk. */
  weightBytes: number;
  /** Float32 bytes produced (read) or consumed (write). */
  float32Bytes: number;
  largestTensorBytesF32: number;
  tensors: number;
  shards: number;
  /** RSS before the phase started (Node itself, the modules). */
  baselineRss: number;
  /** The kernel's high-water mark of RSS for this process (getrusage maxrss). */
  maxRss: number;
  /** The highest RSS sampled during the phase (every 10 ms and after each tensor). */
  sampledPeakRss: number;
  checksum: number;
  /** engine-load: the engine's own memory (weights in f32, LoRA tensors, their gradients and AdamW state). */
  engineBytes: number;
  /** engine-load: the activations a LoRA step over STEP_SHAPE allocates, without and with gradient checkpointing. */
  stepActivationBytes: number;
  stepActivationBytesCheckpointed: number;
}

/** The batch the LoRA step benchmark uses (bench:gpu): 8 sequences of 256 tokens. */
const STEP_SHAPE = { batch: 8, seq: 256 };

/** Random weights in about ±[0.008, 0.016): random bits, the exponent pinned (cheap, and never NaN or Inf). */
function randomWeights(n: number): Float32Array {
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  for (let off = 0; off < n; off += 16384) randomFillSync(bits, off, Math.min(16384, n - off));
  for (let i = 0; i < n; i++) bits[i] = (bits[i] & 0x807fffff) | 0x3c000000;
  return out;
}

function sampler(): { peak: () => number; sample: () => void; stop: () => void } {
  let peak = process.memoryUsage.rss();
  const sample = () => {
    const rss = process.memoryUsage.rss();
    if (rss > peak) peak = rss;
  };
  const timer = setInterval(sample, 10);
  return { peak: () => peak, sample, stop: () => clearInterval(timer) };
}

async function runPhase(phase: Phase, dir: string, config: LlamaConfig, maxShardBytes: number): Promise<PhaseResult> {
  const baselineRss = process.memoryUsage.rss();
  const mem = sampler();
  const shapes = llamaTensorShapes(config);
  const largest = Math.max(...[...shapes.values()].map((s) => s.reduce((a, b) => a * b, 1)));
  let generateSeconds = 0;
  let float32Bytes = 0;
  let checksum = 0;
  let weightBytes = 0;
  let shards = 0;
  let engineBytes = 0;
  let stepActivationBytes = 0;
  let stepActivationBytesCheckpointed = 0;
  const t0 = performance.now();
  if (phase === 'write') {
    const saved = await saveHfModel(dir, {
      config,
      dtype: 'BF16',
      maxShardBytes,
      tensors: (_name, shape) => {
        mem.sample();
        const g0 = performance.now();
        const data = randomWeights(shape.reduce((a, b) => a * b, 1));
        generateSeconds += (performance.now() - g0) / 1000;
        float32Bytes += data.byteLength;
        checksum += data[0];
        mem.sample();
        return data;
      },
    });
    weightBytes = saved.weightBytes;
    shards = saved.weightFiles.length;
  } else if (phase === 'engine-load' || phase === 'engine-load-bf16') {
    // The real consumer: an engine with the paper's LoRA takes every base weight as it streams by (its
    // frozen matrices in f32, or in bf16 with frozenWeights).
    const ck = await openHfCheckpoint(dir, { strict: true });
    weightBytes = ck.weightBytes;
    shards = ck.files.length;
    const frozenWeights = phase === 'engine-load-bf16' ? 'bf16' : 'fp32';
    const engine = await Engine.create({ config, lora: PAPER_LORA, device: 'cpu', threads: 2, initializeBase: false, frozenWeights });
    engineBytes = engine.info().memoryBytes;
    stepActivationBytes = engine.activationBytes(STEP_SHAPE, { gradientCheckpointing: false });
    stepActivationBytesCheckpointed = engine.activationBytes(STEP_SHAPE, { gradientCheckpointing: true });
    mem.sample();
    for await (const t of ck.stream({ reuseBuffer: true })) {
      engine.setParameter(t.name, t.data);
      float32Bytes += t.data.byteLength;
      mem.sample();
    }
    checksum = engine.getParameter('model.norm.weight')[0];
    engine.dispose();
  } else {
    const ck = await openHfCheckpoint(dir, { strict: true });
    weightBytes = ck.weightBytes;
    shards = ck.files.length;
    for await (const t of ck.stream({ reuseBuffer: phase === 'read-reuse' })) {
      // The consumer (engine.setParameter) would copy the values here; touch them as it would.
      checksum += t.data[0] + t.data[t.data.length - 1];
      float32Bytes += t.data.byteLength;
      mem.sample();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  mem.stop();
  return {
    phase,
    seconds,
    generateSeconds,
    weightBytes,
    float32Bytes,
    largestTensorBytesF32: largest * 4,
    tensors: shapes.size,
    shards,
    baselineRss,
    maxRss: process.resourceUsage().maxRSS * 1024,
    sampledPeakRss: mem.peak(),
    checksum,
    engineBytes,
    stepActivationBytes,
    stepActivationBytesCheckpointed,
  };
}

/** Runs one phase in a fresh Node process (this same module, with the loader flags this process has). */
function runChild(phase: Phase, dir: string, config: LlamaConfig, maxShardBytes: number): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [PHASE_FLAG, phase, dir, JSON.stringify(config), String(maxShardBytes)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let result: PhaseResult | { error: string } | undefined;
    child.on('message', (m) => (result = m as PhaseResult | { error: string }));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (result && 'error' in result) reject(new Error(`checkpoint bench ${phase}: ${result.error}`));
      else if (result) resolve(result);
      else reject(new Error(`checkpoint bench ${phase}: child exited with ${signal ?? code} before reporting`));
    });
  });
}

const gb = (bytes: number) => bytes / 1e9;

export const checkpointSuite: BenchSuite = {
  name: 'checkpoint',
  description: 'open-llama-3b-shaped model folder: sharded BF16 write, float32 streaming read, peak RSS',
  async run({ quick }) {
    const config = quick ? { ...OPEN_LLAMA_3B, num_hidden_layers: 2 } : OPEN_LLAMA_3B;
    const maxShardBytes = quick ? 200_000_000 : DEFAULT_MAX_SHARD_BYTES;
    const shapes = llamaTensorShapes(config);
    let params = 0;
    for (const s of shapes.values()) params += s.reduce((a, b) => a * b, 1);
    const need = params * 2;
    const free = (() => {
      const s = statfsSync(tmpdir());
      return s.bavail * s.bsize;
    })();
    if (free < need * 1.1) {
      throw new Error(`checkpoint bench: ${tmpdir()} has ${(free / 1e9).toFixed(1)} GB free; the checkpoint needs ${(need / 1e9).toFixed(1)} GB`);
    }
    const root = mkdtempSync(join(tmpdir(), 'puzzle-llama-checkpoint-bench-'));
    const dir = join(root, 'open-llama-3b-shaped');
    try {
      const write = await runChild('write', dir, config, maxShardBytes);
      const read = await runChild('read', dir, config, maxShardBytes);
      const reuse = await runChild('read-reuse', dir, config, maxShardBytes);
      const load = await runChild('engine-load', dir, config, maxShardBytes);
      const loadBf16 = await runChild('engine-load-bf16', dir, config, maxShardBytes);
      const label = `${(params / 1e9).toFixed(2)}B params, ${config.num_hidden_layers} layers, ${write.shards} shard${write.shards === 1 ? '' : 's'}, ${gb(write.weightBytes).toFixed(2)} GB bf16`;
      const largestMb = write.largestTensorBytesF32 / MB;
      const weightsMb = write.weightBytes / MB;
      const rows: BenchRow[] = [];
      const ioSeconds = write.seconds - write.generateSeconds;
      rows.push({
        name: `write (${label})`,
        unit: 'GB/s',
        value: gb(write.weightBytes) / ioSeconds,
        higherIsBetter: true,
        note: `f32 -> bf16 conversion + write + fsync, ${ioSeconds.toFixed(1)} s (random weights took another ${write.generateSeconds.toFixed(1)} s, excluded)`,
      });
      rows.push({
        name: 'write: peak RSS',
        unit: 'MiB',
        value: write.maxRss / MB,
        higherIsBetter: false,
        note: `baseline ${(write.baselineRss / MB).toFixed(0)} MiB; largest tensor as f32 ${largestMb.toFixed(0)} MiB; weights on disk ${weightsMb.toFixed(0)} MiB`,
      });
      for (const r of [read, reuse]) {
        const what = r.phase === 'read' ? 'stream as f32, a new array per tensor' : 'stream as f32 into one reused buffer';
        rows.push({
          name: `read: ${what}`,
          unit: 'GB/s',
          value: gb(r.weightBytes) / r.seconds,
          higherIsBetter: true,
          note: `${r.tensors} tensors in ${r.seconds.toFixed(1)} s (${(gb(r.float32Bytes) / r.seconds).toFixed(2)} GB/s of f32 produced); just written, so mostly from the page cache`,
        });
        rows.push({
          name: `read (${r.phase === 'read' ? 'new arrays' : 'reused buffer'}): peak RSS`,
          unit: 'MiB',
          value: r.maxRss / MB,
          higherIsBetter: false,
          note: `baseline ${(r.baselineRss / MB).toFixed(0)} MiB; ${(r.maxRss / write.largestTensorBytesF32).toFixed(2)}x the largest tensor (f32 ${largestMb.toFixed(0)} MiB); ` +
            `${((r.maxRss / r.weightBytes) * 100).toFixed(1)}% of the weights' bf16 size, ${((r.maxRss / r.float32Bytes) * 100).toFixed(1)}% of their f32 size`,
        });
        rows.push({
          name: `read (${r.phase === 'read' ? 'new arrays' : 'reused buffer'}): peak RSS / weights' size`,
          unit: 'x',
          value: r.maxRss / r.weightBytes,
          higherIsBetter: false,
          absoluteTarget: 1,
        });
      }
      rows.push({
        name: 'load into an engine (paper LoRA, CPU, f32 weights): time',
        unit: 's',
        value: load.seconds,
        higherIsBetter: false,
        note: `engine.setParameter for every streamed tensor; the engine holds ${(load.engineBytes / MB).toFixed(0)} MiB (weights in f32 plus LoRA tensors, gradients and AdamW state)`,
      });
      rows.push({
        name: 'load into an engine: peak RSS / engine memory',
        unit: 'x',
        value: load.maxRss / load.engineBytes,
        higherIsBetter: false,
        absoluteTarget: 1.1,
        note: `peak RSS ${(load.maxRss / MB).toFixed(0)} MiB = engine ${(load.engineBytes / MB).toFixed(0)} MiB + ${((load.maxRss - load.engineBytes) / MB).toFixed(0)} MiB (Node, one f32 tensor buffer, reads); ` +
          `${(load.maxRss / load.weightBytes).toFixed(2)}x the bf16 weights on disk (the CPU engine computes in f32, so 2x is the floor)`,
      });
      rows.push({
        name: "load into an engine with frozenWeights 'bf16': time",
        unit: 's',
        value: loadBf16.seconds,
        higherIsBetter: false,
        note: `the engine holds ${(loadBf16.engineBytes / MB).toFixed(0)} MiB, ${((1 - loadBf16.engineBytes / load.engineBytes) * 100).toFixed(0)}% less than with f32 frozen weights`,
      });
      rows.push({
        name: "load into an engine with frozenWeights 'bf16': peak RSS",
        unit: 'MiB',
        value: loadBf16.maxRss / MB,
        higherIsBetter: false,
        note: `${(loadBf16.maxRss / loadBf16.engineBytes).toFixed(2)}x its engine memory; ${(loadBf16.maxRss / loadBf16.weightBytes).toFixed(2)}x the bf16 weights on disk (f32 frozen weights: ${(load.maxRss / MB).toFixed(0)} MiB)`,
      });
      // What a LoRA training step then needs (engine.activationBytes: the buffers the step allocates, on
      // either backend; the GPU adds its GEMM and attention scratch).
      const stepLabel = `${STEP_SHAPE.batch}x${STEP_SHAPE.seq}`;
      rows.push({
        name: `LoRA step ${stepLabel} with frozenWeights 'bf16': engine + activations`,
        unit: 'GiB',
        value: (loadBf16.engineBytes + loadBf16.stepActivationBytes) / 2 ** 30,
        higherIsBetter: false,
        note: `activations ${(loadBf16.stepActivationBytes / 2 ** 30).toFixed(2)} GiB; with gradient checkpointing ${(loadBf16.stepActivationBytesCheckpointed / 2 ** 30).toFixed(2)} GiB, ` +
          `${((loadBf16.engineBytes + loadBf16.stepActivationBytesCheckpointed) / 2 ** 30).toFixed(2)} GiB in all`,
      });
      return rows;
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
};

// A child started by runChild: run the phase and report over IPC.
if (process.argv[2] === PHASE_FLAG && process.send) {
  const [, , , phase, dir, config, maxShard] = process.argv;
  runPhase(phase as Phase, dir, JSON.parse(config) as LlamaConfig, Number(maxShard)).then(
    (r) => process.send!(r, () => process.exit(0)),
    (err: unknown) => process.send!({ error: (err as Error).stack ?? String(err) }, () => process.exit(1)),
  );
}
