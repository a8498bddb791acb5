// evaluate(): the library call and `puzzle-llama eval`'s engine. Loads a model folder (or takes a live
// engine), decodes the evaluation sets with the KV cache, and writes records, scores, the table and a report.
import { makeDir } from '../io/make-dir.js';
import { writeFileAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import type { Engine } from '../engine/engine.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { engineDecoder } from '../core/engine-decoder.js';
import { evaluateWithDecoder, type EvaluateCoreOptions, type EvaluateResult } from './evaluate.js';
import { loadModel, type LoadModelOptions } from '../core/load-model.js';
import { formatEvalTable } from './table.js';
import { evaluationSections } from './report.js';
import { esc, htmlPage } from '../report/html.js';

export interface EvaluateOptions extends EvaluateCoreOptions, LoadModelOptions {
  /** A Hugging Face model folder, or an engine already holding the model with its tokenizer. */
  model: string | { engine: Engine; tokenizer: Tokenizer };
  /** Writes records.jsonl, scores.json, table.txt and report.html here. */
  out?: string;
}

export interface EvaluateReport extends EvaluateResult {
  table: string;
  files: string[];
}

export async function evaluate(options: EvaluateOptions): Promise<EvaluateReport> {
  if (typeof options !== 'object' || options === null) throw new TypeError(`evaluate(): options must be an object, got ${String(options)}`);
  if (options.model === undefined) throw new TypeError('evaluate(): model is required (a model folder or { engine, tokenizer })');
  const owned = typeof options.model === 'string';
  const { engine, tokenizer } = typeof options.model === 'string' ? await loadModel(options.model, options) : options.model;
  try {
    if (!tokenizer) throw new Error(`evaluate(): ${String(options.model)} has no tokenizer.json beside the weights`);
    const maxNewTokens = options.maxNewTokens ?? 200;
    const files: string[] = [];
    if (options.out) makeDir(options.out, 'out folder');
    const recordsPath = options.out ? join(options.out, 'records.jsonl') : undefined;
    const result = await evaluateWithDecoder(engineDecoder(engine, maxNewTokens), tokenizer, { ...options, maxNewTokens, recordsPath });
    const table = formatEvalTable(result);
    if (options.out && recordsPath) {
      files.push(recordsPath);
      const write = (name: string, text: string) => {
        const path = join(options.out as string, name);
        writeFileAtomic(path, text);
        files.push(path);
      };
      const { records: _records, ...summary } = result;
      write('scores.json', JSON.stringify(summary, null, 2) + '\n');
      write('table.txt', table + '\n');
      write('report.html', htmlPage(`puzzle-llama evaluation: ${typeof options.model === 'string' ? options.model : 'a live engine'}`, [{ html: `<pre>${esc(table)}</pre>` }, ...evaluationSections(result)]));
    }
    return { ...result, table, files };
  } finally {
    if (owned) engine.dispose();
  }
}
