// The warp-level bf16 tensor-core instruction (mma.sync m16n8k16, fp32 accumulate) shared by the
// sm_80+ GEMM and attention kernels, and the fragment helpers around it. Fragment layouts, with
// g = lane / 4 and t = lane % 4 (rows of A and C, columns of B and C):
//   A (16x16, row): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
//   B (16x8, col):  b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8.., n g)
//   C (16x8):       c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
// Each register holds two bf16, the lower index in the low half.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace pl::cuda {

// D += A(16x16, row) * B(16x8, col), bf16 in, fp32 accumulate.
// Built only for sm_80+ (createBackend refuses older GPUs); a build that lists an older arch traps instead.
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  (void)d;
  (void)a;
  (void)b;
  __trap();
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// Two consecutive bf16 in shared memory as one fragment register.
__device__ __forceinline__ uint32_t lds32(const __nv_bfloat16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Two floats rounded to bf16 in one fragment register (lo in the low half).
__device__ __forceinline__ uint32_t packBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Max / sum over the four lanes of a quad (the lanes t = 0..3 that share an accumulator row g).
__device__ __forceinline__ float quadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quadSum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

}  // namespace pl::cuda
