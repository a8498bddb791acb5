// A rank's connection to rank 0's rendezvous store (store-server.ts): keys, counters, and, for a member,
// a heartbeat every few seconds so that the store knows which ranks are alive. Requests may overlap (each
// carries an id); every one is bounded by a timeout, and a closed store fails them all with a message
// that names rank 0.
import { connect, type Socket } from 'node:net';
import { frame, frameSplitter, Op, PEER_STATES, Reader, Role, Status, STORE_MAGIC, STORE_VERSION, Writer, type PeerStatus } from './store-protocol.js';

export interface StoreClientOptions {
  host: string;
  port: number;
  rank: number;
  worldSize: number;
  token?: string;
  /** A member is the rank itself (its liveness); a helper only reads and writes keys. Default member. */
  role?: 'member' | 'helper';
  /** How long to keep trying to connect (rank 0 may start later), and the default wait. */
  timeoutMs: number;
  /** Milliseconds between a member's heartbeats (default 2000; 0: none). */
  heartbeatMs?: number;
}

export interface StoreClient {
  readonly where: string;
  set(key: string, value: Uint8Array | string): Promise<void>;
  /** Waits up to timeoutMs (default: the client's) for the key. */
  get(key: string, timeoutMs?: number): Promise<Buffer>;
  wait(keys: string[], timeoutMs?: number): Promise<void>;
  add(key: string, delta: number): Promise<number>;
  peers(): Promise<PeerStatus[]>;
  /** Leaves (a member says BYE first, so the store records a clean exit). Idempotent. */
  close(): Promise<void>;
}

interface Pending {
  resolve: (r: { status: number; payload: Buffer }) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function openSocket(host: string, port: number, deadline: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const attempt = (n: number) => {
      const socket = connect({ host, port });
      const fail = (err: NodeJS.ErrnoException) => {
        socket.destroy();
        const retry = err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || err.code === 'ETIMEDOUT';
        if (retry && Date.now() < deadline) setTimeout(() => attempt(n + 1), Math.min(500, 20 << Math.min(n, 5)));
        else reject(Object.assign(new Error(`the rendezvous at ${host}:${port} did not accept a connection (${err.code ?? err.message}); is rank 0 running?`), { code: err.code }));
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        socket.off('error', fail);
        socket.setNoDelay(true);
        resolve(socket);
      });
    };
    attempt(0);
  });
}

