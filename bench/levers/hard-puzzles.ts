// Self-improvement lever, step 1: the puzzles of a synth JSONL that no short canonical solution answers (a
// core of three candidates, or none), as an evaluation set to sample on: node dist/bench/levers/hard-puzzles.js IN OUT MAX
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { canonicalSolution } from '../../lib/puzzle/canonical.js';
import { parsePuzzleLine } from '../../lib/puzzle/jsonl.js';

const [input, output, maxText] = process.argv.slice(2);
const max = Number(maxText);
if (!input || !output || !Number.isInteger(max) || max < 1) {
  console.error(`usage: hard-puzzles IN.jsonl OUT.jsonl MAX (MAX a positive integer, got ${JSON.stringify(maxText)})`);
  process.exit(2);
}
const kept: string[] = [];
for (const [i, line] of readFileSync(input, 'utf8').split('\n').entries()) {
  if (line.trim() === '') continue;
  const parsed = parsePuzzleLine(line);
  if (!parsed.ok) throw new Error(`${input}:${i + 1}: ${parsed.error}`);
  const shape = canonicalSolution(parsed.record)?.shape ?? 'none';
  if (shape !== 'triple' && shape !== 'none') continue;
  const { numbers, target } = parsed.record;
  kept.push(JSON.stringify({ numbers: numbers.map(Number), target: Number(target) }));
  if (kept.length >= max) break;
}
writeFileSync(`${output}.tmp`, kept.join('\n') + '\n');
renameSync(`${output}.tmp`, output);
console.log(`kept ${kept.length} puzzles with a three-candidate core or none`);
