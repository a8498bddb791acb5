// train()'s options: defaults (the paper's where it states them), validation before any work starts, and
// the fingerprint that a resumed run must share with the run it continues.
import { show } from '../io/show.js';
import { PRESETS, validateConfig, validateLora, type LlamaConfig, type LoraOptions } from '../model/config.js';
import { loadEvalSet } from '../eval/sets.js';
import { DEFAULT_EVAL_SETS, parseDecodingMode, type DecodingMode } from '../eval/evaluate.js';
import { validateDataOptions, type DataOptions } from './data.js';

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
}

export interface TrainOptions {
  /** The run folder: config, metrics.jsonl, checkpoints, the final model, the report. */
  out: string;
  /**
   * A Hugging Face model folder to fine-tune instead of a model from scratch (its config and tokenizer are
   * used; LoRA defaults to the paper's). Checkpoints then hold only the trained tensors.
   */
  baseModel?: string;
  /** With LoRA on a base model: also write the adapter merged into the base weights (out/model). */
  merge?: boolean;
  /** A model shape by name (default 'tiny'), with `config` fields replacing its own. */
  preset?: string;
  config?: Partial<LlamaConfig>;
  /** LoRA (PEFT semantics); true takes the paper's defaults (r 8, α 32, dropout 0.05, every projection). */
  lora?: Partial<LoraOptions> | boolean | null;
  data?: DataOptions;
  /** Optimizer steps to take (a fixed, deterministic run). With timeBudget: at most this many. */
  steps?: number;
  /**
   * Train for this many seconds of wall clock (evaluations during training not counted), the learning
   * rate following the elapsed fraction of it; the run says which step it reached. Steps or a time budget
   * (or both: whichever ends first) must be given.
   */
  timeBudget?: number;
  batchSize?: number;
  /**
   * Length buckets: read this many batches at once, sort them by length and cut them into batches (in a
   * seeded random order), so that padding costs little (default 1: batches as the data comes).
   */
  lengthBuckets?: number;
  /**
   * The fraction of training examples (picked per puzzle by a hash, in [0, 1]; default 0) cut after their
   * first step that makes 0. In a canonical response that is the first fold: what follows (`0*z=0` …
   * `T+0=T`) is rote, so a cut example spends its tokens on the core, where the learning is.
   */
  cutTails?: number;
  gradAccumulation?: number;
  lr?: number;
  minLr?: number;
  warmupSteps?: number;
  schedule?: 'cosine' | 'constant';
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  seed?: number;
  device?: 'auto' | 'cpu' | 'cuda';
  threads?: number;
  /** LoRA only: 'bf16' keeps the frozen base matrices in bf16, half their memory (Engine.create's option). */
  frozenWeights?: 'fp32' | 'bf16';
  /** Recompute each layer's forward pass in the backward pass (Engine.create's option): the same results, less memory. */
  gradientCheckpointing?: boolean;
  /** Checkpoint every K steps (and at the end, and when stopped). 0: only at the end. */
  checkpointEvery?: number;
  keepCheckpoints?: number;
  /** Continue the run in `out` from its latest checkpoint. */
  resume?: boolean;
  /** Evaluate every K steps on `evalLimit` puzzles of each of `evalSets` (0: never during training). */
  evalEvery?: number;
  /** Evaluate once more when training ends (default false). */
  evalAtEnd?: boolean;
  evalLimit?: number;
  evalSets?: string[];
  /** Decoding modes of those evaluations (default both: 'free' and 'constrained'). */
  evalModes?: DecodingMode[];
  /**
   * Data parallelism, when the environment holds several ranks (torchrun's variables, Slurm's, or
   * `puzzle-llama launch`'s): batchSize stays the global batch; each rank trains on its share.
   */
  distributed?: DistributedOptions;
  /** After every step (on rank 0 alone in a data-parallel run). */
  onStep?: (record: StepRecord) => void;
  /** Before an evaluation starts. */
  onEvalStart?: (step: number) => void;
  onEval?: (step: number, scores: Array<{ set: string; mode: string; pass1: number }>) => void;
  /** What a person watching the run should know: a resume, a change of world size (rank 0 alone). */
  onNote?: (message: string) => void;
  /** Stops after the current step with a checkpoint (every rank stops at the same step). */
  signal?: AbortSignal;
}

export interface DistributedOptions {
  /** A rank that dies or stops answering fails the others after this long (default 300 000 ms). */
  timeoutMs?: number;
  /** The shared secret of a multi-node run (default: the PUZZLE_LLAMA_DIST_TOKEN variable). */
  token?: string;
  /** The size of each gradient all-reduce (default 25 MiB, as torch's DDP). */
  bucketBytes?: number;
}

