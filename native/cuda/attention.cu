// Causal grouped-query attention, flash style, fp32 on CUDA cores; the entry points hand head dims 33..128
// (query blocks of 8 rows or more) to the bf16 tensor-core kernels of attention_flash.cu unless the path
// asks for fp32.
// Layouts: q, out, dq, dout [B,Tq,H,D]; k, v [B,Tcap,Hkv,D]; lse, delta [B,H,Tq]. Query t sits at position
// pos0 + t and sees keys [0, pos0 + t]; head h reads kv head h / (H / Hkv); scale 1/sqrt(D), folded into q
// as the CPU does (s = sum_d (q_d * scale) k_d). Kernels are templated on kMaxD in {32, 64, 128, 256}
// (D <= kMaxD, padded dims zero-filled), so D = 64 and 128 run without padding; a warp's lanes own
// dims d = lane + 32 i of every row it accumulates.
//
// Forward (attention_forward_kernel): a block = 4 warps = kBq query rows (8 a warp; 4 when kMaxD = 256) of
//   one (b, h); key tiles of 32 stream through shared memory. Lane j scores key j against the warp's rows
//   (K rows padded to kMaxD + 1 floats: conflict-free), then an online softmax per row (shuffle max /
//   sum), then o = o * corr + P V with p_j broadcast by shuffle. Writes out and lse = m + log(l).
// Decode (attention_decode_kernel, Tq < 8): a block per (b, h, query), its 4 warps splitting the keys
//   32 at a time (each warp its own m, l, o), merged at the end in shared memory: keeps 4 warps busy
//   where the tiled kernel would give 1 useful row in 32.
// Backward: delta = rowsum(dout * out) (attention_delta_kernel), then two kernels each output of which
//   has exactly one writer (no atomics, deterministic, the CPU's two-pass split):
//   attention_dkdv_kernel: a block per (b, kv head, 32 keys; 16 when kMaxD = 256) loops over the group's
//   query heads and the query tiles at or after its keys; lane = query: recomputes s and dp = dout . v,
//   p = exp(s - lse), ds = p (dp - delta); then dv += p^T dout, dk += ds^T (q * scale), p and ds
//   broadcast by shuffle. dk, dv sum over the query heads sharing the kv head inside the block.
//   attention_dq_kernel: a block per (b, h, kBq queries); lane = key: the same recompute, dq += ds K.
// Expected error vs the fp32 CPU: ~1e-6 relative (different summation order, expf vs the CPU's vexp).
#include <cmath>
#include <string>

#include "common.cuh"
#include "kernels.h"

namespace pl::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBk = 32;  // keys a tile (lane = key) in the forward and dq kernels
constexpr int kDecodeBelow = 8;

template <int kMaxD>
constexpr int rowsPerWarp() {
  return kMaxD <= 128 ? 8 : 4;  // keeps every kernel within 99 KiB of shared memory (sm_86 / sm_89)
}

template <int kMaxD>
constexpr size_t forwardSmem() {
  return sizeof(float) * (size_t(kWarps * rowsPerWarp<kMaxD>()) * kMaxD + size_t(kBk) * (kMaxD + 1) +
                          size_t(kBk) * kMaxD);
}

// ---- forward -------------------------------------------------------------------------------------

