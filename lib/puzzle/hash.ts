// A stable 32-bit hash of a puzzle (FNV-1a over its prompt order and target), for choices that must be
// fixed per puzzle whatever the stream position or rank: which shortest core answers it, whether its tail is cut.
import type { Puzzle } from './types.js';

/** FNV-1a of `numbers:target` started from a basis mixed with `salt`, so that two choices stay independent. */
export function puzzleHash(p: Puzzle, salt = 0): number {
  let h = (0x811c9dc5 ^ Math.imul(salt, 0x9e3779b1)) >>> 0;
  const text = `${p.numbers.join(',')}:${p.target}`;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