export interface ResolvedTrainOptions {
  out: string;
  baseModel: string | null;
  merge: boolean;
  preset: string;
  config: LlamaConfig;
  lora: LoraOptions | null;
  data: DataOptions;
  /** The step count to stop at (Number.MAX_SAFE_INTEGER when only a time budget bounds the run). */
  steps: number;
  /** Seconds of training, or null for a fixed step count. */
  timeBudget: number | null;
  batchSize: number;
  lengthBuckets: number;
  cutTails: number;
  gradAccumulation: number;
  lr: number;
  minLr: number;
  warmupSteps: number;
  schedule: 'cosine' | 'constant';
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
  seed: number;
  device: 'auto' | 'cpu' | 'cuda';
  frozenWeights: 'fp32' | 'bf16';
  gradientCheckpointing: boolean;
  threads: number | undefined;
  checkpointEvery: number;
  keepCheckpoints: number;
  resume: boolean;
  evalEvery: number;
  evalAtEnd: boolean;
  evalLimit: number;
  evalSets: string[];
  evalModes: DecodingMode[];
  /** (The token is kept out: the resolved options are written to train-config.json.) */
  distributed: { timeoutMs: number; bucketBytes: number };
}

/** The paper's LoRA: rank 8 (Table 3), α 32, dropout 0.05, all attention and MLP projections. */
export const PAPER_LORA: LoraOptions = { r: 8, alpha: 32, dropout: 0.05, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };

function int(name: string, v: unknown, min: number, fallback?: number): number {
  const x = v === undefined ? fallback : v;
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) {
    throw new RangeError(`train(): ${name} must be an integer ≥ ${min}, got ${show(v)}`);
  }
  return x;
}

function num(name: string, v: unknown, fallback: number, lo: number, hi: number, loOpen = false): number {
  const x = v === undefined ? fallback : v;
  if (typeof x !== 'number' || !Number.isFinite(x) || x > hi || (loOpen ? x <= lo : x < lo)) {
    throw new RangeError(`train(): ${name} must be a number in ${loOpen ? '(' : '['}${lo}, ${hi}], got ${show(v)}`);
  }
  return x;
}

/** Fills defaults and checks everything; throws before any work with the option at fault named. */
export function resolveTrainOptions(o: TrainOptions, vocabSize: number, baseConfig: LlamaConfig | null = null): ResolvedTrainOptions {
  if (typeof o !== 'object' || o === null) throw new TypeError(`train(): options must be an object, got ${String(o)}`);
  if (typeof o.out !== 'string' || o.out === '') throw new TypeError(`train(): out must name a folder, got ${JSON.stringify(o.out)}`);
  let preset = o.preset ?? 'tiny';
  let config: LlamaConfig;
  if (baseConfig) {
    if (o.preset !== undefined || o.config !== undefined) throw new TypeError('train(): with baseModel the model shape comes from its config.json; drop preset and config');
    preset = 'base model';
    config = baseConfig;
  } else {
    const base = (PRESETS as Record<string, LlamaConfig>)[preset];
    if (!base) throw new RangeError(`train(): unknown preset '${preset}'; presets: ${Object.keys(PRESETS).join(', ')}`);
    config = validateConfig({ ...base, vocab_size: Math.max(base.vocab_size, vocabSize), ...(o.config ?? {}) }, 'train(): config');
  }
  if (config.vocab_size < vocabSize) throw new RangeError(`train(): config.vocab_size = ${config.vocab_size} is smaller than the tokenizer's ${vocabSize}`);
  const loraOption = o.lora === undefined && baseConfig ? true : o.lora;
  const lora = loraOption === true ? { ...PAPER_LORA } : loraOption ? validateLora(loraOption, 'train(): lora') : null;
  if (o.merge && !(baseConfig && lora)) throw new TypeError('train(): merge applies to LoRA on a baseModel only');
  const seed = int('seed', o.seed, 0, 1234);
  const data = validateDataOptions(o.data ?? { source: 'synth', n: [5, 6, 7], maxValue: 60, seed });
  if (o.steps === undefined && o.timeBudget === undefined) throw new TypeError('train(): give steps (a fixed run) or timeBudget (seconds), or both');
  const steps = o.steps === undefined ? Number.MAX_SAFE_INTEGER : int('steps', o.steps, 1);
  const timeBudget = o.timeBudget === undefined ? null : num('timeBudget', o.timeBudget, 0, 0, 366 * 86400, true);
  const lr = num('lr', o.lr, lora ? 1e-4 : 1e-3, 0, 10, true);
  const schedule = o.schedule ?? 'cosine';
  if (schedule !== 'cosine' && schedule !== 'constant') throw new RangeError(`train(): schedule must be 'cosine' or 'constant', got ${JSON.stringify(schedule)}`);
  const device = o.device ?? 'auto';
  if (!['auto', 'cpu', 'cuda'].includes(device)) throw new RangeError(`train(): device must be 'auto', 'cpu' or 'cuda', got ${JSON.stringify(device)}`);
  const frozenWeights = o.frozenWeights ?? 'fp32';
  if (frozenWeights !== 'fp32' && frozenWeights !== 'bf16') throw new RangeError(`train(): frozenWeights must be 'fp32' or 'bf16', got ${JSON.stringify(frozenWeights)}`);
  if (frozenWeights === 'bf16' && !lora) throw new TypeError("train(): frozenWeights 'bf16' needs lora (full training updates every weight)");
  if (o.gradientCheckpointing !== undefined && typeof o.gradientCheckpointing !== 'boolean') {
    throw new TypeError(`train(): gradientCheckpointing must be a boolean, got ${JSON.stringify(o.gradientCheckpointing)}`);
  }
  return {
    out: o.out,
    baseModel: o.baseModel ?? null,
    merge: Boolean(o.merge),
    preset,
    config,
    lora,
    data,
    steps,
    timeBudget,
    batchSize: int('batchSize', o.batchSize, 1, 32),
    lengthBuckets: int('lengthBuckets', o.lengthBuckets, 1, 1),
    cutTails: num('cutTails', o.cutTails, 0, 0, 1),
    gradAccumulation: int('gradAccumulation', o.gradAccumulation, 1, 1),
    lr,
    minLr: num('minLr', o.minLr, lr / 10, 0, lr),
    warmupSteps: int('warmupSteps', o.warmupSteps, 0, lora ? 0 : Math.min(100, Math.floor(steps / 20))),
    schedule,
    beta1: num('beta1', o.beta1, 0.9, 0, 1),
    beta2: num('beta2', o.beta2, 0.95, 0, 1),
    eps: num('eps', o.eps, lora ? 1e-9 : 1e-8, 0, 1),
    weightDecay: num('weightDecay', o.weightDecay, lora ? 0 : 0.1, 0, 10),
    maxGradNorm: num('maxGradNorm', o.maxGradNorm, 1.0, 0, Infinity),
    seed,
    device: device as ResolvedTrainOptions['device'],
    frozenWeights,
    gradientCheckpointing: o.gradientCheckpointing ?? false,
    threads: o.threads === undefined ? undefined : int('threads', o.threads, 1),
    checkpointEvery: int('checkpointEvery', o.checkpointEvery, 0, 200),
    keepCheckpoints: int('keepCheckpoints', o.keepCheckpoints, 1, 2),
    resume: Boolean(o.resume),
    evalEvery: int('evalEvery', o.evalEvery, 0, 0),
    evalAtEnd: Boolean(o.evalAtEnd),
    evalLimit: int('evalLimit', o.evalLimit, 1, 50),
    evalSets: checkSets(o.evalSets ?? [...DEFAULT_EVAL_SETS]),
    evalModes: checkModes(o.evalModes ?? ['free', 'constrained']),
    distributed: checkDistributed(o.distributed),
  };
}

