// Host-side launchers for the CUDA kernels, one group per .cu file. Each enqueues on `stream`, checks
// the launch and throws pl::Error naming the kernel; none synchronizes. Shapes and contracts are those of
// model/backend.h. Launchers that need scratch memory say how much (a *ScratchBytes function) and take it.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../model/backend.h"

namespace pl::cuda {

// ---- gemm.cu ---------------------------------------------------------------------------------------
enum class GemmPath { Auto, Mma, Simt, Wgmma };
// C[M,N] = alpha * op(A) @ op(B) + beta * C. Auto picks the SIMT fp32 kernel for tiny products and
// the bf16 tensor-core kernel otherwise; `multiprocessors` picks the tile size (never the result).
// Skinny products whose tiles would leave the GPU idle split K over a `partial` buffer of
// gemmScratchBytes() (0: no split; a null partial also means no split), reduced in a fixed order.
void gemm(cudaStream_t stream, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
          bool transB, float alpha, float beta, GemmPath path, int multiprocessors, float* partial);
size_t gemmScratchBytes(int M, int N, int K, GemmPath path, int multiprocessors);

// ---- gemm_hopper.cu (sm_90a: wgmma + TMA) -------------------------------------------------------------
// Whether this device runs the sm_90a image and the driver can encode tensor maps; launches a probe.
bool hopperGemmSupported(cudaStream_t stream);
// C[M,N] = alpha * A[M,K] B[N,K]^T + beta * C: bf16 rows `lda` / `ldb` elements apart (multiples of 8,
// bases 16-byte aligned), fp32 accumulation and output, on the tile width hopperGemmWidth() picks.
void gemmBf16(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
              int lda, int ldb, float alpha, float beta, int multiprocessors);
// The output-tile width gemmBf16 picks for an M x N product (the fewest idle tile slots in the last wave),
// the widths it has, and the product at a given width (checks and benchmarks of each kernel).
int hopperGemmWidth(int M, int N, int multiprocessors);
std::vector<int> hopperGemmWidths();
void gemmBf16Width(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                   int lda, int ldb, float alpha, float beta, int multiprocessors, int width);
// ---- gemm_sm80.cu (sm_80+: mma.sync on bf16 operands) -------------------------------------------------
// gemmBf16's contract (no fused update) on any sm_80+ GPU: cp.async ring, ldmatrix, mma.sync.
void gemmBf16Sm80(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                  int lda, int ldb, float alpha, float beta);
// out[r * ldk + k] = bf16(element (r, k)) of an fp32 rows x K operand, stored with K contiguous
// (X[r * ldx + k], ldx 0 meaning K) or not (X[k * rows + r]); columns K..ldk-1 are zero. ldk is a
// multiple of 8.
void toBf16KMajor(cudaStream_t stream, __nv_bfloat16* out, const float* X, int rows, int K, bool kContiguous, int ldk,
                  size_t ldx = 0);
// The same from a bf16 operand (a frozen weight: copied, transposed or padded exactly).
void toBf16KMajor(cudaStream_t stream, __nv_bfloat16* out, const __nv_bfloat16* X, int rows, int K, bool kContiguous,
                  int ldk);
void widenBf16(cudaStream_t stream, float* out, const __nv_bfloat16* in, size_t n);
// The fp32 gemm() contract on the Hopper kernel: converts op(A) and op(B) into `scratch`
// (gemmHopperScratchBytes) and multiplies them.
size_t gemmHopperScratchBytes(int M, int N, int K);
void gemmHopper(cudaStream_t stream, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
                bool transB, float alpha, float beta, void* scratch, int multiprocessors);

// ---- elementwise.cu --------------------------------------------------------------------------------
void add(cudaStream_t stream, float* out, const float* a, const float* b, size_t n);
void axpy(cudaStream_t stream, float* y, const float* x, float a, size_t n);
void scale(cudaStream_t stream, float* x, float a, size_t n);
size_t sumSquaresScratchBytes(size_t n);
// Writes sum x^2 as one double to result (device memory); scratch holds sumSquaresScratchBytes(n).
void sumSquares(cudaStream_t stream, double* result, void* scratch, const float* x, size_t n);
void swigluForward(cudaStream_t stream, float* out, const float* gate, const float* up, size_t n);
void swigluBackward(cudaStream_t stream, float* dgate, float* dup, const float* dout, const float* gate,
                    const float* up, size_t n);
void dropoutForward(cudaStream_t stream, float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset);
void dropoutBackward(cudaStream_t stream, float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset);
void embeddingForward(cudaStream_t stream, float* out, const int32_t* tokens, const float* wte, int N, int C);
void embeddingBackward(cudaStream_t stream, float* dwte, const float* dout, const int32_t* tokens, int N, int C,
                       int V);

// ---- norm_rope.cu ----------------------------------------------------------------------------------
void rmsnormForward(cudaStream_t stream, float* out, float* rstd, const float* inp, const float* weight, int N,
                    int C, float eps);
size_t rmsnormBackwardScratchBytes(int N, int C);
void rmsnormBackward(cudaStream_t stream, float* dinp, float* dweight, const float* dout, const float* inp,
                     const float* weight, const float* rstd, int N, int C, void* scratch);
void rope(cudaStream_t stream, float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
          int pos0, bool inverse);

// ---- attention.cu ----------------------------------------------------------------------------------
constexpr int kAttentionMaxD = 256;
// Flash: attention_flash.cu's bf16 tensor-core kernels where they apply (attentionFlashSupports), dQ
// recomputing S and dP; FlashDs (the backend's default): the same, with dQ computed from the dS the dK/dV
// pass keeps (up to 1 GiB of it, else as Flash); Simt, and the shapes the flash kernels do not cover (head
// dims <= 32 or > 128, decode steps of < 8 queries): fp32.
enum class AttentionPath { Flash, FlashDs, Simt };
size_t attentionForwardScratchBytes(int B, int Tq, int Tcap, int H, int Hkv, int D, AttentionPath path);
void attentionForward(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v,
                      int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0, AttentionPath path, void* scratch);
size_t attentionBackwardScratchBytes(int B, int T, int H, int Hkv, int D, AttentionPath path);
void attentionBackward(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, int B, int T, int H,
                       int Hkv, int D, void* scratch, AttentionPath path);

// ---- attention_flash.cu (bf16 tensor cores, cp.async + ldmatrix) ------------------------------------------
bool attentionFlashSupports(int D, int Tq);  // 32 < D <= 128 and Tq >= 8
size_t attentionFlashForwardScratchBytes(int B, int Tq, int Tcap, int H, int Hkv, int D);
size_t attentionFlashBackwardScratchBytes(int B, int T, int H, int Hkv, int D, bool keepDs);
void attentionForwardFlash(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v,
                           int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0, void* scratch);
void attentionBackwardFlash(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                            const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H,
                            int Hkv, int D, void* scratch, bool keepDs);

// ---- cross_entropy.cu ------------------------------------------------------------------------------
void crossEntropy(cudaStream_t stream, float* losses, float* logits, const int32_t* targets, int N, int V,
                  float dscale, bool grad);

// ---- adamw.cu --------------------------------------------------------------------------------------
void adamw(cudaStream_t stream, float* param, const float* grad, float* m, float* v, size_t n,
           const AdamWParams& hp);

}  // namespace pl::cuda
