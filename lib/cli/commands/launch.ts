// `puzzle-llama launch`: runs a command on several ranks of this node, with torchrun's environment.
import { join } from 'node:path';
import { isLoopback } from '../../dist/address.js';
import { launch } from '../../dist/launch.js';
import { packageRoot } from '../../io/package-root.js';
import { intFlag } from '../args.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';

export const launchHelp = `puzzle-llama launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] COMMAND [FLAGS]
  Starts N processes of \`puzzle-llama COMMAND FLAGS\` on this machine as ranks of a data-parallel run, with
  the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
  on M machines, run it on each with its --node-rank (0 on the machine at --master-addr). Output is
  prefixed by rank; Ctrl-C stops every rank after its current step with a checkpoint; when a rank fails
  the others are stopped and the launcher exits with that rank's status.
  Defaults: --nnodes 1 --node-rank 0 --master-addr 127.0.0.1 --master-port 29500.`;

const FLAGS = ['nproc-per-node', 'nnodes', 'node-rank', 'master-addr', 'master-port'] as const;
type Flag = (typeof FLAGS)[number];

/** Splits argv at the command: the launcher's flags before it, the command's own after it. */
function splitArgs(argv: string[]): { flags: Partial<Record<Flag, string>>; command: string; rest: string[] } {
  const flags: Partial<Record<Flag, string>> = {};
  let i = 0;
  for (; i < argv.length && argv[i].startsWith('--'); i++) {
    const [name, inline] = argv[i].slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (!(FLAGS as readonly string[]).includes(name)) throw new CliError(`puzzle-llama launch: unknown flag --${name} before the command; flags: ${FLAGS.map((f) => `--${f}`).join(', ')}`);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new CliError(`puzzle-llama launch: --${name} needs a value`);
    flags[name as Flag] = value;
  }
  if (i >= argv.length) throw new CliError(`puzzle-llama launch: no command to run. Usage:\n${launchHelp}`);
  return { flags, command: argv[i], rest: argv.slice(i + 1) };
}

export async function launchCommand(argv: string[], io: CliIo): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    io.stdout.write(launchHelp + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  const { flags, command, rest } = splitArgs(argv);
  if (flags['nproc-per-node'] === undefined) throw new CliError('puzzle-llama launch: --nproc-per-node is required');
  const nprocPerNode = intFlag('launch', 'nproc-per-node', flags['nproc-per-node'], 1, 1, 1024);
  const nnodes = intFlag('launch', 'nnodes', flags.nnodes, 1, 1, 65536);
  const nodeRank = intFlag('launch', 'node-rank', flags['node-rank'], 0, 0, nnodes - 1);
  const masterPort = intFlag('launch', 'master-port', flags['master-port'], 29500, 1, 65535);
  const masterAddr = flags['master-addr']?.trim() || '127.0.0.1';
  if (nnodes > 1 && isLoopback(masterAddr)) {
    throw new CliError(`puzzle-llama launch: with --nnodes ${nnodes}, --master-addr must be the address of node 0 that the other machines reach, not ${masterAddr}`);
  }
  if (command === 'launch') throw new CliError('puzzle-llama launch: the command cannot be launch itself');
  const result = await launch({
    nprocPerNode,
    nnodes,
    nodeRank,
    masterAddr,
    masterPort,
    command: process.execPath,
    args: [join(packageRoot(), 'bin', 'puzzle-llama.js'), command, ...rest],
    stdout: io.stdout,
    stderr: io.stderr,
  });
  return result.status;
}
