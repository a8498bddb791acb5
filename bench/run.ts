// The benchmark runner (`npm run bench -- --suite NAME`): runs suites, prints each row beside its peer
// with the ratio and the target, and writes the rows as JSON with --json.
import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../lib/io/atomic.js';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { parseFlags, intFlag } from '../lib/cli/args.js';
import { CliError } from '../lib/cli/errors.js';
import { processIo, type CliIo } from '../lib/cli/io.js';
import { peerChoiceLine } from './peer.js';
import type { BenchOptions, BenchRow, BenchSuite, TimingStats } from './suite.js';

/** Suites by name, loaded on demand (each may need the addon or a Python peer). */
const SUITES: Record<string, () => Promise<BenchSuite>> = {
  puzzle: async () => (await import('./suites/puzzle.js')).puzzleSuite,
  kernels: async () => (await import('./suites/kernels.js')).kernelsSuite,
  train: async () => (await import('./suites/train.js')).trainSuite,
  checkpoint: async () => (await import('./suites/checkpoint.js')).checkpointSuite,
  gpu: async () => (await import('./suites/gpu.js')).gpuSuite,
  mainjob: async () => (await import('./suites/mainjob.js')).mainjobSuite,
  dist: async () => (await import('./suites/dist.js')).distSuite,
};

/** What `--suite all` (the default) runs: the CPU suites; checkpoint (writes ~7 GB) and gpu are asked for by name. */
const ALL = ['puzzle', 'kernels', 'train', 'mainjob'];

export interface SuiteReport {
  suite: string;
  description: string;
  options: BenchOptions;
  rows: BenchRow[];
  error?: string;
}

export async function runBench(argv: string[], io: CliIo = processIo()): Promise<number> {
  const flags = parseFlags('bench', argv, {
    suite: { type: 'string' },
    device: { type: 'string' },
    threads: { type: 'string' },
    quick: { type: 'boolean' },
    json: { type: 'string' },
  });
  const device = flags.device ?? 'cpu';
  if (device !== 'cpu' && device !== 'cuda') throw new CliError(`puzzle-llama bench: --device must be cpu or cuda, got '${device}'`);
  const names = flags.suite === undefined || flags.suite === 'all' ? ALL.filter((n) => n in SUITES) : flags.suite.split(',');
  for (const name of names) {
    if (!SUITES[name]) throw new CliError(`puzzle-llama bench: unknown --suite '${name}'; suites: ${Object.keys(SUITES).join(', ')}, all`);
  }
  const options: BenchOptions = {
    device,
    threads: intFlag('bench', 'threads', flags.threads, availableParallelism(), 1, 1024),
    quick: Boolean(flags.quick),
  };

  const reports: SuiteReport[] = [];
  let failed = false;
  for (const name of names) {
    let suite: BenchSuite;
    try {
      suite = await SUITES[name]();
    } catch (err) {
      io.stderr.write(`bench ${name}: not available (${(err as Error).message.split('\n')[0]})\n`);
      reports.push({ suite: name, description: '', options, rows: [], error: (err as Error).message });
      failed = true;
      continue;
    }
    io.stdout.write(`\n== ${suite.name}: ${suite.description} (device ${options.device}, ${options.threads} threads${options.quick ? ', quick' : ''})\n`);
    try {
      const rows = await suite.run(options);
      io.stdout.write(formatRows(rows) + '\n');
      const peers = await peerChoiceLine();
      if (peers) io.stdout.write(`  ${peers}\n`);
      reports.push({ suite: name, description: suite.description, options, rows });
    } catch (err) {
      io.stderr.write(`bench ${name}: failed: ${(err as Error).message}\n`);
      reports.push({ suite: name, description: suite.description, options, rows: [], error: (err as Error).message });
      failed = true;
    }
  }
  if (flags.json) {
    mkdirSync(dirname(flags.json), { recursive: true });
    writeFileAtomic(flags.json, JSON.stringify({ date: new Date().toISOString(), reports }, null, 2) + '\n');
    io.stdout.write(`\nwrote ${flags.json}\n`);
  }
  return failed ? 1 : 0;
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 1e6) return x.toExponential(3);
  if (a >= 100) return x.toFixed(0);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

function pct(x: number | undefined): string {
  return x === undefined ? '-' : `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;
}

function timing(s: TimingStats | undefined): string {
  return s ? `${fmt(s.mean)}/${fmt(s.p99)} ±${s.rme.toFixed(1)}% n${s.count}` : '';
}

/**
 * A text table: name, value, peer, ratio (ours/peer as "better is > 1"), the fraction of the measured FMA
 * peak (ours / peer), the timing samples' mean/p99 in ms with the margin of error (ours, peer), target,
 * verdict. Columns no row uses are left out.
 */
export function formatRows(rows: readonly BenchRow[]): string {
  const header = ['benchmark', 'ours', 'peer', 'ratio', 'of peak', 'ours ms mean/p99', 'peer ms mean/p99', 'target', ''];
  const body = rows.map((r) => {
    const ratio = r.peer !== undefined && r.peer > 0 && r.value > 0 ? (r.higherIsBetter ? r.value / r.peer : r.peer / r.value) : undefined;
    let verdict = '';
    if (r.target !== undefined && ratio !== undefined) verdict = ratio >= r.target ? 'met' : 'MISSED';
    if (r.absoluteTarget !== undefined) {
      const met = r.higherIsBetter ? r.value >= r.absoluteTarget : r.value <= r.absoluteTarget;
      verdict = met ? 'met' : 'MISSED';
    }
    const target = r.target !== undefined ? `>= ${r.target}x` : r.absoluteTarget !== undefined ? `${r.higherIsBetter ? '>=' : '<='} ${fmt(r.absoluteTarget)}` : '';
    const peer = r.peer !== undefined ? `${fmt(r.peer)} (${r.peerName ?? 'peer'})` : r.peerSkipped ? `skipped: ${r.peerSkipped}` : '';
    const peak = r.ofPeak !== undefined || r.peerOfPeak !== undefined ? `${pct(r.ofPeak)} / ${pct(r.peerOfPeak)}` : '';
    return [r.name, `${fmt(r.value)} ${r.unit}`, peer, ratio !== undefined ? `${ratio.toFixed(2)}x` : '', peak, timing(r.stats), timing(r.peerStats), target, verdict];
  });
  const used = header.map((_, i) => i < 2 || body.some((row) => row[i] !== ''));
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).filter((_, i) => used[i]).join('  ').trimEnd();
  const notes = rows.filter((r) => r.note).map((r) => `  note: ${r.name}: ${r.note}`);
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line), ...notes].join('\n');
}

// Run directly: `node dist/bench/run.js --suite puzzle`
const invokedDirectly = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (invokedDirectly) {
  runBench(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err) => {
      process.stderr.write(`${err instanceof CliError ? err.message : (err as Error).stack}\n`);
      process.exitCode = 2;
    },
  );
}
