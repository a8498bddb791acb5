// Self-improvement lever, step 2: from an evaluation's records.jsonl, the first response the verifier accepted
// for each puzzle, as training lines (prompt and response): node dist/bench/levers/harvest.js RECORDS OUT
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { canonicalSolution } from '../../lib/puzzle/canonical.js';
import { formatPrompt, parsePrompt } from '../../lib/puzzle/format.js';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: harvest RECORDS.jsonl OUT.jsonl');
  process.exit(2);
}
const harvested = new Map<string, string>();
const byShape: Record<string, number> = {};
for (const [i, line] of readFileSync(input, 'utf8').split('\n').entries()) {
  if (line.trim() === '') continue;
  const record = JSON.parse(line) as { prompt?: unknown; response?: unknown; ok?: unknown };
  if (record.ok !== true || typeof record.prompt !== 'string' || typeof record.response !== 'string') continue;
  if (harvested.has(record.prompt)) continue;
  const puzzle = parsePrompt(record.prompt);
  if (!puzzle) throw new Error(`${input}:${i + 1}: prompt ${JSON.stringify(record.prompt)} does not parse`);
  const numbers = puzzle.numbers.map(Number);
  const target = Number(puzzle.target);
  harvested.set(record.prompt, JSON.stringify({ numbers, target, prompt: formatPrompt(puzzle), response: record.response }));
  const shape = canonicalSolution(puzzle)?.shape ?? 'none';
  byShape[shape] = (byShape[shape] ?? 0) + 1;
}
writeFileSync(`${output}.tmp`, [...harvested.values()].join('\n') + (harvested.size ? '\n' : ''));
renameSync(`${output}.tmp`, output);
console.log(`harvested ${harvested.size} verified responses; by canonical shape: ${JSON.stringify(byShape)}`);
