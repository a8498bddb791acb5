// The evaluation result as a table shaped like the paper's Table 2, with the paper's numbers beside ours,
// and the failures broken down by the verifier's reason (arithmetic errors apart from planning errors).
import { VERDICT_REASONS, type VerdictReason } from '../puzzle/verify.js';
import { PAPER_TABLE2, PAPER_TRAINING_SIZES } from './paper.js';
import type { EvaluateResult, SetScore } from './evaluate.js';

const f3 = (x: number | undefined) => (x === undefined ? '' : x.toFixed(3));

export function formatEvalTable(result: EvaluateResult): string {
  const modes = [...new Set(result.scores.map((s) => s.mode))];
  const sets = [...new Set(result.scores.map((s) => s.id))];
  const k = result.samples;
  const header = ['set', 'N', 'count'];
  for (const m of modes) {
    header.push(`${m} pass@1`);
    if (k > 1) header.push(`${m} pass@${k}`);
  }
  header.push(...PAPER_TRAINING_SIZES.map((s) => `paper ${s}`));

  const rows: string[][] = [];
  for (const id of sets) {
    const byMode = new Map<string, SetScore>(result.scores.filter((s) => s.id === id).map((s) => [s.mode, s]));
    const first = byMode.get(modes[0]);
    if (!first) continue;
    const ns = [...Object.keys(first.byN), 'total'];
    for (const n of ns) {
      const row = [id, n === 'total' ? 'all' : n, String(n === 'total' ? first.count : first.byN[n].count)];
      for (const m of modes) {
        const s = byMode.get(m);
        const score = n === 'total' ? s : s?.byN[n];
        row.push(f3(score?.pass1));
        if (k > 1) row.push(f3(score?.passK));
      }
      const paper = PAPER_TABLE2[id]?.[n];
      row.push(...PAPER_TRAINING_SIZES.map((_, i) => (paper ? f3(paper[i]) : '')));
      rows.push(row);
    }
  }
  return [
    ...layout(header, rows, 2),
    '',
    ...formatFailureTable(result.scores),
    '',
    `generation: ${result.generatedTokens.toLocaleString('en-US')} tokens in ${result.seconds.toFixed(1)} s (${result.tokensPerSecond.toFixed(0)} tokens/s)`,
    'paper: zero-shot pass@1 of LoRA-tuned open-llama-3B trained on 1M / 10M / 100M puzzles (arXiv 2406.02100, Table 2)',
  ].join('\n');
}

/** Columns left-aligned up to `leftColumns`, the rest right-aligned, under a rule. */
function layout(header: string[], rows: string[][], leftColumns: number): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

/** The reasons that occurred in any score, in the verifier's order. */
export function failureReasons(scores: readonly SetScore[]): VerdictReason[] {
  return (Object.keys(VERDICT_REASONS) as VerdictReason[]).filter((r) => scores.some((s) => (s.failures[r] ?? 0) > 0));
}

/**
 * Failed responses per set and mode by the verifier's reason, as a share of the set's responses:
 * wrong-result is an arithmetic error; operand-not-available, numbers-left-unused and final-value-differs
 * are planning errors; parse-error and too-many-steps are errors of form.
 */
export function formatFailureTable(scores: readonly SetScore[]): string[] {
  const reasons = failureReasons(scores);
  if (reasons.length === 0) return ['failures: none'];
  const rows = scores.map((s) => {
    return [s.id, s.mode, f3(s.pass1), ...reasons.map((r) => (s.failures[r] ? f3((s.failures[r] as number) / s.responses) : ''))];
  });
  return ['failures by the verifier\'s reason (share of responses):', ...layout(['set', 'mode', 'pass@1', ...reasons], rows, 2)];
}
