// The library's public face: `import { synthesize, verify, solve, benchmarkSets, … } from 'puzzle-llama'`.
export type { Int } from './puzzle/int.js';
export { intFromJson, intToJson, intToString, parseInt10 } from './puzzle/int.js';
export type { Op, Puzzle, SolvedPuzzle, Step } from './puzzle/types.js';
export { OPS } from './puzzle/types.js';
export { Rng, type RngState } from './puzzle/rng.js';
export { formatPrompt, formatResponse, formatStep, parsePrompt, parseResponse, parseStep } from './puzzle/format.js';
export { puzzleKey, puzzleHash, PuzzleSet } from './puzzle/key.js';
export { applyOp, synthesize, synthesizeOne, type SynthesizeOptions } from './puzzle/synthesize.js';
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
export { runCli } from './cli/main.js';
