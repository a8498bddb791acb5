// Kernel lab: a LoRA linear's product with its low-rank update, C = A W^T + beta C + scale H B^T (y = x W^T +
// s h B^T, B [N, r]), on bf16 operands already K-major (a frozen bf16 weight). CPU reference: the CPU backend's
// fp32 GEMMs on the same bf16-rounded A and W. Versions:
//   1 two passes: wgmma at the picked width, then the rank-r update by gemm() (mma.sync, split K)  product
//     (Backend::gemmLowRank on sm_90a)
//   2 the update fused into the wgmma epilogue, 128-wide tiles (dev/kernels/gemm_hopper_variants.cu)  lab: slower
//     on an H200 where the product alone takes wider tiles (3200 = 16 x 200, 8640 = 40 x 216 fill whole waves)
// Usage: lab_gemm_lowrank [version]. sm_90a only.
#include "kernels/lab_kernels.h"
#include "lab.cuh"

int main(int argc, char** argv) {
  const lab::Device dev = lab::device();
  struct Shape {
    const char* label;
    int M, N, K, r;
  };
  const Shape shapes[] = {{"3B q/o_proj + LoRA r 8", 2048, 3200, 3200, 8}, {"3B gate/up_proj + LoRA r 8", 2048, 8640, 3200, 8},
                          {"3B down_proj + LoRA r 8", 2048, 3200, 8640, 8}, {"small preset 231x688x256 + LoRA r 16", 231, 688, 256, 16}};
  auto needsHopper = [&] { return dev.hopper ? std::string() : std::string("needs a GPU that runs the sm_90a image"); };
  const std::vector<lab::Version> versions = {{1, "wgmma, then the update by gemm()", true, needsHopper},
                                              {2, "wgmma with the update fused into the epilogue", false, needsHopper}};
  const int only = lab::selectedVersion(argc, argv, versions);
  const float scale = 2.0f, beta = 0.5f;
  int failed = 0;
  for (const Shape& s : shapes) {
    std::printf("gemm_lowrank %s: M %d N %d K %d r %d (the product picks %d-wide tiles)\n", s.label, s.M, s.N, s.K, s.r,
                pl::cuda::hopperGemmWidth(s.M, s.N, dev.multiprocessors));
    const int ld = (s.K + 7) / 8 * 8;
    lab::Vec a = lab::randn(size_t(s.M) * s.K, 71), w = lab::randn(size_t(s.N) * s.K, 72, 0.05f);
    lab::Vec h = lab::randn(size_t(s.M) * s.r, 73), l = lab::randn(size_t(s.N) * s.r, 74, 0.1f), c0 = lab::randn(size_t(s.M) * s.N, 75);
    const std::vector<uint16_t> ah = lab::roundBf16(a), wh = lab::roundBf16(w);
    std::vector<uint16_t> ap(size_t(s.M) * ld, 0), wp(size_t(s.N) * ld, 0);
    for (int r = 0; r < s.M; ++r) std::copy(ah.begin() + size_t(r) * s.K, ah.begin() + size_t(r + 1) * s.K, ap.begin() + size_t(r) * ld);
    for (int r = 0; r < s.N; ++r) std::copy(wh.begin() + size_t(r) * s.K, wh.begin() + size_t(r + 1) * s.K, wp.begin() + size_t(r) * ld);
    lab::Vec want = c0;
    lab::cpu().gemm(want.data(), a.data(), w.data(), s.M, s.N, s.K, false, true, 1.0f, beta);
    lab::cpu().gemm(want.data(), h.data(), l.data(), s.M, s.N, s.r, false, true, scale, 1.0f);
    lab::Buffer<__nv_bfloat16> da(ap), dw(wp);
    lab::Buffer<float> dh(h), dl(l), dc(want.size());
    const size_t split = pl::cuda::gemmScratchBytes(s.M, s.N, s.r, pl::cuda::GemmPath::Auto, dev.multiprocessors);
    lab::Buffer<uint8_t> scratch(split);
    auto call = [&](int v) {
      if (v == 1) {
        pl::cuda::gemmBf16(dev.stream, dc.p, da.p, dw.p, s.M, s.N, s.K, ld, ld, 1.0f, beta, dev.multiprocessors);
        pl::cuda::gemm(dev.stream, dc.p, dh.p, dl.p, s.M, s.N, s.r, false, true, scale, 1.0f, pl::cuda::GemmPath::Auto,
                       dev.multiprocessors, split ? reinterpret_cast<float*>(scratch.p) : nullptr);
      } else {
        const pl::cuda::lab::LowRankUpdate lr{dh.p, dl.p, s.r, s.r, 1, scale};
        pl::cuda::lab::gemmBf16LowRank(dev.stream, dc.p, da.p, dw.p, s.M, s.N, s.K, ld, ld, beta, dev.multiprocessors, lr);
      }
    };
    auto run = [&](int v) {
      pl::cuda::checkCuda(cudaMemcpy(dc.p, c0.data(), c0.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
      call(v);
    };
    // The update's own bf16 rounding (version 1's mma.sync): ~1e-2 of |s h B^T| ~ s sqrt(r) 0.1.
    auto verify = [&](int) {
      return lab::check("C", dc.get(), want, 1e-4 * 0.05 * std::sqrt(double(s.K)) + 1e-2 * scale * 0.1 * std::sqrt(double(s.r)), 1e-3);
    };
    auto time = [&](int v) {
      const double ms = lab::timeMs([&] { call(v); });
      std::printf("    %.3f ms, %.1f TFLOP/s (the product's FLOPs alone)\n", ms, 2.0 * s.M * s.N * s.K / (ms * 1e-3) / 1e12);
    };
    failed += lab::runCase(versions, only, run, verify, time);
  }
  std::printf("%s: %d check(s) failed\n", argv[0], failed);
  return failed ? 1 : 0;
}
