// Kernel lab: causal grouped-query attention, forward and backward (q, out, dout [B,T,H,D]; k, v [B,T,Hkv,D];
// lse [B,H,T]). CPU reference: the CPU backend's attention. Versions:
//   1 simt             fp32 kernels (attention.cu)                    product: head dims <= 32 or > 128, decode
//   2 flash-recompute  bf16 mma.sync, dQ recomputes S and dP (attention_flash.cu)  product: attentionBackward
//                      'low-memory', and where dS would pass 1 GiB
//   3 flash            the same, dQ = dS K from the dS the dK/dV pass keeps  product: the default
//   4 wgmma            sm_90a, P / dS as register operands (dev/kernels/attention_hopper.cu)  lab: never run on a
//                      GPU yet; it returns to the product where it beats version 3
// Each version is checked (out, lse, dq, dk, dv) on two shapes before any timing; then each is timed on
// SDPA's benchmark shapes (bench/suites/gpu.ts: b = 8192 / t, h 16, hkv 4, d 128, and d 64), forward alone,
// backward alone and both. Usage: lab_attention [version].
#include "kernels/lab_kernels.h"
#include "lab.cuh"

namespace {

using pl::cuda::AttentionPath;

// delta[b, h, t] = sum_d dout[b, t, h, d] * out[b, t, h, d] (what attention.cu's backward computes first).
__global__ void delta_kernel(float* delta, const float* dout, const float* out, int B, int T, int H, int D) {
  const size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (i >= size_t(B) * H * T) return;
  const int t = int(i % T), h = int(i / T % H), b = int(i / (size_t(T) * H));
  const size_t row = ((size_t(b) * T + t) * H + h) * D;
  float s = 0.0f;
  for (int d = 0; d < D; ++d) s += dout[row + d] * out[row + d];
  delta[i] = s;
}

struct Shape {
  int B, T, H, Hkv, D;
};

// One attention problem on the device, and each version's forward and backward on it.
struct Problem {
  Shape s;
  lab::Device dev;
  size_t nq, nkv, nl;
  lab::Buffer<float> q, k, v, dout, out, lse, dq, dk, dv, delta;
  lab::Buffer<uint8_t> scratch;
  Problem(const Shape& shape, const lab::Device& d, const lab::Vec& hq, const lab::Vec& hk, const lab::Vec& hv, const lab::Vec& hdo)
      : s(shape), dev(d), nq(hq.size()), nkv(hk.size()), nl(size_t(shape.B) * shape.H * shape.T), q(hq), k(hk), v(hv),
        dout(hdo), out(nq), lse(nl), dq(nq), dk(nkv), dv(nkv), delta(nl), scratch(scratchBytes()) {}

  static AttentionPath path(int version) {
    return version == 1 ? AttentionPath::Simt : version == 2 ? AttentionPath::Flash : AttentionPath::FlashDs;
  }
  size_t scratchBytes() const {
    size_t bytes = 0;
    for (int v : {1, 2, 3}) {
      bytes = std::max(bytes, pl::cuda::attentionForwardScratchBytes(s.B, s.T, s.T, s.H, s.Hkv, s.D, path(v)));
      bytes = std::max(bytes, pl::cuda::attentionBackwardScratchBytes(s.B, s.T, s.H, s.Hkv, s.D, path(v)));
    }
    bytes = std::max(bytes, pl::cuda::lab::attentionHopperForwardScratchBytes(s.B, s.T, s.T, s.H, s.Hkv, s.D));
    return std::max(bytes, pl::cuda::lab::attentionHopperBackwardScratchBytes(s.B, s.T, s.H, s.Hkv, s.D));
  }
  std::string unavailable(int version) const {
    if (version != 4) return "";
    if (!dev.hopper) return "needs a GPU that runs the sm_90a image";
    if (!pl::cuda::lab::attentionHopperSupports(s.D, s.T)) return "head dim outside 33..128 or fewer than 8 queries";
    if (!pl::cuda::lab::attentionHopperBackwardFits(s.B, s.T, s.H)) return "dS would pass the kept-dS cap";
    return "";
  }
  void forward(int version) {
    if (version == 4)
      pl::cuda::lab::attentionForwardHopper(dev.stream, out.p, lse.p, q.p, k.p, v.p, s.B, s.T, s.T, s.H, s.Hkv, s.D, 0, scratch.p);
    else
      pl::cuda::attentionForward(dev.stream, out.p, lse.p, q.p, k.p, v.p, s.B, s.T, s.T, s.H, s.Hkv, s.D, 0, path(version), scratch.p);
  }
  void backward(int version) {
    if (version == 4) {
      delta_kernel<<<pl::cuda::ceilDiv(nl, 256), 256, 0, dev.stream>>>(delta.p, dout.p, out.p, s.B, s.T, s.H, s.D);
      pl::cuda::checkLaunch("delta_kernel");
      pl::cuda::lab::attentionBackwardHopper(dev.stream, dq.p, dk.p, dv.p, dout.p, q.p, k.p, v.p, lse.p, delta.p, s.B, s.T, s.H,
                                             s.Hkv, s.D, scratch.p);
    } else {
      pl::cuda::attentionBackward(dev.stream, dq.p, dk.p, dv.p, dout.p, q.p, k.p, v.p, out.p, lse.p, s.B, s.T, s.H, s.Hkv, s.D,
                                  scratch.p, path(version));
    }
  }
};

const std::vector<lab::Version> kVersions = {{1, "simt (fp32)", false, nullptr},
                                             {2, "flash, dQ recomputed", false, nullptr},
                                             {3, "flash, dQ from the kept dS", true, nullptr},
                                             {4, "wgmma (sm_90a)", false, nullptr}};

std::vector<lab::Version> versionsFor(const Problem& p) {
  std::vector<lab::Version> vs = kVersions;
  for (auto& v : vs) {
    const int n = v.number;
    v.unavailable = [&p, n] { return p.unavailable(n); };
  }
  return vs;
}

}  // namespace

