// CPU kernels for the elementwise, normalisation, embedding, RoPE, SwiGLU, cross-entropy, dropout and
// AdamW ops. Rows go to threads in contiguous ranges; reductions run in a fixed order.
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/bf16.h"
#include "../core/rng.h"
#include "vec.h"

// V8 values live only inside always-inlined helpers and the per-ISA clones: no vector crosses an ABI boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace pl::cpu {

namespace {

constexpr int64_t kGrain = 16384;  // elements per task for elementwise work
// Below this many elements a pass stays on the calling thread: these passes are bound by memory bandwidth
// (a second thread measured no faster at the tiny step's 196k elements, and slower in RMSNorm's backward),
// and a handoff to a worker that another process holds off its core can stall the caller for a time slice.
constexpr int64_t kParallelMin = int64_t{1} << 18;

// Splits [0, n) into tasks of about kGrain elements; runs inline when small.
void forChunks(ThreadPool& pool, size_t n, const std::function<void(size_t, size_t)>& fn) {
  const int64_t tasks = static_cast<int64_t>((n + kGrain - 1) / kGrain);
  if (tasks <= 1 || static_cast<int64_t>(n) < kParallelMin) {
    if (n) fn(0, n);
    return;
  }
  pool.parallelFor(tasks, [&](int64_t b, int64_t e, int) {
    fn(static_cast<size_t>(b) * kGrain, std::min(n, static_cast<size_t>(e) * kGrain));
  });
}

// Rows [0, N) in contiguous ranges; inline when the whole job is small.
void forRows(ThreadPool& pool, int64_t N, int64_t workPerRow, const std::function<void(int64_t, int64_t)>& fn) {
  if (N * workPerRow < kParallelMin || pool.size() == 1) {
    if (N) fn(0, N);
    return;
  }
  pool.parallelFor(N, [&](int64_t b, int64_t e, int) { fn(b, e); });
}

// ---- loop bodies ----------------------------------------------------------------------------

PL_INLINE void addKBody(float* out, const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
PL_SIMD_CLONES(void, addK, (float* out, const float* a, const float* b, size_t n), (out, a, b, n))

PL_INLINE void axpyKBody(float* y, const float* x, float a, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}
PL_SIMD_CLONES(void, axpyK, (float* y, const float* x, float a, size_t n), (y, x, a, n))

PL_INLINE void scaleKBody(float* x, float a, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] *= a;
}
PL_SIMD_CLONES(void, scaleK, (float* x, float a, size_t n), (x, a, n))

PL_INLINE double sumSquaresKBody(const float* x, size_t n) {
  // 16 float lanes summed in double at the end of each block keeps error low and stays vectorized.
  double total = 0.0;
  for (size_t b = 0; b < n; b += 1024) {
    const size_t e = std::min(n, b + 1024);
    float acc[16] = {};
    size_t i = b;
    for (; i + 16 <= e; i += 16)
      for (int j = 0; j < 16; ++j) acc[j] += x[i + j] * x[i + j];
    for (; i < e; ++i) acc[0] += x[i] * x[i];
    double s = 0.0;
    for (int j = 0; j < 16; ++j) s += acc[j];
    total += s;
  }
  return total;
}
PL_SIMD_CLONES(double, sumSquaresK, (const float* x, size_t n), (x, n))


PL_INLINE void rmsRowBody(float* out, const float* x, const float* w, int C, float eps, float* rstdOut) {
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= C; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += x[i + j] * x[i + j];
  float ss = 0.0f;
  for (; i < C; ++i) ss += x[i] * x[i];
  for (int j = 0; j < 16; ++j) ss += acc[j];
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
  *rstdOut = r;
  for (int c = 0; c < C; ++c) out[c] = x[c] * r * w[c];
}
PL_SIMD_CLONES(void, rmsRow, (float* out, const float* x, const float* w, int C, float eps, float* rstdOut),
               (out, x, w, C, eps, rstdOut))

PL_INLINE void rmsRowBackBody(float* dx, const float* dy, const float* x, const float* w, float r, int C) {
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= C; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += dy[i + j] * w[i + j] * x[i + j];
  float dot = 0.0f;
  for (; i < C; ++i) dot += dy[i] * w[i] * x[i];
  for (int j = 0; j < 16; ++j) dot += acc[j];
  const float k = r * r * r * dot / static_cast<float>(C);
  for (int c = 0; c < C; ++c) dx[c] += r * w[c] * dy[c] - k * x[c];
}
PL_SIMD_CLONES(void, rmsRowBack, (float* dx, const float* dy, const float* x, const float* w, float r, int C),
               (dx, dy, x, w, r, C))

PL_INLINE void rmsWeightBackBody(float* dw, const float* dy, const float* x, const float* rstd, int N, int C,
                                 int c0, int c1) {
  for (int n = 0; n < N; ++n) {
    const float r = rstd[n];
    const float* dyn = dy + static_cast<size_t>(n) * C;
    const float* xn = x + static_cast<size_t>(n) * C;
    for (int c = c0; c < c1; ++c) dw[c] += dyn[c] * xn[c] * r;
  }
}
PL_SIMD_CLONES(void, rmsWeightBack,
               (float* dw, const float* dy, const float* x, const float* rstd, int N, int C, int c0, int c1),
               (dw, dy, x, rstd, N, C, c0, c1))

// SwiGLU on 8-wide vectors (vexp8; GCC does not vectorize the scalar vexp's bit cast), the tail in scalars.
PL_INLINE void swigluKBody(float* out, const float* g, const float* u, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 gv = load8(g + i);
    const V8 s = 1.0f / (1.0f + vexp8(-gv));
    store8(out + i, gv * s * load8(u + i));
  }
  for (; i < n; ++i) {
    const float s = 1.0f / (1.0f + vexp(-g[i]));
    out[i] = g[i] * s * u[i];
  }
}
PL_SIMD_CLONES(void, swigluK, (float* out, const float* g, const float* u, size_t n), (out, g, u, n))

