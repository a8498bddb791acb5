// Runs the PyTorch peers of bench/peers/ (the same workloads as our suites) and returns their numbers,
// or why none came: a missing Python or torch, a failing or hanging peer. Never throws for those.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PythonFound {
  /** The command that imported torch. */
  python: string;
  torchVersion: string;
  /** Every candidate tried and what it gave (a torch version, or why not), in the order tried. */
  tried?: string[];
}

export type PeerResult =
  | { ok: true; result: Record<string, unknown>; python: string; torchVersion?: string }
  | { ok: false; reason: string };

export interface FindPythonOptions {
  /** Commands to try (default: defaultCandidates()); a given list is not cached. */
  candidates?: string[];
  /** Per candidate, for the torch import (default 60 s). */
  timeoutMs?: number;
}

export interface RunPeerOptions {
  /** Kill the peer after this long (default 10 minutes). */
  timeoutMs?: number;
  /** Use this Python instead of finding one. */
  python?: string;
  /** Extra environment for the peer. */
  env?: Record<string, string>;
  /** False for a peer in plain Python: any Python 3 will do, torch or not (default true). */
  needsTorch?: boolean;
}

interface Exec {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  error?: Error;
  timedOut: boolean;
}

/** Runs a command with optional stdin, a timeout, and captured output; resolves whatever happens. */
function exec(command: string, args: string[], input: string | null, timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<Exec> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const finish = (r: Omit<Exec, 'stdout' | 'stderr' | 'timedOut'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...r, stdout, stderr, timedOut });
    };
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', (error) => finish({ code: null, signal: null, error }));
    child.on('close', (code, signal) => finish({ code, signal }));
    // A peer that exits before reading its stdin makes the write fail with EPIPE; the exit says more.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

function tail(text: string, lines = 8): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

let cached: Promise<PythonFound | { reason: string }> | null = null;

/**
 * Where a Python with torch may be: $PYTHON, the active virtual environment ($VIRTUAL_ENV/bin/python), a
 * virtual environment named `.venv` or `venv` in the package's folder (`root`) or the folder above it (a
 * workspace holding checkouts beside one environment), python3 on the PATH, and the system's /usr/bin/python3.
 */
export function defaultCandidates(env: NodeJS.ProcessEnv = process.env, root: string | null = packageRootOf()): string[] {
  const venvs = root ? [root, dirname(root)].flatMap((dir) => ['.venv', 'venv'].map((name) => join(dir, name, 'bin', 'python'))) : [];
  const list = [env.PYTHON, env.VIRTUAL_ENV ? join(env.VIRTUAL_ENV, 'bin', 'python') : undefined, ...venvs, 'python3', '/usr/bin/python3'];
  return [...new Set(list.filter((c): c is string => !!c))];
}

/**
 * The numeric release of a torch version string ('2.13.0+cpu' -> [2, 13, 0], '2.6.0a0+git' -> [2, 6, 0]),
 * or null when it does not start with a number.
 */
export function parseVersion(version: string): number[] | null {
  const m = /^(\d+(?:\.\d+)*)/.exec(version.trim());
  return m ? m[1].split('.').map(Number) : null;
}

/** Orders version strings by release: negative when a is older than b, 0 when the same release. */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a) ?? [];
  const y = parseVersion(b) ?? [];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Of the Pythons that imported torch, the one with the newest torch; the earliest candidate on a tie. */
export function pickNewestTorch(found: readonly PythonFound[]): PythonFound | null {
  let best: PythonFound | null = null;
  for (const f of found) if (!best || compareVersions(f.torchVersion, best.torchVersion) > 0) best = f;
  return best;
}

/**
 * The candidate Python whose torch is the newest (every candidate is tried: the peer is the one a user
 * would pick today), with torch's version and what each candidate gave; or the reason none imported
 * torch. The default search (defaultCandidates()) runs once per process.
 */
export function findPython(options: FindPythonOptions = {}): Promise<PythonFound | { reason: string }> {
  if (options.candidates) return search(options.candidates, options.timeoutMs ?? 60_000);
  cached ??= search(defaultCandidates(), options.timeoutMs ?? 60_000);
  return cached;
}

/**
 * Which torch Python the peers of this process ran on and what each candidate gave, as one line; null when
 * no peer asked for one (the search has not run).
 */
export async function peerChoiceLine(): Promise<string | null> {
  if (!cached) return null;
  const found = await cached;
  if ('reason' in found) return `peers: none (${found.reason})`;
  return `peers: torch ${found.torchVersion} at ${found.python}, the newest torch of the candidates (${(found.tried ?? []).join('; ')})`;
}

let cachedPlain: Promise<{ python: string } | { reason: string }> | null = null;

