// CudaBackend: memory, transfers and the dispatch of each op of model/backend.h to its launcher in
// kernels.h, plus a growable scratch buffer for the ops that need one (sumSquares partials, RMSNorm
// dweight partials, attention's delta).
#include "cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "kernels.h"
#include "op_profile.h"

namespace pl::cuda {

namespace {

__global__ void probe_kernel() {}

GemmPath gemmPathOf(CudaOptions::Gemm gemm) {
  switch (gemm) {
    case CudaOptions::Gemm::Simt: return GemmPath::Simt;
    case CudaOptions::Gemm::Mma: return GemmPath::Mma;
    case CudaOptions::Gemm::Wgmma: return GemmPath::Wgmma;
    default: return GemmPath::Auto;
  }
}

// The attention kernels by name (setAttentionKernel, timeAttention's kernel option): flash, the flash
// kernels with dQ from the kept dS (on an H200: 1.85 -> 1.65 ms fwd+bwd at t 2048, 3.26 -> 2.90 at t 4096
// against flash-recompute, which recomputes S and dP for dQ and keeps no dS); simt, the fp32 kernels.
constexpr struct {
  const char* name;
  AttentionPath path;
} kAttentionKernels[] = {{"flash", AttentionPath::FlashDs},
                         {"flash-recompute", AttentionPath::Flash},
                         {"simt", AttentionPath::Simt}};

AttentionPath attentionPathNamed(const std::string& name, const std::string& where) {
  for (const auto& k : kAttentionKernels)
    if (name == k.name) return k.path;
  throw Error(where + " must be flash, flash-recompute or simt, got '" + name + "'");
}

}  // namespace

CudaBackend::CudaBackend(int device, const std::string& deviceName, int multiprocessors, const CudaOptions& options)
    : device_(device), deviceName_(deviceName), multiprocessors_(multiprocessors),
      gemmPath_(static_cast<int>(gemmPathOf(options.gemm))),
      attentionPath_(static_cast<int>(options.keepAttentionScores ? AttentionPath::FlashDs : AttentionPath::Flash)) {
  use();
  cudaStream_t stream = nullptr;
  cudaError_t err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) fail(err, "cudaStreamCreateWithFlags");
  stream_ = stream;
  err = cudaMalloc(&result_, sizeof(double));
  if (err != cudaSuccess) {
    cudaGetLastError();
    cudaStreamDestroy(stream_);
    fail(err, "cudaMalloc (backend scratch)");
  }
  hopperGemm_ = hopperGemmSupported(stream_);
  if (static_cast<GemmPath>(gemmPath_) == GemmPath::Wgmma && !hopperGemm_) {
    cudaFree(result_);
    cudaStreamDestroy(stream_);
    throw Error("the wgmma GEMM was asked for, but " + deviceLabel() + " does not run this build's sm_90a (Hopper) image");
  }
}

CudaBackend::~CudaBackend() {
  // Destructors must not throw: errors here are dropped (the process may be tearing down).
  cudaSetDevice(device_);
  cudaStreamSynchronize(stream_);
  profile_.reset();
  if (scratch_) cudaFree(scratch_);
  if (widened_) cudaFree(widened_);
  if (result_) cudaFree(result_);
  cudaStreamDestroy(stream_);
  cudaGetLastError();
}

std::string CudaBackend::deviceLabel() const {
  return "CUDA device " + std::to_string(device_) + " (" + deviceName_ + ")";
}

void CudaBackend::fail(int err, const char* what) const {
  const cudaError_t e = static_cast<cudaError_t>(err);
  cudaGetLastError();  // clear a non-sticky error so the engine stays usable
  throw Error("cuda backend on " + deviceLabel() + ": " + what + " failed: " + cudaGetErrorName(e) + ": " +
              cudaGetErrorString(e));
}

// The runtime's current device is per host thread; the addon's workers run on several.
void CudaBackend::use() const {
  const cudaError_t err = cudaSetDevice(device_);
  if (err != cudaSuccess) fail(err, "cudaSetDevice");
}

