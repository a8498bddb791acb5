// evaluate() over any StepDecoder: decodes every puzzle of the chosen evaluation sets, judges each response
// with the verifier, and reports pass@1 (and pass@k when sampling) per set and per N, free and constrained.
import { closeSync, openSync, renameSync, writeSync } from 'node:fs';
import { formatPrompt } from '../puzzle/format.js';
import { Rng } from '../puzzle/rng.js';
import type { Puzzle } from '../puzzle/types.js';
import { verify, type VerdictReason } from '../puzzle/verify.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { encodeQuery } from '../core/sft.js';
import { decodeBatch, type StepDecoder } from '../core/decode.js';
import { beamSearchBatch } from '../core/beam.js';
import { loadEvalSet, type EvalSet } from './sets.js';

export const DEFAULT_EVAL_SETS = ['id', 'ood-num-100', 'ood-num-1000', 'ood-form'] as const;

/**
 * How responses are decoded: free or constrained, greedy (or sampled), or by beam search with K beams
 * ('free-beam4', 'constrained-beam4'; K from 2 to MAX_BEAMS).
 */
export type DecodingMode = 'free' | 'constrained' | `${'free' | 'constrained'}-beam${number}`;

export const MAX_BEAMS = 64;
/** The most rows one decode session of the engine holds (decodeStart's batch). */
const MAX_DECODE_ROWS = 1 << 16;

/** A decoding mode's parts; throws naming the mode when it is none. */
export function parseDecodingMode(mode: unknown): { constrained: boolean; beams: number } {
  const m = typeof mode === 'string' ? /^(free|constrained)(?:-beam(\d+))?$/.exec(mode) : null;
  const beams = m?.[2] === undefined ? 1 : Number(m[2]);
  if (!m || (m[2] !== undefined && !(beams >= 2 && beams <= MAX_BEAMS))) {
    throw new RangeError(`decoding mode ${JSON.stringify(mode)} is not one of 'free', 'constrained', 'free-beamK', 'constrained-beamK' (K from 2 to ${MAX_BEAMS})`);
  }
  return { constrained: m[1] === 'constrained', beams };
}

export interface EvaluateCoreOptions {
  /** Evaluation sets: shipped set ids or paths of JSONL files of puzzles (default: the paper's four). */
  sets?: readonly string[];
  /** At most this many puzzles per set, spread evenly over its cells (default: all). */
  limit?: number;
  /** Responses per puzzle: 1 gives pass@1; K > 1 samples and also gives pass@K (default 1). */
  samples?: number;
  /** Sampling temperature (default 0 = greedy with one sample, 1.0 with several). */
  temperature?: number;
  topK?: number;
  seed?: number;
  /** 'free', 'constrained', their beam-search forms ('constrained-beam4'), or several (default ['free']). */
  modes?: readonly DecodingMode[];
  batchSize?: number;
  maxNewTokens?: number;
  /** Writes one JSON record per response here (atomically). */
  recordsPath?: string;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Data parallelism: this rank decodes every worldSize-th batch, and gather() collects the ranks' records. */
  shard?: EvalShard;
}

/** One rank's part of a sharded evaluation (lib/dist supplies gather over the run's communicator). */
export interface EvalShard {
  rank: number;
  worldSize: number;
  /** Every rank's records and generated-token count, in rank order. */
  gather(part: { records: ResponseRecord[]; generatedTokens: number }): Promise<Array<{ records: ResponseRecord[]; generatedTokens: number }>>;
}

export interface Score {
  count: number;
  pass1: number;
  /** pass@k (unbiased estimator) when samples > 1. */
  passK?: number;
}

export interface SetScore extends Score {
  id: string;
  mode: DecodingMode;
  byN: Record<string, Score>;
  /** Responses judged (puzzles × samples). */
  responses: number;
  /** Failed responses by the verifier's reason (only reasons that occurred). */
  failures: Partial<Record<VerdictReason, number>>;
}

export interface ResponseRecord {
  set: string;
  index: number;
  n: number;
  mode: DecodingMode;
  sample: number;
  prompt: string;
  response: string;
  ok: boolean;
  reason: VerdictReason | null;
  detail: string | null;
  tokens: number;
  /** False when the response was cut at maxNewTokens before the model ended it. */
  stopped: boolean;
}

export interface EvaluateResult {
  samples: number;
  scores: SetScore[];
  generatedTokens: number;
  seconds: number;
  tokensPerSecond: number;
  records: ResponseRecord[];
}

