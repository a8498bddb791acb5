// CpuBackend: forwards each op of the interface to its CPU kernel on the backend's thread pool, inside a
// profile span (a no-op unless profiling) that counts the op's FLOPs and bytes.
#include "cpu_backend.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../core/error.h"
#include "gemm.h"
#include "ops.h"

namespace pl::cpu {

CpuBackend::CpuBackend(int threads) : pool_(std::make_unique<ThreadPool>(threads)) {}

namespace {
constexpr double kF = sizeof(float);
// "gemm MxNxK NT": a GEMM's profile name, one line per shape and transposition.
std::string gemmName(const char* what, int M, int N, int K, bool tA, bool tB) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s %dx%dx%d %c%c", what, M, N, K, tA ? 'T' : 'N', tB ? 'T' : 'N');
  return buf;
}
}  // namespace

void CpuBackend::setProfiling(bool on) {
  profile_.reset();
  if (on) profile_ = std::make_unique<OpProfile>();
}

std::string CpuBackend::profileReport() { return profile_ ? profile_->report() : std::string(); }

void* CpuBackend::allocate(size_t bytes) {
  const size_t rounded = ((bytes + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw Error("cpu backend: out of memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  meter_.add(p, rounded == 0 ? 64 : rounded);
  return p;
}
void CpuBackend::release(void* ptr) {
  meter_.remove(ptr);
  std::free(ptr);
}
void CpuBackend::upload(void* dst, const void* hostSrc, size_t bytes) { std::memcpy(dst, hostSrc, bytes); }
void CpuBackend::download(void* hostDst, const void* src, size_t bytes) { std::memcpy(hostDst, src, bytes); }
void CpuBackend::copy(void* dst, const void* src, size_t bytes) {
  ProfileScope span(profile_.get(), "copy", 0, 2.0 * bytes);
  std::memmove(dst, src, bytes);
}
void CpuBackend::zero(void* dst, size_t bytes) {
  ProfileScope span(profile_.get(), "zero", 0, bytes);
  std::memset(dst, 0, bytes);
}

void CpuBackend::gemm(float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB,
                      float alpha, float beta) {
  ProfileScope span(profile_.get(), profile_ ? gemmName("gemm", M, N, K, transA, transB) : std::string(),
                     2.0 * M * N * K, kF * (double(M) * K + double(K) * N + (beta == 0.0f ? 1.0 : 2.0) * M * N));
  cpu::gemm(*pool_, C, A, B, M, N, K, transA, transB, alpha, beta);
}
void CpuBackend::gemmWeightBf16(float* C, const float* A, const uint16_t* W, int M, int N, int K, bool transW,
                                float alpha, float beta) {
  ProfileScope span(profile_.get(), profile_ ? gemmName("gemm bf16 weight", M, N, K, false, transW) : std::string(),
                    2.0 * M * N * K, kF * (double(M) * K + double(M) * N) + 2.0 * double(K) * N);
  if (transW && M <= cpu::kGemvMaxRows) {
    // Few rows (decoding): reading the bf16 weight once beats widening all of it.
    cpu::gemv(*pool_, C, A, W, M, N, K, alpha, beta);
    return;
  }
  const size_t n = static_cast<size_t>(N) * static_cast<size_t>(K);
  if (widened_.size() < n) {
    meter_.resize(widened_.size() * sizeof(float), n * sizeof(float));
    widened_.resize(n);
  }
  cpu::widenBf16(*pool_, widened_.data(), W, n);
  cpu::gemm(*pool_, C, A, widened_.data(), M, N, K, false, transW, alpha, beta);
}

void CpuBackend::add(float* out, const float* a, const float* b, size_t n) {
  ProfileScope span(profile_.get(), "add", double(n), 3 * kF * n);
  cpu::add(*pool_, out, a, b, n);
}
void CpuBackend::axpy(float* y, const float* x, float a, size_t n) {
  ProfileScope span(profile_.get(), "axpy", 2.0 * n, 3 * kF * n);
  cpu::axpy(*pool_, y, x, a, n);
}
void CpuBackend::scale(float* x, float a, size_t n) {
  ProfileScope span(profile_.get(), "scale", double(n), 2 * kF * n);
  cpu::scale(*pool_, x, a, n);
}
double CpuBackend::sumSquares(const float* x, size_t n) {
  ProfileScope span(profile_.get(), "sumSquares", 2.0 * n, kF * n);
  return cpu::sumSquares(*pool_, x, n);
}
void CpuBackend::embeddingForward(float* out, const int32_t* tokens, const float* wte, int N, int C) {
  ProfileScope span(profile_.get(), "embeddingForward", 0, 2 * kF * double(N) * C);
  cpu::embeddingForward(*pool_, out, tokens, wte, N, C);
}
void CpuBackend::embeddingBackward(float* dwte, const float* dout, const int32_t* tokens, int N, int C, int V) {
  ProfileScope span(profile_.get(), "embeddingBackward", double(N) * C, 3 * kF * double(N) * C);
  cpu::embeddingBackward(*pool_, dwte, dout, tokens, N, C, V);
}
void CpuBackend::rmsnormForward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                                float eps) {
  ProfileScope span(profile_.get(), "rmsnormForward", 4.0 * N * C, 2 * kF * double(N) * C);
  cpu::rmsnormForward(*pool_, out, rstd, inp, weight, N, C, eps);
}
void CpuBackend::rmsnormBackward(float* dinp, float* dweight, const float* dout, const float* inp,
                                 const float* weight, const float* rstd, int N, int C) {
  ProfileScope span(profile_.get(), "rmsnormBackward", 8.0 * N * C, 4 * kF * double(N) * C);
  cpu::rmsnormBackward(*pool_, dinp, dweight, dout, inp, weight, rstd, N, C);
}
void CpuBackend::ropeForward(float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                             int pos0) {
  ProfileScope span(profile_.get(), "ropeForward", 3.0 * B * T * H * D, 2 * kF * double(B) * T * H * D);
  cpu::rope(*pool_, x, cosTable, sinTable, B, T, H, D, pos0, false);
}
void CpuBackend::ropeBackward(float* dx, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                              int pos0) {
  ProfileScope span(profile_.get(), "ropeBackward", 3.0 * B * T * H * D, 2 * kF * double(B) * T * H * D);
  cpu::rope(*pool_, dx, cosTable, sinTable, B, T, H, D, pos0, true);
}
void CpuBackend::attentionForward(float* out, float* lse, const float* q, const float* k, const float* v, int B,
                                  int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  ProfileScope span(profile_.get(), "attentionForward", 4.0 * B * H * D * (double(Tq) * pos0 + Tq * (Tq + 1) / 2.0),
                    kF * (2.0 * B * Tq * H * D + 2.0 * B * (pos0 + Tq) * Hkv * D));
  cpu::attentionForward(*pool_, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0);
}
void CpuBackend::attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                   const float* k, const float* v, const float* out, const float* lse, int B, int T,
                                   int H, int Hkv, int D) {
  ProfileScope span(profile_.get(), "attentionBackward", 8.0 * B * H * D * (T * (T + 1) / 2.0),
                    kF * (5.0 * B * T * H * D + 4.0 * B * T * Hkv * D));
  cpu::attentionBackward(*pool_, dq, dk, dv, dout, q, k, v, out, lse, B, T, H, Hkv, D);
}
void CpuBackend::swigluForward(float* out, const float* gate, const float* up, size_t n) {
  ProfileScope span(profile_.get(), "swigluForward", 0, 3 * kF * n);
  cpu::swigluForward(*pool_, out, gate, up, n);
}
void CpuBackend::swigluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                size_t n) {
  ProfileScope span(profile_.get(), "swigluBackward", 0, 5 * kF * n);
  cpu::swigluBackward(*pool_, dgate, dup, dout, gate, up, n);
}
void CpuBackend::crossEntropy(float* losses, float* logits, const int32_t* targets, int N, int V, float dscale,
                              bool grad) {
  ProfileScope span(profile_.get(), "crossEntropy", 0, 2 * kF * double(N) * V);
  cpu::crossEntropy(*pool_, losses, logits, targets, N, V, dscale, grad);
}
void CpuBackend::dropoutForward(float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset) {
  ProfileScope span(profile_.get(), "dropoutForward", 0, 2 * kF * n);
  cpu::dropoutForward(*pool_, out, inp, n, p, seed, offset);
}
void CpuBackend::dropoutBackward(float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset) {
  ProfileScope span(profile_.get(), "dropoutBackward", 0, 3 * kF * n);
  cpu::dropoutBackward(*pool_, dinp, dout, n, p, seed, offset);
}
void CpuBackend::adamw(float* param, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp) {
  ProfileScope span(profile_.get(), "adamw", 0, 7 * kF * n);
  cpu::adamw(*pool_, param, grad, m, v, n, hp);
}

}  // namespace pl::cpu
