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

  // The ops of backend_ops.def (from native/ops/spec.mjs), each overridden; the composite ones keep Backend's.
#define PL_OP(ret, name, params) ret name params override;
#define PL_OP_COMPOSITE(ret, name, params)
#include "../model/backend_ops.def"
#undef PL_OP
#undef PL_OP_COMPOSITE

 private:
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<OpProfile> profile_;  // while profiling
  MemoryMeter meter_;
  std::vector<float> widened_;  // gemmWeightBf16's weight in fp32, grown to the largest one
};

}  // namespace pl::cpu
