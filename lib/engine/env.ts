// Runs a function with some environment variables set, then restores them: the addon reads its
// PUZZLE_LLAMA_* switches (kernel choices, opt-in kernels) when a backend is made, so an engine created
// inside `fn` gets them and the rest of the process does not.
export async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const previous = new Map(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of previous) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
