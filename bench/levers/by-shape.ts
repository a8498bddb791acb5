// Pass rates of an evaluation's records by the shape of each puzzle's canonical solution (the target itself,
// a pair, a triple, none) and, for pairs, by the pair's operator: which puzzles a model solves and which it
// never does. node dist/bench/levers/by-shape.js RECORDS.jsonl [SET]  (records from `eval --out DIR`)
import { readFileSync } from 'node:fs';
import { canonicalSolution } from '../../lib/puzzle/canonical.js';
import { parsePrompt } from '../../lib/puzzle/format.js';

const [path, set = 'id'] = process.argv.slice(2);
if (!path) {
  console.error('usage: by-shape RECORDS.jsonl [SET]  (SET defaults to id)');
  process.exit(2);
}
const counts = new Map<string, { ok: number; all: number }>();
const add = (key: string, ok: boolean) => {
  const c = counts.get(key) ?? { ok: 0, all: 0 };
  c.all++;
  if (ok) c.ok++;
  counts.set(key, c);
};
for (const [i, line] of readFileSync(path, 'utf8').split('\n').entries()) {
  if (line.trim() === '') continue;
  const r = JSON.parse(line) as { set: string; mode: string; prompt: string; ok: boolean };
  if (r.set !== set) continue;
  const puzzle = parsePrompt(r.prompt);
  if (!puzzle) throw new Error(`${path}:${i + 1}: the prompt ${JSON.stringify(r.prompt)} does not parse`);
  const canonical = canonicalSolution(puzzle, 3);
  add(`${r.mode}\t${canonical?.shape ?? 'none'}`, r.ok);
  if (canonical?.shape === 'pair') add(`${r.mode}\tpair ${canonical.steps[0].op}`, r.ok);
}
if (counts.size === 0) throw new Error(`${path}: no record of set '${set}'`);
console.log('mode\tshape\tsolved\tpuzzles\tpass@1');
for (const key of [...counts.keys()].sort()) {
  const c = counts.get(key)!;
  console.log(`${key}\t${c.ok}\t${c.all}\t${(c.ok / c.all).toFixed(3)}`);
}