template <int kMaxD>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v, int Tq,
                             int Tcap, int H, int Hkv, int D, int pos0) {
  constexpr int kR = rowsPerWarp<kMaxD>(), kBq = kWarps * kR, kDS = kMaxD / 32, kKs = kMaxD + 1;
  extern __shared__ float smem[];
  float* Qs = smem;              // [kBq][kMaxD], q * scale
  float* Ks = Qs + kBq * kMaxD;  // [kBk][kKs]
  float* Vs = Ks + kBk * kKs;    // [kBk][kMaxD]
  const int t0 = blockIdx.x * kBq, h = blockIdx.y, b = blockIdx.z;
  const int g = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  const size_t qStride = size_t(H) * D, kvStride = size_t(Hkv) * D;
  const int t1 = min(Tq, t0 + kBq);
  const int keysEnd = pos0 + t1;  // keys [0, keysEnd) are visible to some row of this block

  for (int i = threadIdx.x; i < kBq * kMaxD; i += kThreads) {
    const int r = i / kMaxD, d = i % kMaxD;
    Qs[i] = (t0 + r < Tq && d < D) ? q[(size_t(b) * Tq + t0 + r) * qStride + size_t(h) * D + d] * scale : 0.0f;
  }

  float o[kR][kDS], m[kR], l[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int s = 0; s < kDS; ++s) o[r][s] = 0.0f;
  }

  const float* kBase = k + size_t(b) * Tcap * kvStride + size_t(g) * D;
  const float* vBase = v + size_t(b) * Tcap * kvStride + size_t(g) * D;
  for (int j0 = 0; j0 < keysEnd; j0 += kBk) {
    __syncthreads();  // the previous tile is consumed (and, the first time, Qs is written)
    for (int i = threadIdx.x; i < kBk * kMaxD; i += kThreads) {
      const int j = i / kMaxD, d = i % kMaxD;
      float kv = 0.0f, vv = 0.0f;
      if (j0 + j < keysEnd && d < D) {
        kv = kBase[size_t(j0 + j) * kvStride + d];
        vv = vBase[size_t(j0 + j) * kvStride + d];
      }
      Ks[j * kKs + d] = kv;
      Vs[j * kMaxD + d] = vv;
    }
    __syncthreads();

    float s[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) s[r] = 0.0f;
    const float* qw = Qs + warp * kR * kMaxD;
    for (int d = 0; d < D; ++d) {
      const float kd = Ks[lane * kKs + d];
#pragma unroll
      for (int r = 0; r < kR; ++r) s[r] += qw[r * kMaxD + d] * kd;
    }

    float p[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      p[r] = 0.0f;
      const int t = t0 + warp * kR + r;
      const int pos = pos0 + t;
      if (t >= Tq || j0 > pos) continue;  // warp-uniform
      const bool visible = j0 + lane <= pos;
      const float mx = fmaxf(m[r], warpMax(visible ? s[r] : -INFINITY));
      const float corr = expf(m[r] - mx);  // 0 on the first tile (m = -inf, mx finite)
      p[r] = visible ? expf(s[r] - mx) : 0.0f;
      l[r] = l[r] * corr + warpSum(p[r]);
      m[r] = mx;
#pragma unroll
      for (int i = 0; i < kDS; ++i) o[r][i] *= corr;
    }
    const int nk = min(kBk, keysEnd - j0);
    for (int j = 0; j < nk; ++j) {
      float vj[kDS];
#pragma unroll
      for (int i = 0; i < kDS; ++i) vj[i] = Vs[j * kMaxD + lane + 32 * i];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        const float pj = __shfl_sync(kFullMask, p[r], j);
#pragma unroll
        for (int i = 0; i < kDS; ++i) o[r][i] += pj * vj[i];
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const int t = t0 + warp * kR + r;
    if (t >= Tq) continue;
    const float inv = 1.0f / l[r];
    float* dst = out + (size_t(b) * Tq + t) * qStride + size_t(h) * D;
#pragma unroll
    for (int i = 0; i < kDS; ++i) {
      const int d = lane + 32 * i;
      if (d < D) dst[d] = o[r][i] * inv;
    }
    if (lse && lane == 0) lse[(size_t(b) * H + h) * Tq + t] = m[r] + logf(l[r]);
  }
}

// ---- decode: few queries, many keys --------------------------------------------------------------

template <int kMaxD>
constexpr size_t decodeSmem() {
  return sizeof(float) * (size_t(kMaxD) + 2 * kWarps + size_t(kWarps) * kMaxD);
}

