// Our own safetensors reader and writer (the Hugging Face tensor file format), with bf16/f16 conversions.
// Reading parses and validates only the header; each tensor's bytes are read when asked for, by position.
import { kindOf } from '../io/regular-file.js';
import {
  closeSync,
  statSync,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

// File layout: u64 little-endian N | N bytes of UTF-8 JSON header | data buffer.
// Header: {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, "__metadata__": {...}}
// with offsets relative to the start of the data buffer.
//
// Holes: the format's specification says the buffer must be entirely indexed (no gaps between tensors,
// nothing after the last one), which keeps a file from smuggling other content (polyglot files). We follow
// the reference implementation and refuse gaps and trailing bytes by default; `allowHoles: true` accepts
// them (overlaps are refused either way, since two tensors sharing bytes is never meaningful).

if (endianness() !== 'LE') {
  // Typed arrays use the host's byte order and safetensors is little-endian; every supported Node platform is.
  throw new Error('safetensors: this reader assumes a little-endian host');
}

/** Every dtype the safetensors format names. */
export type Dtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2';

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<Dtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The typed array a tensor's data comes back as. F16 and BF16 are raw bits; F8 and BOOL are raw bytes. */
export interface DtypeArray {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U64: BigUint64Array;
  U32: Uint32Array;
  U16: Uint16Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
  F8_E4M3: Uint8Array;
  F8_E5M2: Uint8Array;
}

export type TensorData = DtypeArray[Dtype];

type ArrayCtor = { new (buffer: ArrayBuffer, byteOffset: number, length: number): TensorData };

const ARRAY_OF: Readonly<Record<Dtype, ArrayCtor>> = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U64: BigUint64Array,
  U32: Uint32Array,
  U16: Uint16Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
  F8_E4M3: Uint8Array,
  F8_E5M2: Uint8Array,
};

/** The reference implementation's limit on the header; also ours unless the caller sets another. */
export const DEFAULT_MAX_HEADER_BYTES = 100_000_000;

export function isDtype(value: unknown): value is Dtype {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, value);
}

/** One tensor of a file that was read: its header entry, and its bytes read on demand. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  /** Elements: the product of the shape (1 for a scalar of shape []). */
  readonly size: number;
  /** Where the bytes lie in the file (absolute, not relative to the data buffer). */
  readonly fileOffset: number;
  readonly byteLength: number;
  /** The data, read from the file on first access and kept; see `read()` for a copy that is not kept. */
  readonly data: TensorData;
  /** Reads the data again without keeping it (for large files, one tensor at a time). */
  read(): Promise<TensorData>;
  /** The data as float32: exact for F32, F16 and BF16; rounded for F64 and the integer dtypes. */
  toFloat32(): Float32Array;
  /** Drops the kept copy of `data`, if any. */
  release(): void;
}

export interface SafetensorsHeader {
  path: string;
  metadata: Record<string, string>;
  /** Header entries in file order (sorted by offset). */
  entries: HeaderEntry[];
  /** Byte length of the JSON header (N). */
  headerLength: number;
  /** Absolute file offset of the data buffer: 8 + N. */
  dataStart: number;
  /** Bytes in the whole file. */
  fileSize: number;
}

export interface HeaderEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Relative to the data buffer, as in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  tensors: Map<string, TensorEntry>;
}

export interface ReadOptions {
  /** Refuse headers longer than this many bytes (default 100 MB). */
  maxHeaderBytes?: number;
  /** Accept gaps between tensors and bytes after the last one (default false: the spec forbids them). */
  allowHoles?: boolean;
}

/** The error every validation failure throws; `path` is the file at fault. */
export class SafetensorsError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`safetensors ${path}: ${message}`);
    this.name = 'SafetensorsError';
    this.path = path;
  }
}

function show(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function readExactly(fd: number, path: string, into: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < into.byteLength) {
    const n = readSync(fd, into, done, into.byteLength - done, position + done);
    if (n === 0) {
      throw new SafetensorsError(
        path,
        `file is truncated: ${what} needs bytes ${position}..${position + into.byteLength} but the file ends at ${position + done}`,
      );
    }
    done += n;
  }
}

