// globalSetup of the GPU suite (vitest.gpu.config.ts), in the main vitest process: asks once whether
// CUDA works (in a child process, so this process never holds a GPU context), prints the one line that
// says why every test skips when it does not, hands the answer to the test files, and after the run
// merges their comparisons into parity.json and parity.junit.xml.
import { spawnSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { loadAddon } from '../../lib/engine/loader.js';
import type { CudaAvailability } from '../../lib/engine/native.js';
import { clearParts, mergeReport, reportDir } from './report.js';

declare module 'vitest' {
  export interface ProvidedContext {
    cuda: CudaAvailability;
    /** The device the tests run "on the GPU": 'cuda', or 'cpu' in the harness self-test. */
    target: 'cuda' | 'cpu';
  }
}

function probe(): CudaAvailability {
  let path: string;
  try {
    const loaded = loadAddon();
    if (loaded.build !== 'cuda') {
      return { ok: false, reason: `the loaded addon is the CPU build (${loaded.note ?? 'no CUDA build'})` };
    }
    path = loaded.path;
  } catch (err) {
    return { ok: false, reason: `the addon does not load: ${(err as Error).message.split('\n')[0]}` };
  }
  const script = `const k = require(${JSON.stringify(path)}).kernels; process.stdout.write(JSON.stringify(k.cudaAvailable()));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
  try {
    return JSON.parse(r.stdout) as CudaAvailability;
  } catch {
    const why = r.error?.message ?? (r.stderr.trim().split('\n').pop() || `exit code ${r.status}`);
    return { ok: false, reason: `probing CUDA failed: ${why}` };
  }
}

let cuda: CudaAvailability = { ok: false, reason: 'not probed' };

export default function setup(project: TestProject): () => void {
  // PUZZLE_LLAMA_GPU_SELFTEST=1 runs the suite with the CPU standing in for the GPU (CPU against CPU):
  // it checks the harness and the report where no GPU is, and proves nothing about CUDA.
  const selfTest = process.env.PUZZLE_LLAMA_GPU_SELFTEST === '1';
  cuda = selfTest ? { ok: true, reason: null, device: 'cpu (harness self-test: CPU against CPU, not CUDA)' } : probe();
  project.provide('cuda', cuda);
  project.provide('target', selfTest ? 'cpu' : 'cuda');
  clearParts();
  if (cuda.ok) console.log(`GPU parity suite on ${cuda.device}; report in ${reportDir()}`);
  else console.log(`GPU tests skipped: ${cuda.reason}`);
  return () => {
    const r = mergeReport(cuda);
    if (cuda.ok) {
      console.log(`parity report: ${r.totals.comparisons} tensors compared, ${r.totals.failed} over tolerance -> ${reportDir()}/parity.{json,junit.xml}`);
    }
  };
}