template <int kMaxD>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(float* out, float* lse, const float* q, const float* k, const float* v, int Tq,
                            int Tcap, int H, int Hkv, int D, int pos0) {
  constexpr int kDS = kMaxD / 32;
  extern __shared__ float smem[];
  float* Qs = smem;           // [kMaxD], q * scale
  float* Ms = Qs + kMaxD;     // [kWarps]
  float* Ls = Ms + kWarps;    // [kWarps]
  float* Os = Ls + kWarps;    // [kWarps][kMaxD]
  const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int g = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  const size_t qStride = size_t(H) * D, kvStride = size_t(Hkv) * D;
  const int nkeys = pos0 + t + 1;
  const float* qRow = q + (size_t(b) * Tq + t) * qStride + size_t(h) * D;
  for (int d = threadIdx.x; d < kMaxD; d += kThreads) Qs[d] = d < D ? qRow[d] * scale : 0.0f;
  __syncthreads();

  const float* kBase = k + size_t(b) * Tcap * kvStride + size_t(g) * D;
  const float* vBase = v + size_t(b) * Tcap * kvStride + size_t(g) * D;
  float m = -INFINITY, l = 0.0f, o[kDS];
#pragma unroll
  for (int i = 0; i < kDS; ++i) o[i] = 0.0f;
  for (int j0 = warp * 32; j0 < nkeys; j0 += kWarps * 32) {
    const int key = j0 + lane;
    const bool valid = key < nkeys;
    float s = 0.0f;
    if (valid) {
      const float* kr = kBase + size_t(key) * kvStride;
      for (int d = 0; d < D; ++d) s += Qs[d] * kr[d];
    }
    const float mx = fmaxf(m, warpMax(valid ? s : -INFINITY));
    const float corr = expf(m - mx);
    const float p = valid ? expf(s - mx) : 0.0f;
    l = l * corr + warpSum(p);
    m = mx;
#pragma unroll
    for (int i = 0; i < kDS; ++i) o[i] *= corr;
    const int nk = min(32, nkeys - j0);
    for (int j = 0; j < nk; ++j) {
      const float pj = __shfl_sync(kFullMask, p, j);
      const float* vr = vBase + size_t(j0 + j) * kvStride;
#pragma unroll
      for (int i = 0; i < kDS; ++i) {
        const int d = lane + 32 * i;
        if (d < D) o[i] += pj * vr[d];
      }
    }
  }
  if (lane == 0) {
    Ms[warp] = m;  // -inf with l = 0 for a warp that saw no keys
    Ls[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < kDS; ++i) Os[warp * kMaxD + lane + 32 * i] = o[i];
  __syncthreads();

  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, Ms[w]);
  float L = 0.0f, f[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    f[w] = expf(Ms[w] - M);
    L += Ls[w] * f[w];
  }
  const float inv = 1.0f / L;
  float* dst = out + (size_t(b) * Tq + t) * qStride + size_t(h) * D;
  for (int d = threadIdx.x; d < D; d += kThreads) {
    float acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) acc += Os[w * kMaxD + d] * f[w];
    dst[d] = acc * inv;
  }
  if (lse && threadIdx.x == 0) lse[(size_t(b) * H + h) * Tq + t] = M + logf(L);
}

// ---- backward ------------------------------------------------------------------------------------

// delta[b,h,t] = sum_d dout * out: one warp a (b, t, h) row.
__global__ void __launch_bounds__(kThreads)
    attention_delta_kernel(float* delta, const float* dout, const float* out, int B, int T, int H, int D) {
  const size_t row = size_t(blockIdx.x) * kWarps + threadIdx.x / 32;  // (b*T + t)*H + h
  const int lane = threadIdx.x % 32;
  if (row >= size_t(B) * T * H) return;
  const float* o = out + row * D;
  const float* d = dout + row * D;
  float s = 0.0f;
  for (int i = lane; i < D; i += 32) s += o[i] * d[i];
  s = warpSum(s);
  const int h = static_cast<int>(row % H);
  const size_t bt = row / H;
  const int t = static_cast<int>(bt % T), b = static_cast<int>(bt / T);
  if (lane == 0) delta[(size_t(b) * H + h) * T + t] = s;
}

template <int kMaxD>
constexpr int dkdvKeys() {
  return kMaxD <= 128 ? 32 : 16;
}

