// The run's HTML report: one self-contained file (inline SVG, no scripts, no network) with the loss
// curve, pass@1 per evaluation set, and any further sections (the evaluation's failures and examples).
import { esc, niceTicks } from '../report/html.js';

export interface ReportInput {
  title: string;
  /** Per-step loss (and optionally learning rate). */
  steps: Array<{ step: number; loss: number; lr?: number }>;
  /** pass@1 per set (and per decoding mode). */
  scores: Array<{ set: string; mode: string; pass1: number; paper?: number }>;
  /** Key facts shown in a table (config, timings). */
  facts: Array<[string, string]>;
  /** More sections after the charts (HTML made by their owners). */
  sections?: ReadonlyArray<{ heading: string; html: string }>;
}

/** An SVG line chart of loss against step (raw points faint, a moving average on top). */
export function lossChart(steps: ReportInput['steps'], width = 720, height = 320): string {
  const pad = { l: 56, r: 16, t: 16, b: 40 };
  if (steps.length === 0) return `<svg class="loss-chart" width="${width}" height="${height}" role="img" aria-label="no steps"><text x="20" y="40">no training steps</text></svg>`;
  const xs = steps.map((s) => s.step);
  const ys = steps.map((s) => s.loss).filter(Number.isFinite);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1);
  const y0 = Math.min(0, ...ys);
  const y1 = Math.max(...ys, y0 + 1e-6);
  const X = (x: number) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y: number) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  const path = (pts: Array<[number, number]>) => pts.map(([x, y], i) => `${i ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join('');
  const raw = steps.filter((s) => Number.isFinite(s.loss)).map((s) => [s.step, s.loss] as [number, number]);
  const half = Math.max(0, Math.round(raw.length / 100));
  const smooth = raw.map(([x], i) => {
    const part = raw.slice(Math.max(0, i - half), i + half + 1); // centred: the curve does not lag
    return [x, part.reduce((a, [, y]) => a + y, 0) / part.length] as [number, number];
  });
  const grid = [
    ...niceTicks(y0, y1, 5).map((t) => `<line x1="${pad.l}" x2="${width - pad.r}" y1="${Y(t)}" y2="${Y(t)}" class="grid"/><text x="${pad.l - 6}" y="${Y(t) + 4}" text-anchor="end">${t}</text>`),
    ...niceTicks(x0, x1, 6).map((t) => `<text x="${X(t)}" y="${height - pad.b + 16}" text-anchor="middle">${t}</text>`),
  ].join('');
  return `<svg class="loss-chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="training loss by step">
${grid}<line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${height - pad.b}" class="axis"/><line x1="${pad.l}" x2="${width - pad.r}" y1="${height - pad.b}" y2="${height - pad.b}" class="axis"/>
<path d="${path(raw)}" class="raw"/><path d="${path(smooth)}" class="smooth"/>
<text x="${(pad.l + width - pad.r) / 2}" y="${height - 6}" text-anchor="middle">step</text><text x="14" y="${(pad.t + height - pad.b) / 2}" transform="rotate(-90 14 ${(pad.t + height - pad.b) / 2})" text-anchor="middle">loss</text>
</svg>`;
}

/** A bar's classes: its decoding ('free' or 'constrained') and 'beam' for beam search ('constrained-beam4'). */
function barClass(mode: string): string {
  const [decoding, beam] = mode.split('-');
  return `bar ${esc(decoding)}${beam ? ' beam' : ''}`;
}

/** An SVG bar chart of pass@1: one group per set, one bar per decoding mode, the paper's number as a tick. */
export function passChart(scores: ReportInput['scores'], width = 720, height = 320): string {
  const pad = { l: 56, r: 16, t: 28, b: 44 };
  const sets = [...new Set(scores.map((s) => s.set))];
  const modes = [...new Set(scores.map((s) => s.mode))];
  const group = (width - pad.l - pad.r) / Math.max(1, sets.length);
  const barW = (group * 0.8) / Math.max(1, modes.length);
  const Y = (y: number) => height - pad.b - y * (height - pad.t - pad.b);
  const bars = sets
    .map((set, g) => {
      const x0 = pad.l + g * group + group * 0.1;
      const inGroup = modes
        .map((mode, m) => {
          const s = scores.find((x) => x.set === set && x.mode === mode);
          if (!s) return '';
          const x = x0 + m * barW;
          return `<rect x="${x.toFixed(1)}" y="${Y(s.pass1).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(Y(0) - Y(s.pass1)).toFixed(1)}" class="${barClass(mode)}"><title>${esc(set)} ${esc(mode)}: ${s.pass1.toFixed(3)}</title></rect>` +
            `<text x="${(x + barW / 2 - 1).toFixed(1)}" y="${(Y(s.pass1) - 4).toFixed(1)}" text-anchor="middle">${s.pass1.toFixed(2)}</text>`;
        })
        .join('');
      const paper = scores.find((x) => x.set === set && x.paper !== undefined)?.paper;
      const tick = paper !== undefined ? `<line x1="${(x0 - 3).toFixed(1)}" x2="${(x0 + group * 0.8 + 1).toFixed(1)}" y1="${Y(paper).toFixed(1)}" y2="${Y(paper).toFixed(1)}" class="paper"><title>paper (100M): ${paper}</title></line>` : '';
      return `${inGroup}${tick}<text x="${(x0 + group * 0.4).toFixed(1)}" y="${height - pad.b + 16}" text-anchor="middle">${esc(set)}</text>`;
    })
    .join('\n');
  const legend = modes
    .map((mode, m) => `<rect x="${pad.l + m * 150}" y="6" width="12" height="12" class="${barClass(mode)}"/><text x="${pad.l + m * 150 + 16}" y="16">${esc(mode)}</text>`)
    .join('') + `<line x1="${pad.l + modes.length * 150}" x2="${pad.l + modes.length * 150 + 14}" y1="12" y2="12" class="paper"/><text x="${pad.l + modes.length * 150 + 18}" y="16">paper, 100M puzzles</text>`;
  const grid = [0, 0.25, 0.5, 0.75, 1].map((t) => `<line x1="${pad.l}" x2="${width - pad.r}" y1="${Y(t)}" y2="${Y(t)}" class="grid"/><text x="${pad.l - 6}" y="${Y(t) + 4}" text-anchor="end">${t}</text>`).join('');
  return `<svg class="pass-chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="pass@1 by evaluation set">
${grid}${legend}${bars}<text x="14" y="${(pad.t + height - pad.b) / 2}" transform="rotate(-90 14 ${(pad.t + height - pad.b) / 2})" text-anchor="middle">pass@1</text>
</svg>`;
}

export function renderReport(input: ReportInput): string {
  const facts = input.facts.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(input.title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:780px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
svg text{font-size:11px;fill:#444}.grid{stroke:#eee}.axis{stroke:#888}
.raw{fill:none;stroke:#9ecae1;stroke-width:1}.smooth{fill:none;stroke:#08519c;stroke-width:2}
.bar{fill:#3182bd}.bar.constrained{fill:#31a354}.bar.beam{fill:#9ecae1}.bar.constrained.beam{fill:#a1d99b}.paper{stroke:#d62728;stroke-width:2}.mode{fill:#888}
table{border-collapse:collapse}th,td{text-align:left;padding:2px 12px 2px 0;border-bottom:1px solid #eee}
code,.response{font-family:ui-monospace,monospace;font-size:12px}.ok{color:#31a354}.bad{color:#d62728}
</style></head><body>
<h1>${esc(input.title)}</h1>
<table>${facts}</table>
<h2>Training loss</h2>
${lossChart(input.steps)}
<h2>pass@1 by evaluation set</h2>
<p>This run's pass@1 per evaluation set, free and constrained decoding; red ticks: the paper's LoRA-tuned open-llama-3B trained on 100M puzzles (Table 2).</p>
${passChart(input.scores)}
${(input.sections ?? []).map((x) => `<h2>${esc(x.heading)}</h2>\n${x.html}`).join('\n')}
</body></html>
`;
}
