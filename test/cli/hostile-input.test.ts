// The commands under hostile input, as a user runs them (the real binary): every input line gets its
// output line, no hang (/proc, FIFOs, unsolvable puzzles: bounded by solve's own --timeout), no file of
// the user's replaced by a rename, no temporary file left behind, and messages that name the path.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/io/package-root.js';

const bin = join(packageRoot(), 'bin', 'puzzle-llama.js');
const work = mkdtempSync(join(tmpdir(), 'puzzle-hostile-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { input, cwd: work, encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 28 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

const mkfifo = (path: string) => spawnSync('mkfifo', [path]).status === 0;

describe('solve and verify: a line out for every line in', () => {
  it('solve answers the other lines when one has more than 30 numbers, and a blank line gets its own answer', () => {
    const many = JSON.stringify({ numbers: Array.from({ length: 31 }, (_, i) => i + 1), target: 5 });
    const input = ['{"numbers":[2,3],"target":5}', many, '', '{"numbers":[2,3],"target":6}'].join('\n');
    const r = run(['solve'], input);
    expect(r.code).toBe(1);
    const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(out).toHaveLength(4);
    expect(out[0]).toEqual({ solvable: true, response: '2+3=5' });
    expect(out[1].error).toMatch(/^line 2: solve\(\): at most 30 numbers, got 31/);
    expect(out[2].error).toMatch(/^line 3: the line is blank/);
    expect(out[3]).toEqual({ solvable: true, response: '2*3=6' });
  });

  it('solve gives up on a puzzle after --timeout and says so, instead of running unbounded', () => {
    // 12 numbers, no solution: every value even, the target odd (the search is exponential)
    const hard = JSON.stringify({ numbers: [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24], target: 99999999999 });
    const r = run(['solve', '--timeout', '0.5'], `${hard}\n{"numbers":[2,3],"target":5}\n`);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(out[0]).toEqual({ solvable: null, response: null, reason: 'timeout' });
    expect(out[1].solvable).toBe(true);
    expect(r.stderr).toMatch(/1 puzzle\(s\) were not settled within 0\.5 s/);
    expect(run(['solve', '--timeout', '0']).stderr).toMatch(/--timeout must be a number of seconds in \(0, 604800\], got '0'/);
  });

  it('verify accepts what solve answered for numbers of 5,000 digits', () => {
    const big = '7'.repeat(5000);
    const puzzle = JSON.stringify({ numbers: [big, '3'], target: `${'7'.repeat(4998)}80` });
    const solved = JSON.parse(run(['solve'], puzzle).stdout);
    expect(solved.solvable).toBe(true);
    const r = run(['verify'], JSON.stringify({ ...JSON.parse(puzzle), response: solved.response }));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, reason: null, detail: null });
  });
});

describe('outputs: never a hang, never a rename over something that is not a file, never debris', () => {
  it('--out /proc/x fails at once for train, eval and datasets, naming the path', () => {
    const r1 = run(['datasets', '--out', '/proc/x/y']);
    expect(r1.code).not.toBe(0);
    expect(r1.stderr).toMatch(/cannot create the folder '\/proc\/x\/y'/);
    const r2 = run(['train', '--out', '/proc/x', '--steps', '1']);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/cannot create the run folder '\/proc\/x'/);
    const r3 = run(['eval', '--model', join(work, 'no-model'), '--out', '/proc/x']);
    expect(r3.code).not.toBe(0);
    expect(r3.stderr).not.toMatch(/puzzle-llama eval: puzzle-llama eval/);
  });

  it('synth --out /tmp is refused (no temporary file in /), and --out /dev/full says which path is full', () => {
    const before = readdirSync('/').filter((f) => f.includes('.tmp-'));
    const r = run(['synth', '--count', '5', '--out', work]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`cannot write '${work}': it is a directory; --out names a file`));
    expect(readdirSync('/').filter((f) => f.includes('.tmp-'))).toEqual(before);
    const full = run(['synth', '--count', '5000', '--out', '/dev/full']);
    expect(full.code).not.toBe(0);
    expect(full.stderr).toMatch(/cannot write '\/dev\/full': no space left on device \(ENOSPC\)/);
    expect(statSync('/dev/full').isCharacterDevice()).toBe(true); // written to, not renamed over
    expect(run(['synth', '--count', '5', '--out', '/dev/null']).code).toBe(0);
    expect(statSync('/dev/null').isCharacterDevice()).toBe(true);
  });

  it('Ctrl-C during synth leaves no temporary file, and one left by a kill -9 is swept by the next run', async () => {
    const out = join(work, 'big.jsonl');
    const child = spawn(process.execPath, [bin, 'synth', '--count', '100000000', '--out', out], { cwd: work });
    for (let i = 0; i < 400 && !readdirSync(work).some((f) => f.startsWith('.big.jsonl.tmp-')); i++) await new Promise((r) => setTimeout(r, 50));
    expect(readdirSync(work).some((f) => f.startsWith('.big.jsonl.tmp-'))).toBe(true);
    child.kill('SIGINT');
    const signal = await new Promise((resolve) => child.on('exit', (_c, s) => resolve(s)));
    expect(signal).toBe('SIGINT');
    expect(readdirSync(work).filter((f) => f.startsWith('.big.jsonl.tmp-'))).toEqual([]);
    expect(existsSync(out)).toBe(false);

    const killed = spawn(process.execPath, [bin, 'synth', '--count', '100000000', '--out', out], { cwd: work });
    for (let i = 0; i < 400 && !readdirSync(work).some((f) => f.startsWith('.big.jsonl.tmp-')); i++) await new Promise((r) => setTimeout(r, 50));
    killed.kill('SIGKILL');
    await new Promise((resolve) => killed.on('exit', resolve));
    expect(readdirSync(work).filter((f) => f.startsWith('.big.jsonl.tmp-'))).toHaveLength(1);
    expect(run(['synth', '--count', '3', '--out', out]).code).toBe(0);
    expect(readdirSync(work).filter((f) => f.startsWith('.big.jsonl.tmp-'))).toEqual([]);
  });
});

describe('inputs: FIFOs and bad values', () => {
  it('refuses a FIFO as the data file or inside a model folder instead of blocking', async () => {
    const fifo = join(work, 'data.fifo');
    if (!mkfifo(fifo)) return console.warn('skipped: mkfifo is not available');
    const r = run(['train', '--out', join(work, 'fifo-run'), '--steps', '1', '--data', fifo]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/data file '.*data\.fifo' is not a regular file \(a FIFO: it would block\)/);
    const model = join(work, 'fifo-model');
    mkdirSync(model);
    expect(mkfifo(join(model, 'config.json'))).toBe(true);
    const e = run(['eval', '--model', model, '--limit', '1']);
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(/config\.json.*not a regular file \(a FIFO: it would block\)/);
  });

  it('eval prints its prefix once and exits 2 for a bad flag, like the other commands', () => {
    const r = run(['eval', '--model', 'm', '--limit', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^puzzle-llama eval: --limit must be an integer/);
    expect(r.stderr).not.toMatch(/puzzle-llama eval: puzzle-llama eval/);
  });

  it('reports 1e400 in a config file as Infinity, not null', () => {
    writeFileSync(join(work, 'inf.json'), '{"lr": 1e400}');
    const r = run(['train', '--out', join(work, 'inf-run'), '--config', join(work, 'inf.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/lr must be a number in \(0, 10\], got Infinity/);
  });
});
