// Where libnccl.so.2 may be, in the order the NCCL communicator tries them: an explicit path (option or
// PUZZLE_LLAMA_NCCL), $NCCL_HOME/lib, the loader's own search path, then the folder Python's nvidia.nccl
// wheel reports (how torch's CUDA wheels ship NCCL). Nothing here needs NCCL to be installed.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** The folder of the nvidia.nccl wheel of the first Python that has one, or null. */
export function ncclWheelFolder(env: Record<string, string | undefined> = process.env): string | null {
  for (const python of [env.PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p)) {
    const r = spawnSync(python, ['-c', 'import nvidia.nccl as m; print(list(m.__path__)[0])'], { encoding: 'utf8', timeout: 20_000 });
    const folder = r.status === 0 ? r.stdout.trim().split('\n').pop() : '';
    if (folder) return folder;
  }
  return null;
}

export function ncclLibraryCandidates(explicit?: string, env: Record<string, string | undefined> = process.env): string[] {
  const out: string[] = [];
  if (explicit) out.push(explicit);
  if (env.PUZZLE_LLAMA_NCCL) out.push(env.PUZZLE_LLAMA_NCCL);
  if (env.NCCL_HOME) out.push(join(env.NCCL_HOME, 'lib', 'libnccl.so.2'), join(env.NCCL_HOME, 'lib64', 'libnccl.so.2'));
  out.push('libnccl.so.2');
  const wheel = ncclWheelFolder(env);
  if (wheel) out.push(join(wheel, 'lib', 'libnccl.so.2'));
  return [...new Set(out)];
}
