// A competing busy process for the contended rows: a child that spins on one core for as long as a measurement
// runs, as another tenant or a parallel CI job would. Always killed, whatever the measurement does.
import { spawn } from 'node:child_process';

/** Runs `measure` (given the busy child's pid) while a child process spins on one core; the child is killed when it settles. */
export async function withBusyProcess<T>(measure: (busyPid: number) => Promise<T>): Promise<T> {
  const child = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => reject(new Error(`the busy process did not start: ${err.message}`)));
    });
    return await measure(child.pid!);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}
