// `puzzle-llama info`: which addon build loaded (CPU or CUDA) and why, what the CPU can do, which GPUs are visible.
import { loadAddon } from '../../engine/loader.js';
import { parseFlags } from '../args.js';
import type { CliIo } from '../io.js';

export const infoHelp = `puzzle-llama info [--json]
  Says which native build loaded (CPU or CUDA) and why, the CPU's SIMD level, the visible CUDA devices, and
  which collective libraries multi-process training can use.`;

export async function infoCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('info', argv, { json: { type: 'boolean' } });
  const loaded = loadAddon();
  const build = loaded.addon.buildInfo();
  const cuda = loaded.addon.cudaDevices();
  if (flags.json) {
    io.stdout.write(JSON.stringify({ path: loaded.path, note: loaded.note, ...build, cuda }, null, 2) + '\n');
    return 0;
  }
  const lines = [
    `addon:   ${loaded.build} build, ${loaded.path}`,
    ...(loaded.note ? [`         (${loaded.note})`] : []),
    `cpu:     ${build.cpu.simd} kernels, ${build.cpu.hardwareThreads} hardware threads${build.cpu.avx512bf16 ? ', avx512_bf16' : ''}`,
    `cuda:    ${build.cudaRuntimeVersion === null ? 'not compiled in' : `runtime ${Math.floor(build.cudaRuntimeVersion / 1000)}.${(build.cudaRuntimeVersion % 1000) / 10}`}`,
    ...cuda.devices.map((d) => `  gpu ${d.index}: ${d.name}, sm_${d.computeCapability.replace('.', '')}, ${(d.totalMemory / 2 ** 30).toFixed(0)} GiB, ${d.multiprocessors} SMs`),
    ...(cuda.devices.length === 0 ? [`  no GPU: ${cuda.reason}`] : []),
    `gloo:    ${build.gloo ? 'compiled in (multi-process training on the CPU)' : 'not compiled in: apt-get install libgloo-dev, then rebuild, for multi-process training on the CPU'}`,
    `nccl:    ${build.build === 'cuda' ? 'loaded when a multi-GPU run starts (PUZZLE_LLAMA_NCCL, NCCL_HOME, the loader path, or Python\'s nvidia.nccl)' : 'needs the CUDA build'}`,
  ];
  io.stdout.write(lines.join('\n') + '\n');
  return 0;
}
