// Float64 reference implementations of every engine op and of the whole LLaMA (+ LoRA) loss, written
// from the definitions (Hugging Face LlamaForCausalLM, PEFT LoRA, torch AdamW), sharing no code with the engine.

export type F64 = Float64Array;

/** Deterministic pseudo-random numbers for test inputs (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r()) * scale;
  }
  return out;
}

export const f64 = (a: ArrayLike<number>): F64 => Float64Array.from(a);

/** Largest |a - b| and whether every element meets |a - b| <= atol + rtol |b|. */
export function compare(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): { maxErr: number; ok: boolean; worst: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let maxErr = 0;
  let ok = true;
  let worst = -1;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    if (!(e <= atol + rtol * Math.abs(b[i]))) {
      ok = false;
      if (worst < 0) worst = i;
    }
    if (!(e <= maxErr)) maxErr = e;
  }
  return { maxErr, ok, worst };
}

/** The worst element of got against want (a NaN counts as worst), where it is, and want's largest |value|. */
export function worst(got: ArrayLike<number>, want: ArrayLike<number>): { maxErr: number; at: number; scale: number } {
  let maxErr = 0;
  let at = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= maxErr)) {
      maxErr = e;
      at = i;
    }
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return { maxErr, at, scale };
}

/** max|x| over a tensor: the library's, which the parity bounds use. */
export { maxAbsOf as maxAbs } from '../../lib/engine/parity-table.js';

// ---- ops ---------------------------------------------------------------------------------------

/** C[m,n] = op(A) op(B); A [m,k] or [k,m] (tA), B [k,n] or [n,k] (tB). */
export function matmul(A: ArrayLike<number>, B: ArrayLike<number>, m: number, n: number, k: number, tA = false, tB = false): F64 {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += (tA ? A[p * m + i] : A[i * k + p]) * (tB ? B[j * k + p] : B[p * n + j]);
      C[i * n + j] = s;
    }
  return C;
}

export function rmsnorm(x: ArrayLike<number>, w: ArrayLike<number>, n: number, c: number, eps: number): F64 {
  const out = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < c; j++) ss += x[i * c + j] ** 2;
    const r = 1 / Math.sqrt(ss / c + eps);
    for (let j = 0; j < c; j++) out[i * c + j] = x[i * c + j] * r * w[j];
  }
  return out;
}

export function rmsnormBackward(dy: ArrayLike<number>, x: ArrayLike<number>, w: ArrayLike<number>, n: number, c: number, eps: number): { dx: F64; dw: F64 } {
  const dx = new Float64Array(n * c);
  const dw = new Float64Array(c);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < c; j++) ss += x[i * c + j] ** 2;
    const r = 1 / Math.sqrt(ss / c + eps);
    let dot = 0;
    for (let j = 0; j < c; j++) dot += dy[i * c + j] * w[j] * x[i * c + j];
    for (let j = 0; j < c; j++) {
      dx[i * c + j] = r * w[j] * dy[i * c + j] - (r ** 3 * dot * x[i * c + j]) / c;
      dw[j] += dy[i * c + j] * x[i * c + j] * r;
    }
  }
  return { dx, dw };
}

/**
 * HF rotate_half RoPE on x [b,t,h,d] at positions pos0 + t; inverse applies the transpose. `linearFactor`
 * is transformers' linear scaling (the inverse frequencies divided by it).
 */
export function rope(x: ArrayLike<number>, b: number, t: number, h: number, d: number, theta: number, pos0 = 0, inverse = false, linearFactor = 1): F64 {
  const out = Float64Array.from(x);
  const half = d / 2;
  for (let bi = 0; bi < b; bi++)
    for (let ti = 0; ti < t; ti++)
      for (let hi = 0; hi < h; hi++) {
        const o = ((bi * t + ti) * h + hi) * d;
        for (let i = 0; i < half; i++) {
          const ang = ((pos0 + ti) * Math.pow(theta, -(2 * i) / d)) / linearFactor;
          const c = Math.cos(ang);
          const s = inverse ? -Math.sin(ang) : Math.sin(ang);
          const x1 = x[o + i];
          const x2 = x[o + i + half];
          out[o + i] = x1 * c - x2 * s;
          out[o + i + half] = x2 * c + x1 * s;
        }
      }
  return out;
}