template <int kMaxD>
constexpr size_t dkdvSmem() {
  return sizeof(float) * (2 * size_t(dkdvKeys<kMaxD>()) * kMaxD + 2 * size_t(32) * (kMaxD + 1) + 2 * 32);
}

template <int kMaxD>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                          const float* lse, const float* delta, int T, int H, int Hkv, int D) {
  constexpr int kKeys = dkdvKeys<kMaxD>(), kKpw = kKeys / kWarps, kDS = kMaxD / 32, kQs = kMaxD + 1;
  extern __shared__ float smem[];
  float* Ks = smem;                 // [kKeys][kMaxD]
  float* Vs = Ks + kKeys * kMaxD;   // [kKeys][kMaxD]
  float* Qs = Vs + kKeys * kMaxD;   // [32][kQs], q * scale
  float* dOs = Qs + 32 * kQs;       // [32][kQs]
  float* Ls = dOs + 32 * kQs;       // [32]
  float* Dl = Ls + 32;              // [32]
  const int j0 = blockIdx.x * kKeys, gkv = blockIdx.y, b = blockIdx.z;
  const int group = H / Hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  const size_t qStride = size_t(H) * D, kvStride = size_t(Hkv) * D;
  const size_t kvOff = size_t(b) * T * kvStride + size_t(gkv) * D;

  for (int i = threadIdx.x; i < kKeys * kMaxD; i += kThreads) {
    const int j = i / kMaxD, d = i % kMaxD;
    const bool ok = j0 + j < T && d < D;
    Ks[i] = ok ? k[kvOff + size_t(j0 + j) * kvStride + d] : 0.0f;
    Vs[i] = ok ? v[kvOff + size_t(j0 + j) * kvStride + d] : 0.0f;
  }

  float dkAcc[kKpw][kDS], dvAcc[kKpw][kDS];
#pragma unroll
  for (int kk = 0; kk < kKpw; ++kk)
#pragma unroll
    for (int i = 0; i < kDS; ++i) dkAcc[kk][i] = dvAcc[kk][i] = 0.0f;

  const int myKey0 = warp * kKpw;  // this warp's keys: j0 + myKey0 + kk
  for (int hh = 0; hh < group; ++hh) {
    const int h = gkv * group + hh;
    for (int i0 = (j0 / 32) * 32; i0 < T; i0 += 32) {
      __syncthreads();  // previous query tile consumed (and, the first time, Ks / Vs written)
      for (int i = threadIdx.x; i < 32 * kMaxD; i += kThreads) {
        const int r = i / kMaxD, d = i % kMaxD;
        const bool ok = i0 + r < T && d < D;
        const size_t off = (size_t(b) * T + i0 + r) * qStride + size_t(h) * D + d;
        Qs[r * kQs + d] = ok ? q[off] * scale : 0.0f;
        dOs[r * kQs + d] = ok ? dout[off] : 0.0f;
      }
      if (threadIdx.x < 32) {
        const int i = i0 + threadIdx.x;
        const size_t off = (size_t(b) * H + h) * T + i;
        Ls[threadIdx.x] = i < T ? lse[off] : 0.0f;
        Dl[threadIdx.x] = i < T ? delta[off] : 0.0f;
      }
      __syncthreads();

      // lane = query i0 + lane against this warp's kKpw keys
      float s[kKpw], dp[kKpw];
#pragma unroll
      for (int kk = 0; kk < kKpw; ++kk) s[kk] = dp[kk] = 0.0f;
      for (int d = 0; d < D; ++d) {
        const float qd = Qs[lane * kQs + d], od = dOs[lane * kQs + d];
#pragma unroll
        for (int kk = 0; kk < kKpw; ++kk) {
          s[kk] += qd * Ks[(myKey0 + kk) * kMaxD + d];
          dp[kk] += od * Vs[(myKey0 + kk) * kMaxD + d];
        }
      }
      const int qi = i0 + lane;
      float p[kKpw], ds[kKpw];
#pragma unroll
      for (int kk = 0; kk < kKpw; ++kk) {
        const int j = j0 + myKey0 + kk;
        const bool visible = qi < T && j < T && j <= qi;
        p[kk] = visible ? expf(s[kk] - Ls[lane]) : 0.0f;
        ds[kk] = visible ? p[kk] * (dp[kk] - Dl[lane]) : 0.0f;
      }
      const int rows = min(32, T - i0);
      for (int r = 0; r < rows; ++r) {
        float od[kDS], qd[kDS];
#pragma unroll
        for (int i = 0; i < kDS; ++i) {
          od[i] = dOs[r * kQs + lane + 32 * i];
          qd[i] = Qs[r * kQs + lane + 32 * i];
        }
#pragma unroll
        for (int kk = 0; kk < kKpw; ++kk) {
          const float pr = __shfl_sync(kFullMask, p[kk], r);
          const float dsr = __shfl_sync(kFullMask, ds[kk], r);
#pragma unroll
          for (int i = 0; i < kDS; ++i) {
            dvAcc[kk][i] += pr * od[i];
            dkAcc[kk][i] += dsr * qd[i];  // q already carries the scale: ds * scale * q
          }
        }
      }
    }
  }

#pragma unroll
  for (int kk = 0; kk < kKpw; ++kk) {
    const int j = j0 + myKey0 + kk;
    if (j >= T) continue;
#pragma unroll
    for (int i = 0; i < kDS; ++i) {
      const int d = lane + 32 * i;
      if (d < D) {
        dk[kvOff + size_t(j) * kvStride + d] = dkAcc[kk][i];
        dv[kvOff + size_t(j) * kvStride + d] = dvAcc[kk][i];
      }
    }
  }
}

