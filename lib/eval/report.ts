// The evaluation's sections of an HTML report: pass@1 with the failures broken down by the verifier's
// reason, and a few responses per set, solved and failed, with what the verifier said.
import { esc, htmlTable } from '../report/html.js';
import type { EvaluateResult, ResponseRecord } from './evaluate.js';
import { failureReasons } from './table.js';

/** Responses shown per (set, mode): this many solved and this many failed. */
const EXAMPLES_EACH = 3;

export function evaluationSections(result: EvaluateResult): Array<{ heading: string; html: string }> {
  const reasons = failureReasons(result.scores);
  const rows = result.scores.map((s) => [
    s.id,
    s.mode,
    String(s.count),
    s.pass1.toFixed(3),
    ...reasons.map((r) => (s.failures[r] ? ((s.failures[r] as number) / s.responses).toFixed(3) : '')),
  ]);
  const failures =
    '<p>Share of responses failing for each of the verifier\'s reasons: <code>wrong-result</code> is an arithmetic error; ' +
    '<code>operand-not-available</code>, <code>numbers-left-unused</code> and <code>final-value-differs</code> are planning errors; ' +
    '<code>parse-error</code> and <code>too-many-steps</code> are errors of form.</p>' +
    htmlTable(['set', 'mode', 'puzzles', 'pass@1', ...reasons], rows);
  return [
    { heading: 'pass@1 and failures by reason', html: failures },
    { heading: 'Example responses', html: examples(result.records) },
  ];
}

function examples(records: readonly ResponseRecord[]): string {
  const groups = new Map<string, ResponseRecord[]>();
  for (const r of records) {
    const key = `${r.set} · ${r.mode}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const parts: string[] = [];
  for (const [key, rs] of groups) {
    const shown = [...rs.filter((r) => r.ok).slice(0, EXAMPLES_EACH), ...rs.filter((r) => !r.ok).slice(0, EXAMPLES_EACH)];
    const items = shown
      .map((r) => {
        const verdict = r.ok ? '<span class="ok">solved</span>' : `<span class="bad">${esc(r.reason ?? 'failed')}</span>${r.detail ? `: ${esc(r.detail)}` : ''}`;
        return `<li><code>${esc(r.prompt)}</code> → <span class="response">${esc(r.response || '(empty)')}</span><br>${verdict}</li>`;
      })
      .join('\n');
    parts.push(`<h3>${esc(key)}</h3>\n<ul>${items}</ul>`);
  }
  return parts.join('\n');
}
