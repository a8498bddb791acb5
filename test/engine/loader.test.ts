// The loader's choice between builds, on package folders made here (fake .node files, a load function
// that stands in for require): the CUDA build through bindings, the CPU build through node-gyp-build,
// the stale, broken and forced cases, and the one error listing fixes when nothing loads.
import { mkdtempSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findAddon, findCpuBuild, findCudaBuild } from '../../lib/engine/loader.js';
import type { NativeAddon } from '../../lib/engine/native.js';

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** A package folder with the builds named (mtime in seconds since the epoch for each). */
function packageWith(builds: { cpu?: number; cuda?: number }): { root: string; cpu: string; cuda: string } {
  const root = mkdtempSync(join(tmpdir(), 'pl-loader-'));
  roots.push(root);
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'puzzle-llama-fixture' }));
  const cpu = join(root, 'build', 'Release', 'puzzle_llama_cpu.node');
  const cuda = join(root, 'build-cuda', 'Release', 'puzzle_llama_cuda.node');
  for (const [path, time] of [[cpu, builds.cpu], [cuda, builds.cuda]] as const) {
    if (time === undefined) continue;
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, 'not a real addon');
    utimesSync(path, time, time);
  }
  return { root, cpu, cuda };
}

const fakeAddon = (build: 'cpu' | 'cuda'): NativeAddon => ({ buildInfo: () => ({ build }) }) as unknown as NativeAddon;

/** Loads the fake files: the CPU one always, the CUDA one unless `cudaFails` says why not. */
function loader(cudaFails?: string): (path: string) => NativeAddon {
  return (path) => {
    if (path.endsWith('puzzle_llama_cuda.node')) {
      if (cudaFails) throw new Error(cudaFails);
      return fakeAddon('cuda');
    }
    if (path.endsWith('puzzle_llama_cpu.node')) return fakeAddon('cpu');
    throw new Error(`unexpected path ${path}`);
  };
}

describe('findCudaBuild / findCpuBuild', () => {
  it('find each build where cmake-js and node-gyp put it, or say what they tried', () => {
    const { root, cpu, cuda } = packageWith({ cpu: 1000, cuda: 2000 });
    expect(findCudaBuild(root)).toEqual({ path: cuda });
    expect(findCpuBuild(root)).toEqual({ path: cpu });
    const empty = packageWith({});
    const missingCuda = findCudaBuild(empty.root);
    expect('missing' in missingCuda && missingCuda.missing).toContain(join('build-cuda', 'Release', 'puzzle_llama_cuda.node'));
    const missingCpu = findCpuBuild(empty.root);
    expect('missing' in missingCpu && missingCpu.missing).toMatch(/No native build was found/);
  });
});

describe('findAddon', () => {
  it('takes the CUDA build when it is there, loads and is not older than the CPU build', () => {
    const { root, cuda } = packageWith({ cpu: 1000, cuda: 2000 });
    const got = findAddon(root, { env: {}, load: loader() });
    expect([got.build, got.path, got.note]).toEqual(['cuda', cuda, null]);
  });

  it('falls back to the CPU build, saying why: no CUDA build, a stale one, one that does not load', () => {
    const none = packageWith({ cpu: 1000 });
    const a = findAddon(none.root, { env: {}, load: loader() });
    expect([a.build, a.path]).toEqual(['cpu', none.cpu]);
    expect(a.note).toMatch(/no CUDA build \(run `npm run build:cuda`/);

    const stale = packageWith({ cpu: 2000, cuda: 1000 });
    const b = findAddon(stale.root, { env: {}, load: loader() });
    expect(b.build).toBe('cpu');
    expect(b.note).toContain('is older than the CPU build');

    const broken = packageWith({ cpu: 1000, cuda: 2000 });
    const c = findAddon(broken.root, { env: {}, load: loader('libcudart.so.13: cannot open shared object file') });
    expect(c.build).toBe('cpu');
    expect(c.note).toBe(`the CUDA build at ${broken.cuda} did not load: libcudart.so.13: cannot open shared object file`);
  });

  it('PUZZLE_LLAMA_ADDON forces a build: cpu skips CUDA, cuda refuses to fall back (a stale CUDA build is taken)', () => {
    const both = packageWith({ cpu: 2000, cuda: 1000 });
    const cpu = findAddon(both.root, { env: { PUZZLE_LLAMA_ADDON: 'cpu' }, load: loader() });
    expect([cpu.build, cpu.note]).toEqual(['cpu', null]);
    expect(findAddon(both.root, { env: { PUZZLE_LLAMA_ADDON: 'cuda' }, load: loader() }).build).toBe('cuda');
    const noCuda = packageWith({ cpu: 1000 });
    expect(() => findAddon(noCuda.root, { env: { PUZZLE_LLAMA_ADDON: 'cuda' }, load: loader() })).toThrow(
      /PUZZLE_LLAMA_ADDON=cuda but no CUDA build[^]*Fixes:/,
    );
    expect(() => findAddon(both.root, { env: { PUZZLE_LLAMA_ADDON: 'gpu' }, load: loader() })).toThrow(
      "PUZZLE_LLAMA_ADDON must be 'cpu' or 'cuda', got 'gpu'",
    );
  });

  it('PUZZLE_LLAMA_ADDON_PATH loads that file and reports its build', () => {
    const { root, cuda } = packageWith({ cuda: 1000 });
    const got = findAddon(root, { env: { PUZZLE_LLAMA_ADDON_PATH: cuda }, load: loader() });
    expect([got.build, got.path]).toEqual(['cuda', cuda]);
    expect(() => findAddon(root, { env: { PUZZLE_LLAMA_ADDON_PATH: cuda }, load: loader('bad ELF') })).toThrow(/does not load: bad ELF\nFixes:/);
  });

  it('when neither build loads, one error names both attempts and lists the fixes', () => {
    const empty = packageWith({});
    let message = '';
    try {
      findAddon(empty.root, { env: {}, load: loader() });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^puzzle-llama: the native addon is not built or does not load/);
    expect(message).toMatch(/\n {2}CUDA: no CUDA build/);
    expect(message).toMatch(/\n {2}CPU: no CPU build \(node-gyp-build: No native build was found/);
    for (const fix of ['`npm install`', '`npm run build`', '`npm run build:cuda`', 'PUZZLE_LLAMA_ADDON=cpu', 'PUZZLE_LLAMA_ADDON_PATH=']) {
      expect(message).toContain(fix);
    }
    const cpuBroken = packageWith({ cpu: 1000 });
    expect(() =>
      findAddon(cpuBroken.root, {
        env: {},
        load: () => {
          throw new Error('undefined symbol: napi_foo');
        },
      }),
    ).toThrow(/CPU: the CPU build at .* did not load: undefined symbol: napi_foo\nFixes:/);
  });
});
