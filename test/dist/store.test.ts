// The rendezvous store: keys, waits and counters, the checks at join (version, world size, rank, token),
// liveness (lost against left), a broken run failing waits at once, and hostile peers.
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectStore, type StoreClient } from '../../lib/dist/store-client.js';
import { frame, Op, Reader, Role, STORE_MAGIC, Writer } from '../../lib/dist/store-protocol.js';
import { startStoreServer, type StoreServer } from '../../lib/dist/store-server.js';

const open: Array<StoreServer | StoreClient> = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close().catch(() => {});
});

async function server(worldSize: number, token?: string): Promise<StoreServer> {
  const s = await startStoreServer({ host: '127.0.0.1', port: 0, worldSize, token });
  open.push(s);
  return s;
}

async function client(s: StoreServer, rank: number, extra: Partial<Parameters<typeof connectStore>[0]> = {}): Promise<StoreClient> {
  const c = await connectStore({ host: '127.0.0.1', port: s.port, rank, worldSize: 2, timeoutMs: 5000, ...extra });
  open.push(c);
  return c;
}

/** One raw HELLO, as a peer of another version or protocol would send it; resolves the reply. */
function rawHello(port: number, body: Buffer): Promise<{ status: number; text: string } | 'closed'> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => s.write(frame(Buffer.concat([new Writer().u32(1).u8(Op.hello).done(), body]))));
    let got = Buffer.alloc(0);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4 && got.length >= 4 + got.readUInt32BE(0)) {
        const r = new Reader(got.subarray(4));
        r.u32();
        const status = r.u8();
        resolve({ status, text: r.rest ? r.string() : '' });
        s.destroy();
      }
    });
    s.on('close', () => resolve('closed'));
    s.on('error', () => resolve('closed'));
  });
}