function checkDistributed(d: DistributedOptions | undefined): ResolvedTrainOptions['distributed'] {
  if (d !== undefined && (typeof d !== 'object' || d === null)) throw new TypeError(`train(): distributed must be an object, got ${JSON.stringify(d)}`);
  if (d?.token !== undefined && typeof d.token !== 'string') throw new TypeError(`train(): distributed.token must be a string, got ${typeof d.token}`);
  return {
    timeoutMs: int('distributed.timeoutMs', d?.timeoutMs, 1000, 300_000),
    bucketBytes: int('distributed.bucketBytes', d?.bucketBytes, 1024, 25 << 20),
  };
}

function checkSets(sets: unknown): string[] {
  if (!Array.isArray(sets) || sets.length === 0) throw new TypeError(`train(): evalSets must be a non-empty list of set ids, got ${JSON.stringify(sets)}`);
  for (const id of sets) {
    try {
      loadEvalSet(String(id));
    } catch (err) {
      throw new RangeError(`train(): evalSets: ${(err as Error).message}`);
    }
  }
  return sets.map(String);
}

function checkModes(modes: unknown): DecodingMode[] {
  if (!Array.isArray(modes) || modes.length === 0) {
    throw new TypeError(`train(): evalModes must list decoding modes ('free', 'constrained', 'constrained-beam4', ...), got ${JSON.stringify(modes)}`);
  }
  for (const m of modes) {
    try {
      parseDecodingMode(m);
    } catch (err) {
      throw new TypeError(`train(): evalModes: ${(err as Error).message}`);
    }
  }
  return modes as DecodingMode[];
}

/** What must not change when a run is resumed: everything that shapes the losses. */
export function fingerprint(r: ResolvedTrainOptions): string {
  // (Gradient checkpointing changes no result: a run may be resumed with or without it.)
  // (Nor does the world size, nor how gradients are reduced: a run may resume on another number of ranks.)
  // (Length buckets of 1 and cutTails 0 are what runs did before the options existed: they stay resumable.)
  const { out: _o, merge: _g, resume: _r, threads: _t, checkpointEvery: _c, keepCheckpoints: _k, evalEvery: _e, evalAtEnd: _a, evalLimit: _l, evalSets: _s, evalModes: _m, device: _d, gradientCheckpointing: _gc, distributed: _dist, frozenWeights, ...rest } = r;
  // fp32 frozen weights are what runs did before the option existed: they stay resumable.
  const { lengthBuckets, cutTails, timeBudget, ...older } = rest;
  const shaped = { ...older, ...(lengthBuckets === 1 ? {} : { lengthBuckets }), ...(cutTails === 0 ? {} : { cutTails }), ...(timeBudget === null ? {} : { timeBudget }) };
  return JSON.stringify(frozenWeights === 'fp32' ? shaped : { ...shaped, frozenWeights });
}
