// The rendezvous store's wire protocol (version 1), as native/comm/store_protocol.h defines it for the C++
// client: length-prefixed frames, requests `u32 id, u8 op, args`, responses `u32 id, u8 status, payload`.
// docs/ARCHITECTURE.md ("The rendezvous store") describes every op.

export const STORE_VERSION = 1;
export const STORE_MAGIC = Buffer.from('PZLLSTORE', 'latin1');
export const MAX_FRAME = 64 << 20;

export const Op = { hello: 1, set: 2, get: 3, wait: 4, add: 5, peers: 6, ping: 7, bye: 8 } as const;
export const Status = { ok: 0, value: 1, timeout: 2, error: 3 } as const;
export const Role = { member: 0, helper: 1 } as const;

/** A rank as the store sees it: alive (its member connection is open), left cleanly, or lost. */
export type PeerState = 'never-joined' | 'alive' | 'left' | 'lost';
export const PEER_STATES: readonly PeerState[] = ['never-joined', 'alive', 'left', 'lost'];

export interface PeerStatus {
  rank: number;
  state: PeerState;
  /** Milliseconds since the store last heard from the rank (or since it was lost or left). */
  silentMs: number;
}

/** Builds a byte string of fields: u8, u32, i64, and length-prefixed strings or bytes. */
export class Writer {
  #parts: Buffer[] = [];
  u8(v: number): this {
    this.#parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.#parts.push(b);
    return this;
  }
  i64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    this.#parts.push(b);
    return this;
  }
  bytes(v: Uint8Array | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    this.u32(b.length);
    this.#parts.push(b);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** Reads the fields a Writer wrote; throws a RangeError naming the field when the bytes run out. */
export class Reader {
  #at = 0;
  constructor(readonly buf: Buffer) {}
  #need(n: number, what: string): void {
    if (this.#at + n > this.buf.length) throw new RangeError(`truncated ${what}`);
  }
  u8(what = 'u8'): number {
    this.#need(1, what);
    return this.buf[this.#at++];
  }
  u32(what = 'u32'): number {
    this.#need(4, what);
    const v = this.buf.readUInt32BE(this.#at);
    this.#at += 4;
    return v;
  }
  i64(what = 'i64'): bigint {
    this.#need(8, what);
    const v = this.buf.readBigInt64BE(this.#at);
    this.#at += 8;
    return v;
  }
  bytes(what = 'bytes', max = MAX_FRAME): Buffer {
    const n = this.u32(`${what} length`);
    if (n > max) throw new RangeError(`${what} of ${n} bytes is larger than ${max}`);
    this.#need(n, what);
    const v = this.buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    return v;
  }
  string(what = 'string', max = MAX_FRAME): string {
    return this.bytes(what, max).toString('utf8');
  }
  get rest(): number {
    return this.buf.length - this.#at;
  }
}

/** Wraps a body in its frame (the u32 length). */
export function frame(body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

/**
 * Splits a byte stream into frames: push() what the socket delivers, get every complete frame's body.
 * A frame longer than MAX_FRAME is an error (the connection is then dropped).
 */
export function frameSplitter(): (chunk: Buffer) => Buffer[] {
  let pending: Buffer = Buffer.alloc(0);
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    const out: Buffer[] = [];
    while (pending.length >= 4) {
      const n = pending.readUInt32BE(0);
      if (n > MAX_FRAME) throw new RangeError(`a frame of ${n} bytes is larger than the protocol allows (${MAX_FRAME})`);
      if (pending.length < 4 + n) break;
      out.push(pending.subarray(4, 4 + n));
      pending = pending.subarray(4 + n);
    }
    return out;
  };
}
