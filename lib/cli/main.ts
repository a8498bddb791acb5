// The `puzzle-llama` command: dispatches to one module per subcommand; bad input becomes one clear
// message on stderr and a non-zero exit status, never a stack trace.
import { benchCommand, benchHelp } from './commands/bench.js';
import { datasetsCommand, datasetsHelp } from './commands/datasets.js';
import { evalCommand, evalHelp } from './commands/eval.js';
import { infoCommand, infoHelp } from './commands/info.js';
import { launchCommand, launchHelp } from './commands/launch.js';
import { solveCommand, solveHelp } from './commands/solve.js';
import { startCommand, startHelp } from './commands/start.js';
import { studyCommand, studyHelp } from './commands/study.js';
import { synthCommand, synthHelp } from './commands/synth.js';
import { trainCommand, trainHelp } from './commands/train.js';
import { verifyCommand, verifyHelp } from './commands/verify.js';
import { CliError } from './errors.js';
import { isBrokenPipe, processIo, type CliIo } from './io.js';

type Command = { run(argv: string[], io: CliIo): Promise<number>; help: string };

const commands: Record<string, Command> = {
  synth: { run: synthCommand, help: synthHelp },
  verify: { run: verifyCommand, help: verifyHelp },
  solve: { run: solveCommand, help: solveHelp },
  datasets: { run: datasetsCommand, help: datasetsHelp },
  train: { run: trainCommand, help: trainHelp },
  launch: { run: launchCommand, help: launchHelp },
  eval: { run: evalCommand, help: evalHelp },
  bench: { run: benchCommand, help: benchHelp },
  info: { run: infoCommand, help: infoHelp },
  start: { run: startCommand, help: startHelp },
  study: { run: studyCommand, help: studyHelp },
};

export function usage(): string {
  return [
    'puzzle-llama: arithmetical puzzles, LLaMA + LoRA training and exact evaluation',
    '',
    ...Object.values(commands).map((c) => c.help),
    '',
    'puzzle-llama help [COMMAND]',
  ].join('\n');
}

/** Runs the CLI with `argv` (without node and script); resolves to the exit status. */
export async function runCli(argv: string[], io: CliIo = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = rest[0] && commands[rest[0]];
    io.stdout.write((topic ? topic.help : usage()) + '\n');
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    io.stderr.write(`puzzle-llama: unknown command '${name}'; commands: ${Object.keys(commands).join(', ')}. See \`puzzle-llama help\`.\n`);
    return 2;
  }
  // (launch passes everything after its command through: `launch ... train --help` is train's help)
  if (name !== 'launch' && (rest.includes('--help') || rest.includes('-h'))) {
    io.stdout.write(command.help + '\n');
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (isBrokenPipe(err)) return 0;
    if (err instanceof CliError) {
      io.stderr.write(err.message + '\n');
      return err.exitCode;
    }
    io.stderr.write(`puzzle-llama ${name}: ${(err as Error).message ?? String(err)}\n`);
    if (process.env.PUZZLE_LLAMA_DEBUG) io.stderr.write(`${(err as Error).stack}\n`);
    return 1;
  }
}
