// Data-parallel training on the CPU through Gloo, as a user starts it: `puzzle-llama launch` and, the same
// run, two `puzzle-llama train` processes given torchrun's variables by hand. Each step's loss and the final
// weights equal one process's on the same global batch; a run stopped with Ctrl-C and resumed equals an
// uninterrupted one bit for bit; a rank killed with SIGKILL fails the other, which names it; a mismatched
// world size is refused; nothing listens beyond MASTER_ADDR.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPython } from '../../bench/peer.js';
import { glooAvailable } from '../../lib/engine/communicator.js';
import { packageRoot } from '../../lib/io/package-root.js';
import { readSafetensors } from '../../lib/model/safetensors.js';
import { freePort } from './free-port.js';

const gloo = glooAvailable();
if (!gloo) console.warn('data-parallel tests skipped: this addon was built without Gloo (apt-get install libgloo-dev, then rebuild)');
const python = await findPython();
if (!('python' in python)) console.warn(`the torchrun test is skipped: ${python.reason}`);

const bin = join(packageRoot(), 'bin', 'puzzle-llama.js');
let work = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'puzzle-llama-dp-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The run every test trains: the tiny preset, 30 steps of a global batch of 8, one thread per rank.
const TRAIN = ['--steps', '30', '--batch-size', '8', '--threads', '1', '--dist-timeout', '30'];

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

/** Two ranks started by hand, as torchrun would start them. */
async function byHand(args: string[], port: number, env: Array<Record<string, string>> = [{}, {}]): Promise<Run[]> {
  const ranks = env.map((extra, rank) => start(['train', ...args], { RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...extra }));
  return Promise.all(ranks.map((r) => r.done));
}

function losses(out: string): number[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
}

function weights(file: string): Map<string, Float32Array> {
  return new Map([...readSafetensors(file).tensors].map(([name, t]) => [name, t.data as Float32Array]));
}

/**
 * Per tensor, ||a - b|| / ||b||, and the largest elementwise |a - b| against the tensor's largest |b|; the
 * worst of each over every tensor. (Elementwise, AdamW's normalization makes the last bits of tiny,
 * noise-level gradients move single weights by up to ~lr: the norm is the measure that means something.)
 */
function difference(a: Map<string, Float32Array>, b: Map<string, Float32Array>): { norm: number; elementwise: number } {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let norm = 0;
  let elementwise = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    let d2 = 0;
    let y2 = 0;
    let dmax = 0;
    let ymax = 0;
    for (let i = 0; i < x.length; i++) {
      const d = x[i] - y[i];
      d2 += d * d;
      y2 += y[i] * y[i];
      dmax = Math.max(dmax, Math.abs(d));
      ymax = Math.max(ymax, Math.abs(y[i]));
    }
    norm = Math.max(norm, Math.sqrt(d2 / Math.max(y2, 1e-300)));
    elementwise = Math.max(elementwise, dmax / Math.max(ymax, 1e-30));
  }
  return { norm, elementwise };
}

function expectClose(dp: string, single: string, file: string) {
  const a = losses(dp);
  const b = losses(single);
  expect(a.length).toBe(30);
  const rel = a.map((x, i) => Math.abs(x - b[i]) / Math.abs(b[i]));
  const w = difference(weights(join(dp, file)), weights(join(single, file)));
  console.log(`${dp}: worst step loss difference ${Math.max(...rel).toExponential(2)} relative; weights ${w.norm.toExponential(2)} relative in norm (elementwise at most ${w.elementwise.toExponential(2)} of a tensor's largest)`);
  for (const r of rel) expect(r).toBeLessThan(1e-5);
  expect(w.norm).toBeLessThan(1e-5);
}

