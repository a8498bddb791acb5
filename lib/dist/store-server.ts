// The rendezvous store that rank 0 serves on MASTER_ADDR:MASTER_PORT (in the manner of torch's TCPStore):
// keys to set, get and wait for with timeouts, counters, and each rank's liveness. It listens on that one
// address only, refuses a peer whose protocol version, world size, rank or token does not match, and
// bounds what a connection may ask for (frame, key and value sizes, the store's total, a HELLO deadline).
import { createServer, type Server, type Socket } from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import { frame, frameSplitter, Op, PEER_STATES, Reader, Role, Status, STORE_MAGIC, STORE_VERSION, Writer, type PeerStatus } from './store-protocol.js';

export interface StoreServerOptions {
  /** The address to listen on (rank 0's MASTER_ADDR, resolved). */
  host: string;
  port: number;
  worldSize: number;
  /** A shared secret every rank must present (multi-node runs); empty: none. */
  token?: string;
  /** Milliseconds a new connection has to say HELLO (default 10 s). */
  helloTimeoutMs?: number;
}

export interface StoreServer {
  readonly host: string;
  readonly port: number;
  peers(): PeerStatus[];
  close(): Promise<void>;
}

const MAX_KEY = 4096;
const MAX_VALUE = 16 << 20;
const MAX_TOTAL = 256 << 20;

interface Member {
  state: (typeof PEER_STATES)[number];
  heard: number;
  socket: Socket | null;
  from: string;
}

