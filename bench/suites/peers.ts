// Runs a PyTorch peer through bench/peer.ts, so a suite row always carries either the peer's number or
// the reason it has none, and prints each row with its ratio to the peer.
import { runPeer as runPythonPeer, type PeerResult } from '../peer.js';
import { sampleStats, type SampleStats } from '../stats.js';
import type { TimingStats } from '../suite.js';

export type PeerOutcome = PeerResult;

/** Runs bench/peers/<name>.py; resolves { ok: false, reason } for any failure. */
export async function runPeer(name: string, config: Record<string, unknown>): Promise<PeerOutcome> {
  try {
    return await runPythonPeer(name, config);
  } catch (err) {
    return { ok: false, reason: `peer ${name} failed: ${(err as Error).message}` };
  }
}

/** "torch 2.13.0+cpu" (and the variant: "sdpa", "eager", "torch.compile"), or the Python when no version came. */
export function peerLabel(outcome: PeerOutcome & { ok: true }, variant?: string): string {
  const who = outcome.torchVersion ? `torch ${outcome.torchVersion}` : `pytorch (${outcome.python})`;
  return variant ? `${who} ${variant}` : who;
}

/** The peer's number under `key`, or the reason there is none; the label names torch's version and `variant`. */
export function peerNumber(outcome: PeerOutcome, key: string, variant?: string): { peer?: number; peerName?: string; peerSkipped?: string } {
  if (!outcome.ok) return { peerSkipped: outcome.reason };
  const v = outcome.result[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) return { peerSkipped: `the peer's result has no number '${key}'` };
  return { peer: v, peerName: peerLabel(outcome, variant) };
}

/** The statistics (bench/stats.ts) of the peer's samples under `key` (milliseconds), when it sent them. */
export function peerSamples(outcome: PeerOutcome, key: string): SampleStats | undefined {
  if (!outcome.ok) return undefined;
  const v = outcome.result[key];
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) return undefined;
  return sampleStats(v as number[]);
}

/** What a table shows of sample statistics. */
export function timingStats(s: SampleStats | undefined): TimingStats | undefined {
  return s ? { count: s.count, mean: s.mean, p99: s.p99, rme: s.rme } : undefined;
}

/** Prints a row with its ratio to the peer, as the issue asks each benchmark to. */
export function printRow(row: { name: string; unit: string; value: number; higherIsBetter: boolean; peer?: number; peerSkipped?: string; target?: number }): void {
  const v = row.value.toPrecision(4);
  let line = `  ${row.name}: ${v} ${row.unit}`;
  if (row.peer !== undefined) {
    const ratio = row.higherIsBetter ? row.value / row.peer : row.peer / row.value;
    line += ` | peer ${row.peer.toPrecision(4)} ${row.unit} | ratio ${ratio.toFixed(2)}x`;
    if (row.target !== undefined) line += ` (target >= ${row.target}x: ${ratio >= row.target ? 'met' : 'NOT met'})`;
  } else if (row.peerSkipped) {
    line += ` | peer skipped: ${row.peerSkipped}`;
  }
  process.stderr.write(line + '\n');
}
