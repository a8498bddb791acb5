// The safetensors reader and writer: round trips, bf16/f16 conversions against hand-computed bits and
// against torch's own conversions, lazy positioned reads, and refusal of hostile files.
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DTYPE_SIZE,
  bf16BitsToF32,
  bf16ToFloat32,
  f16BitsToF32,
  f16ToFloat32,
  f32ToBf16Bits,
  f32ToF16Bits,
  float32ToBf16,
  float32ToF16,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
  writeSafetensorsSync,
  type Dtype,
  type TensorSource,
} from '../../lib/model/safetensors.js';

const dir = mkdtempSync(join(tmpdir(), 'safetensors-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));

let fileCounter = 0;
function tmp(name = 'f'): string {
  return join(dir, `${name}-${fileCounter++}.safetensors`);
}

/** A file written by hand: u64 header length (or an override), header text, buffer. */
function rawFile(header: unknown, buffer: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): string {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const json = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const path = tmp('raw');
  writeFileSync(path, Buffer.concat([len, json, buffer]));
  return path;
}

function bits32(x: number): number {
  const f = new Float32Array([x]);
  return new Uint32Array(f.buffer)[0];
}

describe('round trip', () => {
  const samples: Record<Dtype, { shape: number[]; data: ArrayBufferView }> = {
    F64: { shape: [2, 2], data: new Float64Array([0.1, -1e300, Infinity, 5e-324]) },
    F32: { shape: [3], data: new Float32Array([1.5, -0, 3.4e38]) },
    F16: { shape: [2], data: new Uint16Array([0x3c00, 0xfc00]) },
    BF16: { shape: [2, 1], data: new Uint16Array([0x3f80, 0x7fc0]) },
    I64: { shape: [2], data: new BigInt64Array([-(2n ** 62n), 2n ** 63n - 1n]) },
    I32: { shape: [1, 2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) },
    I16: { shape: [2], data: new Int16Array([-32768, 32767]) },
    I8: { shape: [2], data: new Int8Array([-128, 127]) },
    U64: { shape: [1], data: new BigUint64Array([2n ** 64n - 1n]) },
    U32: { shape: [1], data: new Uint32Array([2 ** 32 - 1]) },
    U16: { shape: [1], data: new Uint16Array([65535]) },
    U8: { shape: [3], data: new Uint8Array([0, 128, 255]) },
    BOOL: { shape: [2], data: new Uint8Array([1, 0]) },
    F8_E4M3: { shape: [1], data: new Uint8Array([0x38]) },
    F8_E5M2: { shape: [1], data: new Uint8Array([0x3c]) },
  };

  function tensorsOf(): Map<string, TensorSource> {
    const m = new Map<string, TensorSource>();
    for (const [dtype, s] of Object.entries(samples)) m.set(`t.${dtype}`, { dtype: dtype as Dtype, ...s });
    m.set('empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) });
    m.set('scalar', { dtype: 'F32', shape: [], data: new Float32Array([7]) });
    return m;
  }

  function expectSame(path: string): void {
    const file = readSafetensors(path);
    expect(file.metadata).toEqual({ format: 'pt', note: 'ünïcode ✓' });
    expect(file.tensors.size).toBe(Object.keys(samples).length + 2);
    for (const [dtype, s] of Object.entries(samples)) {
      const t = file.tensors.get(`t.${dtype}`)!;
      expect(t.dtype).toBe(dtype);
      expect(t.shape).toEqual(s.shape);
      expect(t.data.constructor).toBe(s.data.constructor);
      expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)).toEqual(
        Buffer.from(s.data.buffer, s.data.byteOffset, s.data.byteLength),
      );
    }
    expect(file.tensors.get('empty')!.data.length).toBe(0);
    expect(file.tensors.get('empty')!.shape).toEqual([0, 4]);
    expect(file.tensors.get('scalar')!.shape).toEqual([]);
    expect(Array.from(file.tensors.get('scalar')!.data as Float32Array)).toEqual([7]);
  }

  it('keeps every dtype bit for bit (async writer)', async () => {
    const path = tmp();
    const bytes = await writeSafetensors(path, tensorsOf(), { format: 'pt', note: 'ünïcode ✓' });
    expect(readFileSync(path).length).toBe(bytes);
    expectSame(path);
  });

  it('keeps every dtype bit for bit (sync writer, record input)', () => {
    const path = tmp();
    writeSafetensorsSync(path, Object.fromEntries(tensorsOf()), { format: 'pt', note: 'ünïcode ✓' });
    expectSame(path);
  });

  it('aligns the data buffer and each tensor to its element size', () => {
    const path = tmp();
    writeSafetensorsSync(path, tensorsOf());
    const header = readSafetensorsHeader(path);
    expect(header.dataStart % 8).toBe(0);
    for (const e of header.entries) expect(e.begin % DTYPE_SIZE[e.dtype]).toBe(0);
  });

  it('asks data functions for their bytes one tensor at a time, and read() matches data', async () => {
    const path = tmp();
    const asked: string[] = [];
    const big = new Float32Array(20_000).map((_, i) => i * 0.5);
    await writeSafetensors(path, {
      a: { dtype: 'F32', shape: [20_000], data: () => (asked.push('a'), big) },
      b: { dtype: 'I32', shape: [2], data: async () => (asked.push('b'), new Int32Array([1, 2])) },
    });
    expect(asked.sort()).toEqual(['a', 'b']);
    const t = readSafetensors(path).tensors.get('a')!;
    const viaRead = (await t.read()) as Float32Array;
    expect(viaRead).toEqual(big);
    expect(t.data).toEqual(big);
    expect(t.toFloat32()).toEqual(big);
  });

  it('reads tensor bytes when asked, not when the header is read', () => {
    const path = tmp();
    writeSafetensorsSync(path, { x: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
    const file = readSafetensors(path);
    const t = file.tensors.get('x')!;
    // Overwrite the tensor's bytes in place after the header was parsed: a lazy reader sees the new values.
    const fd = openSync(path, 'r+');
    writeSync(fd, new Float32Array([5, 6]), 0, 8, t.fileOffset);
    closeSync(fd);
    expect(Array.from(t.data as Float32Array)).toEqual([5, 6]);
    t.release();
    truncateSync(path, t.fileOffset + 4);
    expect(() => t.data).toThrow(/tensor 'x'.*changed size/);
  });

  it('replaces a file atomically and leaves nothing behind when a write fails', async () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const path = join(sub, 'model.safetensors');
    writeSafetensorsSync(path, { x: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    const before = readFileSync(path);
    await expect(
      writeSafetensors(path, {
        a: { dtype: 'F32', shape: [1], data: new Float32Array([2]) },
        b: {
          dtype: 'F32',
          shape: [1],
          data: () => {
            throw new Error('source failed');
          },
        },
      }),
    ).rejects.toThrow('source failed');
    expect(readFileSync(path)).toEqual(before);
    expect(readdirSync(sub)).toEqual(['model.safetensors']);
    await writeSafetensors(path, { y: { dtype: 'I8', shape: [1], data: new Int8Array([3]) } });
    expect([...readSafetensors(path).tensors.keys()]).toEqual(['y']);
    expect(readdirSync(sub)).toEqual(['model.safetensors']);
  });

  it('refuses to write inconsistent tensors, naming them', () => {
    const path = tmp();
    expect(() => writeSafetensorsSync(path, { w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(
      /tensor 'w': data holds 8 bytes but its shape and dtype need 12/,
    );
    expect(() =>
      writeSafetensorsSync(path, { w: { dtype: 'F31' as Dtype, shape: [1], data: new Float32Array(1) } }),
    ).toThrow(/tensor 'w': unknown dtype "F31"/);
    expect(() =>
      writeSafetensorsSync(path, { __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }),
    ).toThrow(/reserved/);
    expect(() => writeSafetensorsSync(path, { w: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } })).toThrow(
      /tensor 'w': shape must hold non-negative integers, got \[-1\]/,
    );
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('bf16 and f16 conversions (hand-computed bits)', () => {
  it('rounds float32 to bf16 to nearest, ties to even', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(-2.5)).toBe(0xc020);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie: 0x3f80 is even
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie: 0x3f81 is odd, go up
    expect(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above the tie
    expect(f32ToBf16Bits(1 + 2 ** -9)).toBe(0x3f80); // below the tie
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(3.4028234663852886e38)).toBe(0x7f80); // largest float32 rounds up to Inf
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(f32ToBf16Bits(NaN)).toBe(0x7fc0);
    expect(f32ToBf16Bits(2 ** -133)).toBe(0x0001); // float32 subnormal, kept by bf16
    expect(f32ToBf16Bits(2 ** -134)).toBe(0x0000); // half of the smallest: tie to even zero
  });

  it('widens bf16 exactly', () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0xc020)).toBe(-2.5);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133);
    expect(bf16BitsToF32(0x7f7f)).toBe(255 * 2 ** 120);
    expect(bf16BitsToF32(0xff80)).toBe(-Infinity);
    expect(bf16BitsToF32(0x7fc1)).toBeNaN();
    expect(Object.is(bf16BitsToF32(0x8000), -0)).toBe(true);
  });

  it('rounds float32 to f16 to nearest even, with subnormals, overflow and NaN', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff); // largest half
    expect(f32ToF16Bits(65519)).toBe(0x7bff); // below the tie with 65536
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // tie: rounds to even, which is Inf
    expect(f32ToF16Bits(1e6)).toBe(0x7c00);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie to even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f32ToF16Bits(2 ** -14 - 2 ** -24)).toBe(0x03ff); // largest subnormal
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and 1: even is 0
    expect(f32ToF16Bits(3 * 2 ** -26)).toBe(0x0001); // 0.75 ulp: up
    expect(f32ToF16Bits(1.5 * 2 ** -24)).toBe(0x0002); // tie between 1 and 2: even is 2
    expect(f32ToF16Bits(2.5 * 2 ** -24)).toBe(0x0002); // tie between 2 and 3: even is 2
    expect(f32ToF16Bits(2 ** -26)).toBe(0x0000);
    expect(f32ToF16Bits(-(2 ** -24))).toBe(0x8001);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(f32ToF16Bits(NaN)).toBe(0x7e00);
    expect(f32ToF16Bits(0.1)).toBe(0x2e66);
  });

  it('widens f16 exactly', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16BitsToF32(0x0400)).toBe(2 ** -14);
    expect(f16BitsToF32(0x2e66)).toBe(0.0999755859375);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(f16BitsToF32(0x7c01)).toBeNaN();
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
  });

  it('array forms agree with the scalar forms and survive a round trip', () => {
    const xs = new Float32Array([0, 1, -2.5, 1 + 3 * 2 ** -8, 2 ** -24, 65520, NaN, -Infinity]);
    expect(Array.from(float32ToBf16(xs))).toEqual(Array.from(xs, f32ToBf16Bits));
    expect(Array.from(float32ToF16(xs))).toEqual(Array.from(xs, f32ToF16Bits));
    const allHalf = new Uint16Array(65536).map((_, i) => i);
    // Every finite half and bf16 value survives widening and narrowing unchanged.
    const backF16 = float32ToF16(f16ToFloat32(allHalf));
    const backBf16 = float32ToBf16(bf16ToFloat32(allHalf));
    for (let i = 0; i < 65536; i++) {
      const f16IsNaN = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      const bfIsNaN = (i & 0x7f80) === 0x7f80 && (i & 0x7f) !== 0;
      if (!f16IsNaN && backF16[i] !== i) throw new Error(`f16 0x${i.toString(16)} came back as 0x${backF16[i].toString(16)}`);
      if (!bfIsNaN && backBf16[i] !== i) throw new Error(`bf16 0x${i.toString(16)} came back as 0x${backBf16[i].toString(16)}`);
      if (f16IsNaN) expect(Number.isNaN(f16BitsToF32(backF16[i]))).toBe(true);
    }
  });
});

