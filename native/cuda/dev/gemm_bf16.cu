// Kernel lab: the GEMM on bf16 operands already K-major, C[M,N] = alpha A[M,K] B[N,K]^T + beta C (what a frozen
// bf16 weight and the converted activations go through; what torch.mm gets in bf16). CPU reference: the CPU
// backend's fp32 GEMM on the same bf16-rounded values, so only the summation order differs. Versions:
//   1     mma.sync, cp.async ring, ldmatrix (gemm_sm80.cu)            product: sm_80-89
//   2     wgmma + TMA at the tile width the product picks (gemm_hopper.cu)  product: sm_90a
//   3-7   the same kernel at each width, 256 216 200 192 128            (the pick is whichever measures best)
//   8     wgmma ping-pong schedule, 128-wide tiles (dev/kernels/gemm_hopper_variants.cu)  lab: 470-634 TFLOP/s
//         against the picked widths' 575-716 on an H200
// Usage: lab_gemm_bf16 [version].
#include "kernels/lab_kernels.h"
#include "lab.cuh"

int main(int argc, char** argv) {
  const lab::Device dev = lab::device();
  const std::vector<int> widths = pl::cuda::hopperGemmWidths();
  struct Shape {
    const char* label;
    int M, N, K;
  };
  const Shape shapes[] = {{"3B q/o_proj fwd", 2048, 3200, 3200}, {"3B gate/up_proj fwd", 2048, 8640, 3200},
                          {"3B down_proj fwd", 2048, 3200, 8640}, {"4096^3", 4096, 4096, 4096},
                          {"odd edges", 1000, 1000, 136}};
  auto needsHopper = [&] { return dev.hopper ? std::string() : std::string("needs a GPU that runs the sm_90a image"); };
  int failed = 0;
  for (const Shape& s : shapes) {
    const int picked = pl::cuda::hopperGemmWidth(s.M, s.N, dev.multiprocessors);
    std::vector<lab::Version> versions = {{1, "mma.sync (gemm_sm80.cu)", !dev.hopper, nullptr},
                                          {2, "wgmma, picked width " + std::to_string(picked), dev.hopper, needsHopper}};
    for (size_t i = 0; i < widths.size(); ++i)
      versions.push_back({int(3 + i), "wgmma, 128x" + std::to_string(widths[i]) + " tiles", false, needsHopper});
    versions.push_back({int(3 + widths.size()), "wgmma ping-pong, 128x128 tiles", false, needsHopper});
    const int only = lab::selectedVersion(argc, argv, versions);
    std::printf("gemm_bf16 %s: M %d N %d K %d\n", s.label, s.M, s.N, s.K);
    const int ld = (s.K + 7) / 8 * 8;
    lab::Vec a = lab::randn(size_t(s.M) * s.K, 61), b = lab::randn(size_t(s.N) * s.K, 62), c0 = lab::randn(size_t(s.M) * s.N, 63);
    const std::vector<uint16_t> ah = lab::roundBf16(a), bh = lab::roundBf16(b);
    std::vector<uint16_t> ap(size_t(s.M) * ld, 0), bp(size_t(s.N) * ld, 0);  // rows padded to ld with zeros
    for (int r = 0; r < s.M; ++r) std::copy(ah.begin() + size_t(r) * s.K, ah.begin() + size_t(r + 1) * s.K, ap.begin() + size_t(r) * ld);
    for (int r = 0; r < s.N; ++r) std::copy(bh.begin() + size_t(r) * s.K, bh.begin() + size_t(r + 1) * s.K, bp.begin() + size_t(r) * ld);
    lab::Vec want = c0;
    lab::cpu().gemm(want.data(), a.data(), b.data(), s.M, s.N, s.K, false, true, 0.75f, 0.5f);
    lab::Buffer<__nv_bfloat16> da(ap), db(bp);
    lab::Buffer<float> dc(want.size());
    auto call = [&](int v) {
      if (v == 1) pl::cuda::gemmBf16Sm80(dev.stream, dc.p, da.p, db.p, s.M, s.N, s.K, ld, ld, 0.75f, 0.5f);
      else if (v == 2) pl::cuda::gemmBf16(dev.stream, dc.p, da.p, db.p, s.M, s.N, s.K, ld, ld, 0.75f, 0.5f, dev.multiprocessors);
      else if (v < 3 + int(widths.size()))
        pl::cuda::gemmBf16Width(dev.stream, dc.p, da.p, db.p, s.M, s.N, s.K, ld, ld, 0.75f, 0.5f, dev.multiprocessors, widths[v - 3]);
      else pl::cuda::lab::gemmBf16PingPong(dev.stream, dc.p, da.p, db.p, s.M, s.N, s.K, ld, ld, 0.75f, 0.5f, dev.multiprocessors);
    };
    auto run = [&](int v) {
      pl::cuda::checkCuda(cudaMemcpy(dc.p, c0.data(), c0.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
      call(v);
    };
    auto verify = [&](int) { return lab::check("C", dc.get(), want, 1e-4 * std::sqrt(double(s.K)), 1e-4); };
    auto time = [&](int v) {
      const double ms = lab::timeMs([&] { call(v); });
      std::printf("    %.3f ms, %.1f TFLOP/s\n", ms, 2.0 * s.M * s.N * s.K / (ms * 1e-3) / 1e12);
    };
    failed += lab::runCase(versions, only, run, verify, time);
  }
  std::printf("%s: %d check(s) failed\n", argv[0], failed);
  return failed ? 1 : 0;
}
