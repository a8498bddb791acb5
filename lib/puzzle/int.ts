// Exact integers of any size: a plain number while it is a safe integer, a bigint beyond ±(2^53−1).
// Every value is kept in that canonical form, so `===` and Map keys compare values exactly.
import { show } from '../io/show.js';

export type Int = number | bigint;

const MAX = BigInt(Number.MAX_SAFE_INTEGER);
const MIN = -MAX;

/** The canonical form of an integer: a number when it is safe, else a bigint. */
export function norm(x: Int): Int {
  if (typeof x === 'number') {
    if (!Number.isSafeInteger(x)) throw new RangeError(`${x} is not a safe integer; pass integers beyond ±(2^53−1) as bigint`);
    return x === 0 ? 0 : x; // folds -0 into 0
  }
  return x >= MIN && x <= MAX ? Number(x) : x;
}

export function isInt(x: unknown): x is Int {
  return (typeof x === 'number' && Number.isSafeInteger(x)) || typeof x === 'bigint';
}

export function add(a: Int, b: Int): Int {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a + b;
    if (Number.isSafeInteger(r)) return r;
  }
  return norm(BigInt(a) + BigInt(b));
}

export function sub(a: Int, b: Int): Int {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a - b;
    if (Number.isSafeInteger(r)) return r === 0 ? 0 : r;
  }
  return norm(BigInt(a) - BigInt(b));
}

export function mul(a: Int, b: Int): Int {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a * b;
    if (Number.isSafeInteger(r)) return r === 0 ? 0 : r;
  }
  return norm(BigInt(a) * BigInt(b));
}

export function neg(a: Int): Int {
  return typeof a === 'number' ? (a === 0 ? 0 : -a) : norm(-a);
}

/** Floor division, as Python's `//`: rounds toward −∞. The divisor must not be zero. */
export function floorDiv(a: Int, b: Int): Int {
  if (typeof a === 'number' && typeof b === 'number') {
    if (b === 0) throw new RangeError('floorDiv: division by zero');
    const r = a % b; // exact for doubles, and carries the sign of a
    let q = (a - r) / b; // exact: a − r is a multiple of b
    if (r !== 0 && r < 0 !== b < 0) q -= 1;
    return q === 0 ? 0 : q;
  }
  const x = BigInt(a);
  const y = BigInt(b);
  if (y === 0n) throw new RangeError('floorDiv: division by zero');
  let q = x / y;
  if (x % y !== 0n && x < 0n !== y < 0n) q -= 1n;
  return norm(q);
}

/** Ceiling division: rounds toward +∞. */
export function ceilDiv(a: Int, b: Int): Int {
  return neg(floorDiv(neg(a), b));
}

/** −1, 0 or 1 as a < b, a = b, a > b. */
export function cmp(a: Int, b: Int): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function abs(a: Int): Int {
  return a < 0 ? neg(a) : a;
}

export function min(a: Int, b: Int): Int {
  return a <= b ? a : b;
}

export function max(a: Int, b: Int): Int {
  return a >= b ? a : b;
}

const INTEGER_TEXT = /^-?\d+$/;

/** Reads a decimal integer ("-20", "123456789012345678901"); null when the text is not one. */
export function parseInt10(text: string): Int | null {
  if (!INTEGER_TEXT.test(text)) return null;
  if (text.length <= 15) return norm(Number(text)); // at most 15 digits: always a safe integer
  return norm(BigInt(text));
}

/** The decimal text of an integer. */
export function intToString(x: Int): string {
  return typeof x === 'number' ? String(x) : x.toString();
}

/** How an integer is written in JSON: a number when safe, else its decimal string. */
export function intToJson(x: Int): number | string {
  return typeof x === 'number' ? x : x.toString();
}

/**
 * Reads an integer from a JSON value: a safe-integer number or a decimal string of any size.
 * Returns an error message (naming `field`) instead of a value when it is neither.
 */
export function intFromJson(value: unknown, field: string): Int | string {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) return value === 0 ? 0 : value;
    if (Number.isInteger(value)) {
      return `${field} = ${value} is beyond ±(2^53−1) and lost precision as a JSON number; write it as a decimal string`;
    }
    return `${field} must be an integer, got ${show(value)}`;
  }
  if (typeof value === 'string') {
    const parsed = value.length <= 10_000 ? parseInt10(value.trim()) : null;
    if (parsed !== null) return parsed;
    return `${field} must be an integer (a number or a decimal string), got ${JSON.stringify(value.slice(0, 40))}`;
  }
  return `${field} must be an integer, got ${value === null ? 'null' : typeof value}`;
}
