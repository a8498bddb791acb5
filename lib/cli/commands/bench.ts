// `puzzle-llama bench`: runs the benchmark suites as their own program (dist/bench/run.js, what
// `npm run bench` runs), so that the library never imports bench/ (bench depends on lib, not the reverse).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../io/package-root.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';

export const benchHelp = `puzzle-llama bench [--suite puzzle|kernels|train|mainjob|checkpoint|dist|gpu|all] [--device cpu|cuda] [--threads N] [--quick] [--json FILE]
  Measures and prints each rate beside its peer (PyTorch, where a Python with torch is found).
  all (the default): puzzle, kernels, train, mainjob; checkpoint (open-llama-3b-sized files), dist and gpu by name.`;

export async function benchCommand(argv: string[], io: CliIo): Promise<number> {
  const runner = join(packageRoot(), 'dist', 'bench', 'run.js');
  if (!existsSync(runner)) throw new CliError(`puzzle-llama bench: ${runner} is missing; build it with \`npm run build:ts\` in the package folder`, 1);
  const child = spawn(process.execPath, [runner, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => io.stdout.write(d));
  child.stderr.on('data', (d) => io.stderr.write(d));
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', (err) => reject(new CliError(`puzzle-llama bench: could not start ${runner}: ${err.message}`, 1)));
      child.on('close', (code, signal) => resolve(code ?? (signal ? 130 : 1)));
    });
  } finally {
    process.off('SIGINT', forward);
  }
}
