// Flag parsing for the commands: node's parseArgs in strict mode, with errors that name the flag.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CliError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

type Parsed<T extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: false }>>['values'];

export function parseFlags<T extends Options>(command: string, argv: string[], options: T): Parsed<T> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    const message = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new CliError(`puzzle-llama ${command}: ${message}. See \`puzzle-llama help\`.`);
  }
}

/** An integer flag within [min, max]. */
export function intFlag(command: string, flag: string, value: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const x = /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(x) || x < min || x > max) {
    throw new CliError(`puzzle-llama ${command}: --${flag} must be an integer in [${min}, ${max}], got '${value}'`);
  }
  return x;
}

/** A comma-separated list of integers, each within [min, max]. */
export function intListFlag(command: string, flag: string, value: string | undefined, fallback: number[], min: number, max: number): number[] {
  if (value === undefined) return fallback;
  const parts = value.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) {
    throw new CliError(`puzzle-llama ${command}: --${flag} must be a comma-separated list of integers, got '${value}'`);
  }
  return parts.map((p) => intFlag(command, flag, p, 0, min, max));
}

/** A duration flag: seconds (300, 12.5) or minutes (8m) or seconds with a unit (90s). */
export function durationFlag(command: string, name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|min)?\s*$/.exec(value);
  const seconds = m ? Number(m[1]) * (m[2] === 'm' || m[2] === 'min' ? 60 : 1) : NaN;
  if (!(seconds > 0) || !Number.isFinite(seconds)) throw new CliError(`puzzle-llama ${command}: --${name} must be a duration such as 480, 90s or 8m, got '${value}'`);
  return seconds;
}
