// `kernels`: each backend op alone, forward and backward, on the CPU or CUDA (see NativeKernels), loaded on first use.
import { loadAddon } from './loader.js';
import type { NativeKernels } from './native.js';

/** The addon's kernels; the addon loads on the first property access, not at import. */
export const kernels: NativeKernels = new Proxy({} as NativeKernels, {
  get(_target, prop) {
    return Reflect.get(loadAddon().addon.kernels, prop);
  },
});