template <int kMaxD>
constexpr size_t dqSmem() {
  constexpr int kBq = kWarps * rowsPerWarp<kMaxD>();
  return sizeof(float) * (2 * size_t(kBq) * kMaxD + 2 * size_t(kBk) * (kMaxD + 1) + 2 * size_t(kBq));
}

template <int kMaxD>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                        const float* lse, const float* delta, int T, int H, int Hkv, int D) {
  constexpr int kR = rowsPerWarp<kMaxD>(), kBq = kWarps * kR, kDS = kMaxD / 32, kKs = kMaxD + 1;
  extern __shared__ float smem[];
  float* Qs = smem;               // [kBq][kMaxD], q * scale
  float* dOs = Qs + kBq * kMaxD;  // [kBq][kMaxD]
  float* Ks = dOs + kBq * kMaxD;  // [kBk][kKs]
  float* Vs = Ks + kBk * kKs;     // [kBk][kKs]
  float* Ls = Vs + kBk * kKs;     // [kBq]
  float* Dl = Ls + kBq;           // [kBq]
  const int t0 = blockIdx.x * kBq, h = blockIdx.y, b = blockIdx.z;
  const int gkv = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float scale = 1.0f / sqrtf(static_cast<float>(D));
  const size_t qStride = size_t(H) * D, kvStride = size_t(Hkv) * D;
  const size_t kvOff = size_t(b) * T * kvStride + size_t(gkv) * D;
  const int t1 = min(T, t0 + kBq);

  for (int i = threadIdx.x; i < kBq * kMaxD; i += kThreads) {
    const int r = i / kMaxD, d = i % kMaxD;
    const bool ok = t0 + r < T && d < D;
    const size_t off = (size_t(b) * T + t0 + r) * qStride + size_t(h) * D + d;
    Qs[i] = ok ? q[off] * scale : 0.0f;
    dOs[i] = ok ? dout[off] : 0.0f;
  }
  for (int r = threadIdx.x; r < kBq; r += kThreads) {
    const size_t off = (size_t(b) * H + h) * T + t0 + r;
    Ls[r] = t0 + r < T ? lse[off] : 0.0f;
    Dl[r] = t0 + r < T ? delta[off] : 0.0f;
  }

  float acc[kR][kDS];
#pragma unroll
  for (int r = 0; r < kR; ++r)
#pragma unroll
    for (int i = 0; i < kDS; ++i) acc[r][i] = 0.0f;

  const int row0 = warp * kR;
  for (int j0 = 0; j0 < t1; j0 += kBk) {
    __syncthreads();
    for (int i = threadIdx.x; i < kBk * kMaxD; i += kThreads) {
      const int j = i / kMaxD, d = i % kMaxD;
      const bool ok = j0 + j < t1 && d < D;
      Ks[j * kKs + d] = ok ? k[kvOff + size_t(j0 + j) * kvStride + d] : 0.0f;
      Vs[j * kKs + d] = ok ? v[kvOff + size_t(j0 + j) * kvStride + d] : 0.0f;
    }
    __syncthreads();

    // lane = key j0 + lane against this warp's kR query rows
    float s[kR], dp[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) s[r] = dp[r] = 0.0f;
    for (int d = 0; d < D; ++d) {
      const float kd = Ks[lane * kKs + d], vd = Vs[lane * kKs + d];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        s[r] += Qs[(row0 + r) * kMaxD + d] * kd;
        dp[r] += dOs[(row0 + r) * kMaxD + d] * vd;
      }
    }
    const int j = j0 + lane;
    float ds[kR];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const int i = t0 + row0 + r;
      const bool visible = i < T && j <= i;
      const float p = visible ? expf(s[r] - Ls[row0 + r]) : 0.0f;
      ds[r] = visible ? p * (dp[r] - Dl[row0 + r]) : 0.0f;
    }
    const int nk = min(kBk, t1 - j0);
    for (int jj = 0; jj < nk; ++jj) {
      float kv[kDS];
#pragma unroll
      for (int i = 0; i < kDS; ++i) kv[i] = Ks[jj * kKs + lane + 32 * i];
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        const float dsj = __shfl_sync(kFullMask, ds[r], jj);
#pragma unroll
        for (int i = 0; i < kDS; ++i) acc[r][i] += dsj * kv[i];
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const int i = t0 + row0 + r;
    if (i >= T) continue;
    float* dst = dq + (size_t(b) * T + i) * qStride + size_t(h) * D;
#pragma unroll
    for (int c = 0; c < kDS; ++c) {
      const int d = lane + 32 * c;
      if (d < D) dst[d] = acc[r][c] * scale;
    }
  }
}

