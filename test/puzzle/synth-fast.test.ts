// Synthesis's fast path against its references: the same draws and puzzles as the exact definition, the
// same JSONL bytes as puzzleToJsonLine (BigInt lines, chunk edges, exclusions), and a Python peer's bytes.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { synthCommand } from '../../lib/cli/commands/synth.js';
import { packageRoot } from '../../lib/io/package-root.js';
import { puzzleToJsonLine } from '../../lib/puzzle/jsonl.js';
import { candidatesHash, puzzleHash, PuzzleSet } from '../../lib/puzzle/key.js';
import { Rng } from '../../lib/puzzle/rng.js';
import { putSafeInt, synthesizeJsonl } from '../../lib/puzzle/synth-jsonl.js';
import { createSynthScratch, synthesize, synthesizeOne, synthesizeOneExact, type SynthesizeOptions } from '../../lib/puzzle/synthesize.js';

const CASES: Array<[number[], number]> = [
  [[2, 3, 4], 1],
  [[5, 6, 7], 60],
  [[8], 1000], // past 2^53 now and then: the BigInt path
  [[5, 6, 7], 1000],
  [[10, 12, 15], 60],
  [[20, 64], 2 ** 32], // past 2^53 in almost every puzzle, often within the first steps
];

function jsonlOf(options: SynthesizeOptions, chunkBytes?: number): { text: string; chunks: number; puzzles: number } {
  let text = '';
  let chunks = 0;
  let puzzles = 0;
  for (const chunk of synthesizeJsonl(options, chunkBytes)) {
    const part = Buffer.from(chunk.bytes).toString('latin1');
    expect(part.endsWith('\n')).toBe(true); // whole lines only
    expect(part.split('\n').length - 1).toBe(chunk.puzzles);
    text += part;
    chunks++;
    puzzles += chunk.puzzles;
  }
  return { text, chunks, puzzles };
}

function referenceJsonl(options: SynthesizeOptions): string {
  const lines: string[] = [];
  for (const p of synthesize(options)) lines.push(puzzleToJsonLine(p));
  return lines.length ? lines.join('\n') + '\n' : '';
}

