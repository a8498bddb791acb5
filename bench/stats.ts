// Sample statistics for benchmark timings, one definition for ours and the peer's: mean, p50, p99
// (linear interpolation between order statistics) and the margin of error of the mean (Student's t, 95%,
// two-sided), the same quantities tinybench reports for its own samples.

export interface SampleStats {
  /** How many samples. */
  count: number;
  mean: number;
  min: number;
  max: number;
  p50: number;
  p99: number;
  /** Sample standard deviation (n - 1). */
  sd: number;
  /** Standard error of the mean: sd / sqrt(n). */
  sem: number;
  /** Two-sided 95% critical value of Student's t for n - 1 degrees of freedom (1 when n = 1). */
  critical: number;
  /** Margin of error: sem * critical, half the width of the 95% confidence interval of the mean. */
  moe: number;
  /** Relative margin of error in percent: 100 * moe / |mean| (Infinity when the mean is 0). */
  rme: number;
}

/** The q-quantile (0 ≤ q ≤ 1) of ascending `sorted`: linear between the order statistics at (n - 1) q. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new RangeError('quantile(): no samples');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile(): q must be in [0, 1], got ${q}`);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const frac = pos - lo;
  return frac === 0 ? sorted[lo] : sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

/** Statistics of `samples` (any order; at least one, all finite). */
export function sampleStats(samples: readonly number[]): SampleStats {
  if (samples.length === 0) throw new RangeError('sampleStats(): samples is empty');
  for (let i = 0; i < samples.length; i++) {
    if (typeof samples[i] !== 'number' || !Number.isFinite(samples[i])) {
      throw new RangeError(`sampleStats(): samples[${i}] must be a finite number, got ${String(samples[i])}`);
    }
  }
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  // Welford: stable for samples that are large and close together.
  let mean = 0;
  let m2 = 0;
  for (let i = 0; i < n; i++) {
    const delta = sorted[i] - mean;
    mean += delta / (i + 1);
    m2 += delta * (sorted[i] - mean);
  }
  const sd = n > 1 ? Math.sqrt(m2 / (n - 1)) : 0;
  const sem = sd / Math.sqrt(n);
  const critical = n > 1 ? studentT95(n - 1) : 1;
  const moe = sem * critical;
  return {
    count: n,
    mean,
    min: sorted[0],
    max: sorted[n - 1],
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    sd,
    sem,
    critical,
    moe,
    rme: mean === 0 ? Infinity : (100 * moe) / Math.abs(mean),
  };
}

/** The t with P(|T| > t) = 0.05 for Student's t with `df` degrees of freedom (df ≥ 1; 12.706 at 1, → 1.960). */
export function studentT95(df: number): number {
  if (!(df >= 1) || !Number.isFinite(df)) throw new RangeError(`studentT95(): df must be a finite number >= 1, got ${df}`);
  // P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2), decreasing in t: bisect.
  let lo = 0;
  let hi = 1000;
  for (let i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
    const mid = 0.5 * (lo + hi);
    if (regularizedBeta(df / (df + mid * mid), df / 2, 0.5) > 0.05) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients: ~1e-15 relative). */
function lnGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  const z = x - 1;
  let a = c[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz). */
function regularizedBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  // The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise.
  if (x > (a + 1) / (a + b + 2)) return 1 - regularizedBeta(1 - x, b, a);
  const front = Math.exp(a * Math.log(x) + b * Math.log(1 - x) - (lnGamma(a) + lnGamma(b) - lnGamma(a + b))) / a;
  const tiny = 1e-300;
  let f = 1;
  let c = 1;
  let d = 0;
  for (let i = 0; i <= 400; i++) {
    const m = i >> 1;
    let num: number;
    if (i === 0) num = 1;
    else if (i % 2 === 0) num = (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m));
    else num = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1));
    d = 1 + num * d;
    if (Math.abs(d) < tiny) d = tiny;
    d = 1 / d;
    c = 1 + num / c;
    if (Math.abs(c) < tiny) c = tiny;
    const cd = c * d;
    f *= cd;
    if (Math.abs(1 - cd) < 1e-15) break;
  }
  return front * (f - 1);
}