PL_INLINE void swigluBackKBody(float* dg, float* du, const float* dy, const float* g, const float* u, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 gv = load8(g + i), dyv = load8(dy + i);
    const V8 s = 1.0f / (1.0f + vexp8(-gv));
    store8(du + i, dyv * (gv * s));
    store8(dg + i, dyv * load8(u + i) * s * (1.0f + gv * (1.0f - s)));
  }
  for (; i < n; ++i) {
    const float s = 1.0f / (1.0f + vexp(-g[i]));
    const float silu = g[i] * s;
    du[i] = dy[i] * silu;
    dg[i] = dy[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
  }
}
PL_SIMD_CLONES(void, swigluBackK, (float* dg, float* du, const float* dy, const float* g, const float* u, size_t n),
               (dg, du, dy, g, u, n))

// One row of cross-entropy: returns the loss; writes dscale*(softmax - onehot) into x when grad.
PL_INLINE float ceRowBody(float* x, int V, int target, float dscale, bool grad) {
  float mx = x[0];
  for (int i = 1; i < V; ++i) mx = x[i] > mx ? x[i] : mx;
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= V; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += vexp(x[i + j] - mx);
  float sum = 0.0f;
  for (; i < V; ++i) sum += vexp(x[i] - mx);
  for (int j = 0; j < 16; ++j) sum += acc[j];
  const float logsum = std::log(sum);
  const float loss = logsum + mx - x[target];
  if (grad) {
    const float inv = dscale / sum;
    for (int k = 0; k < V; ++k) x[k] = vexp(x[k] - mx) * inv;
    x[target] -= dscale;
  }
  return loss;
}
PL_SIMD_CLONES(float, ceRow, (float* x, int V, int target, float dscale, bool grad), (x, V, target, dscale, grad))

PL_INLINE void adamwKBody(float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2,
                         float eps, float wd, float bc1, float bc2sqrt, float gs) {
  const float stepSize = lr / bc1;
  const float decay = 1.0f - lr * wd;
  for (size_t i = 0; i < n; ++i) {
    const float gi = g[i] * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2sqrt + eps;
    p[i] = p[i] * decay - stepSize * mi / denom;
  }
}
PL_SIMD_CLONES(void, adamwK,
               (float* p, const float* g, float* m, float* v, size_t n, float lr, float b1, float b2, float eps,
                float wd, float bc1, float bc2sqrt, float gs),
               (p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2sqrt, gs))

}  // namespace

void add(ThreadPool& pool, float* out, const float* a, const float* b, size_t n) {
  forChunks(pool, n, [&](size_t s, size_t e) { addK(out + s, a + s, b + s, e - s); });
}

void axpy(ThreadPool& pool, float* y, const float* x, float a, size_t n) {
  forChunks(pool, n, [&](size_t s, size_t e) { axpyK(y + s, x + s, a, e - s); });
}

void scale(ThreadPool& pool, float* x, float a, size_t n) {
  forChunks(pool, n, [&](size_t s, size_t e) { scaleK(x + s, a, e - s); });
}

void widenBf16(ThreadPool& pool, float* out, const uint16_t* in, size_t n) {
  forChunks(pool, n, [&](size_t s, size_t e) {
    for (size_t i = s; i < e; ++i) out[i] = fromBf16(in[i]);
  });
}

