// `--suite train`: a full training step (forward, backward, AdamW) of the tiny preset in tokens/s, with and
// without LoRA, beside torch eager (SDPA attention) and torch.compile, each with its fraction of the fp32 FMA
// peak measured in the same run (bench/peak.ts, bench/flops.ts), and again with a busy process on one core
// (bench/busy.ts); generation tokens/s with the KV cache, and
// peak RSS over 1,000 steps; beside PyTorch peers.
import type { BenchOptions, BenchRow, BenchSuite } from '../suite.js';
import { Engine } from '../../lib/engine/engine.js';
import { presetConfig, type LlamaConfig, type LoraOptions } from '../../lib/model/config.js';
import { trainStepFlops } from '../flops.js';
import { withBusyProcess } from '../busy.js';
import { measurePeak, withPeak, type PendingRow } from '../peak.js';
import { sampleStats, type SampleStats } from '../stats.js';
import { peerLabel, peerNumber, peerSamples, runPeer, timingStats, type PeerOutcome } from './peers.js';

function batchOf(b: number, t: number, vocab: number, seed: number): { tokens: Int32Array; targets: Int32Array } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  };
  const tokens = Int32Array.from({ length: b * t }, next);
  const targets = Int32Array.from({ length: b * t }, next);
  return { tokens, targets };
}

/** Each timed step's milliseconds (forward+backward and AdamW), after 3 untimed ones. */
async function trainSteps(engine: Engine, batch: number, seq: number, steps: number, vocab: number): Promise<number[]> {
  const { tokens, targets } = batchOf(batch, seq, vocab, 1);
  const stepOpts = { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 1 };
  for (let i = 0; i < 3; i++) {
    await engine.forwardBackward(tokens, targets, { batch, seq });
    await engine.step(stepOpts);
  }
  const samples: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await engine.forwardBackward(tokens, targets, { batch, seq });
    await engine.step(stepOpts);
    samples.push(performance.now() - t0);
  }
  return samples;
}

/** A train-step row against one peer: tokens/s from each side's mean step time (bench/stats.ts). */
function stepRow(
  name: string,
  flops: number,
  tokens: number,
  ours: SampleStats,
  peer: PeerOutcome,
  variant: string,
  target: number | undefined,
  note: string,
): PendingRow {
  const ps = peerSamples(peer, 'samplesMs');
  const row: PendingRow = {
    name,
    unit: 'tokens/s',
    value: tokens / (ours.mean * 1e-3),
    higherIsBetter: true,
    ...(target !== undefined ? { target } : {}),
    stats: timingStats(ours),
    note,
    flops,
    oursMeanMs: ours.mean,
  };
  if (ps && peer.ok) {
    row.peer = tokens / (ps.mean * 1e-3);
    row.peerName = peerLabel(peer, variant);
    row.peerStats = timingStats(ps);
    row.peerMeanMs = ps.mean;
  } else {
    Object.assign(row, peerNumber(peer, 'tokensPerSecond', variant));
  }
  return row;
}

