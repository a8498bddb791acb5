// The one typed description of the native addon's surface; nothing else sees the untyped module.
import type { LinearRopeScaling } from '../model/config.js';
import type { NativeKernelOps } from './kernel-ops.js';

/** What a build of the addon reports about itself. */
export interface BuildInfo {
  build: 'cpu' | 'cuda';
  cudaRuntimeVersion: number | null;
  cpu: {
    simd: SimdLevel;
    avx2: boolean;
    avx512: boolean;
    avx512bf16: boolean;
    hardwareThreads: number;
  };
  /** Whether Gloo (multi-process training on the CPU) is compiled in. */
  gloo: boolean;
}

export type SimdLevel = 'avx512' | 'avx2' | 'portable';

export interface CudaDevice {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  multiprocessors: number;
}

export interface CudaDeviceList {
  devices: CudaDevice[];
  /** Why the list is empty, or null when it is not. */
  reason: string | null;
}

/** Hugging Face LlamaConfig keys the engine reads (snake_case, as in config.json). */
export interface NativeLlamaConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  vocab_size: number;
  max_position_embeddings: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  /** Linear RoPE scaling (positions divided by factor); absent or null: plain RoPE. */
  rope_scaling?: LinearRopeScaling | null;
  tie_word_embeddings?: boolean;
  initializer_range?: number;
}

export interface NativeLoraConfig {
  r: number;
  alpha?: number;
  dropout?: number;
  targets: string[];
}

export interface NativeEngineOptions {
  config: NativeLlamaConfig;
  lora?: NativeLoraConfig | null;
  device?: 'cpu' | 'auto' | 'cuda';
  deviceIndex?: number;
  seed?: number;
  initializeBase?: boolean;
  frozenWeights?: 'fp32' | 'bf16';
  gradientCheckpointing?: boolean;
  attentionBackward?: 'fast' | 'low-memory';
  threads?: number;
}

/** A native flag an AbortSignal is wired to; workers stop at their next check once raised. */
export interface NativeAbortFlag {
  abort(): void;
  aborted(): boolean;
}

export type ProgressCallback = (done: number, total: number) => void;

export interface NativeTensorInfo {
  name: string;
  shape: number[];
  trainable: boolean;
}

export interface NativeEngineInfo {
  /** 'cpu' or 'cuda': where the engine runs. */
  device: string;
  /** Why it runs there when that is not what was asked for (device 'auto' without a usable GPU), else null. */
  note: string | null;
  threads: number;
  parameterCount: number;
  trainableCount: number;
  memoryBytes: number;
  /** Bytes the engine's backend holds now (every allocation, scratch included: on CUDA, device memory). */
  allocatedBytes: number;
  /** The most it has held since the engine was made: the number to set beside another framework's peak. */
  peakAllocatedBytes: number;
  step: number;
}

export interface NativeStepOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** 0 or absent: no clipping. */
  maxGradNorm?: number;
  /** Multiplies the gradients before clipping and the update (e.g. 1 / micro-batches). Default 1. */
  gradScale?: number;
}

export interface NativeStepResult {
  /** Global L2 norm of the gradients (times gradScale) before clipping. */
  gradNorm: number;
  clipScale: number;
  step: number;
  /** True when the gradient norm was not finite and nothing was updated. */
  skipped: boolean;
}

export interface NativeGenerateOptions {
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  seed?: number;
  stopTokens?: number[];
  abort?: NativeAbortFlag;
  onProgress?: ProgressCallback;
}

