// The ops the LLaMA model needs, forward and backward, as one abstract interface. The model
// (llama.cc) is written once over it; native/cpu implements it now, native/cuda next.
//
// Conventions (llm.c style): every pointer is backend memory (host memory for the CPU backend,
// device memory for CUDA); tensors are row-major and contiguous; shapes are in the comment beside
// each pointer. "accumulates" means the op adds into its output (+=), otherwise it overwrites.
// B = batch, T = sequence, C = hidden size, H / Hkv = query / key-value heads, D = head dim,
// V = vocabulary, N = rows (B*T), F = intermediate size.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace pl {

struct AdamWParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weightDecay = 0.0f;
  int step = 1;              // 1-based, for the bias corrections
  float gradScale = 1.0f;    // multiplies every gradient first (global-norm clipping)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int threads() const = 0;

  // ---- memory ------------------------------------------------------------------------------
  virtual void* allocate(size_t bytes) = 0;  // zero-filled; throws pl::Error when out of memory
  virtual void release(void* ptr) = 0;
  virtual void upload(void* dst, const void* hostSrc, size_t bytes) = 0;
  virtual void download(void* hostDst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  virtual void synchronize() {}
  // Bytes this backend holds now (every allocation and scratch buffer) and the most it has held.
  virtual size_t allocatedBytes() const { return 0; }
  virtual size_t peakAllocatedBytes() const { return 0; }
  // Per-op timing for performance work: on clears and starts it, off stops it; profileReport() waits for
  // the device and returns one line per op (empty where the backend does not profile).
  virtual void setProfiling(bool on) { (void)on; }
  virtual std::string profileReport() { return {}; }

  // ---- dense algebra -----------------------------------------------------------------------
  // C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C[M,N]
  // A is [M,K] (or [K,M] when transA); B is [K,N] (or [N,K] when transB). beta = 0 ignores C's contents.
  virtual void gemm(float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB,
                    float alpha, float beta) = 0;

  // ---- elementwise ---------------------------------------------------------------------------
  // C[M,N] = alpha * A[M,K] op(W) + beta * C for a weight stored as bf16 (a frozen base weight of a LoRA
  // model kept in half the memory): op(W) = W^T for W [N,K] when transW (y = x W^T), else W for W [K,N]
  // (dx = dy W). The product is the one gemm() computes on W widened to fp32.
  virtual void gemmWeightBf16(float* C, const float* A, const uint16_t* W, int M, int N, int K, bool transW,
                              float alpha, float beta) = 0;
  // C[M,N] = A[M,K] op(W) + beta * C + scale * H[M,r] L^T: a linear's base product and a LoRA update in one
  // call, so a backend can fuse the update into the product's pass over C. W is fp32 (W32) or bf16 (W16);
  // op(W) = W^T for W [N,K] when transW, else W [K,N]. L's element (n, j) is L[n * strideN + j * strideR]
  // (a LoRA B [N,r]: strideN r, strideR 1; a LoRA A [r,N]: strideN 1, strideR N). By default: the product,
  // then the update as a second gemm().
  virtual void gemmLowRank(float* C, const float* A, const float* W32, const uint16_t* W16, int M, int N, int K,
                           bool transW, float beta, const float* H, const float* L, int r, int strideN, int strideR,
                           float scale) {
    if (W16)
      gemmWeightBf16(C, A, W16, M, N, K, transW, 1.0f, beta);
    else
      gemm(C, A, W32, M, N, K, false, transW, 1.0f, beta);
    if (strideR == 1)
      gemm(C, H, L, M, N, r, false, true, scale, 1.0f);  // L stored [N, r]
    else
      gemm(C, H, L, M, N, r, false, false, scale, 1.0f);  // L stored [r, N]
    (void)strideN;
  }
  virtual void add(float* out, const float* a, const float* b, size_t n) = 0;  // out = a + b
  virtual void axpy(float* y, const float* x, float a, size_t n) = 0;         // y += a * x
  virtual void scale(float* x, float a, size_t n) = 0;                         // x *= a
  virtual double sumSquares(const float* x, size_t n) = 0;                    // sum x^2 (deterministic)

  // ---- embedding -----------------------------------------------------------------------------
  // out[N,C] = wte[V,C][tokens[N]]
  virtual void embeddingForward(float* out, const int32_t* tokens, const float* wte, int N, int C) = 0;
  // dwte[V,C] += scatter of dout[N,C] by tokens[N] (accumulates)
  virtual void embeddingBackward(float* dwte, const float* dout, const int32_t* tokens, int N, int C, int V) = 0;

  // ---- RMSNorm: out = inp * rsqrt(mean(inp^2) + eps) * weight ----------------------------------
  // out[N,C], rstd[N] (saved for backward), inp[N,C], weight[C]
  virtual void rmsnormForward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                              float eps) = 0;
  // dinp[N,C] (accumulates), dweight[C] (accumulates; null when frozen)
  virtual void rmsnormBackward(float* dinp, float* dweight, const float* dout, const float* inp,
                               const float* weight, const float* rstd, int N, int C) = 0;

  // ---- RoPE (Hugging Face rotate_half: dim i pairs with i + D/2), in place ----------------------
  // x[B,T,H,D]; cosTable/sinTable[maxT, D/2]; position of (b,t) is pos0 + t
  virtual void ropeForward(float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                           int pos0) = 0;
  // dx[B,T,H,D] in place: the transpose of the rotation
  virtual void ropeBackward(float* dx, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                            int pos0) = 0;

  // ---- causal grouped-query attention, tile by tile with an online softmax ---------------------
  // out[B,Tq,H,D], lse[B,H,Tq] (log-sum-exp per query, saved for backward; may be null),
  // q[B,Tq,H,D]; k, v[B,Tcap,Hkv,D] of which rows [0, pos0+Tq) are valid. Query t sits at position
  // pos0 + t and sees keys [0, pos0+t]. Head h reads key-value head h / (H / Hkv). Scale 1/sqrt(D).
  virtual void attentionForward(float* out, float* lse, const float* q, const float* k, const float* v, int B,
                                int Tq, int Tcap, int H, int Hkv, int D, int pos0) = 0;
  // dq[B,T,H,D], dk, dv[B,T,Hkv,D] (all overwritten) from dout[B,T,H,D] and the forward's
  // q, k, v, out and lse (pos0 = 0, Tq = Tcap = T).
  virtual void attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                 const float* k, const float* v, const float* out, const float* lse, int B, int T,
                                 int H, int Hkv, int D) = 0;

  // ---- SwiGLU: out = silu(gate) * up ----------------------------------------------------------
  virtual void swigluForward(float* out, const float* gate, const float* up, size_t n) = 0;
  // dgate, dup (overwritten)
  virtual void swigluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                              size_t n) = 0;

  // ---- cross-entropy fused with the softmax ---------------------------------------------------
  // losses[N] = -log softmax(logits[n])[targets[n]] (0 where targets[n] == -100).
  // When grad: logits[N,V] is overwritten by dscale * (softmax - onehot) (0 rows for ignored targets).
  virtual void crossEntropy(float* losses, float* logits, const int32_t* targets, int N, int V, float dscale,
                            bool grad) = 0;

  // ---- dropout (counter-based mask: keep element i iff uniform01(seed, offset + i) >= p) --------
  // The offset places the n elements inside a larger tensor's mask (one rank's rows of a global batch).
  // out[n] = keep ? inp / (1-p) : 0
  virtual void dropoutForward(float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset) = 0;
  // dinp[n] += keep ? dout / (1-p) : 0 (accumulates)
  virtual void dropoutBackward(float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset) = 0;

  // ---- optimizer -----------------------------------------------------------------------------
  // PyTorch AdamW (decoupled weight decay) on param[n] with grad[n] * gradScale; m, v[n] updated.
  virtual void adamw(float* param, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp) = 0;
};

}  // namespace pl
