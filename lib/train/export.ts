// The end of a run: the model as a Hugging Face LlamaForCausalLM folder and, for LoRA, a PEFT adapter
// folder beside it, both written by lib/model's writers (atomic: complete or absent).
import { join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { saveHfModel } from '../model/hf-checkpoint.js';
import { savePeftAdapter } from '../model/peft.js';
import type { PuzzleTokenizer } from '../model/tokenizer.js';
import type { ResolvedTrainOptions } from './options.js';

export async function exportModel(engine: Engine, o: ResolvedTrainOptions, tokenizer: PuzzleTokenizer): Promise<{ model: string; adapter: string | null }> {
  const model = join(o.out, 'model');
  await saveHfModel(model, {
    config: o.config,
    tensors: (name) => engine.getParameter(name),
    tokenizer,
    overwrite: true,
  });
  if (!o.lora) return { model, adapter: null };
  const adapter = join(o.out, 'adapter');
  await savePeftAdapter(adapter, {
    lora: o.lora,
    config: o.config,
    tensors: (name) => engine.getParameter(name),
    baseModelNameOrPath: model,
    overwrite: true,
  });
  return { model, adapter };
}