// ---- launchers -----------------------------------------------------------------------------------

static_assert(forwardSmem<256>() <= 99 * 1024 && dkdvSmem<256>() <= 99 * 1024 && dqSmem<256>() <= 99 * 1024,
              "attention tiles must fit sm_86/sm_89's 99 KiB of shared memory a block");

void checkGrid(int B, int H, int Hkv, int D, const char* what) {
  if (D < 1 || D > kAttentionMaxD)
    throw Error(std::string(what) + ": head dim " + std::to_string(D) + " is outside [1, " +
                std::to_string(kAttentionMaxD) + "]");
  if (Hkv < 1 || H % Hkv != 0)
    throw Error(std::string(what) + ": num_attention_heads " + std::to_string(H) +
                " must be a multiple of num_key_value_heads " + std::to_string(Hkv));
  if (B > 65535 || H > 65535)
    throw Error(std::string(what) + ": batch " + std::to_string(B) + " or heads " + std::to_string(H) +
                " exceed 65535");
}

template <int kMaxD>
void forwardD(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v, int B,
              int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  if (Tq < kDecodeBelow) {
    constexpr size_t smem = decodeSmem<kMaxD>();
    attention_decode_kernel<kMaxD><<<dim3(Tq, H, B), kThreads, smem, stream>>>(out, lse, q, k, v, Tq, Tcap, H, Hkv, D,
                                                                               pos0);
    checkLaunch("attention_decode_kernel");
    return;
  }
  constexpr size_t smem = forwardSmem<kMaxD>();
  constexpr int kBq = kWarps * rowsPerWarp<kMaxD>();
  allowSharedMemory(attention_forward_kernel<kMaxD>, smem, "attention_forward_kernel");
  attention_forward_kernel<kMaxD><<<dim3(ceilDiv(Tq, kBq), H, B), kThreads, smem, stream>>>(out, lse, q, k, v, Tq,
                                                                                             Tcap, H, Hkv, D, pos0);
  checkLaunch("attention_forward_kernel");
}

