// Host-side launchers of the lab's kernel variants (the ones that moved out of the product, native/cuda/,
// after a GPU measured them slower, or that no GPU has timed yet), in kernels.h's manner: each enqueues on
// `stream`, checks the launch and throws pl::Error naming the kernel. Only the lab programs (dev/*.cu)
// call them; a variant returns to the product when dev/run.sh shows it winning.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

namespace pl::cuda::lab {

// ---- gemm_hopper_variants.cu (sm_90a) ------------------------------------------------------------------
// A rank-r update fused into a GEMM's output pass: C += scale * H[M, r] L^T, with L's element (n, j) at
// L[n * strideN + j * strideR] (a LoRA B [N, r]: strideN r, strideR 1; a LoRA A [r, N]: strideN 1, strideR N).
constexpr int kMaxLowRank = 16;
struct LowRankUpdate {
  const float* H = nullptr;
  const float* L = nullptr;
  int r = 0;
  int strideN = 0, strideR = 0;
  float scale = 0.0f;
};
// kernels.h's gemmBf16 contract (C = alpha A B^T + beta C on bf16 K-major rows) on the ping-pong schedule.
void gemmBf16PingPong(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N,
                      int K, int lda, int ldb, float alpha, float beta, int multiprocessors);
// C = A B^T + beta C + lr (alpha 1), the update in the epilogue of 128-wide tiles.
void gemmBf16LowRank(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                     int lda, int ldb, float beta, int multiprocessors, const LowRankUpdate& lr);

// ---- gemm_skinny.cu (one side <= 16: LoRA ranks, fp32 on CUDA cores) --------------------------------------
bool gemmSkinnyApplies(int M, int N, int K, bool transA, bool transB);
// The gemm() contract for products gemmSkinnyApplies() accepts (throws for others).
void gemmSkinny(cudaStream_t stream, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
                bool transB, float alpha, float beta);

// ---- attention_hopper.cu (sm_90a: wgmma) -----------------------------------------------------------------
// attention.cu's conventions; delta = rowsum(dout * out) [B, H, T] comes from the caller.
bool attentionHopperSupports(int D, int Tq);          // 32 < D <= 128 (padded to 64 or 128), Tq >= 8
bool attentionHopperBackwardFits(int B, int T, int H);  // dS within the kept-dS cap
size_t attentionHopperForwardScratchBytes(int B, int Tq, int Tcap, int H, int Hkv, int D);
size_t attentionHopperBackwardScratchBytes(int B, int T, int H, int Hkv, int D);
void attentionForwardHopper(cudaStream_t stream, float* out, float* lse, const float* q, const float* k,
                            const float* v, int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0, void* scratch);
void attentionBackwardHopper(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                             const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H,
                             int Hkv, int D, void* scratch);

}  // namespace pl::cuda::lab