// Scratch of at least `bytes`, grown (never shrunk) on demand. Growing waits for queued work that may
// still read the old buffer.
// Grows one of the backend's own buffers to at least `want` bytes (contents not kept), counted by the meter.
void* CudaBackend::grow(void*& buffer, size_t& have, size_t want, const char* what) {
  if (want <= have) return buffer;
  if (buffer) {
    cudaError_t err = cudaStreamSynchronize(stream_);
    if (err != cudaSuccess) fail(err, "cudaStreamSynchronize");
    err = cudaFree(buffer);
    meter_.resize(have, 0);
    buffer = nullptr;
    have = 0;
    if (err != cudaSuccess) fail(err, "cudaFree");
  }
  const cudaError_t err = cudaMalloc(&buffer, want);
  if (err != cudaSuccess) {
    cudaGetLastError();
    buffer = nullptr;
    throw Error("out of memory: requested " + std::to_string(want) + " bytes of " + what + " on " + deviceLabel());
  }
  meter_.resize(0, want);
  have = want;
  return buffer;
}

void* CudaBackend::scratchFor(size_t bytes) {
  if (bytes <= scratchBytes_) return scratch_;
  return grow(scratch_, scratchBytes_, bytes < 2 * scratchBytes_ ? 2 * scratchBytes_ : bytes, "scratch");
}

// ---- memory --------------------------------------------------------------------------------------

void* CudaBackend::allocate(size_t bytes) {
  use();
  void* p = nullptr;
  const size_t n = bytes == 0 ? 256 : bytes;
  const cudaError_t err = cudaMalloc(&p, n);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // out of memory is not sticky: clear it so the engine stays usable
    size_t freeB = 0, totalB = 0;
    cudaMemGetInfo(&freeB, &totalB);
    cudaGetLastError();
    throw Error("out of memory: requested " + std::to_string(bytes) + " bytes on " + deviceLabel() + " (" +
                std::to_string(freeB >> 20) + " MiB free of " + std::to_string(totalB >> 20) + " MiB)");
  }
  if (err != cudaSuccess) fail(err, "cudaMalloc");
  const cudaError_t zeroErr = cudaMemsetAsync(p, 0, n, stream_);
  if (zeroErr != cudaSuccess) {
    cudaFree(p);
    fail(zeroErr, "cudaMemsetAsync");
  }
  meter_.add(p, n);
  return p;
}

void CudaBackend::release(void* ptr) {
  if (!ptr) return;
  use();
  // Work still queued on the stream may use ptr; cudaFree waits for the device, but be explicit.
  cudaError_t err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess) fail(err, "cudaStreamSynchronize");
  meter_.remove(ptr);
  err = cudaFree(ptr);
  if (err != cudaSuccess) fail(err, "cudaFree");
}

void CudaBackend::upload(void* dst, const void* hostSrc, size_t bytes) {
  if (bytes == 0) return;
  use();
  cudaError_t err = cudaMemcpyAsync(dst, hostSrc, bytes, cudaMemcpyHostToDevice, stream_);
  if (err != cudaSuccess) fail(err, "cudaMemcpyAsync (upload)");
  // The caller may free or reuse hostSrc on return (pageable memory): wait for the copy.
  err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess) fail(err, "upload");
}

void CudaBackend::download(void* hostDst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  use();
  cudaError_t err = cudaMemcpyAsync(hostDst, src, bytes, cudaMemcpyDeviceToHost, stream_);
  if (err != cudaSuccess) fail(err, "cudaMemcpyAsync (download)");
  err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess) fail(err, "download");
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  use();
  ProfileScope span(profile_.get(), "copy");
  const cudaError_t err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_);
  if (err != cudaSuccess) fail(err, "cudaMemcpyAsync (copy)");
}

