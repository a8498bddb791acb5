// The GPU parity suite (`npm run test:gpu`): every test skips with a reason where no GPU is found.
// Besides the console it writes, under $PARITY_REPORT_DIR (default out/parity/): vitest.json and
// vitest.junit.xml (each test's outcome), and via test/gpu/setup.ts parity.json and parity.junit.xml
// (each tensor's max error beside its tolerance).
import { join, resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

const reportDir = resolve(process.env.PARITY_REPORT_DIR || join('out', 'parity'));

export default defineConfig({
  test: {
    include: ['test/gpu/**/*.test.ts'],
    pool: 'forks',
    // One GPU: the files take turns, so timings and memory (the out-of-memory test) do not interfere.
    fileParallelism: false,
    globalSetup: ['test/gpu/setup.ts'],
    reporters: ['default', 'junit', 'json'],
    outputFile: { junit: join(reportDir, 'vitest.junit.xml'), json: join(reportDir, 'vitest.json') },
    testTimeout: 600_000,
    hookTimeout: 600_000,
  },
});