/** Parses and validates the header; reads nothing of the data buffer. */
export function readSafetensorsHeader(path: string, options: ReadOptions = {}): SafetensorsHeader {
  const maxHeader = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  // (A FIFO would block open() itself: refuse it before opening.)
  const st = statSync(path, { throwIfNoEntry: false });
  if (st && !st.isFile()) throw new SafetensorsError(path, `not a regular file (${kindOf(st)})`);
  const fd = openSync(path, 'r');
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new SafetensorsError(path, 'not a regular file');
    const fileSize = stat.size;
    if (fileSize < 8) {
      throw new SafetensorsError(path, `file is truncated: ${fileSize} bytes, fewer than the 8-byte header length`);
    }
    const lenBytes = new Uint8Array(8);
    readExactly(fd, path, lenBytes, 0, 'the header length');
    const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (n > BigInt(maxHeader)) {
      throw new SafetensorsError(path, `header length ${n} exceeds the limit of ${maxHeader} bytes`);
    }
    const headerLength = Number(n);
    if (8 + headerLength > fileSize) {
      throw new SafetensorsError(
        path,
        `header length ${headerLength} runs past the end of the file (${fileSize} bytes): file truncated or not safetensors`,
      );
    }
    const headerBytes = new Uint8Array(headerLength);
    readExactly(fd, path, headerBytes, 8, 'the header');
    const dataStart = 8 + headerLength;
    const header = parseHeader(path, headerBytes, fileSize - dataStart, options.allowHoles ?? false);
    return { path, ...header, headerLength, dataStart, fileSize };
  } finally {
    closeSync(fd);
  }
}

function parseHeader(
  path: string,
  bytes: Uint8Array,
  bufferSize: number,
  allowHoles: boolean,
): { metadata: Record<string, string>; entries: HeaderEntry[] } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new SafetensorsError(path, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) {
    throw new SafetensorsError(path, `header is not a JSON object: it starts with ${show(text.slice(0, 16))}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(path, `header is not valid JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new SafetensorsError(path, `header is not a JSON object, got ${show(json)}`);
  }
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        throw new SafetensorsError(path, `__metadata__ must be an object of strings, got ${show(raw)}`);
      }
      for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof value !== 'string') {
          throw new SafetensorsError(path, `__metadata__.${key} must be a string, got ${show(value)}`);
        }
        metadata[key] = value;
      }
      continue;
    }
    entries.push(parseEntry(path, name, raw, bufferSize));
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0; // every byte before this one belongs to a tensor already seen
  let previous: HeaderEntry | null = null;
  for (const e of entries) {
    if (e.begin < covered && e.end > e.begin && previous) {
      throw new SafetensorsError(
        path,
        `tensors '${previous.name}' [${previous.begin}, ${previous.end}) and '${e.name}' [${e.begin}, ${e.end}) overlap`,
      );
    }
    if (e.begin > covered && !allowHoles) {
      throw new SafetensorsError(
        path,
        `bytes [${covered}, ${e.begin}) before tensor '${e.name}' belong to no tensor; the format requires a fully ` +
          'indexed buffer (pass allowHoles: true to accept gaps)',
      );
    }
    if (e.end > covered) {
      covered = e.end;
      previous = e;
    }
  }
  if (covered < bufferSize && !allowHoles) {
    throw new SafetensorsError(
      path,
      `${bufferSize - covered} bytes after the last tensor (buffer [${covered}, ${bufferSize})) belong to no tensor; ` +
        'the format requires a fully indexed buffer (pass allowHoles: true to accept them)',
    );
  }
  return { metadata, entries };
}

