// The CPU implementation of model/backend.h: host memory, the packed GEMM and the kernels of ops.h,
// all on one persistent thread pool owned by the backend; setProfiling() times every op (op_profile.h).
#pragma once
#include <memory>
#include <vector>

#include "../core/memory_meter.h"
#include "../core/thread_pool.h"
#include "../model/backend.h"
#include "op_profile.h"

namespace pl::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  std::string name() const override { return "cpu"; }
  int threads() const override { return pool_->size(); }
  ThreadPool& pool() { return *pool_; }

  void* allocate(size_t bytes) override;
  void release(void* ptr) override;
  size_t allocatedBytes() const override { return meter_.current(); }
  size_t peakAllocatedBytes() const override { return meter_.peak(); }
  void upload(void* dst, const void* hostSrc, size_t bytes) override;
  void download(void* hostDst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void setProfiling(bool on) override;
  std::string profileReport() override;

  void gemm(float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB, float alpha,
            float beta) override;
  void gemmWeightBf16(float* C, const float* A, const uint16_t* W, int M, int N, int K, bool transW, float alpha,
                      float beta) override;
  void add(float* out, const float* a, const float* b, size_t n) override;
  void axpy(float* y, const float* x, float a, size_t n) override;
  void scale(float* x, float a, size_t n) override;
  double sumSquares(const float* x, size_t n) override;
  void embeddingForward(float* out, const int32_t* tokens, const float* wte, int N, int C) override;
  void embeddingBackward(float* dwte, const float* dout, const int32_t* tokens, int N, int C, int V) override;
  void rmsnormForward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                      float eps) override;
  void rmsnormBackward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                       const float* rstd, int N, int C) override;
  void ropeForward(float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                   int pos0) override;
  void ropeBackward(float* dx, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                    int pos0) override;
  void attentionForward(float* out, float* lse, const float* q, const float* k, const float* v, int B, int Tq,
                        int Tcap, int H, int Hkv, int D, int pos0) override;
  void attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                         const float* v, const float* out, const float* lse, int B, int T, int H, int Hkv,
                         int D) override;
  void swigluForward(float* out, const float* gate, const float* up, size_t n) override;
  void swigluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                      size_t n) override;
  void crossEntropy(float* losses, float* logits, const int32_t* targets, int N, int V, float dscale,
                    bool grad) override;
  void dropoutForward(float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset) override;
  void dropoutBackward(float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset) override;
  void adamw(float* param, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp) override;

 private:
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<OpProfile> profile_;  // while profiling
  MemoryMeter meter_;
  std::vector<float> widened_;  // gemmWeightBf16's weight in fp32, grown to the largest one
};

}  // namespace pl::cpu
