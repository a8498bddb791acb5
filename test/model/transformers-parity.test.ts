// Parity with the reference implementations themselves (issue 6): models and adapters saved by Hugging Face
// transformers and PEFT load into our engine and give transformers' logits, loss and LoRA gradients; PEFT's
// adapter round-trips through our reader and writer; and folders OUR writers saved, loaded by transformers
// (scripts/make-hf-fixtures.py --ours), give the logits our engine computes from them.
// The fixtures in test/fixtures/hf/ come from scripts/make-hf-fixtures.py, run where python has
// transformers and peft (`npm run gpu:check` runs it); without them this file skips, saying so once.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { worst } from '../engine/reference.js';
import type { LlamaConfig, LoraOptions } from '../../lib/model/config.js';
import type { Engine } from '../../lib/engine/engine.js';
import { loadModel } from '../../lib/core/load-model.js';
import { openHfCheckpoint } from '../../lib/model/hf-checkpoint.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, openPeftAdapter, parseAdapterConfig, savePeftAdapter } from '../../lib/model/peft.js';
import { readSafetensors, type SafetensorsFile } from '../../lib/model/safetensors.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';
import { OURS_SOURCES, writeOursForHf, type OursFolder } from '../../scripts/write-ours-for-hf.js';

const hfDir = fileURLToPath(new URL('../fixtures/hf/', import.meta.url));
/** The models scripts/make-hf-fixtures.py writes (GQA, untied and tied embeddings). */
const HF_MODELS = ['gqa-untied', 'gqa-tied'];
const CONFIG_KEYS = [
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'vocab_size',
  'rms_norm_eps',
  'rope_theta',
  'max_position_embeddings',
  'tie_word_embeddings',
] as const;
const LOGITS_ATOL = 1e-4;
const GRAD_RTOL = 1e-3;
const REGENERATE = 'python3 scripts/make-hf-fixtures.py --out test/fixtures/hf';

const present = existsSync(hfDir);
if (!present) {
  console.log(
    `transformers fixtures not yet written: run ${REGENERATE} on a host with transformers and peft (npm run gpu:check does it)`,
  );
}

let root: string | null = null;
const tmp = (name: string): string => {
  root ??= mkdtempSync(join(tmpdir(), 'transformers-parity-'));
  return join(root, name);
};
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});
/** Our folders, written once (by the same code as scripts/write-ours-for-hf.ts) when a test needs them. */
let oursFolders: Promise<OursFolder[]> | null = null;

function tensor(file: SafetensorsFile, key: string): Float32Array | Int32Array {
  const t = file.tensors.get(key);
  if (!t) throw new Error(`${file.path}: no tensor '${key}' (rerun ${REGENERATE})`);
  return t.data as Float32Array | Int32Array;
}

/** worst(), after checking that both hold as many elements. */
function worstOf(got: ArrayLike<number>, want: ArrayLike<number>): { maxErr: number; at: number; scale: number } {
  expect(got.length, 'element count').toBe(want.length);
  return worst(got, want);
}

async function withEngine<T>(dir: string, adapter: string | undefined, fn: (engine: Engine) => Promise<T>): Promise<T> {
  const { engine } = await loadModel(dir, { adapter, device: 'cpu', threads: 2 });
  try {
    return await fn(engine);
  } finally {
    engine.dispose();
  }
}

function batchOf(file: SafetensorsFile): { tokens: Int32Array; targets: Int32Array | null; B: number; T: number } {
  const t = file.tensors.get('input.tokens');
  if (!t || t.dtype !== 'I32' || t.shape.length !== 2) throw new Error(`${file.path}: input.tokens must be I32 [batch, seq]`);
  const [B, T] = t.shape;
  const targets = file.tensors.has('input.targets') ? Int32Array.from(tensor(file, 'input.targets')) : null;
  return { tokens: Int32Array.from(t.data as Int32Array), targets, B, T };
}

const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