/** Connects (retrying until the timeout) and joins; rejects with the store's reason when refused. */
export async function connectStore(options: StoreClientOptions): Promise<StoreClient> {
  const { host, port, rank, worldSize, timeoutMs } = options;
  const where = `the rendezvous at ${host}:${port}`;
  const socket = await openSocket(host, port, Date.now() + timeoutMs);
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closedWith: Error | null = null;
  const split = frameSplitter();

  const failAll = (err: Error) => {
    closedWith ??= err;
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(closedWith);
    }
    pending.clear();
    socket.unref();
  };
  socket.on('data', (chunk) => {
    try {
      for (const body of split(chunk)) {
        const r = new Reader(body);
        const id = r.u32();
        const status = r.u8();
        const payload = status === Status.value || status === Status.error ? Buffer.from(r.bytes()) : Buffer.alloc(0);
        const p = pending.get(id);
        if (!p) continue;
        pending.delete(id);
        clearTimeout(p.timer);
        idle();
        p.resolve({ status, payload });
      }
    } catch (err) {
      failAll(new Error(`${where} sent a malformed reply (${(err as Error).message})`));
      socket.destroy();
    }
  });
  socket.on('error', (err: NodeJS.ErrnoException) => failAll(new Error(`${where} closed the connection (${err.code ?? err.message}): rank 0 has exited or stopped serving it`)));
  socket.on('close', () => failAll(new Error(`${where} closed the connection: rank 0 has exited or stopped serving it`)));

  // The connection keeps the process alive only while a request waits for its answer.
  const idle = () => {
    if (pending.size === 0) socket.unref();
  };
  const call = (op: number, args: Buffer, waitMs = 0): Promise<{ status: number; payload: Buffer }> => {
    if (closedWith) return Promise.reject(closedWith);
    const id = nextId++ >>> 0;
    socket.ref();
    return new Promise((resolve, reject) => {
      // The store answers a GET/WAIT by its own timeout; a silent store gets a margin on top.
      const timer = setTimeout(() => {
        pending.delete(id);
        idle();
        reject(new Error(`${where} did not answer within ${seconds(waitMs + timeoutMs)}: rank 0 may be stuck`));
      }, waitMs + timeoutMs + 5000);
      timer.unref();
      pending.set(id, { resolve, reject, timer });
      socket.write(frame(Buffer.concat([new Writer().u32(id).u8(op).done(), args])));
    });
  };
  const text = (b: Buffer) => b.toString('utf8');

  const role = options.role === 'helper' ? Role.helper : Role.member;
  const hello = await call(Op.hello, new Writer().bytes(STORE_MAGIC).u32(STORE_VERSION).u32(worldSize).u32(rank).bytes(options.token ?? '').u8(role).done()).catch((err) => {
    socket.destroy();
    throw err;
  });
  if (hello.status !== Status.ok) {
    socket.destroy();
    throw new Error(`${where} refused rank ${rank}: ${text(hello.payload)}`);
  }

  let heartbeat: NodeJS.Timeout | null = null;
  const every = options.heartbeatMs ?? 2000;
  if (role === Role.member && every > 0) {
    heartbeat = setInterval(() => void call(Op.ping, Buffer.alloc(0)).catch(() => {}), every);
    heartbeat.unref();
  }
  idle();

  const expect = (r: { status: number; payload: Buffer }, what: string) => {
    if (r.status === Status.error) throw new Error(`${where}: ${what} failed: ${text(r.payload)}`);
  };
  let closing: Promise<void> | null = null;
  return {
    where,
    async set(key, value) {
      expect(await call(Op.set, new Writer().bytes(key).bytes(value).done()), `set '${key}'`);
    },
    async get(key, wait = timeoutMs) {
      const r = await call(Op.get, new Writer().bytes(key).u32(wait).done(), wait);
      if (r.status === Status.timeout) throw new Error(`${where}: '${key}' did not appear within ${seconds(wait)} (a rank is missing or stuck)`);
      expect(r, `get '${key}'`);
      return r.payload;
    },
    async wait(keys, wait = timeoutMs) {
      const w = new Writer().u32(keys.length);
      for (const k of keys) w.bytes(k);
      const r = await call(Op.wait, w.u32(wait).done(), wait);
      if (r.status === Status.timeout) throw new Error(`${where}: ${keys.length} key(s) from '${keys[0]}' did not all appear within ${seconds(wait)} (a rank is missing or stuck)`);
      expect(r, 'wait');
    },
    async add(key, delta) {
      const r = await call(Op.add, new Writer().bytes(key).i64(BigInt(delta)).done());
      expect(r, `add '${key}'`);
      return Number(r.payload.readBigInt64BE(0));
    },
    async peers() {
      const r = await call(Op.peers, Buffer.alloc(0));
      expect(r, 'peers');
      const rd = new Reader(r.payload);
      const n = rd.u32();
      return Array.from({ length: n }, () => ({ rank: rd.u32(), state: PEER_STATES[rd.u8()] ?? 'lost', silentMs: rd.u32() }));
    },
    close() {
      closing ??= (async () => {
        if (heartbeat) clearInterval(heartbeat);
        if (!closedWith && role === Role.member) await call(Op.bye, Buffer.alloc(0)).catch(() => {});
        closedWith ??= new Error(`${where}: this client was closed`);
        socket.end();
        socket.destroy();
      })();
      return closing;
    },
  };
}