/** The native engine object (native/addon/engine_wrap.cc). Calls must not overlap; Engine serializes them. */
export interface NativeEngine {
  profile(on: boolean): string;
  activationBytes(options: { rows: number; train: boolean; checkpointing?: boolean }): number;
  info(): NativeEngineInfo;
  parameters(): NativeTensorInfo[];
  getParameter(name: string): Float32Array;
  setParameter(name: string, data: Float32Array): void;
  getGradient(name: string): Float32Array;
  getOptimizerState(name: string): { expAvg: Float32Array; expAvgSq: Float32Array };
  setOptimizerState(name: string, state: { expAvg: Float32Array; expAvgSq: Float32Array }): void;
  setOptimizerState(step: number): void;
  forward(tokens: Int32Array, options: { batch: number; seq: number; abort?: NativeAbortFlag }): Promise<Float32Array>;
  forwardBackward(
    tokens: Int32Array,
    targets: Int32Array,
    options: {
      batch: number;
      seq: number;
      accumulate?: boolean;
      dropoutSeed?: number;
      rowOffset?: number;
      lossTokens?: number;
      reduceGradients?: boolean;
      abort?: NativeAbortFlag;
      onProgress?: ProgressCallback;
    },
  ): Promise<{ loss: number; tokens: number }>;
  attachCommunicator(comm: NativeCommunicator | null, options?: { bucketBytes?: number }): void;
  broadcastState(root: number): Promise<void>;
  parameterSumSquares(): number;
  step(options: NativeStepOptions): Promise<NativeStepResult>;
  generate(prompts: Int32Array[], options?: NativeGenerateOptions): Promise<Int32Array[]>;
  /** Starts a step-wise decode session: prompts [batch, promptLength]; returns next-token logits [batch, vocab]. */
  decodeStart(tokens: Int32Array, options: { batch: number; promptLength: number; maxNewTokens: number }): Promise<Float32Array>;
  /** Feeds one token per row; returns the next logits [batch, vocab]. */
  decodeNext(tokens: Int32Array): Promise<Float32Array>;
  /** Row b of the session continues row rows[b] (its KV cache is copied); rows holds batch indices. */
  decodeReorder(rows: Int32Array): void;
  decodeEnd(): void;
  dispose(): void;
  disposed(): boolean;
}

export interface NativeEngineConstructor {
  new (options: NativeEngineOptions): NativeEngine;
}

export interface NativeAbortFlagConstructor {
  new (): NativeAbortFlag;
}

/** Where a kernel runs: 'cpu' (default) on the typed arrays in place; 'cuda' on the process's one CUDA backend. */
export type KernelDevice = 'cpu' | 'cuda';

/**
 * Options every kernel takes: the device, and the thread count of the CPU pool it runs on (default: all
 * hardware threads; ignored on CUDA). With device 'cuda' the inputs are uploaded, the same backend op runs
 * on the GPU and the outputs come back as new typed arrays; an unavailable GPU or a CUDA error
 * (out of memory included) is a thrown Error.
 */
export interface KernelThreads {
  threads?: number;
  device?: KernelDevice;
}

/** Whether device 'cuda' works in this process (kernels.cudaAvailable()). */
export interface CudaAvailability {
  ok: boolean;
  /** Why not, when ok is false; else null. */
  reason: string | null;
  /** 'CUDA device 0 (NVIDIA H100 80GB HBM3)' when ok. */
  device?: string;
  /** Which GEMM kernels large products use there (the Hopper wgmma/TMA kernel or mma.sync), when ok. */
  gemm?: string;
}

/** Attention's dimensions and options, as the generated attentionForward binding takes them (lib/engine/kernel-ops.ts). */
export type AttentionDims = Parameters<NativeKernelOps['attentionForward']>[3];

/**
 * A bandwidth-bound op for kernels.timeOp() and its shape: n elements (copy, add, swiglu, adamw), n rows of c
 * (rmsnorm), [b, t, h, d] (rope, in place), n rows of v logits (crossEntropy), n tokens of c-wide rows of a
 * v-row table (embedding).
 */
export type TimedOp =
  | { op: 'copy' | 'add' | 'swigluForward' | 'swigluBackward' | 'adamw'; n: number }
  | { op: 'rmsnormForward' | 'rmsnormBackward'; n: number; c: number }
  | { op: 'ropeForward' | 'ropeBackward'; b: number; t: number; h: number; d: number }
  | { op: 'crossEntropy'; n: number; v: number }
  | { op: 'embeddingForward' | 'embeddingBackward'; n: number; c: number; v: number };

/**
 * The kernels object (native/addon/kernels_wrap.cc): each op alone (NativeKernelOps, generated from
 * native/ops/spec.mjs), plus the functions that are not ops: capability probes, the SIMD switch, timing loops.
 */