function parseEntry(path: string, name: string, raw: unknown, bufferSize: number): HeaderEntry {
  const where = `tensor '${name}'`;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SafetensorsError(path, `${where}: entry must be an object with dtype, shape, data_offsets, got ${show(raw)}`);
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDtype(dtype)) {
    throw new SafetensorsError(
      path,
      `${where}: unknown dtype ${show(dtype)} (known: ${Object.keys(DTYPE_SIZE).join(', ')})`,
    );
  }
  if (!Array.isArray(shape)) {
    throw new SafetensorsError(path, `${where}: shape must be an array of non-negative integers, got ${show(shape)}`);
  }
  let size = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(
        path,
        `${where}: shape must be an array of non-negative integers, got ${show(shape)} (bad dimension ${show(d)})`,
      );
    }
    size *= d;
    if (!Number.isSafeInteger(size)) {
      throw new SafetensorsError(path, `${where}: shape ${show(shape)} holds more elements than can be addressed`);
    }
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
  ) {
    throw new SafetensorsError(
      path,
      `${where}: data_offsets must be two non-negative integers [begin, end], got ${show(offsets)}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) {
    throw new SafetensorsError(path, `${where}: data_offsets end ${end} is before begin ${begin}`);
  }
  const expected = size * DTYPE_SIZE[dtype];
  if (end - begin !== expected) {
    throw new SafetensorsError(
      path,
      `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape ${show(shape)} of ${dtype} ` +
        `needs ${expected}`,
    );
  }
  if (end > bufferSize) {
    throw new SafetensorsError(
      path,
      `${where}: data_offsets [${begin}, ${end}] run past the end of the data buffer (${bufferSize} bytes): ` +
        'file truncated or offsets wrong',
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * Opens a safetensors file: validates the header now, reads each tensor's bytes (by position, never the
 * whole file) when its `data` or `read()` is first asked for.
 */
export function readSafetensors(path: string, options: ReadOptions = {}): SafetensorsFile {
  const header = readSafetensorsHeader(path, options);
  const tensors = new Map<string, TensorEntry>();
  for (const e of header.entries) tensors.set(e.name, makeEntry(header, e));
  return { path, metadata: header.metadata, tensors };
}

function makeEntry(header: SafetensorsHeader, e: HeaderEntry): TensorEntry {
  const { path, dataStart, fileSize } = header;
  const fileOffset = dataStart + e.begin;
  const byteLength = e.end - e.begin;
  const size = byteLength / DTYPE_SIZE[e.dtype];
  const what = `tensor '${e.name}'`;
  const wrap = (buffer: ArrayBuffer): TensorData => new ARRAY_OF[e.dtype](buffer, 0, size);
  let kept: TensorData | null = null;

  const readSyncNow = (): TensorData => {
    const buffer = new ArrayBuffer(byteLength);
    if (byteLength > 0) {
      const fd = openSync(path, 'r');
      try {
        const now = fstatSync(fd).size;
        if (now !== fileSize) {
          throw new SafetensorsError(path, `${what}: file changed size since its header was read (${fileSize} -> ${now})`);
        }
        readExactly(fd, path, new Uint8Array(buffer), fileOffset, what);
      } finally {
        closeSync(fd);
      }
    }
    return wrap(buffer);
  };

  const entry: TensorEntry = {
    name: e.name,
    dtype: e.dtype,
    shape: Object.freeze([...e.shape]),
    size,
    fileOffset,
    byteLength,
    get data(): TensorData {
      kept ??= readSyncNow();
      return kept;
    },
    async read(): Promise<TensorData> {
      if (kept) return kept.slice() as TensorData;
      const buffer = new ArrayBuffer(byteLength);
      if (byteLength === 0) return wrap(buffer);
      const handle = await open(path, 'r');
      try {
        const now = (await handle.stat()).size;
        if (now !== fileSize) {
          throw new SafetensorsError(path, `${what}: file changed size since its header was read (${fileSize} -> ${now})`);
        }
        const view = new Uint8Array(buffer);
        let done = 0;
        while (done < byteLength) {
          const { bytesRead } = await handle.read(view, done, byteLength - done, fileOffset + done);
          if (bytesRead === 0) {
            throw new SafetensorsError(path, `file is truncated: ${what} ends at ${fileOffset + done}`);
          }
          done += bytesRead;
        }
      } finally {
        await handle.close();
      }
      return wrap(buffer);
    },
    toFloat32(): Float32Array {
      return toFloat32(entry.data, e.dtype, `${path}: ${what}`);
    },
    release(): void {
      kept = null;
    },
  };
  return entry;
}

/** Converts any numeric tensor data to float32 (F8 dtypes are refused). */
export function toFloat32(data: TensorData, dtype: Dtype, where = 'toFloat32'): Float32Array {
  switch (dtype) {
    case 'F32':
      return (data as Float32Array).slice();
    case 'BF16':
      return bf16ToFloat32(data as Uint16Array);
    case 'F16':
      return f16ToFloat32(data as Uint16Array);
    case 'I64':
    case 'U64': {
      const src = data as BigInt64Array | BigUint64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
    case 'F8_E4M3':
    case 'F8_E5M2':
      throw new Error(`${where}: cannot convert dtype ${dtype} to float32`);
    default:
      return Float32Array.from(data as Exclude<TensorData, BigInt64Array | BigUint64Array>);
  }
}

// ---- bf16 / f16 <-> f32 ----------------------------------------------------------------------------

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The float32 value of a bf16 bit pattern (exact). */
export function bf16BitsToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

/** The bf16 bit pattern nearest to x (round to nearest, ties to even; NaN stays a quiet NaN of the same sign). */
export function f32ToBf16Bits(x: number): number {
  scratchF32[0] = x;
  return u32ToBf16(scratchU32[0]);
}

function u32ToBf16(u: number): number {
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 0x0040) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float32 value of an IEEE half bit pattern (exact, subnormals included). */
export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** The IEEE half bit pattern nearest to x (ties to even, subnormals, overflow to Inf, NaN stays NaN). */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  return u32ToF16(scratchU32[0]);
}

function u32ToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // A half subnormal (or zero): the value is m * 2^-24, and m is the 24-bit significand 1.mant shifted
    // right by 14 - e; below half the smallest subnormal (e < -10) only the sign survives.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** bf16 bits to float32, element by element. */
export function bf16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return out;
}

/** float32 to bf16 bits, round to nearest even. */
export function float32ToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = u32ToBf16(bits[i]);
  return out;
}

/** IEEE half bits to float32. */
export function f16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16BitsToF32(src[i]);
  return out;
}

/** float32 to IEEE half bits, round to nearest even. */
export function float32ToF16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = u32ToF16(bits[i]);
  return out;
}

// ---- writing ---------------------------------------------------------------------------------------

type Bytes = ArrayBufferView;

/** A tensor to write: its data now, or a function that produces it when its turn comes (streaming). */
export interface TensorSource {
  dtype: Dtype;
  shape: readonly number[];
  data: Bytes | (() => Bytes | Promise<Bytes>);
}

export type TensorSources = Map<string, TensorSource> | Record<string, TensorSource>;

interface Plan {
  header: Uint8Array;
  order: Array<{ name: string; source: TensorSource; byteLength: number }>;
  total: number;
}

function planWrite(path: string, tensors: TensorSources, metadata: Record<string, string> | undefined): Plan {
  const fail = (message: string): never => {
    throw new SafetensorsError(path, message);
  };
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const order: Plan['order'] = [];
  for (const [name, source] of list) {
    const where = `tensor '${name}'`;
    if (name === '' || name === '__metadata__') fail(`${where}: name is reserved or empty`);
    if (!source || typeof source !== 'object') fail(`${where}: expected {dtype, shape, data}, got ${show(source)}`);
    if (!isDtype(source.dtype)) fail(`${where}: unknown dtype ${show(source.dtype)}`);
    if (!Array.isArray(source.shape)) fail(`${where}: shape must be an array, got ${show(source.shape)}`);
    let size = 1;
    for (const d of source.shape) {
      if (!Number.isSafeInteger(d) || d < 0) fail(`${where}: shape must hold non-negative integers, got ${show(source.shape)}`);
      size *= d;
    }
    const byteLength = size * DTYPE_SIZE[source.dtype];
    if (typeof source.data !== 'function') checkBytes(path, name, source.data, byteLength);
    order.push({ name, source, byteLength });
  }
  // Largest elements first, then by name: with the header padded to 8 bytes, every tensor starts aligned
  // to its element size (the reference implementation does the same), and the file is deterministic.
  order.sort(
    (a, b) =>
      DTYPE_SIZE[b.source.dtype] - DTYPE_SIZE[a.source.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const json: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') fail(`metadata '${key}' must be a string, got ${show(value)}`);
    }
    json.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of order) {
    json[t.name] = { dtype: t.source.dtype, shape: [...t.source.shape], data_offsets: [offset, offset + t.byteLength] };
    offset += t.byteLength;
  }
  let text = JSON.stringify(json);
  const raw = new TextEncoder().encode(text);
  const padded = Math.ceil((8 + raw.byteLength) / 8) * 8 - 8;
  text += ' '.repeat(padded - raw.byteLength);
  const headerJson = new TextEncoder().encode(text);
  const header = new Uint8Array(8 + headerJson.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(headerJson.byteLength), true);
  header.set(headerJson, 8);
  return { header, order, total: header.byteLength + offset };
}

function checkBytes(path: string, name: string, data: unknown, byteLength: number): Uint8Array {
  if (!ArrayBuffer.isView(data)) {
    throw new SafetensorsError(path, `tensor '${name}': data must be a typed array or Buffer, got ${show(data)}`);
  }
  if (data.byteLength !== byteLength) {
    throw new SafetensorsError(
      path,
      `tensor '${name}': data holds ${data.byteLength} bytes but its shape and dtype need ${byteLength}`,
    );
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Writes a safetensors file atomically (a temporary file in the same folder, then a rename) and streams
 * the tensors one by one: a tensor whose `data` is a function is asked for its bytes only when written.
 * Returns the file's size in bytes.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorSources,
  metadata?: Record<string, string>,
): Promise<number> {
  const plan = planWrite(path, tensors, metadata);
  const temp = tempPathFor(path);
  const handle = await open(temp, 'wx');
  let closed = false;
  try {
    await writeAll(handle, plan.header);
    for (const t of plan.order) {
      const data = typeof t.source.data === 'function' ? await t.source.data() : t.source.data;
      await writeAll(handle, checkBytes(path, t.name, data, t.byteLength));
    }
    await handle.sync();
    await handle.close();
    closed = true;
    await rename(temp, path);
  } catch (err) {
    if (!closed) await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  return plan.total;
}

async function writeAll(handle: import('node:fs/promises').FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
    done += bytesWritten;
  }
}

/** The synchronous twin of `writeSafetensors`, for scripts and tests; `data` functions must not be async. */
export function writeSafetensorsSync(path: string, tensors: TensorSources, metadata?: Record<string, string>): number {
  const plan = planWrite(path, tensors, metadata);
  const temp = tempPathFor(path);
  const fd = openSync(temp, 'wx');
  let closed = false;
  try {
    const writeAllSync = (bytes: Uint8Array): void => {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    };
    writeAllSync(plan.header);
    for (const t of plan.order) {
      const data = typeof t.source.data === 'function' ? t.source.data() : t.source.data;
      if (data instanceof Promise) {
        throw new SafetensorsError(path, `tensor '${t.name}': data function returned a Promise; use writeSafetensors`);
      }
      writeAllSync(checkBytes(path, t.name, data, t.byteLength));
    }
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(temp, path);
  } catch (err) {
    if (!closed) closeSync(fd);
    try {
      unlinkSync(temp);
    } catch {
      // already gone
    }
    throw err;
  }
  return plan.total;
}
