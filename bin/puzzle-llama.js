#!/usr/bin/env node
// The `puzzle-llama` command: runs the compiled CLI (built by `npm install` / `npm run build:ts`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/lib/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('puzzle-llama: the TypeScript build is missing (dist/). Run `npm install` or `npm run build:ts` in the package folder.\n');
  process.exit(1);
}
const { runCli } = await import(main.href);
process.exitCode = await runCli(process.argv.slice(2));
