// The error a command raises for bad input: printed as one clear line, with a non-zero exit status.

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