interface Waiter {
  keys: string[];
  /** true: every key is there; false: timed out; a string: the run broke (a rank left or was lost). */
  done: (outcome: boolean | string) => void;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Starts the store; resolves once it listens (rejects naming the address when it cannot). */
export function startStoreServer(options: StoreServerOptions): Promise<StoreServer> {
  const { host, port, worldSize } = options;
  const tokenDigest = digest(options.token ?? '');
  const helloTimeoutMs = options.helloTimeoutMs ?? 10_000;
  const values = new Map<string, Buffer>();
  let total = 0;
  const waiters = new Set<Waiter>();
  const members: Member[] = Array.from({ length: worldSize }, () => ({ state: 'never-joined', heard: Date.now(), socket: null, from: '' }));
  const sockets = new Set<Socket>();
  const maxConnections = 4 * worldSize + 16;

  // Once a rank has left or was lost, keys it would have set never come: every wait fails at once, saying
  // which rank and, when it posted one before leaving, why (`failed/<rank>`).
  let broken: string | null = null;
  const breakRun = (rank: number, how: 'left' | 'lost') => {
    if (broken) return;
    const why = values.get(`failed/${rank}`)?.toString('utf8');
    broken = `rank ${rank} ${how === 'lost' ? 'was lost (its connection dropped without a goodbye: killed or crashed)' : 'left the run'}${why ? `: ${why}` : ''}`;
    for (const w of [...waiters]) w.done(broken);
  };
  const wake = () => {
    for (const w of waiters) if (w.keys.every((k) => values.has(k))) w.done(true);
  };

  const serve = (socket: Socket) => {
    if (sockets.size >= maxConnections) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.setNoDelay(true);
    const from = `${socket.remoteAddress}:${socket.remotePort}`;
    const split = frameSplitter();
    let joined: { rank: number; role: number } | null = null;
    let said: 'bye' | null = null;
    const timers = new Set<NodeJS.Timeout>();
    const mine = new Set<Waiter>(); // this connection's waiting GET/WAIT requests
    const helloTimer = setTimeout(() => socket.destroy(), helloTimeoutMs);
    const reply = (id: number, status: number, payload?: Buffer | string) => {
      if (socket.destroyed) return;
      const w = new Writer().u32(id).u8(status);
      if (payload !== undefined) w.bytes(payload);
      socket.write(frame(w.done()));
    };

    const handle = (body: Buffer) => {
      const r = new Reader(body);
      const id = r.u32('request id');
      const op = r.u8('op');
      if (!joined) {
        if (op !== Op.hello) {
          reply(id, Status.error, 'say HELLO first');
          socket.end();
          return;
        }
        const magic = r.bytes('magic', 64);
        const version = r.u32('version');
        const theirWorld = r.u32('world size');
        const rank = r.u32('rank');
        const token = r.string('token', 4096);
        const role = r.u8('role');
        const refuse = (why: string) => {
          reply(id, Status.error, why);
          socket.end();
        };
        if (!magic.equals(STORE_MAGIC)) return refuse('this is a puzzle-llama rendezvous store; the peer speaks another protocol');
        if (version !== STORE_VERSION) return refuse(`rank ${rank} speaks rendezvous protocol version ${version}, this store (rank 0) speaks ${STORE_VERSION}: run the same puzzle-llama version on every rank`);
        if (theirWorld !== worldSize) return refuse(`rank ${rank} was started with WORLD_SIZE=${theirWorld}, but rank 0 has WORLD_SIZE=${worldSize}: every rank must be given the same world size`);
        if (rank >= worldSize) return refuse(`rank ${rank} is out of range for WORLD_SIZE=${worldSize} (ranks are 0 to ${worldSize - 1})`);
        if (!timingSafeEqual(digest(token), tokenDigest)) return refuse(`rank ${rank} presented the wrong token (PUZZLE_LLAMA_DIST_TOKEN must be the same on every rank)`);
        if (role === Role.member) {
          const m = members[rank];
          if (m.state === 'alive') return refuse(`rank ${rank} has already joined (from ${m.from}): two processes were given RANK=${rank}`);
          Object.assign(m, { state: 'alive', heard: Date.now(), socket, from });
        }
        clearTimeout(helloTimer);
        joined = { rank, role };
        reply(id, Status.ok);
        return;
      }
      if (joined.role === Role.member) members[joined.rank].heard = Date.now();
      switch (op) {
        case Op.set: {
          const key = r.string('key', MAX_KEY);
          const value = Buffer.from(r.bytes('value', MAX_VALUE));
          const before = values.get(key)?.length ?? 0;
          if (total - before + value.length > MAX_TOTAL) return reply(id, Status.error, `the store is full (${MAX_TOTAL} bytes)`);
          total += value.length - before;
          values.set(key, value);
          reply(id, Status.ok);
          wake();
          return;
        }
        case Op.add: {
          const key = r.string('key', MAX_KEY);
          const delta = r.i64('delta');
          const old = values.get(key);
          const now = (old && old.length === 8 ? old.readBigInt64BE(0) : 0n) + delta;
          const b = Buffer.alloc(8);
          b.writeBigInt64BE(BigInt.asIntN(64, now));
          total += 8 - (old?.length ?? 0);
          values.set(key, b);
          reply(id, Status.value, b);
          wake();
          return;
        }
        case Op.get:
        case Op.wait: {
          const keys: string[] = [];
          if (op === Op.get) keys.push(r.string('key', MAX_KEY));
          else {
            const n = r.u32('key count');
            if (n > 65536) return reply(id, Status.error, `too many keys (${n})`);
            for (let i = 0; i < n; i++) keys.push(r.string('key', MAX_KEY));
          }
          const timeoutMs = r.u32('timeout');
          const answer = (outcome: boolean | string) => {
            if (typeof outcome === 'string') return reply(id, Status.error, outcome);
            if (!outcome) return reply(id, Status.timeout);
            if (op === Op.get) reply(id, Status.value, values.get(keys[0]));
            else reply(id, Status.ok);
          };
          if (keys.every((k) => values.has(k))) return answer(true);
          if (broken) return answer(broken);
          if (timeoutMs === 0) return answer(false);
          const w: Waiter = {
            keys,
            done: (ok) => {
              waiters.delete(w);
              mine.delete(w);
              clearTimeout(timer);
              timers.delete(timer);
              answer(ok);
            },
          };
          const timer = setTimeout(() => w.done(false), timeoutMs);
          timers.add(timer);
          waiters.add(w);
          mine.add(w);
          return;
        }
        case Op.peers: {
          const list = peers();
          const w = new Writer().u32(list.length);
          for (const p of list) w.u32(p.rank).u8(PEER_STATES.indexOf(p.state)).u32(Math.min(p.silentMs, 0xffffffff));
          return reply(id, Status.value, w.done());
        }
        case Op.ping:
          return reply(id, Status.ok);
        case Op.bye:
          said = 'bye';
          return reply(id, Status.ok);
        default:
          return reply(id, Status.error, `unknown op ${op}`);
      }
    };

    socket.on('data', (chunk) => {
      try {
        for (const body of split(chunk)) handle(body);
      } catch (err) {
        // A malformed frame ends the connection (the peer is not speaking the protocol).
        void err;
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(helloTimer);
      for (const t of timers) clearTimeout(t);
      for (const w of mine) waiters.delete(w);
      sockets.delete(socket);
      if (joined?.role === Role.member) {
        const m = members[joined.rank];
        if (m.socket === socket) {
          Object.assign(m, { state: said === 'bye' ? 'left' : 'lost', heard: Date.now(), socket: null });
          // (A clean leave once every rank is done is the end of the run, not a break.)
          if (m.state === 'lost' || members.some((o) => o.state === 'alive')) breakRun(joined.rank, m.state === 'lost' ? 'lost' : 'left');
        }
      }
    });
  };

  const peers = (): PeerStatus[] => members.map((m, rank) => ({ rank, state: m.state, silentMs: Date.now() - m.heard }));

  return new Promise((resolve, reject) => {
    const server: Server = createServer(serve);
    server.once('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EADDRINUSE' ? ' (another run, or torchrun\'s own store, holds it: pick another MASTER_PORT)' : err.code === 'EADDRNOTAVAIL' ? ' (MASTER_ADDR is not an address of this machine: rank 0 must run on MASTER_ADDR)' : '';
      reject(new Error(`the rendezvous cannot listen on ${host}:${port}: ${err.message}${hint}`));
    });
    server.listen({ host, port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      resolve({
        host,
        port: bound,
        peers,
        close: () =>
          new Promise<void>((done) => {
            for (const w of [...waiters]) w.done(false);
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
