// The ops the LLaMA model needs, forward and backward, as one abstract interface. The model
// (llama.cc) is written once over it; native/cpu and native/cuda implement it. The ops themselves are
// declared in backend_ops.def, generated from native/ops/spec.mjs; this file adds memory and profiling.
//
// Conventions (llm.c style): every pointer is backend memory (host memory for the CPU backend,
// device memory for CUDA); tensors are row-major and contiguous; shapes are in the comment beside
// each pointer. "accumulates" means the op adds into its output (+=), otherwise it overwrites.
// B = batch, T = sequence, C = hidden size, H / Hkv = query / key-value heads, D = head dim,
// V = vocabulary, N = rows (B*T), F = intermediate size.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pl {

struct AdamWParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weightDecay = 0.0f;
  int step = 1;              // 1-based, for the bias corrections
  float gradScale = 1.0f;    // multiplies every gradient first (global-norm clipping)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int threads() const = 0;

  // ---- memory ------------------------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;  // zero-filled; throws pl::Error when out of memory
  virtual void release(void* ptr) = 0;
  virtual void upload(void* dst, const void* hostSrc, size_t bytes) = 0;
  virtual void download(void* hostDst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  virtual void synchronize() {}
  // Bytes this backend holds now (every allocation and scratch buffer) and the most it has held.
  virtual size_t allocatedBytes() const { return 0; }
  virtual size_t peakAllocatedBytes() const { return 0; }
  // Per-op timing for performance work: on clears and starts it, off stops it; profileReport() waits for
  // the device and returns one line per op (empty where the backend does not profile).
  virtual void setProfiling(bool on) { (void)on; }
  virtual std::string profileReport() { return {}; }

  // ---- the ops: one declaration each, made from native/ops/spec.mjs (shapes and roles beside each) ----------
#define PL_OP(ret, name, params) virtual ret name params = 0;
#define PL_OP_COMPOSITE(ret, name, params) virtual ret name params;
#include "backend_ops.def"
#undef PL_OP
#undef PL_OP_COMPOSITE
};

// gemmLowRank's default: the product, then the update as a second gemm().
inline void Backend::gemmLowRank(float* C, const float* A, const float* W32, const uint16_t* W16, int M, int N, int K,
                                 bool transW, float beta, const float* H, const float* L, int r, int strideN,
                                 int strideR, float scale) {
  if (W16)
    gemmWeightBf16(C, A, W16, M, N, K, transW, 1.0f, beta);
  else
    gemm(C, A, W32, M, N, K, false, transW, 1.0f, beta);
  if (strideR == 1)
    gemm(C, H, L, M, N, r, false, true, scale, 1.0f);  // L stored [N, r]
  else
    gemm(C, H, L, M, N, r, false, false, scale, 1.0f);  // L stored [r, N]
  (void)strideN;
}

}  // namespace pl
