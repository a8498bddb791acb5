// The end of a run: the model as a Hugging Face LlamaForCausalLM folder and, for LoRA, a PEFT adapter
// folder beside it, both written by lib/model's writers (atomic: complete or absent).
import { join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { saveHfModel } from '../model/hf-checkpoint.js';
import { mergePeftIntoModel, savePeftAdapter } from '../model/peft.js';
import type { HfTokenizer } from '../model/hf-tokenizer.js';
import type { PuzzleTokenizer, Tokenizer } from '../model/tokenizer.js';
import type { ResolvedTrainOptions } from './options.js';

/**
 * From scratch, or every weight of a base model trained in full (no LoRA): out/model holds every weight
 * (LoRA tensors aside) and, with LoRA, out/adapter the adapter. LoRA on a base model: out/adapter, plus
 * out/model with the adapter merged in when `merge` is set.
 */
export async function exportModel(engine: Engine, o: ResolvedTrainOptions, tokenizer: Tokenizer): Promise<{ model: string | null; adapter: string | null }> {
  const hfTokenizer = tokenizer as PuzzleTokenizer | HfTokenizer;
  let model: string | null = null;
  if (!o.baseModel || !o.lora) {
    model = join(o.out, 'model');
    await saveHfModel(model, { config: o.config, tensors: (name) => engine.getParameter(name), tokenizer: hfTokenizer, overwrite: true });
  }
  if (!o.lora) return { model, adapter: null };
  const adapter = join(o.out, 'adapter');
  await savePeftAdapter(adapter, {
    lora: o.lora,
    config: o.config,
    tensors: (name) => engine.getParameter(name),
    baseModelNameOrPath: o.baseModel ?? model,
    overwrite: true,
  });
  if (o.baseModel && o.merge) {
    model = join(o.out, 'model');
    await mergePeftIntoModel(o.baseModel, adapter, model, { overwrite: true });
  }
  return { model, adapter };
}