/** Causal GQA attention, naive: q [b,t,h,d], k/v [b,t,hkv,d]. */
export function attention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, b: number, t: number, h: number, hkv: number, d: number): { out: F64; p: F64 } {
  const out = new Float64Array(b * t * h * d);
  const P = new Float64Array(b * h * t * t);
  const scale = 1 / Math.sqrt(d);
  const group = h / hkv;
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++) {
      const g = Math.floor(hi / group);
      for (let i = 0; i < t; i++) {
        const s = new Float64Array(i + 1);
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let e = 0; e < d; e++) dot += q[((bi * t + i) * h + hi) * d + e] * k[((bi * t + j) * hkv + g) * d + e];
          s[j] = dot * scale;
          mx = Math.max(mx, s[j]);
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += s[j] = Math.exp(s[j] - mx);
        for (let j = 0; j <= i; j++) {
          const p = s[j] / sum;
          P[((bi * h + hi) * t + i) * t + j] = p;
          for (let e = 0; e < d; e++) out[((bi * t + i) * h + hi) * d + e] += p * v[((bi * t + j) * hkv + g) * d + e];
        }
      }
    }
  return { out, p: P };
}

export function attentionBackward(dout: ArrayLike<number>, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, b: number, t: number, h: number, hkv: number, d: number): { dq: F64; dk: F64; dv: F64 } {
  const { p: P } = attention(q, k, v, b, t, h, hkv, d);
  const dq = new Float64Array(b * t * h * d);
  const dk = new Float64Array(b * t * hkv * d);
  const dv = new Float64Array(b * t * hkv * d);
  const scale = 1 / Math.sqrt(d);
  const group = h / hkv;
  for (let bi = 0; bi < b; bi++)
    for (let hi = 0; hi < h; hi++) {
      const g = Math.floor(hi / group);
      for (let i = 0; i < t; i++) {
        const dp = new Float64Array(i + 1);
        let rowDot = 0;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < d; e++) s += dout[((bi * t + i) * h + hi) * d + e] * v[((bi * t + j) * hkv + g) * d + e];
          dp[j] = s;
          rowDot += P[((bi * h + hi) * t + i) * t + j] * s;
        }
        for (let j = 0; j <= i; j++) {
          const p = P[((bi * h + hi) * t + i) * t + j];
          const ds = p * (dp[j] - rowDot) * scale;
          for (let e = 0; e < d; e++) {
            dv[((bi * t + j) * hkv + g) * d + e] += p * dout[((bi * t + i) * h + hi) * d + e];
            dq[((bi * t + i) * h + hi) * d + e] += ds * k[((bi * t + j) * hkv + g) * d + e];
            dk[((bi * t + j) * hkv + g) * d + e] += ds * q[((bi * t + i) * h + hi) * d + e];
          }
        }
      }
    }
  return { dq, dk, dv };
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

export function swiglu(g: ArrayLike<number>, u: ArrayLike<number>): F64 {
  const out = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) out[i] = g[i] * sigmoid(g[i]) * u[i];
  return out;
}

export function swigluBackward(dy: ArrayLike<number>, g: ArrayLike<number>, u: ArrayLike<number>): { dgate: F64; dup: F64 } {
  const dgate = new Float64Array(g.length);
  const dup = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const s = sigmoid(g[i]);
    dup[i] = dy[i] * g[i] * s;
    dgate[i] = dy[i] * u[i] * (s + g[i] * s * (1 - s));
  }
  return { dgate, dup };
}

/** Per-row losses (0 for -100) and d(sum of losses * dscale)/dlogits. */
export function crossEntropy(logits: ArrayLike<number>, targets: ArrayLike<number>, n: number, v: number, dscale: number): { losses: F64; dlogits: F64 } {
  const losses = new Float64Array(n);
  const dlogits = new Float64Array(n * v);
  for (let i = 0; i < n; i++) {
    if (targets[i] === -100) continue;
    let mx = -Infinity;
    for (let j = 0; j < v; j++) mx = Math.max(mx, logits[i * v + j]);
    let sum = 0;
    for (let j = 0; j < v; j++) sum += Math.exp(logits[i * v + j] - mx);
    losses[i] = Math.log(sum) + mx - logits[i * v + targets[i]];
    for (let j = 0; j < v; j++) dlogits[i * v + j] = (Math.exp(logits[i * v + j] - mx) / sum - (j === targets[i] ? 1 : 0)) * dscale;
  }
  return { losses, dlogits };
}