(present ? describe : describe.skip)('transformers + PEFT parity (test/fixtures/hf)', () => {
  describe.each(HF_MODELS)('%s: saved by transformers and PEFT', (name) => {
    const dir = join(hfDir, name);
    const modelDir = join(dir, 'model');
    const adapterDir = join(dir, 'adapter');
    const load = (): { file: SafetensorsFile; config: LlamaConfig; lora: LoraOptions } => {
      const path = join(dir, 'expected.safetensors');
      if (!existsSync(path)) throw new Error(`${path}: missing; test/fixtures/hf/ is incomplete (rerun ${REGENERATE})`);
      const file = readSafetensors(path);
      return { file, config: JSON.parse(file.metadata.config) as LlamaConfig, lora: JSON.parse(file.metadata.lora) as LoraOptions };
    };

    it('our readers open both folders (strictly) and read the config and adapter as written', async () => {
      const { file, config, lora } = load();
      const checkpoint = await openHfCheckpoint(modelDir, { strict: true });
      for (const key of CONFIG_KEYS) expect(checkpoint.config[key], `config.json ${key}`).toBe(config[key]);
      expect(checkpoint.hf.rope.scaling).toBeNull();
      const adapter = await openPeftAdapter(adapterDir, checkpoint.config);
      expect(adapter.lora.r).toBe(lora.r);
      expect(adapter.lora.alpha).toBe(lora.alpha);
      expect(adapter.lora.dropout).toBe(lora.dropout);
      expect(sorted(adapter.lora.targets)).toEqual(sorted(lora.targets));
      const gradNames = [...file.tensors.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice('grad.'.length));
      expect(sorted(adapter.tensors.keys()), 'the adapter file holds exactly the tensors with gradients').toEqual(sorted(gradNames));
      const generator = JSON.parse(file.metadata.generator ?? '{}') as Record<string, unknown>;
      console.log(
        `${name}: made by transformers ${generator.transformers}, peft ${generator.peft}, torch ${generator.torch}` +
          (checkpoint.warnings.length + adapter.warnings.length ? `; warnings: ${[...checkpoint.warnings, ...adapter.warnings].join(' | ')}` : ''),
      );
    });

    it('loadModel(model): logits match transformers (out.base_logits)', async () => {
      const { file } = load();
      const { tokens, B, T } = batchOf(file);
      await withEngine(modelDir, undefined, async (engine) => {
        const w = worstOf(await engine.forward(tokens, { batch: B, seq: T }), tensor(file, 'out.base_logits'));
        console.log(`${name} base logits: max |err| ${w.maxErr.toExponential(2)} at ${w.at} (max |ref| ${w.scale.toFixed(3)})`);
        expect(w.maxErr, 'base logits').toBeLessThanOrEqual(LOGITS_ATOL);
      });
    });

    it('loadModel(model, {adapter}): logits, loss and every LoRA gradient match transformers + PEFT', async () => {
      const { file } = load();
      const { tokens, targets, B, T } = batchOf(file);
      expect(targets, 'input.targets').not.toBeNull();
      await withEngine(modelDir, adapterDir, async (engine) => {
        const report: string[] = [];
        const lw = worstOf(await engine.forward(tokens, { batch: B, seq: T }), tensor(file, 'out.logits'));
        report.push(`logits: max |err| ${lw.maxErr.toExponential(2)} (max |ref| ${lw.scale.toFixed(3)})`);
        expect(lw.maxErr, 'adapter logits').toBeLessThanOrEqual(LOGITS_ATOL);

        const { loss } = await engine.forwardBackward(tokens, targets!, { batch: B, seq: T });
        const refLoss = tensor(file, 'out.loss')[0];
        report.push(`loss: ${loss.toFixed(6)} vs ${refLoss.toFixed(6)}`);
        expect(Math.abs(loss - refLoss), `loss ${loss} vs ${refLoss}`).toBeLessThanOrEqual(1e-5 * Math.max(1, refLoss));

        const gradKeys = [...file.tensors.keys()].filter((k) => k.startsWith('grad.'));
        expect(sorted(engine.trainableNames().map((n) => `grad.${n}`)), 'trainable tensors = PEFT LoRA tensors').toEqual(sorted(gradKeys));
        let worstRatio = 0;
        let worstName = '';
        for (const key of gradKeys) {
          const n = key.slice('grad.'.length);
          const w = worstOf(engine.getGradient(n), tensor(file, key));
          expect(w.scale, `${key} is all zeros: the fixture cannot test it`).toBeGreaterThan(0);
          expect(w.maxErr, `grad ${n}: max |err| ${w.maxErr} at ${w.at}, max |ref| ${w.scale}`).toBeLessThanOrEqual(GRAD_RTOL * w.scale);
          if (w.maxErr / w.scale >= worstRatio) {
            worstRatio = w.maxErr / w.scale;
            worstName = n;
          }
        }
        report.push(`${gradKeys.length} LoRA gradients: worst max |err| / max |ref| ${worstRatio.toExponential(2)} (${worstName})`);
        console.log(`${name} with adapter\n  ${report.join('\n  ')}`);
      });
    });

    it("PEFT's adapter round-trips through openPeftAdapter + savePeftAdapter (tensor bytes, config keys)", async () => {
      const { config } = load();
      const src = await openPeftAdapter(adapterDir, config);
      const out = tmp(`${name}-adapter-roundtrip`);
      await savePeftAdapter(out, {
        lora: src.lora,
        config,
        tensors: await src.loadAll(),
        dtype: 'F32',
        baseModelNameOrPath: src.baseModelNameOrPath,
      });

      const theirs = readSafetensors(join(adapterDir, ADAPTER_WEIGHTS_FILE));
      const ours = readSafetensors(join(out, ADAPTER_WEIGHTS_FILE));
      expect(sorted(ours.tensors.keys())).toEqual(sorted(theirs.tensors.keys()));
      for (const [n, t] of theirs.tensors) {
        const o = ours.tensors.get(n)!;
        expect(t.dtype, `${n}: PEFT saved a float32 adapter`).toBe('F32');
        expect(o.dtype, n).toBe(t.dtype);
        expect(o.shape, n).toEqual(t.shape);
        const a = new Uint8Array(t.data.buffer, t.data.byteOffset, t.byteLength);
        const b = new Uint8Array(o.data.buffer, o.data.byteOffset, o.byteLength);
        expect(Buffer.compare(a, b), `${n}: bytes differ`).toBe(0);
      }

      const theirConfig = JSON.parse(readFileSync(join(adapterDir, ADAPTER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
      const ourConfig = JSON.parse(readFileSync(join(out, ADAPTER_CONFIG_FILE), 'utf8')) as Record<string, unknown>;
      const norm = (key: string, v: unknown): unknown => (key === 'target_modules' && Array.isArray(v) ? sorted(v as string[]) : v);
      for (const [key, value] of Object.entries(ourConfig)) {
        expect(Object.prototype.hasOwnProperty.call(theirConfig, key), `PEFT's ${ADAPTER_CONFIG_FILE} has no key '${key}' that we write`).toBe(true);
        expect(norm(key, value), `${ADAPTER_CONFIG_FILE} ${key}`).toEqual(norm(key, theirConfig[key]));
      }
      const a = parseAdapterConfig(theirConfig, config, `PEFT's ${ADAPTER_CONFIG_FILE}`);
      const b = parseAdapterConfig(ourConfig, config, `our ${ADAPTER_CONFIG_FILE}`);
      expect(b.lora).toEqual(a.lora);
      expect(b.scale).toBe(a.scale);
      const dropped = Object.keys(theirConfig).filter((k) => !(k in ourConfig));
      console.log(`${name} adapter round trip: ${theirs.tensors.size} tensors byte-identical; ${Object.keys(ourConfig).length} config keys equal; PEFT's keys we do not write: ${dropped.join(', ') || 'none'}`);
    });
  });

  describe.each([...OURS_SOURCES])('%s: saved by our writers, loaded by transformers', (name) => {
    const path = join(hfDir, `${name}-ours-logits.safetensors`);
    const has = existsSync(path);
    it.skipIf(!has)(
      `our engine on our folder matches transformers on it${has ? '' : ` (skipped: no ${name}-ours-logits.safetensors; run scripts/write-ours-for-hf.ts and make-hf-fixtures.py --ours)`}`,
      async () => {
        oursFolders ??= writeOursForHf(tmp('ours'));
        const f = (await oursFolders).find((x) => x.name === name)!;
        const theirs = readSafetensors(path);
        const { tokens, B, T } = batchOf(theirs);
        const mine = batchOf(readSafetensors(f.expected));
        const stale = `(if test/fixtures/${name}.safetensors was regenerated since ${name}-ours-logits.safetensors was written, rerun the --ours step)`;
        expect([...tokens], `input tokens ${stale}`).toEqual([...mine.tokens]);
        const report: string[] = [];
        await withEngine(f.model, undefined, async (engine) => {
          const w = worstOf(await engine.forward(tokens, { batch: B, seq: T }), tensor(theirs, 'out.base_logits'));
          report.push(`base logits: max |err| ${w.maxErr.toExponential(2)}`);
          expect(w.maxErr, `base logits ${stale}`).toBeLessThanOrEqual(LOGITS_ATOL);
        });
        if (f.adapter) {
          expect(theirs.tensors.has('out.logits'), `${path} has no out.logits: transformers did not load our adapter`).toBe(true);
          await withEngine(f.model, f.adapter, async (engine) => {
            const w = worstOf(await engine.forward(tokens, { batch: B, seq: T }), tensor(theirs, 'out.logits'));
            report.push(`adapter logits: max |err| ${w.maxErr.toExponential(2)}`);
            expect(w.maxErr, `adapter logits ${stale}`).toBeLessThanOrEqual(LOGITS_ATOL);
          });
        }
        if (theirs.tensors.has('tok.ids')) {
          const text = (JSON.parse(theirs.metadata.generator ?? '{}') as { tokenizer_text?: string }).tokenizer_text;
          expect(typeof text, 'generator.tokenizer_text').toBe('string');
          const tok = new PuzzleTokenizer();
          expect([...tensor(theirs, 'tok.ids')], `transformers' AutoTokenizer on our tokenizer.json, ${JSON.stringify(text)}`).toEqual([
            tok.bos,
            ...tok.encode(text!),
          ]);
          report.push(`tokenizer: ${JSON.stringify(text)} gives the same ids`);
        }
        console.log(`${name} (ours, read by transformers): ${report.join('; ')}`);
      },
    );
  });
});
