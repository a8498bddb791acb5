// Finds and loads the addon: the CUDA build (cmake-js, build-cuda/) when it is there and loads,
// else the CPU build (node-gyp, build/); says which one it picked and why.
import { createRequire } from 'node:module';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from './native.js';
import { packageRoot } from '../io/package-root.js';

const require = createRequire(import.meta.url);

export interface LoadedAddon {
  addon: NativeAddon;
  /** 'cuda' when the cmake-js CUDA build loaded, 'cpu' for the node-gyp build. */
  build: 'cpu' | 'cuda';
  path: string;
  /** Why the CUDA build was not used, when it was not. */
  note: string | null;
}

let cached: LoadedAddon | null = null;

/**
 * Loads the addon once per process: the CUDA build when present, loadable and not older than the CPU
 * build, else the CPU build. PUZZLE_LLAMA_ADDON=cpu|cuda forces a build;
 * PUZZLE_LLAMA_ADDON_PATH names a .node file outright.
 */
export function loadAddon(): LoadedAddon {
  if (cached) return cached;
  const root = packageRoot();
  const forced = process.env.PUZZLE_LLAMA_ADDON;
  const explicitPath = process.env.PUZZLE_LLAMA_ADDON_PATH;
  if (forced !== undefined && forced !== 'cpu' && forced !== 'cuda') {
    throw new Error(`PUZZLE_LLAMA_ADDON must be 'cpu' or 'cuda', got '${forced}'`);
  }
  if (explicitPath) {
    const path = resolve(explicitPath);
    const addon = require(path) as NativeAddon;
    cached = { addon, build: addon.buildInfo().build, path, note: null };
    return cached;
  }
  const cudaPath = join(root, 'build-cuda', 'Release', 'puzzle_llama_cuda.node');
  let note: string | null = null;
  const cpuPath = join(root, 'build', 'Release', 'puzzle_llama_cpu.node');
  // A CUDA build older than the CPU build is left over from before the last native change: skip it
  // (unless forced), so editing native code and running `npm run build` never tests stale code.
  const staleCuda = forced !== 'cuda' && existsSync(cudaPath) && existsSync(cpuPath) && statSync(cudaPath).mtimeMs < statSync(cpuPath).mtimeMs;
  if (staleCuda) note = `the CUDA build at ${cudaPath} is older than the CPU build; rebuild it with \`npm run build:cuda\``;
  if (forced !== 'cpu' && !staleCuda) {
    if (existsSync(cudaPath)) {
      try {
        const addon = require(cudaPath) as NativeAddon;
        cached = { addon, build: 'cuda', path: cudaPath, note: null };
        return cached;
      } catch (err) {
        note = `the CUDA build at ${cudaPath} did not load: ${(err as Error).message}`;
        if (forced === 'cuda') throw new Error(`PUZZLE_LLAMA_ADDON=cuda but ${note}`);
      }
    } else {
      note = 'no CUDA build (run `npm run build:cuda` where nvcc is installed)';
      if (forced === 'cuda') throw new Error(`PUZZLE_LLAMA_ADDON=cuda but there is ${note}`);
    }
  }
  let addon: NativeAddon;
  let path: string;
  try {
    const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve(dir: string): string };
    path = nodeGypBuild.resolve(root);
    addon = nodeGypBuild(root) as NativeAddon;
  } catch (err) {
    throw new Error(
      `puzzle-llama: the native addon is not built or does not load (${(err as Error).message}).\n` +
        `Fixes: run \`npm install\` (it builds the CPU addon with node-gyp; needs python3, make and a C++17 compiler),\n` +
        `or \`npm run build\` to rebuild it, or \`npm run build:cuda\` for the CUDA build.`,
    );
  }
  cached = { addon, build: 'cpu', path, note };
  return cached;
}
