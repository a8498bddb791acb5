// Finds and loads the addon: the cmake-js CUDA build (found through `bindings`) when it is there, loads
// and is not older than the CPU build, else the node-gyp CPU build (found through `node-gyp-build`); says
// which one it picked and why, and when neither loads, throws one error that lists the fixes.
import { createRequire } from 'node:module';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
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

/** What findAddon() reads besides the package root; loadAddon() passes the process's own. */
export interface AddonSources {
  /** PUZZLE_LLAMA_ADDON ('cpu' | 'cuda' forces a build) and PUZZLE_LLAMA_ADDON_PATH (a .node file outright). */
  env: { PUZZLE_LLAMA_ADDON?: string; PUZZLE_LLAMA_ADDON_PATH?: string };
  /** Loads a .node file (require by default). */
  load: (path: string) => NativeAddon;
}

type Bindings = (opts: { bindings: string; module_root: string; try: string[][]; path: true }) => string;
type NodeGypBuild = { resolve(dir: string): string };

/** The CUDA build's path as `bindings` finds it under `root` (cmake-js with --out build-cuda, as `npm run build:cuda` runs it), or why not. */
export function findCudaBuild(root: string): { path: string } | { missing: string } {
  const bindings = require('bindings') as Bindings;
  try {
    const path = bindings({
      bindings: 'puzzle_llama_cuda',
      module_root: root,
      // Not build/: that is node-gyp's, and cmake-js's default --out would replace the CPU build there.
      try: [['module_root', 'build-cuda', 'Release', 'bindings']],
      path: true,
    });
    return { path };
  } catch (err) {
    return { missing: oneLine((err as Error).message) };
  }
}

const oneLine = (message: string): string => message.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');

/** The CPU build's path as `node-gyp-build` finds it under `root` (prebuilds/, build/Release), or why not. */
export function findCpuBuild(root: string): { path: string } | { missing: string } {
  const nodeGypBuild = require('node-gyp-build') as NodeGypBuild;
  try {
    return { path: nodeGypBuild.resolve(root) };
  } catch (err) {
    return { missing: oneLine((err as Error).message) };
  }
}

const FIXES =
  'Fixes:\n' +
  '  - `npm install` (or `npm rebuild puzzle-llama`) builds the CPU addon with node-gyp: it needs python3, make and a C++17 compiler;\n' +
  '  - `npm run build` rebuilds it after a change to native/;\n' +
  '  - `npm run build:cuda` builds the CUDA addon with cmake-js where nvcc (CUDA 12+) is installed;\n' +
  '  - PUZZLE_LLAMA_ADDON=cpu skips the CUDA build, PUZZLE_LLAMA_ADDON_PATH=/path/to/addon.node names one outright.';

const mtime = (path: string): number => statSync(path).mtimeMs;

/**
 * Picks and loads a build under `root`: the CUDA build when present, loadable and not older than the CPU
 * build, else the CPU build. PUZZLE_LLAMA_ADDON=cpu|cuda forces a build; PUZZLE_LLAMA_ADDON_PATH names a
 * .node file outright. Throws one error listing every build tried, why each failed, and the fixes.
 */
export function findAddon(root: string, sources: AddonSources): LoadedAddon {
  const { env, load } = sources;
  const forced = env.PUZZLE_LLAMA_ADDON;
  if (forced !== undefined && forced !== '' && forced !== 'cpu' && forced !== 'cuda') {
    throw new Error(`PUZZLE_LLAMA_ADDON must be 'cpu' or 'cuda', got '${forced}'`);
  }
  if (env.PUZZLE_LLAMA_ADDON_PATH) {
    const path = resolve(env.PUZZLE_LLAMA_ADDON_PATH);
    let addon: NativeAddon;
    try {
      addon = load(path);
    } catch (err) {
      throw new Error(`puzzle-llama: PUZZLE_LLAMA_ADDON_PATH=${path} does not load: ${(err as Error).message.split('\n')[0]}\n${FIXES}`);
    }
    return { addon, build: addon.buildInfo().build, path, note: null };
  }
  const cuda = findCudaBuild(root);
  const cpu = findCpuBuild(root);
  let note: string | null = null;
  if (forced !== 'cpu') {
    if ('missing' in cuda) {
      note = `no CUDA build (run \`npm run build:cuda\` where nvcc is installed; bindings: ${cuda.missing})`;
    } else if (forced !== 'cuda' && 'path' in cpu && mtime(cuda.path) < mtime(cpu.path)) {
      // Left over from before the last native change: skip it (unless forced), so editing native code
      // and running `npm run build` never tests stale code.
      note = `the CUDA build at ${cuda.path} is older than the CPU build; rebuild it with \`npm run build:cuda\``;
    } else {
      try {
        return { addon: load(cuda.path), build: 'cuda', path: cuda.path, note: null };
      } catch (err) {
        note = `the CUDA build at ${cuda.path} did not load: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    if (forced === 'cuda') throw new Error(`puzzle-llama: PUZZLE_LLAMA_ADDON=cuda but ${note}\n${FIXES}`);
  }
  let cpuWhy: string;
  if ('path' in cpu) {
    try {
      return { addon: load(cpu.path), build: 'cpu', path: cpu.path, note };
    } catch (err) {
      cpuWhy = `the CPU build at ${cpu.path} did not load: ${(err as Error).message.split('\n')[0]}`;
    }
  } else {
    cpuWhy = `no CPU build (node-gyp-build: ${cpu.missing})`;
  }
  const tried = [...(note ? [`CUDA: ${note}`] : ['CUDA: skipped (PUZZLE_LLAMA_ADDON=cpu)']), `CPU: ${cpuWhy}`];
  throw new Error(`puzzle-llama: the native addon is not built or does not load (under ${root}).\n  ${tried.join('\n  ')}\n${FIXES}`);
}

let cached: LoadedAddon | null = null;

/** findAddon() for this package and process, once per process. */
export function loadAddon(): LoadedAddon {
  if (!cached) {
    cached = findAddon(packageRoot(), {
      env: { PUZZLE_LLAMA_ADDON: process.env.PUZZLE_LLAMA_ADDON, PUZZLE_LLAMA_ADDON_PATH: process.env.PUZZLE_LLAMA_ADDON_PATH },
      load: (path) => require(path) as NativeAddon,
    });
  }
  return cached;
}
