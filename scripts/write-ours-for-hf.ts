// Writes model and adapter folders with OUR writers (saveHfModel, savePeftAdapter), for
// scripts/make-hf-fixtures.py --ours to load with transformers and PEFT (issue 6: a folder we save loads
// in transformers and gives the same logits).
//
//   npx tsx scripts/write-ours-for-hf.ts --out DIR [--fixtures test/fixtures]
//
// From the plain-torch fixtures (weights by their Hugging Face / PEFT names, config in __metadata__):
//   DIR/llama-full/{model, expected.safetensors}            llama-full.safetensors (GQA, untied head)
//   DIR/llama-tied/{model, expected.safetensors}            llama-tied.safetensors (tie_word_embeddings)
//   DIR/llama-lora/{model, adapter, expected.safetensors}   llama-lora.safetensors (base + PEFT LoRA)
// model/ is a LlamaForCausalLM folder (config.json, generation_config.json, model.safetensors in F32, our
// puzzle tokenizer's tokenizer.json + tokenizer_config.json + special_tokens_map.json); adapter/ is
// adapter_config.json + adapter_model.safetensors. expected.safetensors holds input.tokens and
// input.targets (the fixture's batch) and out.logits: the fixture's reference logits for those weights
// (with the adapter applied for llama-lora), which transformers must reproduce from our files.
// Existing DIR/<name> folders are replaced. test/model/transformers-parity.test.ts calls writeOursForHf()
// to rebuild the same folders and compares our engine on them with what transformers computed.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { LlamaConfig, LoraOptions } from '../lib/model/config.js';
import { llamaTensorShapes, saveHfModel } from '../lib/model/hf-checkpoint.js';
import { loraTensorShapes, savePeftAdapter } from '../lib/model/peft.js';
import { readSafetensors, writeSafetensors, type SafetensorsFile, type TensorSource } from '../lib/model/safetensors.js';
import { PuzzleTokenizer } from '../lib/model/tokenizer.js';

export const OURS_SOURCES = ['llama-full', 'llama-tied', 'llama-lora'] as const;
export const DEFAULT_FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures');

export interface OursFolder {
  name: string;
  /** DIR/<name>: model/, adapter/ (LoRA only), expected.safetensors. */
  dir: string;
  model: string;
  adapter: string | null;
  expected: string;
  config: LlamaConfig;
  lora: LoraOptions | null;
}

function tensorOf(file: SafetensorsFile, name: string): Float32Array {
  const t = file.tensors.get(name);
  if (!t) throw new Error(`${file.path}: no tensor '${name}'`);
  return t.toFloat32();
}

/** Writes DIR/<name>/{model, adapter, expected.safetensors} for every plain-torch fixture; returns them. */
export async function writeOursForHf(outDir: string, fixturesDir = DEFAULT_FIXTURES): Promise<OursFolder[]> {
  mkdirSync(outDir, { recursive: true });
  const written: OursFolder[] = [];
  for (const name of OURS_SOURCES) {
    const source = join(fixturesDir, `${name}.safetensors`);
    if (!existsSync(source)) throw new Error(`${source}: missing (run /usr/bin/python3 scripts/make-fixtures.py)`);
    const file = readSafetensors(source);
    const config = JSON.parse(file.metadata.config) as LlamaConfig;
    const lora = JSON.parse(file.metadata.lora ?? 'null') as LoraOptions | null;
    const dir = join(outDir, name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const model = join(dir, 'model');
    const weights = new Map<string, Float32Array>();
    for (const n of llamaTensorShapes(config).keys()) weights.set(n, tensorOf(file, n));
    await saveHfModel(model, { config, tensors: weights, dtype: 'F32', tokenizer: new PuzzleTokenizer() });
    let adapter: string | null = null;
    if (lora) {
      adapter = join(dir, 'adapter');
      const adapterTensors = new Map<string, Float32Array>();
      for (const n of loraTensorShapes(config, lora).keys()) adapterTensors.set(n, tensorOf(file, n));
      await savePeftAdapter(adapter, { lora, config, tensors: adapterTensors, dtype: 'F32' });
    }
    const expected = join(dir, 'expected.safetensors');
    const copy = (key: string): TensorSource => {
      const t = file.tensors.get(key);
      if (!t) throw new Error(`${source}: no tensor '${key}'`);
      return { dtype: t.dtype, shape: t.shape, data: t.data };
    };
    await writeSafetensors(
      expected,
      { 'input.tokens': copy('input.tokens'), 'input.targets': copy('input.targets'), 'out.logits': copy('out.logits') },
      {
        generator: JSON.stringify({
          script: 'scripts/write-ours-for-hf.ts',
          source: `test/fixtures/${name}.safetensors`,
          reference: JSON.parse(file.metadata.generator ?? '{}').reference ?? null,
          logits: lora ? 'with the adapter applied' : 'the model alone',
        }),
      },
    );
    written.push({ name, dir, model, adapter, expected, config, lora });
  }
  return written;
}

async function main(argv: string[]): Promise<void> {
  let out: string | undefined;
  let fixtures = DEFAULT_FIXTURES;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') out = argv[++i];
    else if (a === '--fixtures') fixtures = argv[++i];
    else if (a === '-h' || a === '--help') {
      console.log('usage: npx tsx scripts/write-ours-for-hf.ts --out DIR [--fixtures test/fixtures]');
      return;
    } else throw new Error(`write-ours-for-hf.ts: unknown argument ${JSON.stringify(a)} (usage: --out DIR [--fixtures DIR])`);
  }
  if (!out) throw new Error('write-ours-for-hf.ts: --out DIR is required');
  const folders = await writeOursForHf(out, fixtures);
  for (const f of folders) console.log(`${f.dir}: model${f.adapter ? ' + adapter' : ''} + expected.safetensors`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
