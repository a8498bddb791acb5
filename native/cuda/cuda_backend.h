// The CUDA implementation of model/backend.h: device memory through cudaMalloc, one non-blocking stream
// per backend on which every op is enqueued in order, the kernels of native/cuda/*.cu. No cuBLAS/cuDNN.
// Ops are asynchronous; upload(), download() and sumSquares() wait for the stream, synchronize() waits
// explicitly. Every entry point makes the backend's device current first, so any host thread may drive
// it (one at a time: like the CPU backend it is not thread-safe). Failures throw pl::Error; nothing exits.
// This header needs no CUDA headers, so host-compiled (g++) code such as the addon can include it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../core/memory_meter.h"
#include "../model/backend.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace pl::cuda {

class OpProfile;

// What a CUDA backend is made with (createBackend).
struct CudaOptions {
  // The attention backward keeps dS (bf16, B*H*T^2 elements, up to 1 GiB) so that dQ is one product (the
  // default: on an H200 1.65 against 1.85 ms fwd+bwd at t 2048), or recomputes S and dP for dQ (less device
  // memory): Engine.create's attentionBackward option, 'fast' or 'low-memory'.
  bool keepAttentionScores = true;
  // For the parity harness (dev/check_backend.cc) only; the engine never sets it: every product on one of the
  // product's GEMM kernels (Wgmma: the sm_90a one, refused where it cannot run), whatever its shape.
  enum class Gemm { Auto, Simt, Mma, Wgmma } gemm = Gemm::Auto;
};

class CudaBackend final : public Backend {
 public:
  // Use createBackend(): it checks the device first.
  CudaBackend(int device, const std::string& deviceName, int multiprocessors, const CudaOptions& options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return "cuda"; }
  // No host thread pool: reports the streaming multiprocessors, the device's unit of parallel work.
  int threads() const override { return multiprocessors_; }
  int device() const { return device_; }
  // "CUDA device 0 (NVIDIA H100 80GB HBM3)", as error messages name it.
  std::string deviceLabel() const;
  // The stream every op is queued on (collectives order themselves against it).
  CUstream_st* stream() const { return stream_; }

  void* allocate(size_t bytes) override;
  void release(void* ptr) override;
  size_t allocatedBytes() const override { return meter_.current(); }
  size_t peakAllocatedBytes() const override { return meter_.peak(); }
  void upload(void* dst, const void* hostSrc, size_t bytes) override;
  void download(void* hostDst, const void* src, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void synchronize() override;
  void setProfiling(bool on) override;
  std::string profileReport() override;

  // The ops of backend_ops.def (from native/ops/spec.mjs), each overridden; the composite ones keep Backend's.
#define PL_OP(ret, name, params) ret name params override;
#define PL_OP_COMPOSITE(ret, name, params)
#include "../model/backend_ops.def"
#undef PL_OP
#undef PL_OP_COMPOSITE

  // ---- beyond the Backend interface: bf16 operands for the Hopper GEMM ----
  // Whether large gemm() calls run the sm_90a wgmma/TMA kernel on this device.
  bool hopperGemm() const { return hopperGemm_; }
  // out (bf16, rows x ldk) = element (r, k) of an fp32 operand stored K-contiguous (X[r*K+k]) or not
  // (X[k*rows+r]), zero-padded to ldk (a multiple of 8).
  void toBf16KMajor(void* out, const float* X, int rows, int K, bool kContiguous, int ldk);
  // C[M,N] = alpha * A[M,K] B[N,K]^T + beta * C on bf16 rows lda / ldb apart. Needs hopperGemm().
  // width: the output-tile width (one of hopperGemmWidths()), 0 to let the kernel pick.
  void gemmBf16(float* C, const void* A, const void* B, int M, int N, int K, int lda, int ldb, float alpha,
                float beta, int width = 0);
  // The attention kernels by name: "flash" (dQ from the kept dS), "flash-recompute" (the backend's
  // default is one of these two, by CudaOptions::keepAttentionScores) or "simt" (fp32, for the parity
  // harness); settable per call by timing code (kernels.timeAttention's kernel option).
  std::string attentionKernel() const;
  void setAttentionKernel(const std::string& name);
  // The tile widths the Hopper kernel has, and the one it picks for an M x N output on a device with
  // `multiprocessors` SMs.
  static std::vector<int> hopperGemmWidths();
  static int hopperGemmWidth(int M, int N, int multiprocessors);

 private:
  void use() const;                       // makes the device current on the calling thread
  bool hopperFor(int M, int N, int K) const;  // whether a product of this shape takes the wgmma kernel
  bool sm80Bf16For(int M, int N, int K) const;  // whether a bf16-weight product takes gemm_sm80.cu's kernel
  // A product with a bf16 weight on bf16 tensor cores: the activations converted, the weight as it is or
  // through a bf16 transposed copy (in K slices when large); the Hopper kernel or the sm_80 one.
  void gemmWeightBf16Tensor(float* C, const float* A, const uint16_t* W, int M, int N, int K, bool transW,
                            float alpha, float beta, bool hopper);
  void* grow(void*& buffer, size_t& have, size_t want, const char* what);
  void* scratchFor(size_t bytes);         // grows the scratch buffer on demand
  float* widenedFor(size_t floats);       // grows the buffer of a bf16 weight widened to fp32
  [[noreturn]] void fail(int err, const char* what) const;

  int device_;
  std::string deviceName_;
  int multiprocessors_;
  int gemmPath_;               // a GemmPath (Auto unless the harness forces one)
  int attentionPath_;          // an AttentionPath
  bool hopperGemm_ = false;    // the sm_90a wgmma/TMA GEMM runs here
  std::unique_ptr<OpProfile> profile_;  // while profiling
  MemoryMeter meter_;                   // allocations and the scratch buffer
  CUstream_st* stream_ = nullptr;
  void* result_ = nullptr;  // one double: sumSquares' result
  void* scratch_ = nullptr;
  size_t scratchBytes_ = 0;
  void* widened_ = nullptr;  // gemmWeightBf16 off the Hopper path: the weight in fp32 (gemm() may use scratch_)
  size_t widenedBytes_ = 0;
};

// Makes a backend on device `deviceIndex`. Throws pl::Error naming the device (index and name) when it
// does not exist, is older than compute capability 8.0 (bf16 tensor cores), has no kernel image in this
// build, or its stream cannot be created, and when options.gemm is Wgmma where the sm_90a kernel cannot
// run. No environment variable picks a kernel: each product dispatches by device and shape alone.
std::unique_ptr<Backend> createBackend(int deviceIndex, const CudaOptions& options = {});

}  // namespace pl::cuda
