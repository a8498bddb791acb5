// `puzzle-llama launch`'s work: start this node's ranks with the environment torchrun gives its workers,
// relay their output line by line behind a `[rank N]` prefix (rank 0's progress bar redrawn in place),
// forward Ctrl-C so that every rank stops after its current step with a checkpoint, and, when one rank
// fails, stop the others and report that rank's status as the launcher's own.
import { spawn, type ChildProcess } from 'node:child_process';
import { worldEnv } from './env.js';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  /** The program and its arguments each rank runs (the puzzle-llama CLI and a command). */
  command: string;
  args: string[];
  /** Where relayed output and the launcher's own messages go. */
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env?: NodeJS.ProcessEnv;
  /** Seconds a rank gets to stop after SIGTERM before SIGKILL (default 10). */
  graceSeconds?: number;
}

export interface LaunchResult {
  /** The launcher's exit status: 0, or the first failed rank's (128 + signal number when killed). */
  status: number;
  /** Each local rank's exit: status or signal. */
  exits: Array<{ rank: number; status: number | null; signal: NodeJS.Signals | null }>;
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };

/**
 * A stream transform that puts `prefix` at the start of every line. Carriage returns (a progress bar
 * redrawn in place) start a line too; an escape sequence right after one (the bar's erase-line) stays
 * before the prefix so that it does not erase it.
 */
export function linePrefixer(prefix: string): (text: string) => string {
  let atStart = true;
  let inEscape = false;
  return (text) => {
    let out = '';
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (inEscape) {
        out += ch;
        if (/[A-Za-z]/.test(ch)) inEscape = false;
        continue;
      }
      if (atStart && ch === '\x1b') {
        inEscape = true;
        out += ch;
        continue;
      }
      if (atStart && ch !== '\n' && ch !== '\r') {
        out += prefix;
        atStart = false;
      }
      out += ch;
      if (ch === '\n' || ch === '\r') atStart = true;
    }
    return out;
  };
}

/** Runs the node's ranks to the end; resolves with the launcher's status. */
export function launch(o: LaunchOptions): Promise<LaunchResult> {
  const worldSize = o.nprocPerNode * o.nnodes;
  const children: Array<{ rank: number; child: ChildProcess; exit: LaunchResult['exits'][number] | null }> = [];
  const say = (message: string) => write(o.stderr, -1, `puzzle-llama launch: ${message}\n`);
  // Output of different ranks must not share a terminal line: a rank's text after another's unfinished
  // line (a progress bar) starts on a new one.
  let dangling: number | null = null;
  function write(stream: NodeJS.WritableStream, rank: number, text: string) {
    if (!text) return;
    if (dangling !== null && dangling !== rank) stream.write('\n');
    stream.write(text);
    dangling = text.endsWith('\n') ? null : rank;
  }

  return new Promise((resolve) => {
    let status: number | null = null; // the first failure's
    let stopping = false;
    let interrupts = 0;
    let lastInterrupt = 0;
    const grace = (o.graceSeconds ?? 10) * 1000;
    let killTimer: NodeJS.Timeout | null = null;

    const signalAll = (signal: NodeJS.Signals) => {
      for (const c of children) if (!c.exit) c.child.kill(signal);
    };
    const stopOthers = () => {
      if (stopping) return;
      stopping = true;
      signalAll('SIGTERM');
      killTimer = setTimeout(() => signalAll('SIGKILL'), grace);
      killTimer.unref();
    };
    const onSigint = () => {
      const now = Date.now();
      if (now - lastInterrupt < 1000) return; // one Ctrl-C reaches us and the ranks alike; once is enough
      lastInterrupt = now;
      interrupts++;
      if (interrupts === 1) say('Ctrl-C: every rank stops after its current step, with a checkpoint (Ctrl-C again to stop them now)');
      else say(interrupts === 2 ? 'Ctrl-C again: stopping every rank now' : 'killing every rank');
      signalAll(interrupts >= 3 ? 'SIGKILL' : 'SIGINT');
    };
    const onSigterm = () => signalAll('SIGTERM');
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);

    const finished = () => {
      if (children.some((c) => !c.exit)) return;
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      if (killTimer) clearTimeout(killTimer);
      if (dangling !== null) o.stderr.write('\n');
      resolve({ status: status ?? 0, exits: children.map((c) => c.exit!) });
    };

    for (let local = 0; local < o.nprocPerNode; local++) {
      const rank = o.nodeRank * o.nprocPerNode + local;
      const env = {
        ...(o.env ?? process.env),
        ...worldEnv({ rank, worldSize, localRank: local, localWorldSize: o.nprocPerNode, nodeRank: o.nodeRank, nnodes: o.nnodes, masterAddr: o.masterAddr, masterPort: o.masterPort }),
        ...(rank === 0 && o.stderr.isTTY ? { PUZZLE_LLAMA_TTY: '1' } : {}),
      };
      const child = spawn(o.command, o.args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      const entry: (typeof children)[number] = { rank, child, exit: null };
      children.push(entry);
      const prefixOut = linePrefixer(`[rank ${rank}] `);
      const prefixErr = linePrefixer(`[rank ${rank}] `);
      child.stdout!.setEncoding('utf8').on('data', (t: string) => write(o.stdout, rank, prefixOut(t)));
      child.stderr!.setEncoding('utf8').on('data', (t: string) => write(o.stderr, rank, prefixErr(t)));
      child.on('error', (err) => {
        say(`rank ${rank} could not start: ${err.message}`);
        status ??= 1;
        entry.exit ??= { rank, status: null, signal: null };
        stopOthers();
        finished();
      });
      child.on('close', (code, signal) => {
        entry.exit = { rank, status: code, signal };
        const failed = code !== 0;
        if (failed && !stopping && interrupts === 0) {
          const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
          say(`rank ${rank} (pid ${child.pid}) ${how}, the first to fail; stopping the other ranks`);
        }
        if (failed) {
          status ??= signal ? 128 + (SIGNAL_NUMBERS[signal] ?? 1) : (code ?? 1);
          if (interrupts === 0) stopOthers();
        }
        finished();
      });
    }
  });
}