describe.skipIf(!gloo)('data-parallel training through Gloo', () => {
  it('2 ranks equal one process on the same global batch, launched or started by hand (full training)', async () => {
    const single = join(work, 'single');
    const one = await start(['train', '--out', single, ...TRAIN]).done;
    expect(one.code, one.stderr).toBe(0);

    const launched = join(work, 'launched');
    const l = await start(['launch', '--nproc-per-node', '2', '--master-port', String(await freePort()), 'train', '--out', launched, ...TRAIN]).done;
    expect(l.code, l.stderr).toBe(0);
    expect(l.stdout).toMatch(/\[rank 0\] run: +.*launched/);
    expect(l.stdout).toMatch(/\[rank 1\] rank 1 of 2: 30 steps; rank 0 wrote/);
    expectClose(launched, single, 'model/model.safetensors');

    const manual = join(work, 'manual');
    const runs = await byHand(['--out', manual, ...TRAIN], await freePort());
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    // the same run: the same bits
    expect(readFileSync(join(manual, 'model', 'model.safetensors')).equals(readFileSync(join(launched, 'model', 'model.safetensors')))).toBe(true);
    expect(losses(manual)).toEqual(losses(launched));
  });

  it.skipIf(!('python' in python))('torchrun starts the same run (its own store on MASTER_PORT, ours on the next port)', async () => {
    const out = join(work, 'torchrun');
    const py = (python as { python: string }).python;
    const child = spawn(py, ['-m', 'torch.distributed.run', '--nproc-per-node', '2', '--master-port', String(await freePort()), '--no-python', process.execPath, bin, 'train', '--out', out, ...TRAIN], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(0);
    expect(losses(out)).toEqual(losses(join(work, 'launched')));
    expect(readFileSync(join(out, 'model', 'model.safetensors')).equals(readFileSync(join(work, 'launched', 'model', 'model.safetensors')))).toBe(true);
  });

  it('2 ranks equal one process with LoRA (dropout 0.05: the ranks draw the global batch\'s masks)', async () => {
    const single = join(work, 'lora-single');
    const one = await start(['train', '--out', single, '--lora', ...TRAIN]).done;
    expect(one.code, one.stderr).toBe(0);
    const dp = join(work, 'lora-dp');
    const l = await start(['launch', '--nproc-per-node', '2', '--master-port', String(await freePort()), 'train', '--out', dp, '--lora', ...TRAIN]).done;
    expect(l.code, l.stderr).toBe(0);
    expectClose(dp, single, 'adapter/adapter_model.safetensors');
  });

  it('a 2-rank run stopped with Ctrl-C and resumed equals the uninterrupted one, bit for bit', async () => {
    const out = join(work, 'resumed');
    const port = await freePort();
    const args = ['launch', '--nproc-per-node', '2', '--master-port', String(port), 'train', '--out', out, ...TRAIN, '--checkpoint-every', '7'];
    const first = start(args);
    const metrics = join(out, 'metrics.jsonl');
    for (let i = 0; i < 1200 && !(existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 10); i++) await new Promise((r) => setTimeout(r, 25));
    first.child.kill('SIGINT');
    const stopped = await first.done;
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(stopped.stderr).toMatch(/every rank stops after its current step/);
    const stoppedAt = losses(out).length;
    expect(stoppedAt).toBeLessThan(30);
    const again = await start([...args, '--resume']).done;
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resuming from step/);
    // the uninterrupted run of the first test, with the same options but the checkpoint interval (which
    // changes no result)
    expect(losses(out)).toEqual(losses(join(work, 'launched')));
    expect(readFileSync(join(out, 'model', 'model.safetensors')).equals(readFileSync(join(work, 'launched', 'model', 'model.safetensors')))).toBe(true);
  });

  it('a run checkpointed by one process resumes on 2 ranks with the same global batch, and says so', async () => {
    const out = join(work, 'regrouped');
    // one process, stopped after 12 steps (the library call the CLI makes, with the CLI's defaults)
    const controller = new AbortController();
    const { train } = await import('../../lib/train/train.js');
    const first = await train({ out, steps: 30, batchSize: 8, threads: 1, signal: controller.signal, onStep: (r) => r.step === 11 && controller.abort() });
    expect(first.stopped).toBe(true);
    expect(first.stepsDone).toBe(12);
    const again = await start(['launch', '--nproc-per-node', '2', '--master-port', String(await freePort()), 'train', '--out', out, ...TRAIN, '--resume']).done;
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/resuming a run trained on 1 rank\(s\) on 2: the global batch stays 8 puzzles/);
    // the first 12 steps are the single process's, the rest 2 ranks' on the same batches
    const single = losses(join(work, 'single'));
    const resumed = losses(out);
    expect(resumed.slice(0, 12)).toEqual(single.slice(0, 12));
    for (let i = 12; i < 30; i++) expect(Math.abs(resumed[i] - single[i]) / single[i]).toBeLessThan(1e-5);
  });

  it('a rank killed with SIGKILL makes the other fail within the timeout, naming it', async () => {
    const out = join(work, 'killed');
    const port = await freePort();
    const args = ['--out', out, '--steps', '100000', '--batch-size', '8', '--threads', '1', '--dist-timeout', '20'];
    const ranks = [0, 1].map((rank) => start(['train', ...args], { RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) }));
    const metrics = join(out, 'metrics.jsonl');
    for (let i = 0; i < 1200 && !(existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 3); i++) await new Promise((r) => setTimeout(r, 25));
    const t0 = Date.now();
    ranks[1].child.kill('SIGKILL');
    const [r0, r1] = await Promise.all(ranks.map((r) => r.done));
    expect(r1.signal).toBe('SIGKILL');
    expect(r0.code).toBe(1);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r0.stderr).toMatch(/rank 1 is gone \(killed or crashed/);
  });

  it('refuses a rank whose world size differs from rank 0\'s', async () => {
    const out = join(work, 'mismatch');
    const port = await freePort();
    const [r0, r1] = await byHand(['--out', out, ...TRAIN.slice(0, -1), '5'], port, [{}, { WORLD_SIZE: '3' }]);
    expect(r1.code).not.toBe(0);
    expect(r1.stderr).toMatch(/rank 1 was started with WORLD_SIZE=3, but rank 0 has WORLD_SIZE=2: every rank must be given the same world size/);
    expect(r0.code).not.toBe(0);
    expect(r0.stderr).toMatch(/rank 1 never joined/);
  });

  it('listens on MASTER_ADDR\'s address only (the store and Gloo alike)', async () => {
    const out = join(work, 'sockets');
    const port = await freePort();
    const ranks = [0, 1].map((rank) => start(['train', '--out', out, '--steps', '100000', '--batch-size', '8', '--threads', '1'], { RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) }));
    const metrics = join(out, 'metrics.jsonl');
    for (let i = 0; i < 1200 && !(existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 2); i++) await new Promise((r) => setTimeout(r, 25));
    const sockets = ranks.flatMap((r) => tcpSockets(r.child.pid!));
    for (const r of ranks) r.child.kill('SIGKILL');
    await Promise.all(ranks.map((r) => r.done));
    // rank 0's store listens on MASTER_PORT; Gloo's pairs (connected by now) were bound to loopback too
    const listening = sockets.filter((s) => s.listening);
    expect(listening.map((s) => s.port)).toEqual([port]);
    expect(sockets.filter((s) => !s.listening).length).toBeGreaterThanOrEqual(4);
    for (const s of sockets) expect(s.address).toBe('127.0.0.1');
  });
});

/** A process's TCP sockets (local address and port, listening or not), read from /proc. */
function tcpSockets(pid: number): Array<{ address: string; port: number; listening: boolean }> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const out: Array<{ address: string; port: number; listening: boolean }> = [];
  for (const table of ['tcp', 'tcp6']) {
    const lines = readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (!inodes.has(f[9])) continue;
      const [hex, portHex] = f[1].split(':');
      const address = table === 'tcp' ? hex.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join('.') : `[${hex}]`;
      out.push({ address, port: parseInt(portHex, 16), listening: f[3] === '0A' }); // 0A: LISTEN
    }
  }
  return out;
}