export const trainSuite: BenchSuite = {
  name: 'train',
  description: 'tiny-preset training step (fwd+bwd+AdamW) and generation tokens/s vs PyTorch; RSS over 1,000 steps',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (options.device !== 'cpu') {
      return [{ name: 'train', unit: '', value: 0, higherIsBetter: true, peerSkipped: `device ${options.device}: the CUDA backend is not built yet`, note: 'skipped' }];
    }
    const threads = options.threads;
    const config = presetConfig('tiny');
    const batch = 16;
    const seq = 64;
    const steps = options.quick ? 5 : 30;
    const rows: BenchRow[] = [];
    const lora: LoraOptions = { r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
    const before = await measurePeak(threads, options.quick);
    const adamw = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: 1 };
    // The peers run once per model (full, LoRA): the checkpointed row is measured against the LoRA peer
    // without checkpointing (the peer keeps every layer's activations).
    const peers = new Map<string, Promise<PeerOutcome>>();
    const peerFor = (loraOpt: LoraOptions | null, compile: boolean): Promise<PeerOutcome> => {
      const key = `${loraOpt ? 'lora' : 'full'}:${compile}`;
      if (!peers.has(key)) peers.set(key, runPeer('train_step', { config, lora: loraOpt, batch, seq, threads, steps, adamw, attention: 'sdpa', compile }));
      return peers.get(key)!;
    };
    const stepRows: PendingRow[] = [];
    for (const [label, loraOpt, gradientCheckpointing] of [
      ['full', null, false],
      ['LoRA r=8 all-linear', lora, false],
      // Memory for time: one layer's activations; the peer keeps every layer's.
      ['LoRA r=8 all-linear, gradient checkpointing', lora, true],
    ] as const) {
      const engine = await Engine.create({ config, lora: loraOpt, seed: 1, threads, gradientCheckpointing });
      const ours = sampleStats(await trainSteps(engine, batch, seq, steps, config.vocab_size));
      const activations = engine.activationBytes({ batch, seq });
      engine.dispose();
      const flops = trainStepFlops(config, batch, seq, loraOpt);
      const note = `activations ${(activations / 2 ** 20).toFixed(1)} MiB; ${(flops / 1e9).toFixed(2)} GFLOP per step`;
      const name = `train step tiny (${label}) b=${batch} t=${seq}`;
      // Targets (issue 16): full and LoRA >= 1.6x eager and >= 1.2x compiled; checkpointing >= 1.2x eager without it.
      const eager = await peerFor(loraOpt, false);
      stepRows.push(stepRow(`${name} vs eager`, flops, batch * seq, ours, eager, 'eager, sdpa', gradientCheckpointing ? 1.2 : 1.6, note));
      const compiled = await peerFor(loraOpt, true);
      stepRows.push(stepRow(`${name} vs torch.compile`, flops, batch * seq, ours, compiled, 'torch.compile', gradientCheckpointing ? undefined : 1.2, note));
    }
    // Contended (issue 16: not below torch): the full step again, ours then the peer's, each while a busy
    // process spins on one of the cores, as on a shared CI machine.
    {
      const flops = trainStepFlops(config, batch, seq, null);
      const ours = sampleStats(await withBusyProcess(async () => {
        const engine = await Engine.create({ config, seed: 1, threads });
        try {
          return await trainSteps(engine, batch, seq, steps, config.vocab_size);
        } finally {
          engine.dispose();
        }
      }));
      const eager = await withBusyProcess(() => runPeer('train_step', { config, lora: null, batch, seq, threads, steps, adamw, attention: 'sdpa', compile: false }));
      const note = `a busy process spinning on one core during both sides' steps; ${(flops / 1e9).toFixed(2)} GFLOP per step`;
      stepRows.push(stepRow(`train step tiny (full) b=${batch} t=${seq}, one core contended, vs eager`, flops, batch * seq, ours, eager, 'eager, sdpa', 1.0, note));
    }
    rows.push(...withPeak(before, await measurePeak(threads, options.quick), stepRows, 'steps'));

    // Generation: greedy, a batch of equal-length prompts decoding in lockstep with the KV cache.
    {
      const engine = await Engine.create({ config, seed: 1, threads });
      const promptLength = 16;
      const newTokens = options.quick ? 16 : 48;
      for (const genBatch of [1, 16]) {
        const prompts = Array.from({ length: genBatch }, (_, i) => batchOf(1, promptLength, config.vocab_size, i + 1).tokens);
        await engine.generate(prompts, { maxNewTokens: 4 });
        const t0 = performance.now();
        const out = await engine.generate(prompts, { maxNewTokens: newTokens });
        const seconds = (performance.now() - t0) / 1000;
        const produced = out.reduce((s, o) => s + o.length, 0);
        const peer = await runPeer('generate', { config, batch: genBatch, promptLen: promptLength, newTokens, threads });
        rows.push({
          name: `generate tiny batch=${genBatch} prompt=${promptLength} new=${newTokens}`,
          unit: 'tokens/s',
          value: produced / seconds,
          higherIsBetter: true,
          ...peerNumber(peer, 'tokensPerSecond', 'eager (llama_ref)'),
        });
      }
      engine.dispose();
    }

    // Beam search's native work: every row's KV cache gathered by a random index before each token (what
    // decodeReorder() does between beam steps), then one token per row; 32 puzzles × 8 beams.
    {
      const engine = await Engine.create({ config, seed: 1, threads });
      const promptLength = 16;
      const newTokens = options.quick ? 16 : 48;
      const beamRows = 32 * 8;
      const prompts = batchOf(beamRows, promptLength, config.vocab_size, 5).tokens;
      let state = 12345;
      const perms = Array.from({ length: newTokens }, () => Int32Array.from({ length: beamRows }, () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) % beamRows));
      const V = config.vocab_size;
      const argmaxRows = (logits: Float32Array) => Int32Array.from({ length: beamRows }, (_, b) => {
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[b * V + v] > logits[b * V + best]) best = v;
        return best;
      });
      const decode = async () => {
        let logits = await engine.decodeStart(prompts, { batch: beamRows, promptLength, maxNewTokens: newTokens });
        for (let s = 0; s < newTokens - 1; s++) {
          const next = argmaxRows(logits);
          await engine.decodeReorder(perms[s]);
          logits = await engine.decodeNext(next);
        }
        engine.decodeEnd();
      };
      await decode(); // warm-up
      const t0 = performance.now();
      await decode();
      const seconds = (performance.now() - t0) / 1000;
      const peer = await runPeer('generate', { config, batch: beamRows, promptLen: promptLength, newTokens, threads, reorder: true });
      rows.push({
        name: `beam decode tiny rows=32x8 prompt=${promptLength} new=${newTokens}, rows reordered every token`,
        unit: 'tokens/s',
        value: (beamRows * newTokens) / seconds,
        higherIsBetter: true,
        ...peerNumber(peer, 'tokensPerSecond', 'eager (llama_ref), index_select'),
      });
      engine.dispose();
    }

    // Decoding a model too large for the caches (130M parameters, a 32k vocabulary) at batch 1: bound by
    // reading the weights once per token (the gemv path), in fp32 and, with LoRA, from bf16 frozen weights.
    {
      const mid: LlamaConfig = { ...config, hidden_size: 1024, intermediate_size: 2752, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 8, vocab_size: 32000, max_position_embeddings: 256 };
      const lora = { r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
      const newTokens = options.quick ? 8 : 32;
      const prompts = [batchOf(1, 8, mid.vocab_size, 9).tokens];
      const peer = await runPeer('generate', { config: mid, batch: 1, promptLen: 8, newTokens, threads });
      for (const frozenWeights of ['fp32', 'bf16'] as const) {
        const engine = await Engine.create({ config: mid, lora: frozenWeights === 'bf16' ? lora : null, seed: 1, threads, frozenWeights });
        await engine.generate(prompts, { maxNewTokens: 2 });
        const t0 = performance.now();
        const out = await engine.generate(prompts, { maxNewTokens: newTokens });
        const seconds = (performance.now() - t0) / 1000;
        rows.push({
          name: `generate 130M batch=1 new=${newTokens}, ${frozenWeights === 'bf16' ? 'LoRA, frozen weights bf16' : 'fp32 weights'}`,
          unit: 'tokens/s',
          value: out[0].length / seconds,
          higherIsBetter: true,
          ...peerNumber(peer, 'tokensPerSecond', 'eager (llama_ref)'),
          note: `engine ${(engine.info().memoryBytes / 2 ** 20).toFixed(0)} MiB; the peer decodes the fp32 model`,
        });
        engine.dispose();
      }
    }

    // Peak RSS over 1,000 steps: the engine allocates once, so RSS after warm-up should not grow.
    {
      const total = options.quick ? 200 : 1000;
      const engine = await Engine.create({ config, seed: 2, threads });
      const { tokens, targets } = batchOf(8, 64, config.vocab_size, 3);
      let warm = 0;
      let peak = 0;
      for (let i = 0; i < total; i++) {
        await engine.forwardBackward(tokens, targets, { batch: 8, seq: 64 });
        await engine.step({ lr: 1e-3 });
        const rss = process.memoryUsage().rss;
        if (i === 19) warm = rss;
        peak = Math.max(peak, rss);
      }
      engine.dispose();
      rows.push({
        name: `peak RSS growth after warm-up over ${total} steps`,
        unit: 'MiB',
        value: (peak - warm) / 2 ** 20,
        higherIsBetter: false,
        peerSkipped: 'no peer: a flatness check (RSS after step 20 vs peak)',
        note: `RSS after 20 steps ${(warm / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB`,
      });
    }

    return rows;
  },
};

export const suite = trainSuite;
