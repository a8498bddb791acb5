// `puzzle-llama solve`: for each JSONL puzzle, a solution, a proof that there is none, or "timeout".
import { DEFAULT_SOLVE_TIMEOUT_MS, solve } from '../../puzzle/solve.js';
import { parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';
import { mapJsonl } from '../jsonl-map.js';

export const solveHelp = `puzzle-llama solve --in FILE|- [--out FILE|-] [--timeout SECONDS]
  One JSON line per input line: {"solvable":bool,"response":string|null}; exact (floor division, negatives).
  A puzzle not settled within --timeout seconds (default ${DEFAULT_SOLVE_TIMEOUT_MS / 1000}) gets {"solvable":null,"response":null,"reason":"timeout"}.
  A malformed line gets {"solvable":null,"response":null,"error":…}; the others are still solved (exit status 1).`;

export async function solveCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('solve', argv, { in: { type: 'string' }, out: { type: 'string' }, timeout: { type: 'string' } });
  let timeoutMs = DEFAULT_SOLVE_TIMEOUT_MS;
  if (flags.timeout !== undefined) {
    const seconds = Number(flags.timeout);
    if (flags.timeout.trim() === '' || !Number.isFinite(seconds) || seconds <= 0 || seconds > 7 * 24 * 3600) {
      throw new CliError(`puzzle-llama solve: --timeout must be a number of seconds in (0, 604800], got '${flags.timeout}'`);
    }
    timeoutMs = seconds * 1000;
  }
  let timeouts = 0;
  const status = await mapJsonl(
    {
      command: 'solve',
      input: flags.in ?? '-',
      output: flags.out ?? '-',
      need: [],
      map: (record) => {
        const s = solve(record, { timeoutMs });
        if (s.solvable === null) {
          timeouts++;
          return { solvable: null, response: null, reason: s.reason };
        }
        return { solvable: s.solvable, response: s.response };
      },
      malformed: (error) => ({ solvable: null, response: null, error }),
    },
    io,
  );
  if (timeouts > 0) io.stderr.write(`puzzle-llama solve: ${timeouts} puzzle(s) were not settled within ${timeoutMs / 1000} s (raise --timeout)\n`);
  return status;
}
