// The package root (where package.json, data/ and the addon builds are), found from this file whether it
// runs from lib/ (tests, tsx) or dist/lib/ (built).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`puzzle-llama: cannot find the package root above ${fileURLToPath(import.meta.url)}`);
}
