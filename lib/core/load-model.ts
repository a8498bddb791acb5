// Loads a Hugging Face model folder (and optionally a PEFT adapter) into an engine, one tensor at a time,
// with the tokenizer that came with it: ours when its tokenizer.json is the puzzle vocabulary.
import { assertRegularFile } from '../io/regular-file.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../engine/engine.js';
import type { LoraOptions } from '../model/config.js';
import { openHfCheckpoint } from '../model/hf-checkpoint.js';
import { HfTokenizer } from '../model/hf-tokenizer.js';
import { openPeftAdapter } from '../model/peft.js';
import { PuzzleTokenizer, type Tokenizer } from '../model/tokenizer.js';

export interface LoadModelOptions {
  /** A PEFT adapter folder to load on top of the base weights. */
  adapter?: string;
  /** A fresh LoRA to train on top of the base weights (A Kaiming-uniform, B zero); not with `adapter`. */
  lora?: LoraOptions | null;
  /** Seeds the fresh LoRA's initialization. */
  seed?: number;
  device?: 'auto' | 'cpu' | 'cuda';
  /** Which GPU (default 0; a data-parallel rank uses its LOCAL_RANK). */
  deviceIndex?: number;
  threads?: number;
  /** With a LoRA (fresh or loaded): 'bf16' keeps the base matrices in bf16 (Engine.create's option). */
  frozenWeights?: 'fp32' | 'bf16';
  /** For training on the loaded model: Engine.create's gradientCheckpointing. */
  gradientCheckpointing?: boolean;
}

export interface LoadedModel {
  engine: Engine;
  /** The folder's tokenizer; null when it has no tokenizer.json (the weights alone still load). */
  tokenizer: Tokenizer | null;
  dir: string;
}

/** Our puzzle tokenizer when `dir/tokenizer.json` holds exactly its vocabulary, else the folder's own. */
export function loadTokenizer(dir: string): Tokenizer {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) throw new Error(`${dir}: no tokenizer.json beside the model`);
  const puzzle = new PuzzleTokenizer();
  assertRegularFile(path, 'the tokenizer');
  try {
    const vocab = JSON.parse(readFileSync(path, 'utf8'))?.model?.vocab;
    const ours = (puzzle.toHuggingFaceJson() as { model: { vocab: Record<string, number> } }).model.vocab;
    if (vocab && JSON.stringify(vocab) === JSON.stringify(ours)) return puzzle;
  } catch {
    // not ours: the Hugging Face loader below says what is wrong with it
  }
  return HfTokenizer.fromFiles(dir);
}

export async function loadModel(dir: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const checkpoint = await openHfCheckpoint(dir);
  if (checkpoint.hf.rope.scaling && checkpoint.hf.rope.scaling.type !== 'linear') {
    throw new Error(`${join(dir, 'config.json')}: rope_scaling (${checkpoint.hf.rope.scaling.type}) is not supported by the engine yet; only plain RoPE and linear scaling`);
  }
  const tokenizer = existsSync(join(dir, 'tokenizer.json')) ? loadTokenizer(dir) : null;
  if (tokenizer && tokenizer.vocabSize > checkpoint.config.vocab_size) {
    throw new RangeError(`${join(dir, 'tokenizer.json')}: token ids reach ${tokenizer.vocabSize - 1}, but the model's vocab_size is ${checkpoint.config.vocab_size} (${join(dir, 'config.json')}): the tokenizer does not belong to this model`);
  }
  const adapter = options.adapter ? await openPeftAdapter(options.adapter, checkpoint.config) : null;
  if (adapter && options.lora) throw new Error(`loadModel(${dir}): give either an adapter to load or a fresh lora, not both`);
  const engine = await Engine.create({
    config: checkpoint.config,
    lora: adapter?.lora ?? options.lora ?? null,
    device: options.device,
    deviceIndex: options.deviceIndex,
    threads: options.threads,
    seed: options.seed,
    initializeBase: false, // every base weight comes from the folder
    frozenWeights: options.frozenWeights,
    gradientCheckpointing: options.gradientCheckpointing,
  });
  try {
    const names = new Set(engine.parameterNames());
    for await (const t of checkpoint.stream({ reuseBuffer: true })) {
      if (!names.has(t.name)) continue; // lm_head.weight of a tied model
      engine.setParameter(t.name, t.data);
    }
    if (adapter) for (const [name, data] of await adapter.loadAll()) engine.setParameter(name, data);
  } catch (err) {
    engine.dispose();
    throw err;
  }
  return { engine, tokenizer, dir };
}