/** The first of $PYTHON, python3, /usr/bin/python3 that runs Python 3, for peers that need no torch. */
export function findPython3(): Promise<{ python: string } | { reason: string }> {
  cachedPlain ??= (async () => {
    const failures: string[] = [];
    for (const python of new Set([process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c))) {
      const r = await exec(python, ['-c', 'import sys; print(sys.version_info[0])'], null, 60_000);
      if (r.code === 0 && r.stdout.trim() === '3') return { python };
      failures.push(`${python}: ${r.error ? ((r.error as NodeJS.ErrnoException).code ?? r.error.message) : tail(r.stderr, 1) || `printed '${r.stdout.trim()}'`}`);
    }
    return { reason: `no Python 3 to run the peer (${failures.join('; ')})` };
  })();
  return cachedPlain;
}

async function search(candidates: string[], timeoutMs: number): Promise<PythonFound | { reason: string }> {
  const failures: string[] = [];
  const found: PythonFound[] = [];
  const tried: string[] = [];
  for (const python of new Set(candidates)) {
    const r = await exec(python, ['-c', 'import torch; print(torch.__version__)'], null, timeoutMs);
    const version = r.stdout.trim().split('\n').pop() ?? '';
    let failure: string | null = null;
    if (r.code === 0 && parseVersion(version)) found.push({ python, torchVersion: version });
    else if (r.error) failure = `${python}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`;
    else if (r.timedOut) failure = `${python}: importing torch took over ${timeoutMs} ms`;
    else if (r.code === 0) failure = `${python}: printed '${version}', not a torch version`;
    else failure = `${python}: ${tail(r.stderr, 1) || `exit code ${r.code}`}`;
    if (failure) failures.push(failure);
    tried.push(failure ?? `${python}: torch ${version}`);
  }
  const best = pickNewestTorch(found);
  if (best) return { ...best, tried };
  if (failures.length === 0) return { reason: 'no Python to try (empty candidate list)' };
  return { reason: `no Python that imports torch (${failures.join('; ')})` };
}

/** The package's root (the folder holding bench/peers/), or null when the peers are not shipped. */
function packageRootOf(): string | null {
  const dir = peersDir();
  return dir ? dirname(dirname(dir)) : null;
}

/** The folder holding the peer scripts, found from this file whether it runs from bench/ or dist/bench/. */
export function peersDir(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'bench', 'peers');
    if (existsSync(join(candidate, 'llama_ref.py'))) return candidate;
    if (existsSync(join(dir, 'peers', 'llama_ref.py'))) return join(dir, 'peers');
    dir = dirname(dir);
  }
  return null;
}

/**
 * Runs bench/peers/<name>.py with `config` as JSON on stdin and returns the JSON object of its last stdout
 * line. Sets OMP/OPENBLAS/MKL_NUM_THREADS to config.threads when that is a number, so the peer's libraries
 * use the threads our engine gets. Resolves `{ ok: false, reason }` for any failure; never rejects.
 */
export async function runPeer(
  name: string,
  config: Record<string, unknown>,
  options: RunPeerOptions = {},
): Promise<PeerResult> {
  if (!/^[A-Za-z0-9_]+$/.test(name)) return { ok: false, reason: `peer name must be letters, digits or _, got '${name}'` };
  const dir = peersDir();
  if (!dir) return { ok: false, reason: 'bench/peers/ is not there (the installed package does not ship the peers)' };
  const script = join(dir, `${name}.py`);
  if (!existsSync(script)) return { ok: false, reason: `no peer '${name}': ${script} does not exist` };
  let python = options.python;
  let torchVersion: string | undefined;
  if (!python) {
    const found = options.needsTorch === false ? await findPython3() : await findPython();
    if ('reason' in found) return { ok: false, reason: found.reason };
    python = found.python;
    if ('torchVersion' in found && typeof found.torchVersion === 'string') torchVersion = found.torchVersion;
  }
  let input: string;
  try {
    input = JSON.stringify(config);
  } catch (err) {
    return { ok: false, reason: `peer '${name}': config is not JSON-serializable: ${(err as Error).message}` };
  }
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1', ...options.env };
  if (typeof config.threads === 'number' && Number.isInteger(config.threads) && config.threads > 0) {
    for (const key of ['OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS']) {
      env[key] = options.env?.[key] ?? String(config.threads);
    }
  }
  const timeoutMs = options.timeoutMs ?? 600_000;
  const r = await exec(python, [script], input, timeoutMs, env);
  const where = `peer '${name}' (${python} ${script})`;
  if (r.error) return { ok: false, reason: `${where} did not start: ${r.error.message}` };
  if (r.timedOut) return { ok: false, reason: `${where} ran past the ${timeoutMs} ms timeout and was killed` };
  if (r.code !== 0) {
    const how = r.signal ? `was killed by ${r.signal}` : `exited with code ${r.code}`;
    return { ok: false, reason: `${where} ${how}: ${tail(r.stderr) || '(no stderr)'}` };
  }
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(last);
  } catch {
    return { ok: false, reason: `${where} printed no JSON on its last stdout line, got '${last.slice(0, 200)}'` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, reason: `${where} printed ${last.slice(0, 200)}, not a JSON object` };
  }
  const result = parsed as Record<string, unknown>;
  const reported = result.torch;
  if (typeof reported === 'string') torchVersion = reported;
  return { ok: true, result, python, ...(torchVersion ? { torchVersion } : {}) };
}
