// The library's public face: `import { synthesize, verify, solve, benchmarkSets, … } from 'puzzle-llama'`.
export type { Int } from './puzzle/int.js';
export { intFromJson, intToJson, intToString, parseInt10 } from './puzzle/int.js';
export type { Op, Puzzle, SolvedPuzzle, Step } from './puzzle/types.js';
export { OPS } from './puzzle/types.js';
export { Rng, type RngState } from './puzzle/rng.js';
export { formatPrompt, formatResponse, formatStep, parsePrompt, parseResponse, parseStep } from './puzzle/format.js';
export { puzzleKey, puzzleHash, PuzzleSet } from './puzzle/key.js';
export { applyOp, synthesize, synthesizeOne, type SynthesizeOptions } from './puzzle/synthesize.js';
export { synthesizeJsonl, type JsonlChunk } from './puzzle/synth-jsonl.js';
export { verify, VERDICT_REASONS, type Verdict, type VerdictReason } from './puzzle/verify.js';
export { solve, type Solution } from './puzzle/solve.js';
export { parsePuzzleLine, puzzleToJsonLine, readPuzzleFile, type PuzzleRecord } from './puzzle/jsonl.js';
export {
  benchmarkPuzzles,
  benchmarkSet,
  benchmarkSets,
  generateBenchmarkSets,
  loadBenchmarkSet,
  type BenchmarkCell,
  type BenchmarkSet,
} from './puzzle/benchmark-sets.js';
export { loadAddon, type LoadedAddon } from './engine/loader.js';
export type { BuildInfo, CudaDevice, CudaDeviceList } from './engine/native.js';
export { Engine, type EngineOptions, type EngineInfo, type StepOptions, type GenerateOptions, type TensorInfo } from './engine/engine.js';
export { kernels } from './engine/kernels.js';
export { Communicator, glooAvailable, type CommunicatorOptions } from './engine/communicator.js';
export { readWorld, type World } from './dist/env.js';
export { PRESETS, presetConfig, type LlamaConfig, type LoraOptions } from './model/config.js';
export { train, type TrainResult } from './train/train.js';
export type { TrainOptions, StepRecord, DistributedOptions } from './train/options.js';
export { evaluate, type EvaluateOptions, type EvaluateReport } from './eval/run.js';
export type { EvaluateResult, ResponseRecord, SetScore, Score } from './eval/evaluate.js';
export { loadModel, type LoadedModel } from './core/load-model.js';
export { PuzzleTokenizer, type Tokenizer } from './model/tokenizer.js';
export { runCli } from './cli/main.js';
