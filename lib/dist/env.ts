// Where this process stands in a data-parallel run, read from the environment as torchrun sets it (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; `puzzle-llama launch` sets the same),
// else from Slurm's srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the first host of SLURM_JOB_NODELIST),
// else a world of one. A malformed variable is an error that names it and its value.

export interface World {
  rank: number;
  worldSize: number;
  /** The rank among this machine's processes: the CUDA device it uses. */
  localRank: number;
  localWorldSize: number;
  /** Rank 0's host, where the rendezvous store listens. */
  masterAddr: string;
  masterPort: number;
  /** The port our store listens on: MASTER_PORT, or the one after it where torchrun's own store holds MASTER_PORT. */
  storePort: number;
  /** What set it up. */
  source: 'torchrun' | 'puzzle-llama launch' | 'slurm' | 'environment' | 'single process';
}

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const x = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(x) || x < min || x > max) throw new RangeError(`${name}=${JSON.stringify(raw)} must be an integer in [${min}, ${max}]`);
  return x;
}

/**
 * The first host of a Slurm host list: `node[003-005,9],gpu01` gives `node003`, `a,b` gives `a`,
 * `rack[1-2]-n[07-08]` gives `rack1-n07`, a plain name gives itself.
 */
export function firstSlurmHost(list: string): string {
  const s = list.trim();
  let depth = 0;
  let end = s.length;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '[') depth++;
    else if (s[i] === ']') depth--;
    else if (s[i] === ',' && depth === 0) {
      end = i;
      break;
    }
  }
  // Each bracket group of the first entry (`rack[1-2]-n[01-03]` is a product) gives its first element.
  let first = s.slice(0, end);
  for (let open = first.indexOf('['); open >= 0; open = first.indexOf('[')) {
    const close = first.indexOf(']', open);
    if (close < 0) throw new RangeError(`SLURM_JOB_NODELIST=${JSON.stringify(list)} has an unclosed '['`);
    const element = first.slice(open + 1, close).split(',')[0].split('-')[0];
    first = first.slice(0, open) + element + first.slice(close + 1);
  }
  return first;
}

function port(env: Env, name: string, fallback: number): number {
  return intVar(env, name, 1, 65535) ?? fallback;
}

export function readWorld(env: Env = process.env): World {
  const worldSize = intVar(env, 'WORLD_SIZE', 1);
  const rank = intVar(env, 'RANK', 0);
  const masterAddr = env.MASTER_ADDR?.trim() || '127.0.0.1';
  if (worldSize !== undefined || rank !== undefined) {
    if (worldSize === undefined) throw new RangeError(`RANK=${rank} is set but WORLD_SIZE is not: set both (torchrun and puzzle-llama launch do)`);
    if (rank === undefined) throw new RangeError(`WORLD_SIZE=${worldSize} is set but RANK is not: set both (torchrun and puzzle-llama launch do)`);
    if (rank >= worldSize) throw new RangeError(`RANK=${rank} must be below WORLD_SIZE=${worldSize}`);
    const localWorldSize = intVar(env, 'LOCAL_WORLD_SIZE', 1, worldSize) ?? worldSize;
    const localRank = intVar(env, 'LOCAL_RANK', 0) ?? rank % localWorldSize;
    if (localRank >= localWorldSize) throw new RangeError(`LOCAL_RANK=${localRank} must be below LOCAL_WORLD_SIZE=${localWorldSize}`);
    const masterPort = port(env, 'MASTER_PORT', 29500);
    // torchrun's agent serves its own TCPStore on MASTER_PORT and says so; ours takes the next port.
    const agentStore = env.TORCHELASTIC_USE_AGENT_STORE === 'True';
    const storePort = intVar(env, 'PUZZLE_LLAMA_STORE_PORT', 1, 65535) ?? (agentStore ? masterPort + 1 : masterPort);
    if (storePort > 65535) throw new RangeError(`MASTER_PORT=${masterPort}: the rendezvous needs the port after it, and there is none`);
    const source = env.PUZZLE_LLAMA_LAUNCH === '1' ? 'puzzle-llama launch' : env.TORCHELASTIC_RUN_ID !== undefined ? 'torchrun' : 'environment';
    return { rank, worldSize, localRank, localWorldSize, masterAddr, masterPort, storePort, source };
  }
  const ntasks = intVar(env, 'SLURM_NTASKS', 1);
  const procid = intVar(env, 'SLURM_PROCID', 0);
  if (ntasks !== undefined && ntasks > 1 && procid !== undefined) {
    if (procid >= ntasks) throw new RangeError(`SLURM_PROCID=${procid} must be below SLURM_NTASKS=${ntasks}`);
    const nodes = intVar(env, 'SLURM_NNODES', 1) ?? intVar(env, 'SLURM_JOB_NUM_NODES', 1) ?? 1;
    const localRank = intVar(env, 'SLURM_LOCALID', 0) ?? 0;
    const perNode = Math.max(localRank + 1, Math.ceil(ntasks / nodes));
    const list = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
    const master = env.MASTER_ADDR?.trim() || (list ? firstSlurmHost(list) : undefined);
    if (!master) throw new RangeError('under Slurm with several tasks, MASTER_ADDR or SLURM_JOB_NODELIST must name rank 0\'s host');
    // A port of the job's own, so that two jobs sharing a node do not collide.
    const jobId = intVar(env, 'SLURM_JOB_ID', 0) ?? 0;
    const masterPort = port(env, 'MASTER_PORT', 20000 + (jobId % 20000));
    const storePort = intVar(env, 'PUZZLE_LLAMA_STORE_PORT', 1, 65535) ?? masterPort;
    return { rank: procid, worldSize: ntasks, localRank, localWorldSize: perNode, masterAddr: master, masterPort, storePort, source: 'slurm' };
  }
  return { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr, masterPort: 29500, storePort: 29500, source: 'single process' };
}

/** The torchrun environment of rank `rank` (what `puzzle-llama launch` gives each process it starts). */
export function worldEnv(w: Omit<World, 'source' | 'storePort'> & { nodeRank: number; nnodes: number }): Record<string, string> {
  return {
    RANK: String(w.rank),
    WORLD_SIZE: String(w.worldSize),
    LOCAL_RANK: String(w.localRank),
    LOCAL_WORLD_SIZE: String(w.localWorldSize),
    GROUP_RANK: String(w.nodeRank),
    GROUP_WORLD_SIZE: String(w.nnodes),
    MASTER_ADDR: w.masterAddr,
    MASTER_PORT: String(w.masterPort),
    PUZZLE_LLAMA_LAUNCH: '1',
  };
}