describe('synthesis fast path', () => {
  it('draws the same puzzles as the exact definition, consuming the same random numbers', () => {
    for (const [ns, v] of CASES) {
      for (const seed of [1, 2, -7]) {
        const fast = new Rng(seed);
        const exact = new Rng(seed);
        const scratch = createSynthScratch();
        let big = 0;
        for (let k = 0; k < 600; k++) {
          const n = ns[k % ns.length];
          const a = synthesizeOne(fast, n, v, scratch);
          const b = synthesizeOneExact(exact, n, v);
          expect(a).toEqual(b);
          if (typeof a.target === 'bigint') big++;
        }
        expect(fast.state()).toEqual(exact.state());
        if (v >= 2 ** 32) expect(big).toBeGreaterThan(100);
      }
    }
  });

  it('writes the bytes of puzzleToJsonLine, across chunk edges and for numbers past 2^53', () => {
    for (const [ns, v] of CASES) {
      const options = { n: ns, maxValue: v, count: 1500, seed: 41 };
      const ref = referenceJsonl(options);
      const small = jsonlOf(options, 1024);
      expect(small.text).toBe(ref);
      expect(small.puzzles).toBe(1500);
      expect(small.chunks).toBeGreaterThan(10);
      expect(jsonlOf(options).text).toBe(ref);
    }
    // V 1000, N 8: targets and steps past 2^53 are written as decimal strings
    const big = jsonlOf({ n: 8, maxValue: 1000, count: 3000, seed: 17 }).text.split('\n').filter((l) => /"target":"/.test(l));
    expect(big.length).toBeGreaterThan(0);
    for (const line of big) expect(BigInt(JSON.parse(line).target) > BigInt(Number.MAX_SAFE_INTEGER) || BigInt(JSON.parse(line).target) < -BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
  });

  it('skips the excluded puzzles exactly as synthesize() does', () => {
    const taken = [...synthesize({ n: 3, maxValue: 4, count: 200, seed: 5 })];
    const exclude = new PuzzleSet().addAll(taken.slice(0, 100));
    const options = { n: 3, maxValue: 4, count: 800, seed: 5, exclude };
    expect(jsonlOf(options, 1024).text).toBe(referenceJsonl(options));
    const unique = { n: 3, maxValue: 6, count: 300, seed: 9, unique: true };
    expect(jsonlOf(unique).text).toBe(referenceJsonl(unique));
  });

  it('writes count 0 as nothing and refuses a bad chunk size naming it', () => {
    expect(jsonlOf({ n: 5, maxValue: 60, count: 0 }).chunks).toBe(0);
    expect(() => synthesizeJsonl({ n: 5, maxValue: 60, count: 1 }, 10).next()).toThrow(/chunkBytes must be an integer in \[1024, 2\^30\], got 10/);
    expect(() => synthesizeJsonl({ n: 1, maxValue: 60, count: 1 }).next()).toThrow(/n must be an integer in \[2, 64\], got 1/);
  });

  it('writes safe integers in decimal as String() does', () => {
    const rng = new Rng(3);
    const values = [0, 1, -1, 9, 10, -10, 99, 100, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
    for (let p = 1; p <= 1e15; p *= 10) values.push(p - 1, p, p + 1, -p);
    for (let i = 0; i < 20000; i++) {
      const digits = 1 + rng.below(16);
      const x = Math.floor(rng.nextFloat() * 10 ** digits) * (rng.below(2) ? -1 : 1);
      if (Number.isSafeInteger(x)) values.push(x === 0 ? 0 : x);
    }
    const buf = new Uint8Array(32);
    const dv = new DataView(buf.buffer);
    for (const x of values) {
      const end = putSafeInt(dv, 0, x);
      expect(Buffer.from(buf.subarray(0, end)).toString('latin1')).toBe(String(x));
    }
  });

  it('hashes plain candidates as puzzleHash hashes the puzzle', () => {
    for (const p of synthesize({ n: [2, 5, 9], maxValue: 2 ** 32, count: 500, seed: 8 })) {
      if (typeof p.target === 'bigint') continue;
      expect(candidatesHash(new Float64Array(p.numbers as number[]), p.numbers.length, p.target)).toBe(puzzleHash(p));
    }
  });

  it('draws below(n) as the plain rejection rule does, n near 2^32 included', () => {
    const reference = (rng: Rng, n: number) => {
      const limit = 4294967296 - (4294967296 % n);
      for (;;) {
        const x = rng.nextU32();
        if (x < limit) return x % n;
      }
    };
    for (const n of [1, 2, 3, 7, 60, 1000, 2 ** 31 + 1, 3_000_000_000, 2 ** 32 - 1, 2 ** 32]) {
      const a = new Rng(n);
      const b = new Rng(n);
      for (let i = 0; i < 2000; i++) expect(a.below(n)).toBe(reference(b, n));
      expect(a.state()).toEqual(b.state());
    }
  });

  it('matches a Python implementation of the algorithm and generator byte for byte (bench/peers/synthesize.py)', (ctx) => {
    const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'pass']).status === 0);
    if (!python) return ctx.skip(); // no Python 3 on this machine: nothing to compare with
    const dir = mkdtempSync(join(tmpdir(), 'synth-peer-'));
    try {
      for (const [ns, v, seed, count] of [[[5, 6, 7], 60, 3, 5000], [[8], 1000, 17, 3000], [[2, 3], 1, -5, 200]] as const) {
        const out = join(dir, 'py.jsonl');
        const config = { mode: 'file', rng: 'xoshiro', n: ns, maxValue: v, seed, count, out };
        const r = spawnSync(python, [join(packageRoot(), 'bench', 'peers', 'synthesize.py')], { input: JSON.stringify(config), encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(0);
        expect(jsonlOf({ n: [...ns], maxValue: v, seed, count }).text).toBe(readFileSync(out, 'latin1'));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('synth to a slow stream writes what it writes to a file (the reused buffer is copied)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'synth-stream-'));
    try {
      const held: Buffer[] = [];
      // keeps every chunk it is given and takes its time: a reused buffer would show up as repeated lines
      const slow = new Writable({
        highWaterMark: 1 << 16,
        write(chunk: Buffer, _encoding, callback) {
          held.push(chunk);
          setTimeout(callback, 1);
        },
      });
      const quiet = new Writable({ write: (_c, _e, cb) => cb() });
      const args = ['--count', '30000', '--seed', '6', '--n', '5,6,7', '--max-value', '60'];
      expect(await synthCommand([...args, '--out', '-'], { stdin: process.stdin, stdout: slow, stderr: quiet })).toBe(0);
      const out = join(dir, 'f.jsonl');
      expect(await synthCommand([...args, '--out', out], { stdin: process.stdin, stdout: quiet, stderr: quiet })).toBe(0);
      const file = readFileSync(out, 'latin1');
      expect(file.split('\n').length - 1).toBe(30000);
      expect(Buffer.concat(held).toString('latin1')).toBe(file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