double sumSquares(ThreadPool& pool, const float* x, size_t n) {
  // Fixed chunks, summed in chunk order: the same value for any thread count.
  const size_t chunks = (n + kGrain - 1) / kGrain;
  std::vector<double> partial(chunks, 0.0);
  forChunks(pool, n, [&](size_t s, size_t e) {
    for (size_t c = s; c < e; c += kGrain) partial[c / kGrain] = sumSquaresK(x + c, std::min(e, c + kGrain) - c);
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

void embeddingForward(ThreadPool& pool, float* out, const int32_t* tokens, const float* wte, int N, int C) {
  forRows(pool, N, C, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n)
      std::memcpy(out + n * C, wte + static_cast<size_t>(tokens[n]) * C, sizeof(float) * C);
  });
}

void embeddingBackward(ThreadPool& pool, float* dwte, const float* dout, const int32_t* tokens, int N, int C,
                       int V) {
  (void)V;
  // Columns go to threads, rows run in order: deterministic without atomics.
  forRows(pool, C, N, [&](int64_t c0, int64_t c1) {
    for (int n = 0; n < N; ++n) {
      float* dst = dwte + static_cast<size_t>(tokens[n]) * C;
      const float* src = dout + static_cast<size_t>(n) * C;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
}

void rmsnormForward(ThreadPool& pool, float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                    float eps) {
  forRows(pool, N, C, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) rmsRow(out + n * C, inp + n * C, weight, C, eps, rstd + n);
  });
}

void rmsnormBackward(ThreadPool& pool, float* dinp, float* dweight, const float* dout, const float* inp,
                     const float* weight, const float* rstd, int N, int C) {
  forRows(pool, N, C, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) rmsRowBack(dinp + n * C, dout + n * C, inp + n * C, weight, rstd[n], C);
  });
  if (dweight) {
    const int64_t blocks = (C + 15) / 16;
    forRows(pool, blocks, static_cast<int64_t>(N) * 16, [&](int64_t b, int64_t e) {
      rmsWeightBack(dweight, dout, inp, rstd, N, C, static_cast<int>(b * 16), static_cast<int>(std::min<int64_t>(C, e * 16)));
    });
  }
}

void rope(ThreadPool& pool, float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
          int pos0, bool inverse) {
  const int half = D / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  forRows(pool, static_cast<int64_t>(B) * T, H * D, [&](int64_t b, int64_t e) {
    for (int64_t bt = b; bt < e; ++bt) {
      const int t = static_cast<int>(bt % T);
      const float* cs = cosTable + static_cast<size_t>(pos0 + t) * half;
      const float* sn = sinTable + static_cast<size_t>(pos0 + t) * half;
      for (int h = 0; h < H; ++h) {
        float* row = x + (bt * H + h) * D;
        for (int i = 0; i < half; ++i) {
          const float x1 = row[i], x2 = row[i + half];
          const float c = cs[i], s = sign * sn[i];
          row[i] = x1 * c - x2 * s;
          row[i + half] = x2 * c + x1 * s;
        }
      }
    }
  });
}

void swigluForward(ThreadPool& pool, float* out, const float* gate, const float* up, size_t n) {
  forChunks(pool, n, [&](size_t s, size_t e) { swigluK(out + s, gate + s, up + s, e - s); });
}

void swigluBackward(ThreadPool& pool, float* dgate, float* dup, const float* dout, const float* gate,
                    const float* up, size_t n) {
  forChunks(pool, n, [&](size_t s, size_t e) { swigluBackK(dgate + s, dup + s, dout + s, gate + s, up + s, e - s); });
}

void crossEntropy(ThreadPool& pool, float* losses, float* logits, const int32_t* targets, int N, int V,
                  float dscale, bool grad) {
  forRows(pool, N, V * 4, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      float* row = logits + n * V;
      const int t = targets[n];
      if (t < 0) {
        losses[n] = 0.0f;
        if (grad) std::memset(row, 0, sizeof(float) * V);
        continue;
      }
      losses[n] = ceRow(row, V, t, dscale, grad);
    }
  });
}

void dropoutForward(ThreadPool& pool, float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset) {
  const float keepScale = 1.0f / (1.0f - p);
  forChunks(pool, n, [&](size_t s, size_t e) {
    for (size_t i = s; i < e; ++i) out[i] = uniform01(seed, offset + i) >= p ? inp[i] * keepScale : 0.0f;
  });
}

void dropoutBackward(ThreadPool& pool, float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset) {
  const float keepScale = 1.0f / (1.0f - p);
  forChunks(pool, n, [&](size_t s, size_t e) {
    for (size_t i = s; i < e; ++i)
      if (uniform01(seed, offset + i) >= p) dinp[i] += dout[i] * keepScale;
  });
}

void adamw(ThreadPool& pool, float* param, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp) {
  const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(hp.beta1), hp.step));
  const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(hp.beta2), hp.step));
  const float bc2sqrt = std::sqrt(bc2);
  forChunks(pool, n, [&](size_t s, size_t e) {
    adamwK(param + s, grad + s, m + s, v + s, e - s, hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weightDecay, bc1, bc2sqrt,
           hp.gradScale);
  });
}

}  // namespace pl::cpu
