// The operator-balance lever's data: a canonical synth JSONL with only a share of its division pairs (the
// puzzles whose canonical core is one `a/b` step), the rest kept as they are, cut to COUNT lines.
// node dist/bench/levers/division-share.js IN.jsonl OUT.jsonl SHARE COUNT  (SHARE in [0, 1])
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { canonicalSolution } from '../../lib/puzzle/canonical.js';
import { parsePuzzleLine } from '../../lib/puzzle/jsonl.js';
import { puzzleHash } from '../../lib/puzzle/hash.js';

const [input, output, shareText, countText] = process.argv.slice(2);
const share = Number(shareText);
const count = Number(countText);
if (!input || !output || !(share >= 0 && share <= 1) || !Number.isInteger(count) || count < 1) {
  console.error(`usage: division-share IN.jsonl OUT.jsonl SHARE COUNT (SHARE in [0, 1], got ${JSON.stringify(shareText)}; COUNT a positive integer, got ${JSON.stringify(countText)})`);
  process.exit(2);
}
const kept: string[] = [];
const byOp = new Map<string, number>();
for (const [i, line] of readFileSync(input, 'utf8').split('\n').entries()) {
  if (line.trim() === '') continue;
  const parsed = parsePuzzleLine(line);
  if (!parsed.ok) throw new Error(`${input}:${i + 1}: ${parsed.error}`);
  const canonical = canonicalSolution(parsed.record, 2);
  const kind = canonical?.shape === 'pair' ? canonical.steps[0].op : (canonical?.shape ?? 'none');
  // the same puzzles are dropped on every run: the choice is the puzzle's own hash
  if (kind === '/' && puzzleHash(parsed.record, 7) >= share * 2 ** 32) continue;
  byOp.set(kind, (byOp.get(kind) ?? 0) + 1);
  kept.push(line);
  if (kept.length >= count) break;
}
writeFileSync(`${output}.tmp`, kept.join('\n') + '\n');
renameSync(`${output}.tmp`, output);
console.log(`kept ${kept.length} puzzles: ${[...byOp].map(([k, n]) => `${k} ${n}`).join(', ')}`);