/** torch.optim.AdamW, one step. */
export function adamw(p: ArrayLike<number>, g: ArrayLike<number>, m: ArrayLike<number>, v: ArrayLike<number>, o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale?: number }): { param: F64; m: F64; v: F64 } {
  const n = p.length;
  const P = new Float64Array(n);
  const M = new Float64Array(n);
  const V = new Float64Array(n);
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < n; i++) {
    const gi = g[i] * (o.gradScale ?? 1);
    M[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
    V[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
    P[i] = p[i] * (1 - o.lr * o.weightDecay) - (o.lr / bc1) * (M[i] / (Math.sqrt(V[i]) / Math.sqrt(bc2) + o.eps));
  }
  return { param: P, m: M, v: V };
}

// ---- the whole model -------------------------------------------------------------------------------

export interface RefConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling?: { rope_type: 'linear'; factor: number } | null;
  tie_word_embeddings: boolean;
}

export interface RefLora {
  r: number;
  alpha: number;
  targets: string[];
}

const MODULES: Array<[string, string]> = [
  ['self_attn', 'q_proj'],
  ['self_attn', 'k_proj'],
  ['self_attn', 'v_proj'],
  ['self_attn', 'o_proj'],
  ['mlp', 'gate_proj'],
  ['mlp', 'up_proj'],
  ['mlp', 'down_proj'],
];

/** y = x W^T (+ scale (x A^T) B^T) for x [m, in]. */
function linear(params: Map<string, F64>, x: F64, m: number, layer: number, parent: string, mod: string, lora: RefLora | null): F64 {
  const base = `model.layers.${layer}.${parent}.${mod}`;
  const W = params.get(`${base}.weight`)!;
  const inDim = x.length / m;
  const out = W.length / inDim;
  const y = matmul(x, W, m, out, inDim, false, true);
  if (lora && lora.targets.includes(mod)) {
    const A = params.get(`base_model.model.${base}.lora_A.weight`)!;
    const B = params.get(`base_model.model.${base}.lora_B.weight`)!;
    const h = matmul(x, A, m, lora.r, inDim, false, true);
    const z = matmul(h, B, m, out, lora.r, false, true);
    const s = lora.alpha / lora.r;
    for (let i = 0; i < y.length; i++) y[i] += s * z[i];
  }
  return y;
}

/** Logits [b*t, V] and the mean cross-entropy over targets != -100, in float64. */
export function llamaLoss(cfg: RefConfig, lora: RefLora | null, params: Map<string, F64>, tokens: ArrayLike<number>, targets: ArrayLike<number>, b: number, t: number): { loss: number; logits: F64 } {
  const C = cfg.hidden_size;
  const H = cfg.num_attention_heads;
  const Hkv = cfg.num_key_value_heads;
  const D = C / H;
  const N = b * t;
  const V = cfg.vocab_size;
  const emb = params.get('model.embed_tokens.weight')!;
  let x: F64 = new Float64Array(N * C);
  for (let i = 0; i < N; i++) for (let j = 0; j < C; j++) x[i * C + j] = emb[tokens[i] * C + j];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const h1 = rmsnorm(x, params.get(p + 'input_layernorm.weight')!, N, C, cfg.rms_norm_eps);
    const factor = cfg.rope_scaling?.factor ?? 1;
    const q = rope(linear(params, h1, N, l, ...MODULES[0], lora), b, t, H, D, cfg.rope_theta, 0, false, factor);
    const k = rope(linear(params, h1, N, l, ...MODULES[1], lora), b, t, Hkv, D, cfg.rope_theta, 0, false, factor);
    const v = linear(params, h1, N, l, ...MODULES[2], lora);
    const att = attention(q, k, v, b, t, H, Hkv, D).out;
    const o = linear(params, att, N, l, ...MODULES[3], lora);
    const mid = x.map((xi, i) => xi + o[i]);
    const h2 = rmsnorm(mid, params.get(p + 'post_attention_layernorm.weight')!, N, C, cfg.rms_norm_eps);
    const g = linear(params, h2, N, l, ...MODULES[4], lora);
    const u = linear(params, h2, N, l, ...MODULES[5], lora);
    const dn = linear(params, swiglu(g, u), N, l, ...MODULES[6], lora);
    x = mid.map((mi, i) => mi + dn[i]);
  }
  const hf = rmsnorm(x, params.get('model.norm.weight')!, N, C, cfg.rms_norm_eps);
  const head = cfg.tie_word_embeddings ? emb : params.get('lm_head.weight')!;
  const logits = matmul(hf, head, N, V, C, false, true);
  let count = 0;
  for (let i = 0; i < N; i++) if (targets[i] !== -100) count++;
  const { losses } = crossEntropy(logits, targets, N, V, 1);
  let sum = 0;
  for (const x2 of losses) sum += x2;
  return { loss: count ? sum / count : 0, logits };
}
