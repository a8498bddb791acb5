// The CPU kernels behind CpuBackend, one free function per op (same contracts as model/backend.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/thread_pool.h"
#include "../model/backend.h"

namespace pl::cpu {

void add(ThreadPool& pool, float* out, const float* a, const float* b, size_t n);
void axpy(ThreadPool& pool, float* y, const float* x, float a, size_t n);
void scale(ThreadPool& pool, float* x, float a, size_t n);
double sumSquares(ThreadPool& pool, const float* x, size_t n);
// out[i] = in[i] widened from bf16 (exact).
void widenBf16(ThreadPool& pool, float* out, const uint16_t* in, size_t n);


void embeddingForward(ThreadPool& pool, float* out, const int32_t* tokens, const float* wte, int N, int C);
void embeddingBackward(ThreadPool& pool, float* dwte, const float* dout, const int32_t* tokens, int N, int C, int V);

void rmsnormForward(ThreadPool& pool, float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                    float eps);
void rmsnormBackward(ThreadPool& pool, float* dinp, float* dweight, const float* dout, const float* inp,
                     const float* weight, const float* rstd, int N, int C);

void rope(ThreadPool& pool, float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
          int pos0, bool inverse);

void attentionForward(ThreadPool& pool, float* out, float* lse, const float* q, const float* k, const float* v,
                      int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0);
void attentionBackward(ThreadPool& pool, float* dq, float* dk, float* dv, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, int B, int T, int H,
                       int Hkv, int D);

void swigluForward(ThreadPool& pool, float* out, const float* gate, const float* up, size_t n);
void swigluBackward(ThreadPool& pool, float* dgate, float* dup, const float* dout, const float* gate,
                    const float* up, size_t n);

void crossEntropy(ThreadPool& pool, float* losses, float* logits, const int32_t* targets, int N, int V,
                  float dscale, bool grad);

void dropoutForward(ThreadPool& pool, float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset);
void dropoutBackward(ThreadPool& pool, float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset);

void adamw(ThreadPool& pool, float* param, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp);

}  // namespace pl::cpu
