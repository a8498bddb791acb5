// A data-parallel run's process group: rank 0 serves the rendezvous store, every rank joins it (world size,
// protocol version and token checked), rank 0's decisions reach the others through it, and a communicator
// (Gloo or NCCL) carries the collectives. When a collective fails, explain() asks the store which rank is
// gone or silent, so that the error names it.
import { Communicator } from '../engine/communicator.js';
import { glooListenAddress, resolveHost } from './address.js';
import type { World } from './env.js';
import { ncclLibraryCandidates } from './nccl-library.js';
import { connectStore, type StoreClient } from './store-client.js';
import { startStoreServer, type StoreServer } from './store-server.js';

export interface GroupOptions {
  /** A rank that dies or stops answering makes the others fail after this long. */
  timeoutMs: number;
  /** The shared secret of a multi-node run (default: PUZZLE_LLAMA_DIST_TOKEN). */
  token?: string;
}

export interface ProcessGroup {
  readonly world: World;
  readonly timeoutMs: number;
  /** Set once connect() has run. */
  readonly comm: Communicator | null;
  /**
   * Rank 0 runs `decide` and shares its result (or its error) under `key`; the others wait for it. A rank
   * 0 that refuses makes every rank throw its reason.
   */
  decide<T>(key: string, decide: () => Promise<T> | T): Promise<T>;
  /** Connects the collectives: Gloo for CPU engines, NCCL for CUDA ones on `deviceIndex`. */
  connect(backend: 'gloo' | 'nccl', options?: { deviceIndex?: number; ncclLibrary?: string }): Promise<Communicator>;
  /** Every rank's value, in rank order. */
  gather<T>(value: T): Promise<T[]>;
  barrier(): Promise<void>;
  /** The error of a failed collective, with which rank is gone or silent put first. */
  explain(err: unknown): Promise<Error>;
  /** Leaves the run. With an error, posts it first, so the other ranks can say why this one left. */
  close(error?: unknown): Promise<void>;
}

