// The puzzle commands as a user runs them: the real `puzzle-llama` binary, its output and exit status.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/io/package-root.js';
import { puzzleKey } from '../../lib/puzzle/key.js';
import { loadBenchmarkSet, benchmarkSets } from '../../lib/puzzle/benchmark-sets.js';
import { canonicalSolution } from '../../lib/puzzle/canonical.js';
import { parsePuzzleLine } from '../../lib/puzzle/jsonl.js';
import { PRESETS, type PresetName } from '../../lib/model/config.js';
import { recipe } from '../../lib/train/recipes.js';

const root = packageRoot();
const bin = join(root, 'bin', 'puzzle-llama.js');
const work = mkdtempSync(join(tmpdir(), 'puzzle-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { input, cwd: work, encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 28 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('puzzle-llama CLI (needs the TypeScript build: npm test runs tsc first)', () => {
  it('is built', () => {
    expect(existsSync(join(root, 'dist', 'lib', 'cli', 'main.js')), 'dist/ is missing: run `npm run build:ts`').toBe(true);
  });

  it('bench runs the benchmark runner as its own program, passing its flags and exit status through', () => {
    const r = run(['bench', '--suite', 'nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown --suite 'nope'; suites: .*dist/);
  });

  it('synth writes N records to a file atomically, deterministic for a seed', () => {
    const out = join(work, 'a.jsonl');
    const r = run(['synth', '--n', '5,6', '--max-value', '100', '--count', '500', '--seed', '4', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/500 puzzles/);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines.length).toBe(500);
    expect(JSON.parse(lines[0]).numbers.length).toBe(5);
    expect(readdirSync(work).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const again = run(['synth', '--n', '5,6', '--max-value', '100', '--count', '500', '--seed', '4']);
    expect(again.stdout).toBe(readFileSync(out, 'utf8'));
  });

  it('synth never emits a puzzle of the evaluation sets or of an --exclude file', () => {
    const first = run(['synth', '--n', '2', '--max-value', '3', '--count', '20', '--seed', '1']);
    const excludeFile = join(work, 'exclude.jsonl');
    writeFileSync(excludeFile, first.stdout);
    const excluded = new Set(first.stdout.trim().split('\n').map((l) => puzzleKey(JSON.parse(l))));
    const r = run(['synth', '--n', '2', '--max-value', '3', '--count', '30', '--seed', '1', '--exclude', excludeFile]);
    expect(r.code).toBe(0);
    for (const line of r.stdout.trim().split('\n')) expect(excluded.has(puzzleKey(JSON.parse(line)))).toBe(false);

    const evalKeys = new Set(loadBenchmarkSet('id').map(puzzleKey));
    const big = run(['synth', '--n', '5', '--max-value', '60', '--count', '20000', '--seed', '24060']);
    const keys = big.stdout.trim().split('\n').map((l) => puzzleKey(JSON.parse(l)));
    expect(keys.length).toBe(20000);
    expect(keys.filter((k) => evalKeys.has(k))).toEqual([]);
  });

  it('refuses bad flags with a clear message and a non-zero exit', () => {
    const cases: Array<[string[], RegExp]> = [
      [['synth', '--bogus'], /Unknown option '--bogus'/],
      [['synth', '--n', '1'], /--n must be an integer in \[2, 64\], got '1'/],
      [['synth', '--n', '5,,6'], /--n must be a comma-separated list/],
      [['synth', '--max-value', '0'], /--max-value must be an integer in \[1, .*\], got '0'/],
      [['synth', '--count', 'lots'], /--count must be an integer/],
      [['synth', '--responses', 'canonical', '--max-core', '4'], /--max-core must be an integer in \[1, 3\], got '4'/],
      [['synth', '--max-core', '2'], /--max-core bounds canonical cores; it needs --responses canonical/],
      [['synth', '--responses', 'canonical', '--fold', 'sideways'], /--fold must be one of prompt, reverse, shuffled, first, got 'sideways'/],
      [['synth', '--fold', 'first'], /--fold orders the canonical fold; it needs --responses canonical/],
      [['synth', '--exclude', 'nope.jsonl'], /--exclude file 'nope.jsonl' does not exist/],
      [['verify', '--in', 'missing.jsonl'], /--in file 'missing.jsonl' does not exist/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['datasets'], /--out DIR is required/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
    }
  });

  it('synth refuses an --exclude file with a malformed line, naming file and line', () => {
    const bad = join(work, 'bad-exclude.jsonl');
    writeFileSync(bad, '{"numbers":[1,2],"target":3}\n{"numbers":"oops","target":3}\n');
    const r = run(['synth', '--count', '5', '--exclude', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad-exclude.jsonl:2: "numbers" must be an array/);
  });

  it('verify gives one verdict per line and goes on past a malformed line', () => {
    const input = [
      '{"numbers":[34,18,31,41,19,55],"target":-110,"response":"31-34=-3, 19+41=60, 60/-3=-20, -20/18=-2, -2*55=-110"}',
      '{"numbers":[3,6,7,51,58],"target":4',
      '',
      '{"numbers":[3,6,7,51,58],"target":4,"response":"58-51=7, 6-7=-1, 3*-1=-3, -3+7=5"}',
      '{"numbers":[3,6,7,51,58],"target":4}',
    ].join('\n');
    const r = run(['verify', '--in', '-'], input);
    expect(r.code).toBe(1);
    const verdicts = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    // one verdict per input line, the blank one included, so that verdict i is about line i
    expect(verdicts.map((v) => [v.ok, v.reason])).toEqual([
      [true, null],
      [false, 'malformed-input'],
      [false, 'malformed-input'],
      [false, 'wrong-result'],
      [false, 'malformed-input'],
    ]);
    expect(verdicts[1].detail).toMatch(/^line 2:/);
    expect(verdicts[2].detail).toMatch(/^line 3: the line is blank/);
    expect(verdicts[4].detail).toMatch(/line 5: "response" is missing/);
    expect(r.stderr).toMatch(/3 of 5 lines were malformed/);
  });

  it('solve answers each puzzle and its responses verify', () => {
    const input = ['{"numbers":[3,6,7,51,58],"target":4}', '{"numbers":[2,3],"target":7}', '{"numbers":[1000,1000,1000,1000,1000,1000],"target":"1000000000000000000"}'].join('\n');
    const r = run(['solve'], input);
    expect(r.code).toBe(0);
    const answers = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(answers.map((a) => a.solvable)).toEqual([true, false, true]);
    expect(answers[1].response).toBeNull();
    const check = run(['verify'], [
      JSON.stringify({ numbers: [3, 6, 7, 51, 58], target: 4, response: answers[0].response }),
      JSON.stringify({ numbers: [1000, 1000, 1000, 1000, 1000, 1000], target: '1000000000000000000', response: answers[2].response }),
    ].join('\n'));
    expect(check.stdout.trim().split('\n').map((l) => JSON.parse(l).ok)).toEqual([true, true]);
  });

  it('datasets writes the shipped evaluation sets', () => {
    const dir = join(work, 'sets');
    const r = run(['datasets', '--out', dir]);
    expect(r.code).toBe(0);
    for (const set of benchmarkSets) {
      expect(readFileSync(join(dir, `${set.id}.jsonl`), 'utf8')).toBe(readFileSync(join(root, 'data', `${set.id}.jsonl`), 'utf8'));
    }
  });

  it('stops quietly when the reader of its output goes away', () => {
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${bin}" synth --count 2000000 | head -n 3`], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout.trim().split('\n').length).toBe(3);
    expect(r.stderr).not.toMatch(/Error|EPIPE/);
  });
});

describe('puzzle-llama info', () => {
  it('says which addon build loaded', () => {
    const r = run(['info', '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(['cpu', 'cuda']).toContain(info.build);
    expect(info.path).toMatch(/\.node$/);
    expect(Array.isArray(info.cuda.devices)).toBe(true);
  });
});

describe('puzzle-llama train and eval flags', () => {
  it('refuse bad input with a clear message and a non-zero exit, before any work', () => {
    const cases: Array<[string[], RegExp]> = [
      [['train', '--preset', 'giant', '--out', join(work, 't1')], /unknown preset 'giant'/],
      [['train', '--steps=-5'], /--steps must be an integer in \[1, /],
      [['train', '--steps', '-5'], /--steps/],
      [['train', '--lr', 'fast'], /--lr must be a number, got 'fast'/],
      [['train', '--device', 'tpu'], /--device must be auto, cpu or cuda, got 'tpu'/],
      [['train', '--frozen-weights', 'int4'], /--frozen-weights must be fp32 or bf16, got 'int4'/],
      [['train', '--frozen-weights', 'bf16', '--out', join(work, 't3')], /frozenWeights 'bf16' needs lora/],
      [['train', '--data', join(work, 'missing.jsonl'), '--out', join(work, 't2')], /does not exist/],
      [['train', '--config', join(work, 'missing.json')], /--config .*missing\.json/],
      [['eval'], /--model DIR is required/],
      [['eval', '--model', join(work, 'nope')], /nope/],
      [['eval', '--model', 'x', '--mode', 'sideways'], /--mode: decoding mode "sideways" is not one of 'free', 'constrained', 'free-beamK', 'constrained-beamK' \(K from 2 to 64\), or both/],
      [['eval', '--model', 'x', '--temperature=-1'], /--temperature must be a number ≥ 0/],
      [['eval', '--model', 'x', '--frozen-weights', 'fp8'], /--frozen-weights must be fp32 or bf16, got 'fp8'/],
      [['eval', '--model', 'x', '--frozen-weights', 'bf16'], /--frozen-weights bf16 needs --adapter/],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);
    }
    expect(existsSync(join(work, 't1'))).toBe(false);
    expect(existsSync(join(work, 't3'))).toBe(false);
  });
});

describe('puzzle-llama start (the main job, shortened)', () => {
  it('synthesizes, trains, evaluates every set, prints the table, and keeps an earlier run', () => {
    const out = join(work, 'main');
    const args = ['start', '--out', out, '--steps', '3', '--count', '200', '--limit', '2', '--threads', '2'];
    const first = run(args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/free pass@1\s+constrained pass@1\s+constrained-beam8 pass@1\s+paper 1M/);
    for (const id of ['id', 'ood-num-100', 'ood-num-1000', 'ood-form']) expect(first.stdout).toMatch(new RegExp(`${id}\\s+all\\s+2`));
    for (const f of ['report.html', 'metrics.jsonl', 'evals.jsonl', 'model/config.json', 'train.jsonl']) expect(existsSync(join(out, f)), f).toBe(true);
    // what the cpu-10min recipe names: its preset, and its responses (canonical-only: every puzzle has one)
    const cpu = recipe('cpu-10min').options;
    expect(first.stderr).toContain(`training the ${cpu.preset} preset`);
    expect(JSON.parse(readFileSync(join(out, 'model', 'config.json'), 'utf8')).hidden_size).toBe(PRESETS[cpu.preset as PresetName].hidden_size);
    const lines = readFileSync(join(out, 'train.jsonl'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(200);
    if (cpu.data?.source === 'synth' && cpu.data.responses === 'canonical-only') {
      for (const line of lines) {
        const parsed = parsePuzzleLine(line);
        expect(parsed.ok && canonicalSolution(parsed.record, cpu.data.maxCore ?? 3), line).toBeTruthy();
      }
    }
    const second = run(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/previous run .* was moved to/);
    expect(readdirSync(work).filter((d) => d.startsWith('main-')).length).toBe(1);
  });
});
