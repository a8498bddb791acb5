// `puzzle-llama verify`: one verdict per JSONL line holding numbers, target and response.
import { verify } from '../../puzzle/verify.js';
import { parseFlags } from '../args.js';
import type { CliIo } from '../io.js';
import { mapJsonl } from '../jsonl-map.js';

export const verifyHelp = `puzzle-llama verify --in FILE|- [--out FILE|-]
  One JSON verdict per input line: {"ok":bool,"reason":string|null,"detail":string|null}.
  A malformed line gets the verdict reason "malformed-input"; the others are still judged (exit status 1).`;

export async function verifyCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('verify', argv, { in: { type: 'string' }, out: { type: 'string' } });
  return mapJsonl(
    {
      command: 'verify',
      input: flags.in ?? '-',
      output: flags.out ?? '-',
      need: ['response'],
      map: (record) => {
        const v = verify(record, record.response);
        return { ok: v.ok, reason: v.reason, detail: v.detail };
      },
      malformed: (error) => ({ ok: false, reason: 'malformed-input', detail: error }),
    },
    io,
  );
}
