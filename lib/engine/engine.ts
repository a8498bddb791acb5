// The Engine class of docs/ARCHITECTURE.md ("The engine API"): a LLaMA (+ LoRA) model held by the native addon, with calls serialized,
// AbortSignal wired to the native abort flag, and errors pointing at the caller's line.
import { loadAddon } from './loader.js';
import { availableMemory, gib, modelMemory } from './memory.js';
import { show } from '../io/show.js';
import type { Communicator } from './communicator.js';
import { validateConfig, validateLora, type LlamaConfig, type LoraOptions } from '../model/config.js';
import type {
  NativeAbortFlag,
  NativeEngine,
  NativeEngineInfo,
  NativeStepResult,
  NativeTensorInfo,
  ProgressCallback,
} from './native.js';

export interface EngineOptions {
  config: Partial<LlamaConfig>;
  /** PEFT LoRA; absent or null trains every parameter. */
  lora?: Partial<LoraOptions> | null;
  device?: 'auto' | 'cpu' | 'cuda';
  /** Which GPU with device 'cuda' or 'auto' (default 0). */
  deviceIndex?: number;
  /**
   * false: leave the base weights at zero because they are about to be loaded (saves the random init, a
   * minute and more for billions of weights); LoRA tensors are initialized either way. Default true.
   */
  initializeBase?: boolean;
  /**
   * 'bf16' (LoRA only) stores the frozen base matrices (the seven projections of every layer and an untied
   * lm_head) in bf16: half their memory (a 3B model's base weights: 6.4 GiB instead of 12.8). Products are
   * those of the weights rounded to bf16, which the GPU's GEMMs use anyway; getParameter() returns the
   * rounded values. Default 'fp32'.
   */
  frozenWeights?: 'fp32' | 'bf16';
  /**
   * Gradient checkpointing: training keeps only each layer's input and recomputes the layer's forward pass
   * just before its backward pass, bit for bit (the same gradients), for about a third more compute; the
   * activations then take one layer's worth of memory plus the residual stream (a 3B LoRA step at
   * 8 x 256: 1.6 GiB instead of 7.9). Default false.
   */
  gradientCheckpointing?: boolean;
  /**
   * Memory against speed in the CUDA attention backward: 'fast' (default) keeps the softmax gradient dS in
   * bf16 (B·H·T² values, at most 1 GiB: larger batches recompute it anyway) so that dQ is one product;
   * 'low-memory' recomputes S and dP for dQ instead (on an H200, fwd+bwd at t 2048 took 1.85 ms against
   * 1.65). No effect on the CPU backend.
   */
  attentionBackward?: 'fast' | 'low-memory';
  /** Seeds the initial weights (and LoRA dropout). Default 0. */
  seed?: number;
  /** Worker threads for this engine's pool (default: all hardware threads). */
  threads?: number;
}

export interface BatchShape {
  batch: number;
  seq: number;
}

export interface CallOptions {
  signal?: AbortSignal;
  onProgress?: ProgressCallback;
}

export interface ForwardBackwardOptions extends BatchShape, CallOptions {
  /** Add to the gradients instead of overwriting them (gradient accumulation). */
  accumulate?: boolean;
  /** Fixes the LoRA dropout masks (by default each call draws new ones). */
  dropoutSeed?: number;
  /**
   * The batch's rows are rows [rowOffset, rowOffset + batch * seq) of a larger batch padded to the same seq
   * (data parallelism: one rank's share of the global batch); LoRA dropout then draws those rows' masks of
   * the larger batch. Default 0.
   */
  rowOffset?: number;
  /**
   * Divide the summed loss (and its gradient) by this many target tokens instead of this batch's own count:
   * with data parallelism, the global batch's count, so that the ranks' losses and gradients add up to the
   * global batch's mean.
   */
  lossTokens?: number;
  /** Sum the gradients over the attached communicator, bucket by bucket while the backward pass goes on. */
  reduceGradients?: boolean;
}

export interface StepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_); 0 or absent: none. */
  maxGradNorm?: number;
  /** Multiplies the gradients before clipping and the update (e.g. 1 / micro-batches). Default 1. */
  gradScale?: number;
}

export interface GenerateOptions extends CallOptions {
  maxNewTokens?: number;
  /** 0 (default): greedy. */
  temperature?: number;
  /** 0 (default): the whole vocabulary. */
  topK?: number;
  seed?: number;
  /** Generation of a prompt stops at the first of these (which is not returned). */
  stopTokens?: number[];
}

export type StepResult = NativeStepResult;
export type TensorInfo = NativeTensorInfo;
export type EngineInfo = NativeEngineInfo;