void CudaBackend::zero(void* dst, size_t bytes) {
  if (bytes == 0) return;
  use();
  ProfileScope span(profile_.get(), "zero");
  const cudaError_t err = cudaMemsetAsync(dst, 0, bytes, stream_);
  if (err != cudaSuccess) fail(err, "cudaMemsetAsync");
}

void CudaBackend::setProfiling(bool on) {
  use();
  if (profile_) {
    synchronize();
    profile_.reset();
  }
  if (on) profile_ = std::make_unique<OpProfile>(stream_);
}

std::string CudaBackend::profileReport() {
  if (!profile_) return {};
  synchronize();
  profile_->harvest();
  return profile_->report();
}

void CudaBackend::synchronize() {
  use();
  const cudaError_t err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess) fail(err, "synchronize");
}

// ---- ops -----------------------------------------------------------------------------------------

void CudaBackend::gemm(float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB,
                       float alpha, float beta) {
  use();
  const auto path = static_cast<GemmPath>(gemmPath_);
  if (hopperFor(M, N, K)) {
    ProfileScope span(profile_.get(), "gemm: wgmma (with fp32->bf16 conversions)");
    void* scratch = scratchFor(gemmHopperScratchBytes(M, N, K));
    cuda::gemmHopper(stream_, C, A, B, M, N, K, transA, transB, alpha, beta, scratch, multiprocessors_);
    return;
  }
  const GemmPath sm80 = path == GemmPath::Wgmma ? GemmPath::Auto : path;
  const size_t partialBytes = gemmScratchBytes(M, N, K, sm80, multiprocessors_);
  float* partial = partialBytes ? static_cast<float*>(scratchFor(partialBytes)) : nullptr;
  ProfileScope span(profile_.get(), partial ? "gemm: mma.sync split-K (skinny)" : "gemm: mma.sync / simt");
  cuda::gemm(stream_, C, A, B, M, N, K, transA, transB, alpha, beta, sm80, multiprocessors_, partial);
}

bool CudaBackend::hopperFor(int M, int N, int K) const {
  const auto path = static_cast<GemmPath>(gemmPath_);
  // The Hopper kernel from about 4M multiply-adds up (below that its operand conversion dominates).
  return hopperGemm_ && M > 0 && N > 0 && K > 0 &&
         (path == GemmPath::Wgmma ||
          (path == GemmPath::Auto && double(M) * N * K >= double(1 << 22) && M >= 64 && N >= 64));
}

bool CudaBackend::sm80Bf16For(int M, int N, int K) const {
  // Off Hopper (or with mma.sync forced), bf16 weights from about 4M multiply-adds up go to gemm_sm80.cu's
  // kernel as they are; below that, and on the SIMT path, they are widened to fp32.
  const auto path = static_cast<GemmPath>(gemmPath_);
  return !hopperFor(M, N, K) && path != GemmPath::Simt && M >= 64 && N >= 64 && K > 0 &&
         double(M) * N * K >= double(1 << 22);
}