export interface NativeKernels extends NativeKernelOps {
  simd(): SimdLevel;
  /** Makes the process's CUDA backend on first call (device 0); says why not when it cannot. Never throws. */
  cudaAvailable(): CudaAvailability;
  /** Picks the SIMD path for every kernel (clamped to what the CPU has); returns the level in use. */
  setSimd(level: SimdLevel): SimdLevel;
  /**
   * Times C = op(A) op(B) off the JS thread, each call to completion (the GPU synchronized), `repeats`
   * calls after one warm-up; gflops is from the best call.
   */
  /**
   * operands 'bf16' (device 'cuda' on a Hopper GPU only) times the bf16 GEMM alone on operands already
   * converted to bf16, A row-major and B transposed (the inputs torch.mm gets in bf16); the default 'fp32'
   * times the backend's gemm() as the model calls it, conversions included. With bf16 operands, tileWidth
   * forces the kernel's output-tile width (one of the widths it has) and the result says which width ran.
   */
  timeMatmul(options: KernelThreads & { m: number; n: number; k: number; transA?: boolean; transB?: boolean; repeats?: number; operands?: 'fp32' | 'bf16'; tileWidth?: number }): Promise<{
    bestSeconds: number;
    meanSeconds: number;
    medianSeconds: number;
    gflops: number;
    meanGflops: number;
    medianGflops: number;
    tileWidth?: number;
  }>;
  /**
   * Times causal attention forward, the backward alone (from the forward's out and lse), then forward+backward,
   * as timeMatmul does; msFwd / msBwd / msFwdBwd are the best calls, medianMs* the medians (kernel: as for
   * attentionForward; a promise that rejects where the kernels cannot run).
   */
  timeAttention(options: AttentionDims & { repeats?: number }): Promise<{ msFwd: number; medianMsFwd: number; msBwd: number; medianMsBwd: number; msFwdBwd: number; medianMsFwdBwd: number }>;
  /**
   * Times one bandwidth-bound backend op on inputs made in backend memory (device 'cuda': a device-to-device
   * copy for op 'copy'): `repeats` batches (default 10) after a warm-up, each `calls` calls back to back
   * (default 10) then synchronized, reported per call. bytes is what the op must read and write at least
   * (native/addon/kernels_wrap.cc, TimeOpJob, gives each op's count), gbps = bytes / time of the best call.
   */
  /**
   * The machine's fp32 FMA peak, measured now (native/cpu/peak.cc): on each of `threads` threads of a pool
   * (default: the hardware threads), 12 independent FMA chains at the active SIMD level for `ms` milliseconds
   * (default 200). gflops is per wall second (what the caller got, on a shared machine too);
   * gflopsPerCpuSecond per second of CPU time the threads were given (what the cores do while they run).
   */
  fmaPeak(options?: { threads?: number; ms?: number }): Promise<{
    gflops: number;
    gflopsPerCpuSecond: number;
    flops: number;
    wallSeconds: number;
    cpuSeconds: number;
    threads: number;
    accumulators: number;
    lanes: number;
    isa: SimdLevel;
  }>;
  timeOp(options: KernelThreads & TimedOp & { repeats?: number; calls?: number }): Promise<{
    op: TimedOp['op'];
    bytes: number;
    bestMs: number;
    medianMs: number;
    gbps: number;
    medianGbps: number;
  }>;
}

/** Every function the addon exports. */
/** What createCommunicator() takes (native/addon/communicator_wrap.cc). */
export interface NativeCommunicatorOptions {
  backend: 'gloo' | 'nccl';
  rank: number;
  worldSize: number;
  storeHost: string;
  storePort: number;
  token?: string;
  /** The store keys' namespace for this communicator. */
  prefix?: string;
  timeoutMs?: number;
  /** Gloo: the address this rank listens on for its peers, or the interface (iface). */
  hostname?: string;
  iface?: string;
  /** NCCL: the CUDA device and the libnccl.so.2 candidates, in order. */
  deviceIndex?: number;
  ncclLibraries?: string[];
}

/** One rank's communicator; collectives must not overlap (Communicator serializes them). */
export interface NativeCommunicator {
  info(): { backend: 'gloo' | 'nccl'; library: string; rank: number; worldSize: number; deviceMemory: boolean };
  allReduce(data: Float32Array | Uint16Array, options?: { op?: 'sum' | 'average'; dtype?: 'f32' | 'bf16' }): Promise<void>;
  broadcast(data: ArrayBufferView, root: number): Promise<void>;
  allGather(data: Uint8Array): Promise<Uint8Array[]>;
  barrier(): Promise<void>;
  timeAllReduce(options: { bytes: number; dtype?: 'f32' | 'bf16'; op?: 'sum' | 'average'; iterations?: number; warmup?: number }): Promise<{ seconds: number }>;
  close(): void;
}

export interface NativeAddon {
  buildInfo(): BuildInfo;
  cudaDevices(): CudaDeviceList;
  createCommunicator(options: NativeCommunicatorOptions): Promise<NativeCommunicator>;
  NativeEngine: NativeEngineConstructor;
  AbortFlag: NativeAbortFlagConstructor;
  kernels: NativeKernels;
}
