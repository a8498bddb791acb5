// `puzzle-llama solve`: for each JSONL puzzle, a solution or a proof that there is none.
import { solve } from '../../puzzle/solve.js';
import { parseFlags } from '../args.js';
import type { CliIo } from '../io.js';
import { mapJsonl } from '../jsonl-map.js';

export const solveHelp = `puzzle-llama solve --in FILE|- [--out FILE|-]
  One JSON line per puzzle: {"solvable":bool,"response":string|null}; exact (floor division, negatives).
  A malformed line gets {"solvable":null,"response":null,"error":…}; the others are still solved (exit status 1).`;

export async function solveCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('solve', argv, { in: { type: 'string' }, out: { type: 'string' } });
  return mapJsonl(
    {
      command: 'solve',
      input: flags.in ?? '-',
      output: flags.out ?? '-',
      need: [],
      map: (record) => {
        const s = solve(record);
        return { solvable: s.solvable, response: s.response };
      },
      malformed: (error) => ({ solvable: null, response: null, error }),
    },
    io,
  );
}