void CudaBackend::gemmWeightBf16Tensor(float* C, const float* A, const uint16_t* W, int M, int N, int K, bool transW,
                                       float alpha, float beta, bool hopper) {
  // The weight goes in as it is when it is already K-major with 16-byte rows (y = x W^T); otherwise it is
  // transposed or padded, bf16 to bf16, next to the converted activations.
  const auto* w = reinterpret_cast<const __nv_bfloat16*>(W);
  const int ldk = static_cast<int>(alignUp(K, 8));
  const bool direct = transW && K % 8 == 0 && aligned16({W});
  // A transposed copy of more than kMaxWeightCopy (dx through a large vocabulary's lm_head: 205 MB at
  // open-llama-3b) goes K-slice by K-slice, accumulating into C, so the scratch holds one slice of the
  // weight and of A. Slices are whole 64-wide stages; W's rows k0.. are contiguous for dx = dy W.
  constexpr size_t kMaxWeightCopy = size_t(64) << 20;
  const size_t copyBytes = size_t(N) * ldk * 2;
  const int slices = direct || transW ? 1 : static_cast<int>((copyBytes + kMaxWeightCopy - 1) / kMaxWeightCopy);
  const int kc = slices == 1 ? K : static_cast<int>(alignUp((K + slices - 1) / slices, 64));
  const size_t aBytes = alignUp(size_t(M) * alignUp(kc, 8) * 2);
  const size_t wBytes = direct ? 0 : alignUp(size_t(N) * alignUp(kc, 8) * 2);
  auto* scratch = static_cast<uint8_t*>(scratchFor(aBytes + wBytes));
  auto* a = reinterpret_cast<__nv_bfloat16*>(scratch);
  auto* wt = reinterpret_cast<__nv_bfloat16*>(scratch + aBytes);
  for (int k0 = 0; k0 < K; k0 += kc) {
    const int kn = std::min(kc, K - k0), ld = static_cast<int>(alignUp(kn, 8));
    cuda::toBf16KMajor(stream_, a, A + k0, M, kn, true, ld, size_t(K));
    if (!direct) cuda::toBf16KMajor(stream_, wt, w + (transW ? 0 : size_t(k0) * N), N, kn, transW, ld);
    const __nv_bfloat16* b = direct ? w : wt;
    const int ldb = direct ? K : ld;
    const float betaHere = k0 == 0 ? beta : 1.0f;
    if (hopper)
      cuda::gemmBf16(stream_, C, a, b, M, N, kn, ld, ldb, alpha, betaHere, multiprocessors_);
    else
      cuda::gemmBf16Sm80(stream_, C, a, b, M, N, kn, ld, ldb, alpha, betaHere);
  }
}

void CudaBackend::gemmWeightBf16(float* C, const float* A, const uint16_t* W, int M, int N, int K, bool transW,
                                 float alpha, float beta) {
  use();
  if (M <= 0 || N <= 0) return;
  if (hopperFor(M, N, K)) {
    ProfileScope span(profile_.get(), "gemm: wgmma, bf16 weight");
    gemmWeightBf16Tensor(C, A, W, M, N, K, transW, alpha, beta, true);
    return;
  }
  if (sm80Bf16For(M, N, K)) {
    ProfileScope span(profile_.get(), "gemm: mma.sync, bf16 weight");
    gemmWeightBf16Tensor(C, A, W, M, N, K, transW, alpha, beta, false);
    return;
  }
  const size_t n = size_t(N) * size_t(K);
  float* w32 = widenedFor(n);
  {
    ProfileScope span(profile_.get(), "widen bf16 weight");
    cuda::widenBf16(stream_, w32, reinterpret_cast<const __nv_bfloat16*>(W), n);
  }
  gemm(C, A, w32, M, N, K, false, transW, alpha, beta);
}

float* CudaBackend::widenedFor(size_t floats) {
  return static_cast<float*>(grow(widened_, widenedBytes_, floats * sizeof(float), "a widened bf16 weight"));
}

void CudaBackend::toBf16KMajor(void* out, const float* X, int rows, int K, bool kContiguous, int ldk) {
  use();
  cuda::toBf16KMajor(stream_, static_cast<__nv_bfloat16*>(out), X, rows, K, kContiguous, ldk);
}

void CudaBackend::gemmBf16(float* C, const void* A, const void* B, int M, int N, int K, int lda, int ldb, float alpha,
                           float beta, int width) {
  use();
  if (!hopperGemm_) throw Error("gemmBf16: " + deviceLabel() + " does not run this build's sm_90a (Hopper) GEMM");
  const auto* a = static_cast<const __nv_bfloat16*>(A);
  const auto* b = static_cast<const __nv_bfloat16*>(B);
  if (width == 0)
    cuda::gemmBf16(stream_, C, a, b, M, N, K, lda, ldb, alpha, beta, multiprocessors_);
  else
    cuda::gemmBf16Width(stream_, C, a, b, M, N, K, lda, ldb, alpha, beta, multiprocessors_, width);
}

