// The addon loads, reports its build, and the loader picks a build that exists.
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../lib/engine/loader.js';

describe('native addon', () => {
  it('loads and describes its build', () => {
    const loaded = loadAddon();
    const info = loaded.addon.buildInfo();
    expect(info.build).toBe(loaded.build);
    expect(['avx512', 'avx2', 'portable']).toContain(info.cpu.simd);
    expect(info.cpu.hardwareThreads).toBeGreaterThanOrEqual(1);
  });

  it('lists CUDA devices or says why there are none', () => {
    const list = loadAddon().addon.cudaDevices();
    if (list.devices.length === 0) expect(typeof list.reason).toBe('string');
    else expect(list.reason).toBeNull();
  });
});
