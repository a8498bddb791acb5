// Communicator: one rank's collectives (native/comm): Gloo between CPU engines, NCCL between CUDA ones.
// Created through rank 0's rendezvous store; calls are serialized like the Engine's, and a failure names
// the rank and the operation. An engine shares it through Engine.attachCommunicator().
import { loadAddon } from './loader.js';
import type { NativeCommunicator } from './native.js';

export interface CommunicatorOptions {
  backend: 'gloo' | 'nccl';
  rank: number;
  worldSize: number;
  /** Rank 0's rendezvous store (lib/dist/store-server.ts). */
  store: { host: string; port: number; token?: string };
  /** The keys' namespace in the store, distinct per communicator of a run (default 'comm/'). */
  prefix?: string;
  /** Connecting and every collective fail after this long (default 300 000 ms). */
  timeoutMs?: number;
  /** Gloo: the address this rank listens on for its peers (default 127.0.0.1), or a network interface. */
  hostname?: string;
  iface?: string;
  /** NCCL: the CUDA device, and the libnccl.so.2 files to try in order (lib/dist/nccl-library.ts). */
  deviceIndex?: number;
  ncclLibraries?: string[];
}

export type CommDType = 'f32' | 'bf16';
export type ReduceOp = 'sum' | 'average';

export class Communicator {
  readonly backend: 'gloo' | 'nccl';
  readonly rank: number;
  readonly worldSize: number;
  /** Which library it runs on, and for NCCL where it was loaded from. */
  readonly library: string;
  #native: NativeCommunicator | null;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(native: NativeCommunicator) {
    const info = native.info();
    this.#native = native;
    this.backend = info.backend;
    this.rank = info.rank;
    this.worldSize = info.worldSize;
    this.library = info.library;
  }

  /** Connects this rank: resolves once every rank has joined (or rejects after the timeout). */
  static async create(options: CommunicatorOptions): Promise<Communicator> {
    if (typeof options !== 'object' || options === null) throw new TypeError(`Communicator.create(): options must be an object, got ${String(options)}`);
    const { addon } = loadAddon();
    const native = await addon.createCommunicator({
      backend: options.backend,
      rank: options.rank,
      worldSize: options.worldSize,
      storeHost: options.store?.host,
      storePort: options.store?.port,
      token: options.store?.token,
      prefix: options.prefix,
      timeoutMs: options.timeoutMs,
      hostname: options.hostname,
      iface: options.iface,
      deviceIndex: options.deviceIndex,
      ncclLibraries: options.ncclLibraries,
    });
    return new Communicator(native);
  }

  /** The native object, for Engine.attachCommunicator(). */
  get native(): NativeCommunicator {
    if (this.#native === null) throw new Error('Communicator: it was closed');
    return this.#native;
  }

  #enqueue<T>(where: string, fn: (n: NativeCommunicator) => Promise<T>): Promise<T> {
    const site = new Error(where);
    const run = async () => {
      try {
        return await fn(this.native);
      } catch (err) {
        if (err instanceof Error) {
          if (!err.message.startsWith(where)) err.message = `${where}: ${err.message}`;
          err.stack = `${err.name}: ${err.message}\n${(site.stack ?? '').split('\n').slice(1).join('\n')}`;
        }
        throw err;
      }
    };
    const result = this.#queue.then(run, run);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** Sums (or averages) `data` over every rank, in place: f32 in a Float32Array, bf16 bits in a Uint16Array. */
  allReduce(data: Float32Array | Uint16Array, options: { op?: ReduceOp; dtype?: CommDType } = {}): Promise<void> {
    const dtype = options.dtype ?? (data instanceof Uint16Array ? 'bf16' : 'f32');
    return this.#enqueue('allReduce()', (n) => n.allReduce(data, { op: options.op, dtype }));
  }

  /** `data` on every rank becomes rank `root`'s (same byte length everywhere). */
  broadcast(data: ArrayBufferView, root = 0): Promise<void> {
    return this.#enqueue('broadcast()', (n) => n.broadcast(data, root));
  }

  /** Every rank's bytes, in rank order (lengths may differ). */
  allGather(data: Uint8Array): Promise<Uint8Array[]> {
    return this.#enqueue('allGather()', (n) => n.allGather(data));
  }

  /** allGather of a JSON value. */
  async allGatherJson<T>(value: T): Promise<T[]> {
    const parts = await this.allGather(new TextEncoder().encode(JSON.stringify(value)));
    return parts.map((p) => JSON.parse(new TextDecoder().decode(p)) as T);
  }

  barrier(): Promise<void> {
    return this.#enqueue('barrier()', (n) => n.barrier());
  }

  /** Mean seconds of one all-reduce of `bytes` in backend memory (device memory for NCCL), after warm-up. */
  timeAllReduce(options: { bytes: number; dtype?: CommDType; op?: ReduceOp; iterations?: number; warmup?: number }): Promise<{ seconds: number }> {
    return this.#enqueue('timeAllReduce()', (n) => n.timeAllReduce(options));
  }

  /** Leaves the collectives (after any running call). Idempotent. */
  close(): void {
    if (this.#native === null) return;
    const n = this.#native;
    this.#native = null;
    void this.#queue.then(() => n.close());
  }
}

/** Whether this addon build has Gloo compiled in (multi-process training on the CPU). */
export function glooAvailable(): boolean {
  return loadAddon().addon.buildInfo().gloo;
}