int main(int argc, char** argv) {
  const lab::Device dev = lab::device();
  const int only = lab::selectedVersion(argc, argv, kVersions);
  int failed = 0;
  // ---- checks: every version against the CPU, before any timing -------------------------------------
  std::vector<bool> passed(kVersions.size() + 1, true);
  for (const Shape& s : {Shape{1, 1024, 16, 4, 128}, Shape{2, 777, 8, 2, 64}}) {
    std::printf("attention check B %d T %d H %d Hkv %d D %d\n", s.B, s.T, s.H, s.Hkv, s.D);
    const size_t nq = size_t(s.B) * s.T * s.H * s.D, nkv = size_t(s.B) * s.T * s.Hkv * s.D;
    const lab::Vec q = lab::randn(nq, 11), k = lab::randn(nkv, 12), v = lab::randn(nkv, 13), dout = lab::randn(nq, 14);
    lab::Vec out(nq), lse(size_t(s.B) * s.H * s.T), dq(nq, 0.0f), dk(nkv, 0.0f), dv(nkv, 0.0f);
    auto& cpu = lab::cpu();
    cpu.attentionForward(out.data(), lse.data(), q.data(), k.data(), v.data(), s.B, s.T, s.T, s.H, s.Hkv, s.D, 0);
    cpu.attentionBackward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), s.B,
                          s.T, s.H, s.Hkv, s.D);
    Problem p(s, dev, q, k, v, dout);
    auto run = [&](int version) {
      p.forward(version);
      p.backward(version);
    };
    // bf16 tensor cores (versions 2-4): errors of ~1e-2 of each tensor's scale; fp32 (version 1): summation order.
    auto verify = [&](int version) {
      const bool bf16 = version != 1;
      bool ok = true;
      auto near = [&](const char* what, const lab::Vec& got, const lab::Vec& want, double atol, double rtol) {
        ok = lab::check(what, got, want, bf16 ? 2e-2 * lab::maxAbs(want) + 1e-6 : atol, bf16 ? 2e-2 : rtol) && ok;
      };
      near("out", p.out.get(), out, 5e-5, 5e-4);
      near("lse", p.lse.get(), lse, 5e-5, 5e-4);
      near("dq", p.dq.get(), dq, 5e-4, 5e-3);
      near("dk", p.dk.get(), dk, 5e-4, 5e-3);
      near("dv", p.dv.get(), dv, 5e-4, 5e-3);
      if (!ok) passed[version] = false;
      return ok;
    };
    failed += lab::runCase(versionsFor(p), only, run, verify, [](int) {});
  }
  // ---- timing: the versions that passed -----------------------------------------------------------
  for (const Shape& s : {Shape{16, 512, 16, 4, 128}, Shape{4, 2048, 16, 4, 128}, Shape{2, 4096, 16, 4, 128},
                         Shape{4, 2048, 16, 4, 64}}) {
    std::printf("attention timing B %d T %d H %d Hkv %d D %d, causal\n", s.B, s.T, s.H, s.Hkv, s.D);
    const size_t nq = size_t(s.B) * s.T * s.H * s.D, nkv = size_t(s.B) * s.T * s.Hkv * s.D;
    Problem p(s, dev, lab::randn(nq, 21), lab::randn(nkv, 22), lab::randn(nkv, 23), lab::randn(nq, 24));
    const double fwdFlops = 2.0 * s.B * s.H * double(s.T) * s.T * s.D;  // causal: half of 4 b h t^2 d
    for (const auto& v : versionsFor(p)) {
      if ((only && v.number != only) || v.number == 1) continue;  // fp32 attention: not a contender at these sizes
      const std::string why = v.unavailable();
      if (!passed[v.number] || !why.empty()) {
        std::printf("  version %d, %s: not timed (%s)\n", v.number, v.name.c_str(), why.empty() ? "failed its check" : why.c_str());
        continue;
      }
      try {
        const double fwd = lab::timeMs([&] { p.forward(v.number); }, 5);
        const double bwd = lab::timeMs([&] { p.backward(v.number); }, 5);
        const double both = lab::timeMs([&] { p.forward(v.number); p.backward(v.number); }, 5);
        std::printf("  version %d, %s%s: fwd %.3f ms (%.0f TFLOP/s), bwd %.3f ms (%.0f TFLOP/s), fwd+bwd %.3f ms\n", v.number,
                    v.name.c_str(), v.product ? " [product]" : " [lab]", fwd, fwdFlops / (fwd * 1e-3) / 1e12, bwd,
                    2.5 * fwdFlops / (bwd * 1e-3) / 1e12, both);
      } catch (const std::exception& e) {
        ++failed;
        std::printf("  version %d: FAIL %s\n", v.number, e.what());
      }
    }
  }
  std::printf("%s: %d check(s) failed\n", argv[0], failed);
  return failed ? 1 : 0;
}
