// The end of a run: the model as a Hugging Face LlamaForCausalLM folder (config.json, model.safetensors,
// tokenizer files) and, for LoRA, a PEFT adapter folder. Folders appear complete or not at all.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import { writeSafetensors, type TensorSource } from '../model/safetensors.js';
import type { PuzzleTokenizer } from '../model/tokenizer.js';
import type { ResolvedTrainOptions } from './options.js';

const LORA_PREFIX = 'base_model.model.';

function hfConfig(o: ResolvedTrainOptions, tokenizer: PuzzleTokenizer): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    ...o.config,
    head_dim: o.config.hidden_size / o.config.num_attention_heads,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    rope_scaling: null,
    initializer_range: o.config.initializer_range ?? 0.02,
    bos_token_id: tokenizer.bos,
    eos_token_id: tokenizer.eos,
    pad_token_id: tokenizer.pad,
    torch_dtype: 'float32',
    use_cache: true,
  };
}

async function atomicFolder(final: string, write: (dir: string) => Promise<void>): Promise<string> {
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await write(tmp);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  return final;
}

export async function exportModel(engine: Engine, o: ResolvedTrainOptions, tokenizer: PuzzleTokenizer): Promise<{ model: string; adapter: string | null }> {
  const params = engine.parameters();
  const model = await atomicFolder(join(o.out, 'model'), async (dir) => {
    const tensors = new Map<string, TensorSource>();
    for (const p of params) {
      if (p.name.includes('lora_')) continue;
      tensors.set(p.name, { dtype: 'F32', shape: p.shape, data: () => engine.getParameter(p.name) });
    }
    await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfig(o, tokenizer), null, 2) + '\n');
    writeFileSync(
      join(dir, 'generation_config.json'),
      JSON.stringify({ bos_token_id: tokenizer.bos, eos_token_id: tokenizer.eos, pad_token_id: tokenizer.pad, do_sample: false }, null, 2) + '\n',
    );
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer.toHuggingFaceJson(), null, 2) + '\n');
    const { tokenizerConfig, specialTokensMap } = tokenizer.toHuggingFaceConfig();
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
    writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify(specialTokensMap, null, 2) + '\n');
  });
  if (!o.lora) return { model, adapter: null };
  const lora = o.lora;
  const adapter = await atomicFolder(join(o.out, 'adapter'), async (dir) => {
    const tensors = new Map<string, TensorSource>();
    for (const p of params) {
      if (!p.name.includes('lora_')) continue;
      const name = p.name.startsWith(LORA_PREFIX) ? p.name : `${LORA_PREFIX}${p.name}`;
      tensors.set(name, { dtype: 'F32', shape: p.shape, data: () => engine.getParameter(p.name) });
    }
    await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    writeFileSync(
      join(dir, 'adapter_config.json'),
      JSON.stringify(
        {
          peft_type: 'LORA',
          task_type: 'CAUSAL_LM',
          base_model_name_or_path: model,
          r: lora.r,
          lora_alpha: lora.alpha,
          lora_dropout: lora.dropout,
          target_modules: lora.targets,
          bias: 'none',
          fan_in_fan_out: false,
          inference_mode: true,
        },
        null,
        2,
      ) + '\n',
    );
  });
  return { model, adapter };
}
