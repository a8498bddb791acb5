// The run's report.html: the loss curve, pass@1 per set beside the paper's, and the facts of the run.
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { PAPER_TABLE2 } from '../eval/paper.js';
import type { EvaluateResult } from '../eval/evaluate.js';
import type { ResolvedTrainOptions, StepRecord } from './options.js';
import { renderReport } from './report.js';
import { evaluationSections } from '../eval/report.js';

export function writeRunReport(o: ResolvedTrainOptions, history: StepRecord[], evaluation: (EvaluateResult & { step: number }) | null, worldSize: number): string {
  const path = join(o.out, 'report.html');
  const last = history.at(-1);
  const html = renderReport({
    title: `puzzle-llama run: ${o.out}`,
    steps: history.map((h) => ({ step: h.step, loss: h.loss, lr: h.lr })),
    scores: (evaluation?.scores ?? []).map((s) => ({ set: s.id, mode: s.mode, pass1: s.pass1, paper: PAPER_TABLE2[s.id]?.total?.[2] })),
    facts: [
      ['model', `${o.preset}: hidden ${o.config.hidden_size}, ${o.config.num_hidden_layers} layers, ${o.config.num_attention_heads} heads (${o.config.num_key_value_heads} kv)${o.lora ? `, LoRA r ${o.lora.r}` : ''}`],
      ['data', o.data.source === 'synth' ? `synthesized: N ${o.data.n.join(',')}, V ${o.data.maxValue}, ${o.data.responses ?? 'synthetic'} responses` : `file ${o.data.path}`],
      ['steps', `${history.length}${o.timeBudget === null ? ` of ${o.steps}` : ` in a ${o.timeBudget} s budget`}, batch ${o.batchSize}${o.gradAccumulation > 1 ? ` x ${o.gradAccumulation}` : ''}${worldSize > 1 ? ` over ${worldSize} ranks` : ''}, lr ${o.lr} (${o.schedule})`],
      ['final loss', last ? last.loss.toFixed(4) : '-'],
      ['train speed', last ? `${Math.round(history.reduce((a, h) => a + h.tokens, 0) / Math.max(last.elapsedSeconds, 1e-9))} tokens/s` : '-'],
      ['evaluation', evaluation ? `step ${evaluation.step}, ${o.evalLimit} puzzles per set, ${Math.round(evaluation.tokensPerSecond)} generated tokens/s` : 'none'],
    ],
    sections: evaluation ? evaluationSections(evaluation) : [],
  });
  writeFileAtomic(path, html);
  return path;
}