describe('a file torch wrote (test/fixtures/dtypes.safetensors, scripts/make-fixtures.py)', () => {
  const file = readSafetensors(join(fixtures, 'dtypes.safetensors'));
  const get = (name: string) => {
    const t = file.tensors.get(name);
    if (!t) throw new Error(`dtypes.safetensors has no tensor '${name}'`);
    return t;
  };

  it('holds the values the script wrote, in every dtype', () => {
    expect(JSON.parse(file.metadata.generator).script).toBe('scripts/make-fixtures.py');
    const f32 = get('f32').data as Float32Array;
    expect(Array.from(f32.slice(0, 6))).toEqual([0, -0, 1, -1, Math.fround(1 / 3), -2.5]);
    expect(get('f64').shape).toEqual([2, 3]);
    expect(Array.from(get('f64').data as Float64Array)).toEqual([0.1, -2, 1e300, 5e-324, Infinity, -0]);
    expect(Array.from(get('i64').data as BigInt64Array)).toEqual([0n, -1n, 2n ** 40n + 3n, -(2n ** 62n), 2n ** 63n - 1n]);
    expect(get('i32').shape).toEqual([3, 2]);
    expect(Array.from(get('i32').data as Int32Array)).toEqual([0, -1, 2 ** 31 - 1, -(2 ** 31), 7, 8]);
    expect(Array.from(get('i16').data as Int16Array)).toEqual([0, -1, 32767, -32768]);
    expect(Array.from(get('i8').data as Int8Array)).toEqual([0, -1, 127, -128]);
    expect(Array.from(get('u8').data as Uint8Array)).toEqual([0, 1, 128, 255]);
    expect(get('bool').dtype).toBe('BOOL');
    expect(Array.from(get('bool').data as Uint8Array)).toEqual([1, 0, 0, 1, 1]);
    expect(get('empty').shape).toEqual([0, 3]);
    expect(get('scalar').shape).toEqual([]);
    expect(Array.from(get('scalar').toFloat32())).toEqual([2.5]);
  });

  it('our float32 -> bf16 / f16 roundings match torch bit for bit', () => {
    const f32 = get('f32').data as Float32Array;
    const ours16 = float32ToF16(f32);
    const oursBf = float32ToBf16(f32);
    const torch16 = get('f32.f16').data as Uint16Array;
    const torchBf = get('f32.bf16').data as Uint16Array;
    const isNaN16 = (b: number) => (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0;
    const isNaNBf = (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;
    for (let i = 0; i < f32.length; i++) {
      if (Number.isNaN(f32[i])) {
        // Any NaN pattern will do: torch's vectorized path writes 0xffff for bf16, its scalar path 0x7fc0.
        expect([isNaN16(ours16[i]), isNaN16(torch16[i]), isNaNBf(oursBf[i]), isNaNBf(torchBf[i])]).toEqual([true, true, true, true]);
        continue;
      }
      const x = `${f32[i]} (0x${bits32(f32[i]).toString(16)})`;
      expect(`f16 of ${x}: 0x${ours16[i].toString(16)}`).toBe(`f16 of ${x}: 0x${torch16[i].toString(16)}`);
      expect(`bf16 of ${x}: 0x${oursBf[i].toString(16)}`).toBe(`bf16 of ${x}: 0x${torchBf[i].toString(16)}`);
    }
  });

  it('our widening of torch bf16 / f16 matches torch bit for bit', () => {
    const asBits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
    expect(asBits(get('f32.bf16').toFloat32())).toEqual(asBits(get('f32.bf16.f32').data as Float32Array));
    expect(asBits(get('f32.f16').toFloat32())).toEqual(asBits(get('f32.f16.f32').data as Float32Array));
  });
});

describe('hostile files are refused with a message naming the problem', () => {
  const f32 = (n: number) => new Uint8Array(new Float32Array(n).buffer);
  const one = (entry: unknown, buffer = f32(2)) => rawFile({ w: entry }, buffer);
  const refuse = (path: string, pattern: RegExp, options = {}) => {
    let message = '';
    try {
      readSafetensors(path, options);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(pattern);
    expect(message).toContain(path);
  };

  it('a folder, or a missing file', () => {
    refuse(dir, /not a regular file/);
    refuse(join(dir, 'missing.safetensors'), /ENOENT/);
  });

  it('a file shorter than the header length field', () => {
    const path = tmp();
    writeFileSync(path, Buffer.from([1, 2, 3]));
    refuse(path, /truncated: 3 bytes/);
  });

  it('a header length beyond the file', () => {
    refuse(rawFile('{}', new Uint8Array(0), 1000n), /header length 1000 runs past the end of the file \(10 bytes\)/);
  });

  it('a header length beyond the limit (100 MB by default, or the one given)', () => {
    refuse(rawFile('{}', new Uint8Array(0), 2n ** 40n), /header length 1099511627776 exceeds the limit of 100000000/);
    refuse(rawFile('{}', new Uint8Array(0), 2n ** 64n - 1n), /header length 18446744073709551615 exceeds the limit/);
    const ok = rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32(2));
    refuse(ok, /exceeds the limit of 16 bytes/, { maxHeaderBytes: 16 });
  });

  it('a header that is not JSON, not an object, or not UTF-8', () => {
    refuse(rawFile('{"w": [1, 2'), /header is not valid JSON/);
    refuse(rawFile('[1, 2]'), /header is not a JSON object: it starts with "\[1, 2\]"/);
    refuse(rawFile(''), /header is not a JSON object/);
    const path = tmp();
    const bad = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(4n);
    writeFileSync(path, Buffer.concat([len, bad]));
    refuse(path, /not valid UTF-8/);
  });

  it('metadata that is not an object of strings', () => {
    refuse(rawFile({ __metadata__: { steps: 10 } }), /__metadata__\.steps must be a string, got 10/);
    refuse(rawFile({ __metadata__: [] }), /__metadata__ must be an object of strings/);
  });

  it('an entry that is not an object', () => {
    refuse(rawFile({ w: 5 }), /tensor 'w': entry must be an object/);
  });

  it('an unknown dtype', () => {
    refuse(one({ dtype: 'F33', shape: [2], data_offsets: [0, 8] }), /tensor 'w': unknown dtype "F33"/);
    refuse(one({ shape: [2], data_offsets: [0, 8] }), /tensor 'w': unknown dtype undefined/);
  });

  it('a shape that is not non-negative integers', () => {
    refuse(one({ dtype: 'F32', shape: [-2], data_offsets: [0, 8] }), /tensor 'w': shape .*bad dimension -2/);
    refuse(one({ dtype: 'F32', shape: [1.5], data_offsets: [0, 8] }), /tensor 'w': shape .*bad dimension 1\.5/);
    refuse(one({ dtype: 'F32', shape: ['2'], data_offsets: [0, 8] }), /tensor 'w': shape .*bad dimension "2"/);
    refuse(one({ dtype: 'F32', shape: 2, data_offsets: [0, 8] }), /tensor 'w': shape must be an array .* got 2/);
    refuse(
      one({ dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] }),
      /tensor 'w': shape \[1073741824,1073741824,1073741824\] holds more elements than can be addressed/,
    );
  });

  it('data_offsets that are not two non-negative integers', () => {
    refuse(one({ dtype: 'F32', shape: [2], data_offsets: [0] }), /tensor 'w': data_offsets must be two .* got \[0\]/);
    refuse(one({ dtype: 'F32', shape: [2], data_offsets: [0, '8'] }), /tensor 'w': data_offsets .* got \[0,"8"\]/);
    refuse(one({ dtype: 'F32', shape: [2], data_offsets: [-8, 0] }), /tensor 'w': data_offsets .* got \[-8,0\]/);
    refuse(one({ dtype: 'F32', shape: [2], data_offsets: [0, 8.5] }), /tensor 'w': data_offsets .* got \[0,8\.5\]/);
    refuse(one({ dtype: 'F32', shape: [2] }), /tensor 'w': data_offsets .* got undefined/);
  });

  it('end before begin', () => {
    refuse(one({ dtype: 'F32', shape: [0], data_offsets: [8, 0] }), /tensor 'w': data_offsets end 0 is before begin 8/);
  });

  it('a byte size that does not match the shape and dtype', () => {
    refuse(
      one({ dtype: 'F32', shape: [3], data_offsets: [0, 8] }),
      /tensor 'w': data_offsets \[0, 8\] hold 8 bytes but shape \[3\] of F32 needs 12/,
    );
    refuse(one({ dtype: 'BF16', shape: [2, 2], data_offsets: [0, 4] }), /hold 4 bytes but shape \[2,2\] of BF16 needs 8/);
  });

  it('offsets past the end of the file (a truncated file)', () => {
    refuse(one({ dtype: 'F32', shape: [4], data_offsets: [0, 16] }), /tensor 'w': data_offsets \[0, 16\] run past the end of the data buffer \(8 bytes\)/);
    const path = tmp();
    writeSafetensorsSync(path, {
      a: { dtype: 'F32', shape: [4], data: new Float32Array(4) },
      b: { dtype: 'F32', shape: [4], data: new Float32Array(4) },
    });
    truncateSync(path, readFileSync(path).length - 3);
    refuse(path, /tensor 'b': .* run past the end of the data buffer .*truncated/);
  });

  it('overlapping tensors', () => {
    refuse(
      rawFile(
        {
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        },
        f32(3),
      ),
      /tensors 'a' \[0, 8\) and 'b' \[4, 12\) overlap/,
    );
    refuse(
      rawFile(
        {
          a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
          b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
        },
        f32(4),
      ),
      /overlap/,
      { allowHoles: true },
    );
  });

  it('gaps and trailing bytes: refused by default (the spec wants a fully indexed buffer), accepted on request', () => {
    const gap = rawFile(
      {
        a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
      },
      new Uint8Array(new Float32Array([1, 99, 2]).buffer),
    );
    refuse(gap, /bytes \[4, 8\) before tensor 'b' belong to no tensor/);
    const lenient = readSafetensors(gap, { allowHoles: true });
    expect(Array.from(lenient.tensors.get('b')!.data as Float32Array)).toEqual([2]);
    const trailing = rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32(2));
    refuse(trailing, /4 bytes after the last tensor \(buffer \[4, 8\)\) belong to no tensor/);
    expect(readSafetensors(trailing, { allowHoles: true }).tensors.get('a')!.shape).toEqual([1]);
  });

  it('zero-size tensors anywhere are fine', () => {
    const path = rawFile(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        e: { dtype: 'F32', shape: [0, 5], data_offsets: [4, 4] },
        z: { dtype: 'I64', shape: [0], data_offsets: [8, 8] },
      },
      f32(2),
    );
    const file = readSafetensors(path);
    expect(file.tensors.get('e')!.data.length).toBe(0);
    expect(file.tensors.get('z')!.data).toBeInstanceOf(BigInt64Array);
  });
});