/** pass@k from n samples of which c are correct (Chen et al. 2021, the numerically stable form). */
export function passAtK(n: number, c: number, k: number): number {
  if (n - c < k) return 1;
  let fail = 1;
  for (let i = n - c + 1; i <= n; i++) fail *= 1 - k / i;
  return 1 - fail;
}

/** An even spread of at most `limit` puzzles of a set (every cell keeps its share). */
export function sampleSet<T>(puzzles: readonly T[], limit?: number): Array<{ puzzle: T; index: number }> {
  const k = limit === undefined ? puzzles.length : Math.min(limit, puzzles.length);
  return Array.from({ length: k }, (_, i) => {
    const index = Math.floor((i * puzzles.length) / k);
    return { puzzle: puzzles[index], index };
  });
}

function checkOptions(o: EvaluateCoreOptions): void {
  const positive = (name: string, v: number | undefined) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RangeError(`evaluate(): ${name} must be a positive integer, got ${v}`);
  };
  positive('limit', o.limit);
  positive('samples', o.samples);
  positive('batchSize', o.batchSize);
  positive('maxNewTokens', o.maxNewTokens);
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) {
    throw new RangeError(`evaluate(): temperature must be a finite number ≥ 0, got ${o.temperature}`);
  }
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw new RangeError(`evaluate(): topK must be an integer ≥ 0, got ${o.topK}`);
  for (const m of o.modes ?? []) {
    let beams: number;
    try {
      beams = parseDecodingMode(m).beams;
    } catch (err) {
      throw new RangeError(`evaluate(): modes: ${(err as Error).message}`);
    }
    if (beams * (o.batchSize ?? 32) > MAX_DECODE_ROWS) {
      throw new RangeError(`evaluate(): modes holds '${m}': batchSize ${o.batchSize ?? 32} × ${beams} beams is ${beams * (o.batchSize ?? 32)} decoding rows, more than a session holds (${MAX_DECODE_ROWS}); lower batchSize`);
    }
    if (beams > 1 && ((o.samples ?? 1) > 1 || (o.temperature ?? 0) > 0)) {
      throw new RangeError(`evaluate(): modes holds '${m}': beam search gives one deterministic response, so it takes samples 1 and temperature 0 (got samples ${o.samples ?? 1}, temperature ${o.temperature ?? 0})`);
    }
  }
  if (o.sets !== undefined && (!Array.isArray(o.sets) || o.sets.length === 0)) throw new TypeError(`evaluate(): sets must be a non-empty list of set ids or JSONL paths, got ${JSON.stringify(o.sets)}`);
}

/** Every set, loaded before any decoding (a bad file fails here, naming itself). */
function loadSets(specs: readonly string[]): EvalSet[] {
  return specs.map((spec) => {
    try {
      return loadEvalSet(spec);
    } catch (err) {
      throw new Error(`evaluate(): ${(err as Error).message}`);
    }
  });
}