/** Starts (rank 0) or joins the rendezvous of `world`. */
export async function joinGroup(world: World, options: GroupOptions): Promise<ProcessGroup> {
  const token = options.token ?? process.env.PUZZLE_LLAMA_DIST_TOKEN ?? '';
  const timeoutMs = options.timeoutMs;
  const host = await resolveHost(world.masterAddr);
  let server: StoreServer | null = null;
  if (world.rank === 0) server = await startStoreServer({ host, port: world.storePort, worldSize: world.worldSize, token });
  let store: StoreClient;
  try {
    store = await connectStore({ host, port: world.storePort, rank: world.rank, worldSize: world.worldSize, token, timeoutMs });
  } catch (err) {
    await server?.close();
    throw err;
  }
  let comm: Communicator | null = null;
  const who = `rank ${world.rank} of ${world.worldSize}`;

  const waited = /did not (all )?appear|timed out/i;
  // Rank 0's refusal reaches every rank through decide(): it is its own explanation.
  let refused = false;
  const explain = async (err: unknown): Promise<Error> => {
    const original = err instanceof Error ? err : new Error(String(err));
    if (refused) return original;
    // The store hears of a lost connection on its own schedule: look up to three times, half a second apart.
    let diagnosis = '';
    for (let attempt = 0; attempt < 3 && !diagnosis; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 500));
      try {
        const peers = await store.peers();
        const gone = peers.filter((p) => p.rank !== world.rank && (p.state === 'lost' || p.state === 'left'));
        const silent = peers.filter((p) => p.rank !== world.rank && p.state === 'alive' && p.silentMs > 10_000);
        const absent = peers.filter((p) => p.state === 'never-joined');
        const reasons = await Promise.all(gone.map((p) => store.get(`failed/${p.rank}`, 0).then((b) => `: ${b.toString('utf8')}`, () => '')));
        diagnosis = [
          ...gone.map((p, i) => `rank ${p.rank} ${p.state === 'lost' ? 'is gone (killed or crashed: its connection to the rendezvous dropped)' : 'left the run'}${reasons[i]}`),
          ...silent.map((p) => `rank ${p.rank} has not been heard from for ${Math.round(p.silentMs / 1000)} s (stopped or stuck)`),
          // (a rank that has not joined yet matters only to one that waited for it)
          ...(absent.length && waited.test(original.message) ? [`rank${absent.length > 1 ? 's' : ''} ${absent.map((p) => p.rank).join(', ')} never joined (not started, or refused: see ${absent.length > 1 ? 'their' : 'its'} own output)`] : []),
        ].join('; ');
      } catch {
        diagnosis = world.rank === 0 ? '' : 'rank 0 is gone or stuck (its rendezvous does not answer)';
      }
    }
    if (!diagnosis) return original;
    const e = new Error(`data-parallel training failed on ${who}: ${diagnosis}. ${original.message}`);
    e.stack = original.stack;
    return e;
  };

  const group: ProcessGroup = {
    world,
    timeoutMs,
    get comm() {
      return comm;
    },
    async decide<T>(key: string, decide: () => Promise<T> | T): Promise<T> {
      if (world.rank === 0) {
        try {
          const value = await decide();
          await store.set(`decision/${key}`, JSON.stringify({ ok: true, value }));
          return value;
        } catch (err) {
          refused = true;
          await store.set(`decision/${key}`, JSON.stringify({ ok: false, error: (err as Error).message })).catch(() => {});
          throw err;
        }
      }
      const answer = JSON.parse((await store.get(`decision/${key}`)).toString('utf8')) as { ok: boolean; value?: T; error?: string };
      if (!answer.ok) {
        refused = true;
        throw new Error(`rank 0 refused the run: ${answer.error}`);
      }
      return answer.value as T;
    },
    async connect(backend, o = {}) {
      // Every rank must pick the same library (an engine on a GPU-less node would pick Gloo and wait forever).
      await store.set(`backend/${world.rank}`, backend);
      const ranks = Array.from({ length: world.worldSize }, (_, r) => r);
      const chosen = await Promise.all(ranks.map((r) => store.get(`backend/${r}`).then((b) => b.toString('utf8'))));
      if (chosen.some((b) => b !== chosen[0])) {
        throw new Error(`the ranks run on different devices: ${ranks.map((r) => `rank ${r} ${chosen[r] === 'nccl' ? 'on a GPU (NCCL)' : 'on the CPU (Gloo)'}`).join(', ')}; give every rank the same --device`);
      }
      const listen = backend === 'gloo' ? await glooListenAddress(host) : {};
      comm = await Communicator.create({
        backend,
        rank: world.rank,
        worldSize: world.worldSize,
        store: { host, port: world.storePort, token },
        timeoutMs,
        ...listen,
        deviceIndex: o.deviceIndex,
        ncclLibraries: backend === 'nccl' ? ncclLibraryCandidates(o.ncclLibrary) : undefined,
      }).catch(async (err) => {
        throw await explain(err);
      });
      return comm;
    },
    async gather<T>(value: T): Promise<T[]> {
      if (!comm) throw new Error('gather(): connect() first');
      return comm.allGatherJson(value);
    },
    async barrier() {
      if (!comm) throw new Error('barrier(): connect() first');
      await comm.barrier();
    },
    explain,
    async close(error?: unknown) {
      if (error !== undefined) {
        const message = error instanceof Error ? error.message : String(error);
        await store.set(`failed/${world.rank}`, message.slice(0, 2000)).catch(() => {});
      }
      comm?.close();
      await store.close();
      if (server) {
        // After a failure, give the other ranks (those yet to join too) a moment to read why before the store goes.
        if (error !== undefined) {
          const until = Date.now() + 3000;
          while (Date.now() < until && server.peers().some((p) => p.rank !== 0 && (p.state === 'alive' || p.state === 'never-joined'))) await new Promise((r) => setTimeout(r, 100));
        }
        await server.close();
      }
    },
  };
  return group;
}

/** Threads per rank when none were asked for: OMP_NUM_THREADS (as torchrun sets it), else this machine's share. */
export function threadsPerRank(world: World, hardwareThreads: number, env: Record<string, string | undefined> = process.env): number {
  const omp = Number(env.OMP_NUM_THREADS);
  if (Number.isSafeInteger(omp) && omp >= 1) return omp;
  return Math.max(1, Math.floor(hardwareThreads / world.localWorldSize));
}
