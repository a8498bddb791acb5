// A study's results as files: results.json (every arm's scores), results.md (one markdown table: the
// study's columns, then pass@1 per evaluation set, free and constrained) and report.html (the charts,
// the same table, and what was run).
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { htmlPage, htmlTable } from '../report/html.js';
import type { ArmResult, StudyDefinition } from './study.js';
import { pass1 } from './study.js';

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '-');

/** Short column names for evaluation sets (file sets by their file name). */
function setLabel(set: string): string {
  return set.includes('/') ? (set.split('/').pop() as string).replace(/\.jsonl$/, '') : set;
}

/** The table's header and rows: params, steps, training time, loss, then pass@1 per set and mode. */
export function studyTable(study: StudyDefinition, results: readonly ArmResult[]): { header: string[]; rows: string[][] } {
  const header = [...study.columns, 'steps', 'train s', 'final loss'];
  for (const set of study.evalSets) header.push(`${setLabel(set)} free`, `${setLabel(set)} constr.`);
  const rows = results.map((r) => {
    const row = [...study.columns.map((c) => String(r.params[c] ?? '')), String(r.steps), r.trainedSeconds.toFixed(0), r.finalLoss === null ? '-' : r.finalLoss.toFixed(3)];
    for (const set of study.evalSets) row.push(f3(pass1(r, set, 'free')), f3(pass1(r, set, 'constrained')));
    return row;
  });
  return { header, rows };
}

export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function writeStudyReport(study: StudyDefinition, results: readonly ArmResult[], out: string, limit: number): { markdown: string; files: { json: string; markdown: string; html: string } } {
  const { header, rows } = study.table ? study.table([...results]) : studyTable(study, results);
  const note = `${results.length} of ${study.arms.length} arms; ${limit} puzzles per evaluation set (pass@1 good to about ±${(1 / Math.sqrt(limit)).toFixed(2)}); greedy decoding.`;
  const markdown = `### Study: ${study.name}\n\n${study.question}\n\n${markdownTable(header, rows)}\n\n${note}\n`;
  const files = { json: join(out, 'results.json'), markdown: join(out, 'results.md'), html: join(out, 'report.html') };
  writeFileAtomic(files.json, JSON.stringify({ study: study.name, question: study.question, limit, results }, null, 2) + '\n');
  writeFileAtomic(files.markdown, markdown);
  const charts = study.charts([...results]).map((c) => ({ heading: c.title, html: c.svg }));
  const html = htmlPage(`puzzle-llama study: ${study.name}`, [
    { html: `<p>${study.question}</p><p>${note}</p>` },
    ...charts,
    { heading: 'Results', html: htmlTable(header, rows) },
  ]);
  writeFileAtomic(files.html, html);
  return { markdown, files };
}