std::vector<int> CudaBackend::hopperGemmWidths() { return cuda::hopperGemmWidths(); }

std::string CudaBackend::attentionKernel() const {
  for (const auto& k : kAttentionKernels)
    if (static_cast<int>(k.path) == attentionPath_) return k.name;
  return "flash";
}

void CudaBackend::setAttentionKernel(const std::string& name) {
  attentionPath_ = static_cast<int>(attentionPathNamed(name, "the attention kernel"));
}

int CudaBackend::hopperGemmWidth(int M, int N, int multiprocessors) {
  return cuda::hopperGemmWidth(M, N, multiprocessors);
}

void CudaBackend::add(float* out, const float* a, const float* b, size_t n) {
  use();
  ProfileScope span(profile_.get(), "add");
  cuda::add(stream_, out, a, b, n);
}

void CudaBackend::axpy(float* y, const float* x, float a, size_t n) {
  use();
  ProfileScope span(profile_.get(), "axpy");
  cuda::axpy(stream_, y, x, a, n);
}

void CudaBackend::scale(float* x, float a, size_t n) {
  use();
  ProfileScope span(profile_.get(), "scale");
  cuda::scale(stream_, x, a, n);
}

double CudaBackend::sumSquares(const float* x, size_t n) {
  use();
  ProfileScope span(profile_.get(), "sumSquares");
  void* scratch = scratchFor(sumSquaresScratchBytes(n));
  cuda::sumSquares(stream_, static_cast<double*>(result_), scratch, x, n);
  double host = 0.0;
  cudaError_t err = cudaMemcpyAsync(&host, result_, sizeof(double), cudaMemcpyDeviceToHost, stream_);
  if (err != cudaSuccess) fail(err, "cudaMemcpyAsync (sumSquares)");
  err = cudaStreamSynchronize(stream_);
  if (err != cudaSuccess) fail(err, "sumSquares");
  return host;
}

void CudaBackend::embeddingForward(float* out, const int32_t* tokens, const float* wte, int N, int C) {
  use();
  ProfileScope span(profile_.get(), "embeddingForward");
  cuda::embeddingForward(stream_, out, tokens, wte, N, C);
}

void CudaBackend::embeddingBackward(float* dwte, const float* dout, const int32_t* tokens, int N, int C, int V) {
  use();
  ProfileScope span(profile_.get(), "embeddingBackward");
  cuda::embeddingBackward(stream_, dwte, dout, tokens, N, C, V);
}

void CudaBackend::rmsnormForward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                                 float eps) {
  use();
  ProfileScope span(profile_.get(), "rmsnormForward");
  cuda::rmsnormForward(stream_, out, rstd, inp, weight, N, C, eps);
}

void CudaBackend::rmsnormBackward(float* dinp, float* dweight, const float* dout, const float* inp,
                                  const float* weight, const float* rstd, int N, int C) {
  use();
  ProfileScope span(profile_.get(), "rmsnormBackward");
  void* scratch = dweight ? scratchFor(rmsnormBackwardScratchBytes(N, C)) : nullptr;
  cuda::rmsnormBackward(stream_, dinp, dweight, dout, inp, weight, rstd, N, C, scratch);
}

void CudaBackend::ropeForward(float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                              int pos0) {
  use();
  ProfileScope span(profile_.get(), "ropeForward");
  cuda::rope(stream_, x, cosTable, sinTable, B, T, H, D, pos0, false);
}

void CudaBackend::ropeBackward(float* dx, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
                               int pos0) {
  use();
  ProfileScope span(profile_.get(), "ropeBackward");
  cuda::rope(stream_, dx, cosTable, sinTable, B, T, H, D, pos0, true);
}