describe('the rendezvous store', () => {
  it('sets, gets, waits for keys and counts', async () => {
    const s = await server(2);
    const a = await client(s, 0);
    const b = await client(s, 1);
    const later = b.get('answer');
    await new Promise((r) => setTimeout(r, 50));
    await a.set('answer', 'forty-two');
    expect((await later).toString()).toBe('forty-two');
    await expect(b.wait(['never'], 100)).rejects.toThrow(/1 key\(s\) from 'never' did not all appear within 0.1 s/);
    expect(await a.add('n', 2)).toBe(2);
    expect(await b.add('n', 3)).toBe(5);
    await Promise.all([a.set('k1', new Uint8Array([1, 2, 3])), b.wait(['k1'])]);
    expect([...(await b.get('k1'))]).toEqual([1, 2, 3]);
  });

  it('refuses a peer whose world size, rank or token does not match, and a second process with the same rank', async () => {
    const s = await server(2, 'secret');
    await expect(connectStore({ host: '127.0.0.1', port: s.port, rank: 1, worldSize: 3, token: 'secret', timeoutMs: 2000 })).rejects.toThrow(/rank 1 was started with WORLD_SIZE=3, but rank 0 has WORLD_SIZE=2/);
    await expect(connectStore({ host: '127.0.0.1', port: s.port, rank: 2, worldSize: 2, token: 'secret', timeoutMs: 2000 })).rejects.toThrow(/rank 2 is out of range for WORLD_SIZE=2/);
    await expect(connectStore({ host: '127.0.0.1', port: s.port, rank: 1, worldSize: 2, token: 'guess', timeoutMs: 2000 })).rejects.toThrow(/wrong token/);
    await client(s, 1, { token: 'secret' });
    await expect(connectStore({ host: '127.0.0.1', port: s.port, rank: 1, worldSize: 2, token: 'secret', timeoutMs: 2000 })).rejects.toThrow(/rank 1 has already joined .*two processes were given RANK=1/);
  });

  it('refuses another protocol version and another protocol', async () => {
    const s = await server(2);
    const hello = (magic: Buffer, version: number) => new Writer().bytes(magic).u32(version).u32(2).u32(1).bytes('').u8(Role.member).done();
    expect(await rawHello(s.port, hello(STORE_MAGIC, 2))).toEqual({ status: 3, text: expect.stringMatching(/rank 1 speaks rendezvous protocol version 2, this store \(rank 0\) speaks 1/) });
    expect(await rawHello(s.port, hello(Buffer.from('HTTP/1.1'), 1))).toEqual({ status: 3, text: expect.stringMatching(/another protocol/) });
  });

  it('drops a connection that sends garbage or a frame past the limit, and keeps serving the others', async () => {
    const s = await server(2);
    const a = await client(s, 0);
    for (const bytes of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2])]) {
      const closed = await new Promise<boolean>((resolve) => {
        const sock = connect({ host: '127.0.0.1', port: s.port }, () => sock.write(bytes));
        sock.on('close', () => resolve(true));
        sock.on('error', () => {});
        setTimeout(() => resolve(false), 3000);
      });
      expect(closed).toBe(true);
    }
    await a.set('still', 'here');
    expect((await a.get('still')).toString()).toBe('here');
  });

  it('tells a rank that left from one that was lost, and fails every wait once a rank is gone', async () => {
    const s = await server(3);
    const c0 = await connectStore({ host: '127.0.0.1', port: s.port, rank: 0, worldSize: 3, timeoutMs: 5000 });
    const c1 = await connectStore({ host: '127.0.0.1', port: s.port, rank: 1, worldSize: 3, timeoutMs: 5000 });
    open.push(c0, c1);
    const waiting = c0.wait(['from-rank-2'], 5000);
    const raw = connect({ host: '127.0.0.1', port: s.port });
    // rank 2 joins by hand, posts why it is about to fail, then its connection drops (as on SIGKILL)
    await new Promise<void>((resolve) => raw.on('connect', () => resolve()));
    raw.write(frame(Buffer.concat([new Writer().u32(1).u8(Op.hello).done(), new Writer().bytes(STORE_MAGIC).u32(1).u32(3).u32(2).bytes('').u8(Role.member).done()])));
    raw.write(frame(Buffer.concat([new Writer().u32(2).u8(Op.set).done(), new Writer().bytes('failed/2').bytes('out of memory').done()])));
    await new Promise((r) => setTimeout(r, 100));
    expect((await c1.peers()).map((p) => p.state)).toEqual(['alive', 'alive', 'alive']);
    raw.destroy();
    await expect(waiting).rejects.toThrow(/rank 2 was lost .*: out of memory/);
    await expect(c1.get('anything', 5000)).rejects.toThrow(/rank 2 was lost/);
    await c1.close();
    await new Promise((r) => setTimeout(r, 100));
    expect((await c0.peers()).map((p) => p.state)).toEqual(['alive', 'left', 'lost']);
  });

  it('listens on the address it is given only', async () => {
    const s = await server(1);
    await expect(connectStore({ host: '127.0.0.2', port: s.port, rank: 0, worldSize: 1, timeoutMs: 300 })).rejects.toThrow(/did not accept a connection/);
  });

  it('names the address when it cannot listen, and a client names rank 0 when nobody serves', async () => {
    const s = await server(1);
    await expect(startStoreServer({ host: '127.0.0.1', port: s.port, worldSize: 1 })).rejects.toThrow(/cannot listen on 127.0.0.1:\d+: .*another run/);
    await expect(connectStore({ host: '127.0.0.1', port: 1, rank: 1, worldSize: 2, timeoutMs: 300 })).rejects.toThrow(/127.0.0.1:1 did not accept a connection .*is rank 0 running/);
  });

  it('fails a client\'s requests, naming rank 0, when the store goes away', async () => {
    const s = await startStoreServer({ host: '127.0.0.1', port: 0, worldSize: 2 });
    const c = await client(s, 1);
    const waiting = c.get('never', 10_000);
    await s.close();
    await expect(waiting).rejects.toThrow(/closed the connection.*rank 0 has exited/);
  });
});
