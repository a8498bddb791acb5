// Communicator's shared parts: names, the failure latch, host reductions, and the host-buffer variants
// that host-memory backends (Gloo) run directly.
#include "communicator.h"

#include <cmath>
#include <cstring>

#include "../core/bf16.h"
#include "../core/error.h"

namespace pl::comm {

size_t dtypeBytes(DType d) { return d == DType::F32 ? 4 : 2; }
const char* dtypeName(DType d) { return d == DType::F32 ? "f32" : "bf16"; }
const char* reduceOpName(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "average"; }

std::string Communicator::who() const {
  return backend() + " rank " + std::to_string(rank_) + " of " + std::to_string(size_);
}

void Communicator::checkHealthy() const {
  if (!failure_.empty()) throw Error(failure_ + " (this communicator failed earlier and cannot be used again)");
}

void Communicator::fail(const std::string& operation, const std::string& why) {
  if (failure_.empty()) failure_ = operation + " failed on " + who() + ": " + why;
  throw Error(failure_);
}

void Communicator::allReduceHost(void* data, size_t count, DType dtype, ReduceOp op) {
  allReduce(data, count, dtype, op);
  wait();
}

void Communicator::broadcastHost(void* data, size_t bytes, int root) { broadcast(data, bytes, root); }

void reduceInto(void* a, const void* b, size_t count, DType dtype) {
  if (dtype == DType::F32) {
    float* x = static_cast<float*>(a);
    const float* y = static_cast<const float*>(b);
    for (size_t i = 0; i < count; ++i) x[i] += y[i];
    return;
  }
  uint16_t* x = static_cast<uint16_t*>(a);
  const uint16_t* y = static_cast<const uint16_t*>(b);
  for (size_t i = 0; i < count; ++i) x[i] = toBf16(fromBf16(x[i]) + fromBf16(y[i]));
}

#ifndef PUZZLE_LLAMA_CUDA
std::unique_ptr<Communicator> createNcclCommunicator(const CommOptions&) {
  throw Error("NCCL needs the CUDA build of the addon (run `npm run build:cuda` where nvcc is installed)");
}
#endif

}  // namespace pl::comm