template <int kMaxD>
void backwardD(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
               const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H, int Hkv,
               int D) {
  constexpr size_t smemKv = dkdvSmem<kMaxD>();
  allowSharedMemory(attention_dkdv_kernel<kMaxD>, smemKv, "attention_dkdv_kernel");
  attention_dkdv_kernel<kMaxD><<<dim3(ceilDiv(T, dkdvKeys<kMaxD>()), Hkv, B), kThreads, smemKv, stream>>>(
      dk, dv, dout, q, k, v, lse, delta, T, H, Hkv, D);
  checkLaunch("attention_dkdv_kernel");
  constexpr size_t smemQ = dqSmem<kMaxD>();
  constexpr int kBq = kWarps * rowsPerWarp<kMaxD>();
  allowSharedMemory(attention_dq_kernel<kMaxD>, smemQ, "attention_dq_kernel");
  attention_dq_kernel<kMaxD><<<dim3(ceilDiv(T, kBq), H, B), kThreads, smemQ, stream>>>(dq, dout, q, k, v, lse, delta,
                                                                                       T, H, Hkv, D);
  checkLaunch("attention_dq_kernel");
}

bool onFlash(AttentionPath path, int D, int Tq) { return path != AttentionPath::Simt && attentionFlashSupports(D, Tq); }
// The flash backward keeps dS for dQ on the default path.
bool keepsDs(AttentionPath path) { return path == AttentionPath::FlashDs; }

}  // namespace

void attentionForward(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v,
                      int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0, AttentionPath path, void* scratch) {
  if (B <= 0 || Tq <= 0 || H <= 0) return;
  checkGrid(B, H, Hkv, D, "attentionForward");
  if (pos0 < 0 || pos0 + Tq > Tcap)
    throw Error("attentionForward: pos0 + Tq = " + std::to_string(pos0 + Tq) + " exceeds the cache length " +
                std::to_string(Tcap));
  if (onFlash(path, D, Tq))
    attentionForwardFlash(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, scratch);
  else if (D <= 32) forwardD<32>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0);
  else if (D <= 64) forwardD<64>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0);
  else if (D <= 128) forwardD<128>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0);
  else forwardD<256>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0);
}

size_t attentionForwardScratchBytes(int B, int Tq, int Tcap, int H, int Hkv, int D, AttentionPath path) {
  return onFlash(path, D, Tq) ? attentionFlashForwardScratchBytes(B, Tq, Tcap, H, Hkv, D) : 0;
}

namespace {
size_t deltaBytes(int B, int T, int H) { return alignUp(sizeof(float) * size_t(B) * T * H); }
}  // namespace

size_t attentionBackwardScratchBytes(int B, int T, int H, int Hkv, int D, AttentionPath path) {
  return deltaBytes(B, T, H) + (onFlash(path, D, T) ? attentionFlashBackwardScratchBytes(B, T, H, Hkv, D, keepsDs(path)) : 0);
}

void attentionBackward(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, int B, int T, int H,
                       int Hkv, int D, void* scratch, AttentionPath path) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  checkGrid(B, H, Hkv, D, "attentionBackward");
  float* delta = static_cast<float*>(scratch);
  const size_t rows = size_t(B) * T * H;
  attention_delta_kernel<<<ceilDiv(rows, kWarps), kThreads, 0, stream>>>(delta, dout, out, B, T, H, D);
  checkLaunch("attention_delta_kernel");
  uint8_t* rest = static_cast<uint8_t*>(scratch) + deltaBytes(B, T, H);
  if (onFlash(path, D, T))
    attentionBackwardFlash(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D, rest, keepsDs(path));
  else if (D <= 32) backwardD<32>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D);
  else if (D <= 64) backwardD<64>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D);
  else if (D <= 128) backwardD<128>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D);
  else backwardD<256>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D);
}

}  // namespace pl::cuda
