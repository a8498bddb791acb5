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

// Bytes are stored four at a time (DataView.setUint32, little-endian): a piece shorter than four bytes
// leaves zeros past its end, which the next piece overwrites; the buffer keeps SLACK bytes beyond any line.
const SLACK = 8;

/** Text as little-endian 32-bit words of its ASCII bytes (zeros past the end), with its length. */
function words(text: string): { words: Uint32Array; length: number } {
  const out = new Uint32Array(Math.ceil(text.length / 4));
  for (let i = 0; i < text.length; i++) out[i >> 2] |= text.charCodeAt(i) << (8 * (i & 3));
  return { words: out, length: text.length };
}

const OPEN = words('{"numbers":[');
const TARGET = words('],"target":');
const PROMPT = words(',"prompt":"');
const RESPONSE = words('","response":"');
const CLOSE = words('"}\n');
const OP_CHARS = words('+-*/').words[0];

/** 0 … 9999 in decimal, packed as above, and their lengths; and zero-padded to four digits. */
const SMALL = new Uint32Array(10000);
const SMALL_LENGTH = new Uint8Array(10000);
const PADDED = new Uint32Array(10000);
for (let v = 0; v < 10000; v++) {
  const text = String(v);
  SMALL[v] = words(text).words[0];
  SMALL_LENGTH[v] = text.length;
  PADDED[v] = words(text.padStart(4, '0')).words[0];
}

function put(dv: DataView, pos: number, piece: { words: Uint32Array; length: number }): number {
  const w = piece.words;
  for (let i = 0; i < w.length; i++) dv.setUint32(pos + 4 * i, w[i], true);
  return pos + piece.length;
}

/** Writes 0 ≤ v < 10^8 in decimal. */
function putBelow1e8(dv: DataView, pos: number, v: number): number {
  if (v < 10000) {
    dv.setUint32(pos, SMALL[v], true);
    return pos + SMALL_LENGTH[v];
  }
  const hi = Math.floor(v / 10000);
  dv.setUint32(pos, SMALL[hi], true);
  pos += SMALL_LENGTH[hi];
  dv.setUint32(pos, PADDED[v - hi * 10000], true);
  return pos + 4;
}

/** Writes a safe integer in decimal at `pos` (and up to 3 zeros after it); returns the position after it. */
export function putSafeInt(dv: DataView, pos: number, x: number): number {
  if (x < 0) {
    dv.setUint8(pos++, 45); // '-'
    x = -x;
  }
  if (x < 1e8) return putBelow1e8(dv, pos, x);
  // below 2^53 < 10^16: the high half has at most 8 digits, the low half exactly 8 (floors of quotients of
  // safe integers by these powers of ten are exact)
  const hi = Math.floor(x / 1e8);
  const lo = x - hi * 1e8;
  pos = putBelow1e8(dv, pos, hi);
  const mid = Math.floor(lo / 10000);
  dv.setUint32(pos, PADDED[mid], true);
  dv.setUint32(pos + 4, PADDED[lo - mid * 10000], true);
  return pos + 8;
}

/** The most bytes one plain line with `n` candidates takes: every integer at most 17 characters. */
function lineBound(n: number): number {
  return 64 + 17 * (2 * n + 2) + 4 * n + (3 * 17 + 5) * (n - 1);
}

/** Writes the puzzle in `s` (all safe integers) as one JSONL line with its newline; returns the end. */
function putScratchLine(dv: DataView, pos: number, s: SynthScratch, n: number): number {
  const numbers = s.numbers;
  const target = s.pool[0];
  pos = put(dv, pos, OPEN);
  for (let k = 0; k < n; k++) {
    if (k) dv.setUint8(pos++, 44); // ','
    pos = putSafeInt(dv, pos, numbers[k]);
  }
  pos = put(dv, pos, TARGET);
  pos = putSafeInt(dv, pos, target);
  pos = put(dv, pos, PROMPT);
  for (let k = 0; k < n; k++) {
    if (k) {
      dv.setUint16(pos, 0x202c, true); // ', '
      pos += 2;
    }
    pos = putSafeInt(dv, pos, numbers[k]);
  }
  dv.setUint16(pos, 0x203a, true); // ': '
  pos = putSafeInt(dv, pos + 2, target);
  pos = put(dv, pos, RESPONSE);
  const a = s.a;
  const op = s.op;
  const b = s.b;
  const result = s.result;
  for (let t = 0; t < s.steps; t++) {
    if (t) {
      dv.setUint16(pos, 0x202c, true);
      pos += 2;
    }
    pos = putSafeInt(dv, pos, a[t]);
    dv.setUint8(pos++, (OP_CHARS >>> (8 * op[t])) & 0xff);
    pos = putSafeInt(dv, pos, b[t]);
    dv.setUint8(pos++, 61); // '='
    pos = putSafeInt(dv, pos, result[t]);
  }
  return put(dv, pos, CLOSE);
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
  let buf = new Uint8Array(Math.max(chunkBytes, lineBound(Math.max(...ns))) + SLACK);
  let dv = new DataView(buf.buffer);
  let end = buf.length - SLACK;
  let pos = 0;
  let lines = 0;
  for (let k = 0; k < options.count; k++) {
    const n = ns[k % ns.length];
    const puzzle = drawer.next(k);
    if (puzzle === null) {
      if (pos + lineBound(n) > end) {
        yield { bytes: buf.subarray(0, pos), puzzles: lines };
        pos = 0;
        lines = 0;
      }
      pos = putScratchLine(dv, pos, scratch, n);
    } else {
      const line = puzzleToJsonLine(puzzle) + '\n'; // ASCII only: one byte per character
      if (pos + line.length > end) {
        if (pos > 0) yield { bytes: buf.subarray(0, pos), puzzles: lines };
        pos = 0;
        lines = 0;
        if (line.length > end) {
          buf = new Uint8Array(2 * line.length + SLACK);
          dv = new DataView(buf.buffer);
          end = buf.length - SLACK;
        }
      }
      pos += Buffer.from(buf.buffer, buf.byteOffset, buf.length).write(line, pos, 'latin1');
    }
    lines++;
  }
  if (pos > 0) yield { bytes: buf.subarray(0, pos), puzzles: lines };
}
