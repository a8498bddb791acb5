// Fault injection for the checkpoint writer's tests: PUZZLE_LLAMA_FAULT="kill@K" SIGKILLs this process at
// the Kth fault point (a write, rename or removal the writer is about to do), "enospc@K" makes that
// operation fail as a full disk would. PUZZLE_LLAMA_FAULT_TRACE=FILE appends each point's label to FILE,
// so that a test can list every point first. Unset (the normal case), a fault point does nothing.
import { appendFileSync } from 'node:fs';

let count = 0;
let spec: { action: 'kill' | 'enospc'; at: number } | null | undefined;

function parse(): { action: 'kill' | 'enospc'; at: number } | null {
  const text = process.env.PUZZLE_LLAMA_FAULT;
  if (!text) return null;
  const m = /^(kill|enospc)@([1-9]\d*)$/.exec(text.trim());
  if (!m) throw new Error(`PUZZLE_LLAMA_FAULT must be kill@K or enospc@K (K ≥ 1), got '${text}'`);
  return { action: m[1] as 'kill' | 'enospc', at: Number(m[2]) };
}

/** Called by the checkpoint writer just before each operation that changes the disk (`path`: what it changes). */
export function faultPoint(label: string, path?: string): void {
  spec ??= parse();
  const trace = process.env.PUZZLE_LLAMA_FAULT_TRACE;
  if (!spec && !trace) return;
  count++;
  if (trace) appendFileSync(trace, `${count}\t${label}\n`);
  if (!spec || count !== spec.at) return;
  if (spec.action === 'kill') {
    process.kill(process.pid, 'SIGKILL');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000); // (the signal lands first)
  }
  const err = new Error(`cannot ${label.split(' ')[0]} '${path ?? label}': no space left on device (ENOSPC)`) as NodeJS.ErrnoException;
  err.code = 'ENOSPC';
  throw err;
}
