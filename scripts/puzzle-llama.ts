// The CLI run from the TypeScript sources through tsx, for hosts without the dist/ build (gpu:check's).
import { runCli } from '../lib/cli/main.js';

process.exitCode = await runCli(process.argv.slice(2));
