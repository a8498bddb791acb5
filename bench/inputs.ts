// What benchmark suites feed the code they time: reproducible pseudo-random tensors, and a stream that
// swallows output (so CLI commands can be timed without a terminal in the way).
import { Writable } from 'node:stream';

/** n floats in [-0.5, 0.5) from a linear congruential generator: cheap, reproducible, never NaN. */
export function pseudoRandom(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

/** A writable stream that drops everything. */
export function nullWritable(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}