export async function evaluateWithDecoder(decoder: StepDecoder, tokenizer: Tokenizer, options: EvaluateCoreOptions = {}): Promise<EvaluateResult> {
  checkOptions(options);
  const sets = loadSets(options.sets ?? DEFAULT_EVAL_SETS);
  const samples = options.samples ?? 1;
  const temperature = options.temperature ?? (samples > 1 ? 1.0 : 0);
  const modes = options.modes ?? ['free'];
  const batchSize = options.batchSize ?? 32;
  const maxNewTokens = options.maxNewTokens ?? 200;
  const seed = options.seed ?? 1234;
  const shard = options.shard ?? { rank: 0, worldSize: 1, gather: async (part) => [part] };

  type Job = { set: string; index: number; puzzle: Puzzle; sample: number; mode: DecodingMode };
  const jobs: Job[] = [];
  for (const mode of modes) {
    for (const set of sets) {
      for (const { puzzle, index } of sampleSet(set.puzzles, options.limit)) {
        for (let sample = 0; sample < samples; sample++) jobs.push({ set: set.id, index, puzzle, sample, mode });
      }
    }
  }

  // Batches hold one decoding mode and one prompt length, so every row of a batch decodes in lockstep
  // over the same positions (no padding, no attention mask).
  const promptLength = (p: Puzzle) => encodeQuery(tokenizer, p).length;
  const groups = new Map<string, Job[]>();
  for (const job of jobs) {
    const key = `${job.mode}:${promptLength(job.puzzle)}`;
    const list = groups.get(key);
    if (list) list.push(job);
    else groups.set(key, [job]);
  }
  const batches: Job[][] = [];
  for (const list of groups.values()) for (let i = 0; i < list.length; i += batchSize) batches.push(list.slice(i, i + batchSize));

  let records: ResponseRecord[] = [];
  let generatedTokens = 0;
  let finished = 0;
  const t0 = performance.now();
  for (let b = shard.rank; b < batches.length; b += shard.worldSize) {
    const part = batches[b];
    const mode = part[0].mode;
    // Each batch samples from its own stream, so results do not depend on how batches are shared out.
    const rng = new Rng(seed + b * 0x9e3779b1);
    const { constrained, beams } = parseDecodingMode(mode);
    const puzzles = part.map((j) => j.puzzle);
    const decoded =
      beams > 1
        ? await beamSearchBatch(decoder, tokenizer, puzzles, { beams, maxNewTokens, constrained, signal: options.signal })
        : await decodeBatch(decoder, tokenizer, puzzles, { maxNewTokens, temperature, topK: options.topK ?? 0, constrained, rng, signal: options.signal });
    part.forEach((job, i) => {
      const verdict = verify(job.puzzle, decoded[i].response);
      generatedTokens += decoded[i].tokens;
      records.push({
        set: job.set,
        index: job.index,
        n: job.puzzle.numbers.length,
        mode,
        sample: job.sample,
        prompt: formatPrompt(job.puzzle),
        response: decoded[i].response,
        ok: verdict.ok,
        reason: verdict.reason,
        detail: verdict.detail,
        tokens: decoded[i].tokens,
        stopped: decoded[i].stopped,
      });
    });
    finished += part.length;
    options.onProgress?.(Math.min(jobs.length, finished * shard.worldSize), jobs.length);
  }
  if (shard.worldSize > 1) {
    const parts = await shard.gather({ records, generatedTokens });
    records = parts.flatMap((p) => p.records);
    generatedTokens = parts.reduce((a, p) => a + p.generatedTokens, 0);
  }
  // records in a stable order: mode, set, puzzle, sample
  const order = new Map(jobs.map((j, i) => [`${j.mode}:${j.set}:${j.index}:${j.sample}`, i]));
  records.sort((a, b) => order.get(`${a.mode}:${a.set}:${a.index}:${a.sample}`)! - order.get(`${b.mode}:${b.set}:${b.index}:${b.sample}`)!);
  const seconds = (performance.now() - t0) / 1000;
  if (options.recordsPath) writeRecords(options.recordsPath, records);
  return { samples, scores: score(records, samples), generatedTokens, seconds, tokensPerSecond: generatedTokens / Math.max(seconds, 1e-9), records };
}

/** Scores per (mode, set) and per N from the records. */
export function score(records: readonly ResponseRecord[], samples: number): SetScore[] {
  const groups = new Map<string, ResponseRecord[]>();
  for (const r of records) {
    const key = `${r.mode}\u0000${r.set}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const out: SetScore[] = [];
  for (const [key, rs] of groups) {
    const [mode, id] = key.split('\u0000') as [DecodingMode, string];
    const perPuzzle = new Map<number, { n: number; c: number; size: number }>();
    for (const r of rs) {
      const p = perPuzzle.get(r.index) ?? { n: 0, c: 0, size: r.n };
      p.n++;
      if (r.ok) p.c++;
      perPuzzle.set(r.index, p);
    }
    const summarize = (ps: Array<{ n: number; c: number }>): Score => {
      const s: Score = { count: ps.length, pass1: ps.reduce((a, p) => a + p.c / p.n, 0) / Math.max(ps.length, 1) };
      if (samples > 1) s.passK = ps.reduce((a, p) => a + passAtK(p.n, p.c, samples), 0) / Math.max(ps.length, 1);
      return s;
    };
    const all = [...perPuzzle.values()];
    const byN: Record<string, Score> = {};
    for (const size of [...new Set(all.map((p) => p.size))].sort((a, b) => a - b)) byN[String(size)] = summarize(all.filter((p) => p.size === size));
    const failures: SetScore['failures'] = {};
    for (const r of rs) if (!r.ok && r.reason) failures[r.reason] = (failures[r.reason] ?? 0) + 1;
    out.push({ id, mode, ...summarize(all), byN, responses: rs.length, failures });
  }
  return out;
}

function writeRecords(path: string, records: readonly ResponseRecord[]): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    let chunk = '';
    for (const r of records) {
      chunk += JSON.stringify(r) + '\n';
      if (chunk.length > 1 << 16) {
        writeSync(fd, chunk);
        chunk = '';
      }
    }
    writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
