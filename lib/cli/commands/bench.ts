// `puzzle-llama bench`: runs the benchmark suites (the same runner as `npm run bench`).
import type { CliIo } from '../io.js';

export const benchHelp = `puzzle-llama bench [--suite puzzle|kernels|train|mainjob|checkpoint|gpu|all] [--device cpu|cuda] [--threads N] [--quick] [--json FILE]
  Measures and prints each rate beside its peer (PyTorch, where a Python with torch is found).
  all (the default): puzzle, kernels, train, mainjob; checkpoint (open-llama-3b-sized files) and gpu by name.`;

export async function benchCommand(argv: string[], io: CliIo): Promise<number> {
  const { runBench } = await import('../../../bench/run.js');
  return runBench(argv, io);
}
