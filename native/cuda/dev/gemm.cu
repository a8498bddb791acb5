// Kernel lab: the fp32 GEMM contract of model/backend.h, C[M,N] = alpha op(A) op(B) + beta C, as the model
// calls it (the LoRA-rank products and open-llama-3b's linear shapes at 2048 tokens). CPU reference: the CPU
// backend's fp32 GEMM. Versions:
//   1 simt       fp32 CUDA cores (gemm.cu)                       product: products under 2^18 multiply-adds
//   2 mma.sync   bf16 tensor cores, split K when skinny (gemm.cu) product: the rest off Hopper, and under
//                ~4M multiply-adds (or a side under 64) on Hopper
//   3 wgmma      sm_90a wgmma + TMA, operands converted (gemm_hopper.cu)  product: sm_90a from ~4M
//   4 skinny     fp32 CUDA cores reading the long operand once (dev/kernels/gemm_skinny.cu)  lab: 4x slower
//                per call than version 2 on an H200
// Usage: lab_gemm [version]. Tolerances: bf16 inputs 3e-2 sqrt(K) rms(a) rms(b) (the parity harness's), fp32 1e-4 sqrt(K).
#include "kernels/lab_kernels.h"
#include "lab.cuh"

namespace {

struct Shape {
  const char* label;
  int M, N, K;
  bool tA, tB;
};

}  // namespace

int main(int argc, char** argv) {
  using pl::cuda::GemmPath;
  const lab::Device dev = lab::device();
  const Shape shapes[] = {
      {"LoRA h = x A^T (3B, r 8)", 2048, 8, 3200, false, true},
      {"LoRA dB = dy^T h (3B, r 8)", 8640, 8, 2048, true, false},
      {"LoRA dA = dh^T x (3B, r 8)", 8, 3200, 2048, true, false},
      {"3B q/o_proj fwd", 2048, 3200, 3200, false, true},
      {"3B gate/up_proj fwd", 2048, 8640, 3200, false, true},
      {"3B down_proj bwd dx", 2048, 8640, 3200, false, false},
      {"3B up_proj bwd dW", 8640, 3200, 2048, true, false},
      {"4096^3", 4096, 4096, 4096, false, false},
  };
  int failed = 0;
  for (const Shape& s : shapes) {
    const size_t MK = size_t(s.M) * s.K, KN = size_t(s.K) * s.N, MN = size_t(s.M) * s.N;
    const bool skinny = pl::cuda::lab::gemmSkinnyApplies(s.M, s.N, s.K, s.tA, s.tB);
    const bool hopperShape = dev.hopper && double(s.M) * s.N * s.K >= double(1 << 22) && s.M >= 64 && s.N >= 64;
    const bool tiny = double(s.M) * s.N * s.K < double(1 << 18);
    const std::vector<lab::Version> versions = {
        {1, "simt (fp32 CUDA cores)", tiny, nullptr},
        {2, "mma.sync (bf16 tensor cores)", !hopperShape && !tiny, nullptr},
        {3, "wgmma + TMA (bf16, operands converted)", hopperShape,
         [&] { return dev.hopper ? std::string() : std::string("needs a GPU that runs the sm_90a image"); }},
        {4, "skinny (fp32 CUDA cores)", false,
         [&] { return skinny ? std::string() : std::string("not a product with a side of at most 16"); }},
    };
    const int only = lab::selectedVersion(argc, argv, versions);
    std::printf("gemm %s: M %d N %d K %d tA %d tB %d\n", s.label, s.M, s.N, s.K, s.tA, s.tB);
    lab::Vec a = lab::randn(MK, 1), b = lab::randn(KN, 2), c0 = lab::randn(MN, 3);
    lab::Vec want = c0;
    lab::cpu().gemm(want.data(), a.data(), b.data(), s.M, s.N, s.K, s.tA, s.tB, 0.75f, 0.5f);
    lab::Buffer<float> da(a), db(b), dc(MN);
    const size_t splitBytes = pl::cuda::gemmScratchBytes(s.M, s.N, s.K, GemmPath::Mma, dev.multiprocessors);
    lab::Buffer<uint8_t> scratch(std::max(splitBytes, pl::cuda::gemmHopperScratchBytes(s.M, s.N, s.K)));
    auto call = [&](int v) {
      float* C = dc.p;
      switch (v) {
        case 1: pl::cuda::gemm(dev.stream, C, da.p, db.p, s.M, s.N, s.K, s.tA, s.tB, 0.75f, 0.5f, GemmPath::Simt, dev.multiprocessors, nullptr); break;
        case 2: pl::cuda::gemm(dev.stream, C, da.p, db.p, s.M, s.N, s.K, s.tA, s.tB, 0.75f, 0.5f, GemmPath::Mma, dev.multiprocessors, splitBytes ? reinterpret_cast<float*>(scratch.p) : nullptr); break;
        case 3: pl::cuda::gemmHopper(dev.stream, C, da.p, db.p, s.M, s.N, s.K, s.tA, s.tB, 0.75f, 0.5f, scratch.p, dev.multiprocessors); break;
        case 4: pl::cuda::lab::gemmSkinny(dev.stream, C, da.p, db.p, s.M, s.N, s.K, s.tA, s.tB, 0.75f, 0.5f); break;
      }
    };
    auto run = [&](int v) {
      pl::cuda::checkCuda(cudaMemcpy(dc.p, c0.data(), MN * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
      call(v);
    };
    auto verify = [&](int v) {
      const double tol = (v == 1 || v == 4) ? 1e-4 : 3e-2;
      return lab::check("C", dc.get(), want, tol * 0.75 * std::sqrt(double(s.K)), tol);
    };
    auto time = [&](int v) {
      const double ms = lab::timeMs([&] { call(v); });
      std::printf("    %.3f ms, %.1f TFLOP/s\n", ms, 2.0 * s.M * s.N * s.K / (ms * 1e-3) / 1e12);
    };
    failed += lab::runCase(versions, only, run, verify, time);
  }
  std::printf("%s: %d check(s) failed\n", argv[0], failed);
  return failed ? 1 : 0;
}
