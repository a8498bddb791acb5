// Shared-memory plumbing of the sm_80+ tensor-core kernels (attention_flash.cu, attention_hopper.cu):
// 16-byte cp.async copies global -> shared with their commit / wait steps, and ldmatrix fragment loads.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace pl::cuda {

__device__ __forceinline__ uint32_t smemAddr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// 16 bytes global -> shared, asynchronously; zero-filled when !valid.
__device__ __forceinline__ void cpAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smemAddr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}
__device__ __forceinline__ void ldmatrixX4Trans(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smemAddr(p)));
}

// A fragment (rows m0..m0+15, k 16j..16j+15) of the transpose of a tile stored [k][m], rows `ld` apart.
__device__ __forceinline__ void fragATrans(uint32_t (&a)[4], const __nv_bfloat16* S, int ld, int m0, int j) {
  const int lane = threadIdx.x % 32;
  ldmatrixX4Trans(a, S + (16 * j + lane % 8 + 8 * (lane / 16)) * ld + m0 + 8 * ((lane / 8) % 2));
}

}  // namespace pl::cuda
