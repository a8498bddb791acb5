// How an error message shows a value the user gave: JSON where JSON can say it, and the truth where it
// cannot (Infinity, NaN, -0, bigint, undefined, functions), so that 1e400 is not reported as "null".

export function show(value: unknown): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === undefined) return 'undefined';
  if (typeof value === 'function' || typeof value === 'symbol') return typeof value;
  let text: string | undefined;
  try {
    text = JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : typeof v === 'bigint' ? `${v}n` : v));
  } catch {
    text = String(value);
  }
  text ??= String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
