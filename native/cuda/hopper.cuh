// Device helpers shared by the sm_90a kernels (gemm_hopper.cu, attention_hopper.cu): shared-memory
// addresses, mbarriers, the wgmma shared-memory descriptor and the wgmma fence / commit / wait steps.
// PL_HOPPER_DEVICE is defined (and the helpers and wgmma.cuh exist) only while compiling the sm_90a image;
// elsewhere the kernels keep their signatures and trap (unused() silences their parameters).
#pragma once
#include <cstdint>

// Silences unused parameters where a kernel has no body (images other than sm_90a).
template <typename... T>
__host__ __device__ inline void unused(const T&...) {}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define PL_HOPPER_DEVICE 1
#include "smem_copy.cuh"
#include "wgmma.cuh"

namespace pl::cuda {

__device__ __forceinline__ void mbarInit(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(count) : "memory");
}

__device__ __forceinline__ void mbarExpectTx(uint64_t* bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbarArrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smemAddr(bar)) : "memory");
}

// Waits until the barrier's phase with the given parity has completed.
__device__ __forceinline__ void mbarWait(uint64_t* bar, int parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait_loop:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait_loop;\n"
      "}\n" ::"r"(smemAddr(bar)),
      "r"(parity)
      : "memory");
}

// Shared-memory matrix descriptor: K-major tile whose rows are 128 bytes, 128-byte swizzle, 8-row groups
// 1024 bytes apart. Stepping K by 16 elements adds 32 bytes (2 in the encoded start address).
__device__ __forceinline__ uint64_t smemDesc(const void* p) {
  const uint64_t addr = smemAddr(p);
  return ((addr & 0x3FFFF) >> 4) | (uint64_t(16 >> 4) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Makes this thread's generic-proxy writes to shared memory (plain stores, cp.async once waited for)
// visible to the async proxy that wgmma reads its shared-memory operands through; a barrier follows.
__device__ __forceinline__ void fenceProxyAsync() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

}  // namespace pl::cuda
#endif  // sm_90a