void CudaBackend::attentionForward(float* out, float* lse, const float* q, const float* k, const float* v, int B,
                                   int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  use();
  ProfileScope span(profile_.get(), "attentionForward");
  const auto path = static_cast<AttentionPath>(attentionPath_);
  const size_t bytes = attentionForwardScratchBytes(B, Tq, Tcap, H, Hkv, D, path);
  cuda::attentionForward(stream_, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, path,
                         bytes ? scratchFor(bytes) : nullptr);
}

void CudaBackend::attentionBackward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                    const float* k, const float* v, const float* out, const float* lse, int B,
                                    int T, int H, int Hkv, int D) {
  use();
  ProfileScope span(profile_.get(), "attentionBackward");
  const auto path = static_cast<AttentionPath>(attentionPath_);
  void* scratch = scratchFor(attentionBackwardScratchBytes(B, T, H, Hkv, D, path));
  cuda::attentionBackward(stream_, dq, dk, dv, dout, q, k, v, out, lse, B, T, H, Hkv, D, scratch, path);
}

void CudaBackend::swigluForward(float* out, const float* gate, const float* up, size_t n) {
  use();
  ProfileScope span(profile_.get(), "swigluForward");
  cuda::swigluForward(stream_, out, gate, up, n);
}

void CudaBackend::swigluBackward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                                 size_t n) {
  use();
  ProfileScope span(profile_.get(), "swigluBackward");
  cuda::swigluBackward(stream_, dgate, dup, dout, gate, up, n);
}

void CudaBackend::crossEntropy(float* losses, float* logits, const int32_t* targets, int N, int V, float dscale,
                               bool grad) {
  use();
  ProfileScope span(profile_.get(), "crossEntropy");
  cuda::crossEntropy(stream_, losses, logits, targets, N, V, dscale, grad);
}

void CudaBackend::dropoutForward(float* out, const float* inp, size_t n, float p, uint64_t seed, uint64_t offset) {
  use();
  ProfileScope span(profile_.get(), "dropoutForward");
  cuda::dropoutForward(stream_, out, inp, n, p, seed, offset);
}

void CudaBackend::dropoutBackward(float* dinp, const float* dout, size_t n, float p, uint64_t seed, uint64_t offset) {
  use();
  ProfileScope span(profile_.get(), "dropoutBackward");
  cuda::dropoutBackward(stream_, dinp, dout, n, p, seed, offset);
}

void CudaBackend::adamw(float* param, const float* grad, float* m, float* v, size_t n, const AdamWParams& hp) {
  use();
  ProfileScope span(profile_.get(), "adamw");
  cuda::adamw(stream_, param, grad, m, v, n, hp);
}

// ---- factory -------------------------------------------------------------------------------------

std::unique_ptr<Backend> createBackend(int deviceIndex, const CudaOptions& options) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error("CUDA device " + std::to_string(deviceIndex) + " cannot be used: " + cudaGetErrorString(err));
  }
  if (deviceIndex < 0 || deviceIndex >= count)
    throw Error("CUDA device " + std::to_string(deviceIndex) + " does not exist (" + std::to_string(count) +
                " visible)");
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, deviceIndex);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error("CUDA device " + std::to_string(deviceIndex) + " cannot be queried: " + cudaGetErrorString(err));
  }
  const std::string label = "CUDA device " + std::to_string(deviceIndex) + " (" + prop.name + ")";
  if (prop.major < 8)
    throw Error(label + " has compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                "; the CUDA backend needs 8.0 or newer (bf16 tensor cores)");
  err = cudaSetDevice(deviceIndex);
  if (err == cudaSuccess) err = cudaFree(nullptr);  // creates the context now, so failures surface here
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error(label + " cannot be used: " + cudaGetErrorString(err));
  }
  cudaFuncAttributes attr{};
  err = cudaFuncGetAttributes(&attr, probe_kernel);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw Error(label + " (compute capability " + std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                ") has no kernel image in this build: " + cudaGetErrorString(err));
  }
  return std::make_unique<CudaBackend>(deviceIndex, prop.name, prop.multiProcessorCount, options);
}

}  // namespace pl::cuda
