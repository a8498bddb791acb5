// Synthesized puzzles as JSONL bytes, written from synthesis's scratch arrays straight into one reusable
// buffer (no per-puzzle objects or strings): the bytes of puzzleToJsonLine() over synthesize(), line by line.
import { puzzleToJsonLine } from './jsonl.js';
import { createPuzzleDrawer, type SynthScratch, type SynthesizeOptions } from './synthesize.js';

/** A run of whole JSONL lines; `bytes` is only valid until the generator is resumed (its buffer is reused). */
export interface JsonlChunk {
  bytes: Uint8Array;
  /** Lines (puzzles) in `bytes`. */
  puzzles: number;
}

const DEFAULT_CHUNK_BYTES = 1 << 20;

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

const OPEN = ascii('{"numbers":[');
const TARGET = ascii('],"target":');
const PROMPT = ascii(',"prompt":"');
const RESPONSE = ascii('","response":"');
const CLOSE = ascii('"}\n');
const OP_CHARS = ascii('+-*/');

function put(buf: Uint8Array, pos: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) buf[pos + i] = bytes[i];
  return pos + bytes.length;
}

/** Writes a safe integer in decimal at `pos`; returns the position after it. */
export function putSafeInt(buf: Uint8Array, pos: number, x: number): number {
  if (x < 0) {
    buf[pos++] = 45; // '-'
    x = -x;
  }
  let len = 1;
  for (let p = 10; p <= x; p *= 10) len++; // powers of ten are exact doubles up to 1e22
  const end = pos + len;
  let q = end;
  if (x < 2147483648) {
    let v = x | 0;
    do {
      const d = (v / 10) | 0;
      buf[--q] = 48 + v - d * 10;
      v = d;
    } while (v !== 0);
  } else {
    do {
      const r = x % 10; // exact, and so is (x − r) / 10
      buf[--q] = 48 + r;
      x = (x - r) / 10;
    } while (x !== 0);
  }
  return end;
}

/** The most bytes one plain line with `n` candidates takes: every integer at most 17 characters. */
function lineBound(n: number): number {
  return 64 + 17 * (2 * n + 2) + 4 * n + (3 * 17 + 5) * (n - 1);
}

/** Writes the puzzle in `s` (all safe integers) as one JSONL line with its newline; returns the end. */
function putScratchLine(buf: Uint8Array, pos: number, s: SynthScratch, n: number): number {
  const numbers = s.numbers;
  const target = s.pool[0];
  pos = put(buf, pos, OPEN);
  for (let k = 0; k < n; k++) {
    if (k) buf[pos++] = 44; // ','
    pos = putSafeInt(buf, pos, numbers[k]);
  }
  pos = put(buf, pos, TARGET);
  pos = putSafeInt(buf, pos, target);
  pos = put(buf, pos, PROMPT);
  for (let k = 0; k < n; k++) {
    if (k) {
      buf[pos++] = 44;
      buf[pos++] = 32;
    }
    pos = putSafeInt(buf, pos, numbers[k]);
  }
  buf[pos++] = 58; // ':'
  buf[pos++] = 32;
  pos = putSafeInt(buf, pos, target);
  pos = put(buf, pos, RESPONSE);
  for (let t = 0; t < s.steps; t++) {
    if (t) {
      buf[pos++] = 44;
      buf[pos++] = 32;
    }
    pos = putSafeInt(buf, pos, s.a[t]);
    buf[pos++] = OP_CHARS[s.op[t]];
    pos = putSafeInt(buf, pos, s.b[t]);
    buf[pos++] = 61; // '='
    pos = putSafeInt(buf, pos, s.result[t]);
  }
  return put(buf, pos, CLOSE);
}

/**
 * Streams the JSONL text of synthesize(options) (each line ends with a newline) in chunks of about
 * `chunkBytes`. Puzzles past 2^53 go through puzzleToJsonLine; the bytes are the same either way.
 */
export function* synthesizeJsonl(options: SynthesizeOptions, chunkBytes: number = DEFAULT_CHUNK_BYTES): Generator<JsonlChunk, void, undefined> {
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1024 || chunkBytes > 2 ** 30) {
    throw new RangeError(`synthesizeJsonl(): chunkBytes must be an integer in [1024, 2^30], got ${chunkBytes}`);
  }
  const drawer = createPuzzleDrawer(options);
  const { ns, scratch } = drawer;
  let buf = Buffer.allocUnsafe(Math.max(chunkBytes, lineBound(Math.max(...ns))));
  let pos = 0;
  let lines = 0;
  for (let k = 0; k < options.count; k++) {
    const n = ns[k % ns.length];
    const puzzle = drawer.next(k);
    if (puzzle === null) {
      if (pos + lineBound(n) > buf.length) {
        yield { bytes: buf.subarray(0, pos), puzzles: lines };
        pos = 0;
        lines = 0;
      }
      pos = putScratchLine(buf, pos, scratch, n);
    } else {
      const line = puzzleToJsonLine(puzzle) + '\n'; // ASCII only: one byte per character
      if (pos + line.length > buf.length) {
        if (pos > 0) yield { bytes: buf.subarray(0, pos), puzzles: lines };
        pos = 0;
        lines = 0;
        if (line.length > buf.length) buf = Buffer.allocUnsafe(2 * line.length);
      }
      pos += buf.write(line, pos, 'latin1');
    }
    lines++;
  }
  if (pos > 0) yield { bytes: buf.subarray(0, pos), puzzles: lines };
}
