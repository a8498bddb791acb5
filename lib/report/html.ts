// Pieces of self-contained HTML reports (no scripts, no network): escaping, tables, and an SVG line chart of
// several series against a numeric axis (what the studies plot: pass@1 against data, size or N).

export const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round tick values covering [lo, hi], about `count` of them. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) out.push(Number(t.toPrecision(6)));
  return out;
}

/** An HTML table; cells are text (escaped here). */
export function htmlTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const head = `<tr>${header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>`;
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table class="data">${head}\n${body}</table>`;
}

export interface Series {
  name: string;
  points: Array<{ x: number; y: number }>;
}

export interface LineChartOptions {
  xLabel: string;
  yLabel: string;
  /** A log-scaled x axis (for data volumes). */
  logX?: boolean;
  /** The y range (default [0, max(1, largest y)]). */
  yRange?: [number, number];
  width?: number;
  height?: number;
}

const COLORS = ['#3182bd', '#31a354', '#e6550d', '#756bb1', '#636363', '#d62728'];

/** An SVG chart with one line and labelled points per series, and a legend. */
export function lineChart(series: readonly Series[], o: LineChartOptions): string {
  const width = o.width ?? 720;
  const height = o.height ?? 320;
  const pad = { l: 56, r: 16, t: 28, b: 44 };
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return `<svg width="${width}" height="${height}" role="img" aria-label="no data"><text x="20" y="40">no data</text></svg>`;
  const fx = (x: number) => (o.logX ? Math.log10(Math.max(x, 1e-12)) : x);
  const xs = all.map((p) => fx(p.x));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1e-9);
  const [y0, y1] = o.yRange ?? [0, Math.max(1, ...all.map((p) => p.y))];
  const span = x1 - x0 || 1;
  const X = (x: number) => pad.l + ((fx(x) - x0) / span) * (width - pad.l - pad.r);
  const Y = (y: number) => height - pad.b - ((y - y0) / (y1 - y0 || 1)) * (height - pad.t - pad.b);
  const xTicks = o.logX
    ? [...new Set(all.map((p) => p.x))].sort((a, b) => a - b)
    : niceTicks(Math.min(...all.map((p) => p.x)), Math.max(...all.map((p) => p.x)), 6);
  const grid = [
    ...niceTicks(y0, y1, 5).map((t) => `<line x1="${pad.l}" x2="${width - pad.r}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" class="grid"/><text x="${pad.l - 6}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`),
    ...xTicks.map((t) => `<text x="${X(t).toFixed(1)}" y="${height - pad.b + 16}" text-anchor="middle">${t.toLocaleString('en-US')}</text>`),
  ].join('');
  const lines = series
    .map((s, i) => {
      const color = COLORS[i % COLORS.length];
      const pts = [...s.points].sort((a, b) => a.x - b.x);
      const d = pts.map((p, k) => `${k ? 'L' : 'M'}${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join('');
      const dots = pts.map((p) => `<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="3" fill="${color}"><title>${esc(s.name)}: ${p.x}, ${p.y.toFixed(3)}</title></circle>`).join('');
      return `<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>${dots}`;
    })
    .join('\n');
  const legend = series.map((s, i) => `<rect x="${pad.l + i * 150}" y="6" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${pad.l + i * 150 + 16}" y="16">${esc(s.name)}</text>`).join('');
  return `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(o.yLabel)} against ${esc(o.xLabel)}">
${grid}<line x1="${pad.l}" x2="${pad.l}" y1="${pad.t}" y2="${height - pad.b}" class="axis"/><line x1="${pad.l}" x2="${width - pad.r}" y1="${height - pad.b}" y2="${height - pad.b}" class="axis"/>
${legend}${lines}
<text x="${(pad.l + width - pad.r) / 2}" y="${height - 6}" text-anchor="middle">${esc(o.xLabel)}</text><text x="14" y="${(pad.t + height - pad.b) / 2}" transform="rotate(-90 14 ${(pad.t + height - pad.b) / 2})" text-anchor="middle">${esc(o.yLabel)}</text>
</svg>`;
}

export const REPORT_STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:880px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
svg text{font-size:11px;fill:#444}.grid{stroke:#eee}.axis{stroke:#888}
table{border-collapse:collapse}th,td{text-align:left;padding:2px 12px 2px 0;border-bottom:1px solid #eee}
table.data td{font-variant-numeric:tabular-nums}code,.response{font-family:ui-monospace,monospace;font-size:12px}
.ok{color:#31a354}.bad{color:#d62728}`;

/** A whole page: title, then the sections in order. */
export function htmlPage(title: string, sections: ReadonlyArray<{ heading?: string; html: string }>): string {
  const body = sections.map((s) => `${s.heading ? `<h2>${esc(s.heading)}</h2>\n` : ''}${s.html}`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>
${REPORT_STYLE}
</style></head><body>
<h1>${esc(title)}</h1>
${body}
</body></html>
`;
}