function abortError(where: string, signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error(`${where}: the operation was aborted`);
  err.name = 'AbortError';
  return err;
}

/** batch x seq, each a positive integer (named in the error otherwise). */
function checkedRows(shape: BatchShape, where: string): number {
  if (typeof shape !== 'object' || shape === null) throw new TypeError(`${where}: the shape must be { batch, seq }, got ${String(shape)}`);
  for (const key of ['batch', 'seq'] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${where}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return shape.batch * shape.seq;
}

/** The options object a method needs (a clear error instead of "Cannot read properties of undefined"). */
function needOptions<T>(options: T, shape: string): T {
  if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object ${shape}, got ${show(options)}`);
  return options;
}

/** Prompts as Int32Arrays; a number[] must hold token ids (a string or 1.5 would become 0 silently). */
function promptList(prompts: unknown, vocabSize: number): Int32Array[] {
  if (!Array.isArray(prompts)) throw new TypeError(`prompts must be an array of token id arrays, got ${show(prompts)}`);
  return prompts.map((p, i) => {
    if (p instanceof Int32Array) return p;
    if (!Array.isArray(p)) throw new TypeError(`prompts[${i}] must be an Int32Array or an array of token ids, got ${show(p)}`);
    const bad = p.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize);
    if (bad >= 0) throw new TypeError(`prompts[${i}][${bad}] must be a token id in [0, ${vocabSize}), got ${show(p[bad])}`);
    return Int32Array.from(p);
  });
}

export class Engine {
  readonly config: LlamaConfig;
  readonly lora: LoraOptions | null;
  readonly device: 'cpu' | 'cuda';
  #native: NativeEngine | null;
  #queue: Promise<unknown> = Promise.resolve();
  #newFlag: () => NativeAbortFlag;

  private constructor(native: NativeEngine, config: LlamaConfig, lora: LoraOptions | null, newFlag: () => NativeAbortFlag) {
    this.#native = native;
    this.config = config;
    this.lora = lora;
    this.device = native.info().device === 'cuda' ? 'cuda' : 'cpu';
    this.#newFlag = newFlag;
  }

  /** Builds the model and initializes its weights (HF: normal(0, 0.02), norms 1; LoRA A Kaiming-uniform, B 0). */
  static async create(options: EngineOptions): Promise<Engine> {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`Engine.create(): options must be an object, got ${String(options)}`);
    }
    const config = validateConfig(options.config, 'Engine.create(): config');
    const lora = options.lora ? validateLora(options.lora, 'Engine.create(): lora') : null;
    const device = options.device ?? 'auto';
    if (device !== 'auto' && device !== 'cpu' && device !== 'cuda') throw new RangeError(`Engine.create(): device must be 'auto', 'cpu' or 'cuda', got ${show(device)}`);
    const { addon, build } = loadAddon();
    if (device === 'cuda' && build !== 'cuda') {
      throw new Error(`Engine.create(): device 'cuda' was asked for but the loaded addon is the ${build} build (run \`npm run build:cuda\` where nvcc is installed)`);
    }
    // 'auto' on a CUDA build without a usable GPU runs on the CPU, so it is checked as the CPU is
    const onCpu = device === 'cpu' || build !== 'cuda' || (device === 'auto' && addon.cudaDevices().devices.length === 0);
    if (onCpu) {
      // On the CPU the model's arrays come out of this machine's memory: refuse what cannot fit rather
      // than be killed by the kernel's OOM killer half-way through initializing them.
      const need = modelMemory(config, lora, options.frozenWeights === 'bf16' ? 'bf16' : 'fp32');
      const have = availableMemory();
      if (need.bytes > have.bytes) {
        throw new RangeError(
          `Engine.create(): the model needs ${gib(need.bytes)} for its ${(need.parameters / 1e9).toFixed(2)}B parameters (${(need.trainable / 1e9).toFixed(2)}B trained: weights, gradients and AdamW state), ` +
            `but ${have.source} has ${gib(have.bytes)} of memory; use a smaller preset, LoRA (with frozenWeights 'bf16'), or a GPU`,
        );
      }
    }
    const native = new addon.NativeEngine({
      config,
      lora,
      device: device === 'cuda' ? 'cuda' : device === 'auto' ? 'auto' : 'cpu',
      deviceIndex: options.deviceIndex,
      initializeBase: options.initializeBase,
      frozenWeights: options.frozenWeights,
      gradientCheckpointing: options.gradientCheckpointing,
      attentionBackward: options.attentionBackward,
      seed: options.seed ?? 0,
      threads: options.threads,
    });
    return new Engine(native, config, lora, () => new addon.AbortFlag());
  }

  #alive(where: string): NativeEngine {
    if (this.#native === null) throw new Error(`${where}: the engine was disposed`);
    return this.#native;
  }

  /** Runs `fn` after every earlier call has settled; aborts via the signal; rethrows at the caller's line. */
  #enqueue<T>(where: string, signal: AbortSignal | undefined, fn: (native: NativeEngine, flag: NativeAbortFlag | undefined) => Promise<T>): Promise<T> {
    const site = new Error(where);
    const run = async (): Promise<T> => {
      const native = this.#alive(where);
      if (signal?.aborted) throw abortError(where, signal);
      let flag: NativeAbortFlag | undefined;
      let onAbort: (() => void) | undefined;
      if (signal) {
        const f = this.#newFlag();
        flag = f;
        onAbort = () => f.abort();
        signal.addEventListener('abort', onAbort, { once: true });
      }
      try {
        return await fn(native, flag);
      } catch (err) {
        if (err instanceof Error) {
          if (err.name === 'AbortError' && signal?.aborted && signal.reason instanceof Error) throw signal.reason;
          if (!err.message.startsWith(where)) err.message = `${where}: ${err.message}`;
          err.stack = `${err.name}: ${err.message}\n${(site.stack ?? '').split('\n').slice(1).join('\n')}`;
        }
        throw err;
      } finally {
        if (signal && onAbort) signal.removeEventListener('abort', onAbort);
      }
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  info(): EngineInfo {
    return this.#alive('info()').info();
  }

  /**
   * Per-op device time, for performance work: profile(true) clears and starts it (a few microseconds of
   * host time per op while on); profile(false) waits for the device, stops, and returns one line per op
   * (total ms, calls, us/call, share), largest first; the CPU backend's lines add GFLOP/s and GB/s, GEMMs by shape.
   */
  profile(on: boolean): string {
    return this.#alive('profile()').profile(on);
  }

  /**
   * The bytes of activation buffers a training step (mode 'train', the default) or a forward pass
   * ('forward') over batch x seq tokens allocates, with gradient checkpointing as this engine was made
   * unless `gradientCheckpointing` says otherwise; the model's own arrays (info().memoryBytes) come on top.
   * Allocates nothing: a step's memory can be known before it runs.
   */
  activationBytes(shape: BatchShape, options: { mode?: 'train' | 'forward'; gradientCheckpointing?: boolean } = {}): number {
    const rows = checkedRows(shape, 'activationBytes()');
    const mode = options.mode ?? 'train';
    if (mode !== 'train' && mode !== 'forward') throw new TypeError(`activationBytes(): mode must be 'train' or 'forward', got ${JSON.stringify(mode)}`);
    return this.#alive('activationBytes()').activationBytes({ rows, train: mode === 'train', checkpointing: options.gradientCheckpointing });
  }

  /** Every tensor: Hugging Face names, PEFT names for LoRA tensors (lm_head.weight is absent when tied). */
  parameters(): TensorInfo[] {
    return this.#alive('parameters()').parameters();
  }

  parameterNames(): string[] {
    return this.parameters().map((p) => p.name);
  }

  /** Names of the tensors step() updates (LoRA A/B with LoRA, else all). */
  trainableNames(): string[] {
    return this.parameters()
      .filter((p) => p.trainable)
      .map((p) => p.name);
  }

  getParameter(name: string): Float32Array {
    return this.#alive('getParameter()').getParameter(name);
  }

  setParameter(name: string, data: Float32Array): void {
    this.#alive('setParameter()').setParameter(name, data);
  }

  getGradient(name: string): Float32Array {
    return this.#alive('getGradient()').getGradient(name);
  }

  getOptimizerState(name: string): { expAvg: Float32Array; expAvgSq: Float32Array } {
    return this.#alive('getOptimizerState()').getOptimizerState(name);
  }

  setOptimizerState(name: string, state: { expAvg: Float32Array; expAvgSq: Float32Array }): void {
    this.#alive('setOptimizerState()').setOptimizerState(name, state);
  }

  /** The AdamW step counter (for bias correction); set it when resuming from a checkpoint. */
  get stepCount(): number {
    return this.#alive('stepCount').info().step;
  }

  set stepCount(step: number) {
    this.#alive('stepCount').setOptimizerState(step);
  }

  /** Logits [batch, seq, vocab] (evaluation mode: no dropout). */
  forward(tokens: Int32Array, options: BatchShape & { signal?: AbortSignal }): Promise<Float32Array> {
    return this.#enqueue('forward()', options?.signal, (n, abort) =>
      n.forward(tokens, { batch: needOptions(options, '{ batch, seq }').batch, seq: options.seq, abort }),
    );
  }

  /** Mean cross-entropy over targets != -100, and the gradients of every trainable tensor. */
  forwardBackward(tokens: Int32Array, targets: Int32Array, options: ForwardBackwardOptions): Promise<{ loss: number; tokens: number }> {
    return this.#enqueue('forwardBackward()', options?.signal, (n, abort) =>
      n.forwardBackward(tokens, targets, {
        batch: needOptions(options, '{ batch, seq }').batch,
        seq: options.seq,
        accumulate: options.accumulate,
        dropoutSeed: options.dropoutSeed,
        rowOffset: options.rowOffset,
        lossTokens: options.lossTokens,
        reduceGradients: options.reduceGradients,
        onProgress: options.onProgress,
        abort,
      }),
    );
  }

  /**
   * Shares `comm` (or, with null, stops sharing one) for forwardBackward({ reduceGradients }) and
   * broadcastState(): a Gloo communicator for a CPU engine, NCCL for a CUDA one on the same device.
   * bucketBytes (default 25 MiB, as torch's DDP) sizes the gradient all-reduces.
   */
  attachCommunicator(comm: Communicator | null, options: { bucketBytes?: number } = {}): void {
    this.#alive('attachCommunicator()').attachCommunicator(comm ? comm.native : null, options);
  }

  /** Every rank's parameters, AdamW state and step counter become rank `root`'s (through the attached communicator). */
  broadcastState(root = 0): Promise<void> {
    return this.#enqueue('broadcastState()', undefined, (n) => n.broadcastState(root));
  }

  /** The sum of squares of every parameter: equal on ranks that hold the same weights (a divergence check). */
  parameterSumSquares(): number {
    return this.#alive('parameterSumSquares()').parameterSumSquares();
  }

  /** One AdamW step (PyTorch semantics, weight decay on every trainable tensor) after optional clipping. */
  step(options: StepOptions): Promise<StepResult> {
    return this.#enqueue('step()', undefined, (n) => n.step(needOptions(options, '{ lr, … }')));
  }

  /** Continues each prompt (token ids); returns only the new tokens of each. */
  generate(prompts: Array<Int32Array | number[]>, options: GenerateOptions = {}): Promise<Int32Array[]> {
    return this.#enqueue('generate()', options?.signal, (n, abort) =>
      n.generate(promptList(prompts, this.config.vocab_size), {
        maxNewTokens: needOptions(options ?? {}, '{ maxNewTokens, … }').maxNewTokens,
        temperature: options.temperature,
        topK: options.topK,
        seed: options.seed,
        stopTokens: options.stopTokens,
        onProgress: options.onProgress,
        abort,
      }),
    );
  }

  /**
   * Starts a step-wise decode session over the KV cache (for decoders that choose each token themselves):
   * the prompts, all of length promptLength, go through once; returns each row's next-token logits [batch, vocab].
   */
  decodeStart(tokens: Int32Array, options: { batch: number; promptLength: number; maxNewTokens: number; signal?: AbortSignal }): Promise<Float32Array> {
    return this.#enqueue('decodeStart()', options?.signal, (n) =>
      n.decodeStart(tokens, { batch: needOptions(options, '{ batch, promptLength, maxNewTokens }').batch, promptLength: options.promptLength, maxNewTokens: options.maxNewTokens }),
    );
  }

  /** Appends one token per row of the session; returns the next logits [batch, vocab]. */
  decodeNext(tokens: Int32Array): Promise<Float32Array> {
    return this.#enqueue('decodeNext()', undefined, (n) => n.decodeNext(tokens));
  }

  /**
   * Beam search's step between tokens: row b of the session continues what row rows[b] held (its KV cache
   * is copied over; repeats allowed), so the next decodeNext() extends the chosen rows.
   */
  decodeReorder(rows: Int32Array): Promise<void> {
    return this.#enqueue('decodeReorder()', undefined, async (n) => n.decodeReorder(rows));
  }

  /** Ends the decode session (generate() also ends one). */
  decodeEnd(): void {
    this.#alive('decodeEnd()').decodeEnd();
  }

  /** Frees the native memory (after any running call finishes). Idempotent. */
  dispose(): void {
    if (this.#native === null) return;
    this.#native.dispose();
    this.#native = null;
  }

  get disposed(): boolean {
    return this.#native === null;
  }
}
