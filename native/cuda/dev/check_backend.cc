// A standalone parity check of CudaBackend against CpuBackend (the fp32 reference), op by op, on random
// data: prints the worst error of every output tensor next to its tolerance, checks the bit-exact ops
// (dropout, embedding, sumSquares run-to-run) and determinism, and exits non-zero on any failure.
// Every tolerance (and which tensors must be bit-exact) is a row of the parity table native/cuda/parity.tsv,
// the one test/gpu/ops.test.ts reads: $PUZZLE_LLAMA_PARITY_TABLE, else the file in this source tree
// (PUZZLE_LLAMA_PARITY_TABLE_DEFAULT, set by CMake). A malformed table exits 2 before the GPU is touched.
// Not part of the addon. Build and run on a machine with a GPU (llm.c dev/cuda style, before any timing):
//   cmake --build build-cuda --target puzzle_llama_cuda_check && build-cuda/puzzle_llama_cuda_check [device]
//   build-cuda/puzzle_llama_cuda_check --table-only    # parses and checks the table alone (no GPU needed)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../../core/bf16.h"
#include "../../core/error.h"
#include "../../core/rng.h"
#include "../../cpu/cpu_backend.h"
#include "../cuda_backend.h"
#include "parity_table.h"

#ifndef PUZZLE_LLAMA_PARITY_TABLE_DEFAULT
#define PUZZLE_LLAMA_PARITY_TABLE_DEFAULT "native/cuda/parity.tsv"
#endif

namespace {

using Vec = std::vector<float>;

int failures = 0;
int checks = 0;
const pl::parity::Table* table = nullptr;  // set by main() before any check

double rmsOf(const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s / double(std::max<size_t>(1, n)));
}
double rmsOf(const Vec& v) { return rmsOf(v.data(), v.size()); }

// The table's row, or null after counting a failure that names what is missing.
const pl::parity::Rule* ruleFor(const std::string& what, const std::string& op, const std::string& tensor,
                                const std::string& path) {
  try {
    return &table->rule(op, tensor, path);
  } catch (const std::exception& e) {
    ++checks;
    ++failures;
    std::printf("FAIL %-58s %s\n", what.c_str(), e.what());
    return nullptr;
  }
}

Vec randn(size_t n, uint64_t seed, float scale = 1.0f) {
  pl::Rng rng(seed);
  Vec v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal()) * scale;
  return v;
}

// Device buffer holding a copy of host data; freed with the backend.
struct Dev {
  pl::Backend* be;
  void* p;
  size_t bytes;
  Dev(pl::Backend& b, size_t n, size_t elem = sizeof(float)) : be(&b), p(b.allocate(n * elem)), bytes(n * elem) {}
  Dev(pl::Backend& b, const Vec& h) : Dev(b, h.size()) { b.upload(p, h.data(), bytes); }
  Dev(pl::Backend& b, const std::vector<int32_t>& h) : Dev(b, h.size(), sizeof(int32_t)) {
    b.upload(p, h.data(), bytes);
  }
  ~Dev() { be->release(p); }
  Dev(const Dev&) = delete;
  float* f() const { return static_cast<float*>(p); }
  int32_t* i() const { return static_cast<int32_t*>(p); }
  Vec get() const {
    Vec h(bytes / sizeof(float));
    be->download(h.data(), p, bytes);
    return h;
  }
};

// Bit for bit; the table must say the tensor is exact.
void exact(const std::string& what, const Vec& got, const Vec& want, const std::string& op, const std::string& tensor) {
  if (!ruleFor(what, op, tensor, "exact")) return;
  ++checks;
  const bool ok = got.size() == want.size() && std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0;
  if (!ok) ++failures;
  std::printf("%-4s %-58s %s\n", ok ? "ok" : "FAIL", what.c_str(), ok ? "bit-identical" : "DIFFERS");
}

// Elementwise under the table's row (op, tensor, path): |got - want| <= atol + rtol |want| with
// atol = atol_abs + atol_sqrtK sqrtK + atol_maxref max|want| (sqrtK: sqrt(K) rms(A) rms(B) of a GEMM-like op);
// prints the worst element relative to that bound and the row it came from. An exact row compares bits.
void compare(const std::string& what, const Vec& got, const Vec& want, const std::string& op, const std::string& tensor,
             const std::string& path, double sqrtK = 0.0) {
  const pl::parity::Rule* rule = ruleFor(what, op, tensor, path);
  if (!rule) return;
  if (rule->path == "exact") return exact(what, got, want, op, tensor);
  ++checks;
  double maxRef = 0.0;
  for (float w : want) maxRef = std::max(maxRef, std::fabs(double(w)));
  const double atol = rule->atol(sqrtK, maxRef), rtol = rule->rtol;
  double worst = 0.0, maxAbs = 0.0;
  size_t at = 0;
  bool inBound = got.size() == want.size();
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double d = std::fabs(double(got[i]) - want[i]);
    if (!pl::parity::withinBound(got[i], want[i], atol, rtol)) inBound = false;
    const double ratio = std::isnan(d) ? INFINITY : d / (atol + rtol * std::fabs(want[i]));
    if (d > maxAbs) maxAbs = d;
    if (ratio > worst || std::isinf(ratio)) {
      worst = ratio;
      at = i;
    }
  }
  const bool ok = inBound;
  if (!ok) ++failures;
  const size_t slash = rule->source.find_last_of('/');
  std::printf("%-4s %-58s max|err| %.3e (max|ref| %.2e)  worst at %zu: %.6g vs %.6g  (%.2f of tol: atol %.2e rtol %.1e, %s)\n",
              ok ? "ok" : "FAIL", what.c_str(), maxAbs, maxRef, at, want.empty() ? 0.0 : double(got[at]),
              want.empty() ? 0.0 : double(want[at]), worst, atol, rtol,
              slash == std::string::npos ? rule->source.c_str() : rule->source.c_str() + slash + 1);
}

void expect(const std::string& what, bool ok, const std::string& detail) {
  ++checks;
  if (!ok) ++failures;
  std::printf("%-4s %-58s %s\n", ok ? "ok" : "FAIL", what.c_str(), detail.c_str());
}

// ---- gemm ------------------------------------------------------------------------------------------

// arith: the table's path for this kernel (bf16 tensor cores, or fp32 for the SIMT kernel).
void checkGemm(pl::Backend& cpu, pl::Backend& gpu, const char* path, const char* arith) {
  const int shapes[][3] = {{1, 1, 1},     {7, 5, 3},      {64, 64, 64},     {128, 128, 32},  {129, 130, 33},
                           {1, 4096, 512}, {300, 8, 1000}, {8, 300, 2048},  {513, 257, 127}, {1000, 1000, 64},
                           {2048, 2048, 256}};
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    for (int t = 0; t < 4; ++t) {
      const bool tA = t & 1, tB = t & 2;
      for (float beta : {0.0f, 0.5f}) {
        // +1 float: the model carves tensors at arbitrary offsets, so pointers need not be 16-byte aligned.
        Vec a = randn(size_t(M) * K + 1, 1 + t), b = randn(size_t(K) * N + 1, 2 + t), c = randn(size_t(M) * N, 3);
        Vec ref = c;
        cpu.gemm(ref.data(), a.data() + 1, b.data() + 1, M, N, K, tA, tB, 0.75f, beta);
        Dev da(gpu, a), db(gpu, b), dc(gpu, beta == 0.0f ? Vec(c.size(), NAN) : c);  // beta 0 must ignore NaN C
        gpu.gemm(dc.f(), da.f() + 1, db.f() + 1, M, N, K, tA, tB, 0.75f, beta);
        char name[160];
        std::snprintf(name, sizeof name, "gemm[%s] M%d N%d K%d tA%d tB%d beta%.1f", path, M, N, K, tA, tB, beta);
        // Inputs of unit variance: an output is ~sqrt(K) in size, its bf16 error ~2^-8 sqrt(K).
        compare(name, dc.get(), ref, "matmul", "C", arith,
                std::sqrt(double(K)) * rmsOf(a.data() + 1, size_t(M) * K) * rmsOf(b.data() + 1, size_t(K) * N));
      }
    }
  }
}

// The model's large products (open-llama-3B's linear layers at 2048 tokens, forward and both backward
// products, and a square one), on whichever kernel the backend picks for them.
void checkGemmLarge(pl::Backend& cpu, pl::Backend& gpu, const char* path) {
  struct Case { int M, N, K; bool tA, tB; };
  const Case cases[] = {{2048, 3200, 3200, false, true}, {2048, 8640, 3200, false, true},
                        {2048, 3200, 8640, false, false}, {8640, 3200, 2048, true, false},
                        {1000, 1000, 1000, true, true}};
  for (const Case& c : cases) {
    Vec a = randn(size_t(c.M) * c.K, 5), b = randn(size_t(c.K) * c.N, 6), ref(size_t(c.M) * c.N);
    cpu.gemm(ref.data(), a.data(), b.data(), c.M, c.N, c.K, c.tA, c.tB, 1.0f, 0.0f);
    Dev da(gpu, a), db(gpu, b), dc(gpu, ref.size());
    gpu.gemm(dc.f(), da.f(), db.f(), c.M, c.N, c.K, c.tA, c.tB, 1.0f, 0.0f);
    char name[160];
    std::snprintf(name, sizeof name, "gemm[%s] M%d N%d K%d tA%d tB%d", path, c.M, c.N, c.K, c.tA, c.tB);
    compare(name, dc.get(), ref, "matmul", "C", "bf16", std::sqrt(double(c.K)) * rmsOf(a) * rmsOf(b));
  }
}

// The LoRA linear's product with its low-rank update (gemmLowRank: two products, the update accumulated
// into C); fp32 and bf16 weights, both orientations of W and of L, ranks 5, 8, 16.
void checkGemmLowRank(pl::Backend& cpu, pl::Backend& gpu, const char* path) {
  struct Case { int M, N, K, r; bool transW, bf16W; float beta; };
  const Case cases[] = {{2048, 3200, 3200, 8, true, false, 0.0f}, {2048, 3200, 8640, 8, false, false, 1.0f},
                        {231, 256, 256, 16, true, true, 0.0f},    {231, 688, 256, 5, false, true, 0.5f},
                        {300, 130, 96, 8, true, false, 0.0f},     {7, 9, 11, 3, false, false, 1.0f},
                        {2048, 1024, 3200, 8, true, true, 0.0f},  {2048, 1024, 3200, 16, false, false, 0.5f}};
  for (const Case& c : cases) {
    // y = x W^T + s h B^T (L = B [N, r]) when transW; dx = dy W + dh A (L = A [r, N]) otherwise.
    const int strideN = c.transW ? c.r : 1, strideR = c.transW ? 1 : c.N;
    Vec x = randn(size_t(c.M) * c.K, 61), w = randn(size_t(c.N) * c.K, 62, 0.05f), h = randn(size_t(c.M) * c.r, 63);
    Vec l = randn(size_t(c.N) * c.r, 64, 0.1f), ref = randn(size_t(c.M) * c.N, 65);
    std::vector<uint16_t> wh(w.size());
    for (size_t i = 0; i < w.size(); ++i) wh[i] = pl::toBf16(w[i]);
    Dev dx(gpu, x), dw(gpu, w), dwh(gpu, wh.size(), sizeof(uint16_t)), dh(gpu, h), dl(gpu, l), dy(gpu, ref);
    gpu.upload(dwh.p, wh.data(), wh.size() * sizeof(uint16_t));
    cpu.gemmLowRank(ref.data(), x.data(), c.bf16W ? nullptr : w.data(), c.bf16W ? wh.data() : nullptr, c.M, c.N, c.K,
                    c.transW, c.beta, h.data(), l.data(), c.r, strideN, strideR, 0.25f);
    gpu.gemmLowRank(dy.f(), dx.f(), c.bf16W ? nullptr : dw.f(), c.bf16W ? static_cast<const uint16_t*>(dwh.p) : nullptr,
                    c.M, c.N, c.K, c.transW, c.beta, dh.f(), dl.f(), c.r, strideN, strideR, 0.25f);
    char name[160];
    std::snprintf(name, sizeof name, "gemmLowRank[%s] M%d N%d K%d r%d transW%d %s beta%.1f", path, c.M, c.N, c.K, c.r,
                  c.transW, c.bf16W ? "bf16 W" : "fp32 W", c.beta);
    compare(name, dy.get(), ref, "gemmLowRank", "y", "bf16", std::sqrt(double(c.K)) * rmsOf(x) * rmsOf(w));
  }
}

// Frozen bf16 weights (gemmWeightBf16): y = x W^T and dx = dy W against the CPU's product on the same
// bf16 weights widened, at shapes that take the Hopper kernel directly, through a transposed or padded
// copy, and (small, or on the mma.sync backend) through widening.
void checkGemmWeightBf16(pl::Backend& cpu, pl::Backend& gpu, const char* path) {
  struct Case { int M, N, K; bool transW; };
  const Case cases[] = {{231, 256, 256, true}, {231, 256, 256, false}, {231, 256, 301, false}, {300, 301, 256, true},
                        {77, 96, 130, true},   {5, 7, 9, false},       {2048, 3200, 3200, true}, {2048, 3200, 8640, false},
                        // dx through an lm_head: the transposed weight (over 64 MiB) goes in K slices
                        {96, 3200, 32000, false}, {70, 1000, 40001, false}};
  for (const Case& c : cases) {
    Vec x = randn(size_t(c.M) * c.K, 41), w = randn(size_t(c.N) * c.K, 42, 0.05f), ref(size_t(c.M) * c.N);
    std::vector<uint16_t> wh(w.size());
    for (size_t i = 0; i < w.size(); ++i) wh[i] = pl::toBf16(w[i]);
    cpu.gemmWeightBf16(ref.data(), x.data(), wh.data(), c.M, c.N, c.K, c.transW, 1.0f, 0.0f);
    Dev dx(gpu, x), dw(gpu, wh.size(), sizeof(uint16_t)), dy(gpu, ref.size());
    gpu.upload(dw.p, wh.data(), wh.size() * sizeof(uint16_t));
    gpu.gemmWeightBf16(dy.f(), dx.f(), static_cast<const uint16_t*>(dw.p), c.M, c.N, c.K, c.transW, 1.0f, 0.0f);
    char name[160];
    std::snprintf(name, sizeof name, "gemmWeightBf16[%s] M%d N%d K%d transW%d", path, c.M, c.N, c.K, c.transW);
    // x is rounded to bf16 on the GPU (the weight already is): error ~2^-9 sqrt(K) |x| |w|.
    compare(name, dy.get(), ref, "gemmWeightBf16", "y", "bf16", std::sqrt(double(c.K)) * rmsOf(x) * rmsOf(w));
  }
}

// The Hopper kernel at each of its tile widths, on bf16 operands (the reference multiplies the same
// rounded values in fp32, so only the summation order differs): shapes with a partial last tile in both
// directions and a K that is not a whole number of 64-wide stages.
void checkGemmWidths(pl::cpu::CpuBackend& cpu, pl::cuda::CudaBackend& gpu) {
  // The picks the widths were added for (132 SMs: H100 SXM, H200): whole waves at open-llama-3b's shapes.
  struct Pick { int M, N, want; };
  for (const Pick& p : {Pick{2048, 3200, 200}, Pick{2048, 8640, 216}, Pick{4096, 4096, 256}, Pick{2048, 2048, 256}}) {
    const int got = pl::cuda::CudaBackend::hopperGemmWidth(p.M, p.N, 132);
    expect("wgmma tile width for " + std::to_string(p.M) + " x " + std::to_string(p.N) + " on 132 SMs", got == p.want,
           std::to_string(got) + " (want " + std::to_string(p.want) + ")");
  }
  for (int width : pl::cuda::CudaBackend::hopperGemmWidths()) {
    const int w = width;
    const int shapes[][3] = {{200, 2 * w + 8, 200}, {129, w - 8, 64}, {384, w, 1000}, {1000, 1000, 136}};
    for (const auto& s : shapes) {
      const int M = s[0], N = s[1], K = s[2], ld = (K + 7) / 8 * 8;
      Vec a = randn(size_t(M) * K, 61), b = randn(size_t(N) * K, 62), c = randn(size_t(M) * N, 63);
      std::vector<uint16_t> ah(size_t(M) * ld, 0), bh(size_t(N) * ld, 0);
      // Rows padded to ld with zeros on the device; the host copies rounded in place.
      auto round = [&](Vec& x, std::vector<uint16_t>& h, int rows) {
        for (int r = 0; r < rows; ++r)
          for (int k = 0; k < K; ++k) {
            h[size_t(r) * ld + k] = pl::toBf16(x[size_t(r) * K + k]);
            x[size_t(r) * K + k] = pl::fromBf16(h[size_t(r) * ld + k]);
          }
      };
      round(a, ah, M);
      round(b, bh, N);
      for (float beta : {0.0f, 0.5f}) {
        Vec ref = c;
        cpu.gemm(ref.data(), a.data(), b.data(), M, N, K, false, true, 0.75f, beta);
        Dev ga(gpu, ah.size(), sizeof(uint16_t)), gb(gpu, bh.size(), sizeof(uint16_t));
        Dev gc(gpu, beta == 0.0f ? Vec(c.size(), NAN) : c);  // beta 0 must ignore NaN C
        gpu.upload(ga.p, ah.data(), ah.size() * sizeof(uint16_t));
        gpu.upload(gb.p, bh.data(), bh.size() * sizeof(uint16_t));
        gpu.gemmBf16(gc.f(), ga.p, gb.p, M, N, K, ld, ld, 0.75f, beta, width);
        char name[160];
        std::snprintf(name, sizeof name, "gemmBf16[wgmma %d wide] M%d N%d K%d beta%.1f", width, M, N, K, beta);
        compare(name, gc.get(), ref, "gemmBf16", "C", "bf16", std::sqrt(double(K)) * rmsOf(a) * rmsOf(b));
      }
    }
  }
}

// ---- attention ---------------------------------------------------------------------------------------

// flash: the backend runs its flash kernels (bf16 tensor cores) where they apply: head dims 33..128 with 8+
// query rows (bf16AttentionCovers, attention_bf16.cuh), held to the table's bf16 rows (bf16's error relative to
// each tensor's scale); every other shape, and every shape of the simt pass, runs the fp32 kernels (fp32 rows).
void checkAttention(pl::Backend& cpu, pl::Backend& gpu, bool flash, const char* path) {
  const std::string kind = std::string("[") + path + (flash ? ", bf16 where it applies]" : ", fp32]");
  auto near = [&](const std::string& what, const Vec& got, const Vec& want, const char* op, const char* tensor, int D,
                  int Tq) {
    const bool bf16 = flash && D > 32 && D <= 128 && Tq >= 8;
    compare(what + " " + kind + (bf16 ? " bf16" : " fp32"), got, want, op, tensor, bf16 ? "bf16" : "fp32");
  };
  struct Case { int B, T, H, Hkv, D; };
  const Case cases[] = {{1, 1, 1, 1, 64},  {2, 5, 4, 2, 64},    {1, 33, 2, 1, 32},  {2, 64, 4, 4, 64},
                        {1, 100, 8, 2, 128}, {2, 70, 4, 1, 80}, {1, 47, 2, 2, 256}, {1, 129, 6, 3, 16},
                        {1, 300, 2, 1, 128}, {2, 200, 8, 2, 64}, {1, 257, 4, 1, 100}, {1, 513, 2, 2, 128},
                        {2, 1030, 4, 2, 128}};
  for (const Case& c : cases) {
    const size_t nq = size_t(c.B) * c.T * c.H * c.D, nkv = size_t(c.B) * c.T * c.Hkv * c.D;
    const size_t nl = size_t(c.B) * c.H * c.T;
    Vec q = randn(nq, 11), k = randn(nkv, 12), v = randn(nkv, 13), dout = randn(nq, 14);
    Vec out(nq), lse(nl), dq(nq), dk(nkv), dv(nkv);
    cpu.attentionForward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.T, c.T, c.H, c.Hkv, c.D, 0);
    cpu.attentionBackward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                          lse.data(), c.B, c.T, c.H, c.Hkv, c.D);
    Dev gq(gpu, q), gk(gpu, k), gv(gpu, v), gdo(gpu, dout), go(gpu, nq), gl(gpu, nl);
    Dev gdq(gpu, nq), gdk(gpu, nkv), gdv(gpu, nkv);
    gpu.attentionForward(go.f(), gl.f(), gq.f(), gk.f(), gv.f(), c.B, c.T, c.T, c.H, c.Hkv, c.D, 0);
    gpu.attentionBackward(gdq.f(), gdk.f(), gdv.f(), gdo.f(), gq.f(), gk.f(), gv.f(), go.f(), gl.f(), c.B, c.T, c.H,
                          c.Hkv, c.D);
    char tag[96];
    std::snprintf(tag, sizeof tag, "B%d T%d H%d Hkv%d D%d", c.B, c.T, c.H, c.Hkv, c.D);
    near(std::string("attention out ") + tag, go.get(), out, "attentionForward", "out", c.D, c.T);
    near(std::string("attention lse ") + tag, gl.get(), lse, "attentionForward", "lse", c.D, c.T);
    near(std::string("attention dq ") + tag, gdq.get(), dq, "attentionBackward", "dq", c.D, c.T);
    near(std::string("attention dk ") + tag, gdk.get(), dk, "attentionBackward", "dk", c.D, c.T);
    near(std::string("attention dv ") + tag, gdv.get(), dv, "attentionBackward", "dv", c.D, c.T);
    // Determinism: a second backward gives the same bits.
    Vec dk1 = gdk.get(), dv1 = gdv.get(), dq1 = gdq.get();
    gpu.attentionBackward(gdq.f(), gdk.f(), gdv.f(), gdo.f(), gq.f(), gk.f(), gv.f(), go.f(), gl.f(), c.B, c.T, c.H,
                          c.Hkv, c.D);
    Vec all1 = dq1, all2 = gdq.get();
    all1.insert(all1.end(), dk1.begin(), dk1.end());
    all1.insert(all1.end(), dv1.begin(), dv1.end());
    Vec dk2 = gdk.get(), dv2 = gdv.get();
    all2.insert(all2.end(), dk2.begin(), dk2.end());
    all2.insert(all2.end(), dv2.begin(), dv2.end());
    exact(std::string("attention backward rerun ") + tag + " " + kind, all2, all1, "attentionBackward", "rerun");
  }
  // KV-cache decode: Tq new queries at pos0 against a cache of Tcap rows (rows past pos0+Tq are garbage).
  struct Dec { int B, Tq, Tcap, H, Hkv, D, pos0; };
  const Dec decs[] = {{1, 1, 64, 4, 2, 64, 0},   {2, 1, 512, 8, 2, 128, 300}, {1, 1, 40, 2, 1, 256, 39},
                      {1, 3, 100, 4, 4, 64, 50}, {2, 9, 200, 4, 2, 64, 100},  {1, 20, 64, 2, 1, 80, 30},
                      {1, 70, 300, 4, 1, 100, 200}, {1, 9, 140, 2, 1, 128, 131}};
  for (const Dec& c : decs) {
    const size_t nq = size_t(c.B) * c.Tq * c.H * c.D, nkv = size_t(c.B) * c.Tcap * c.Hkv * c.D;
    const size_t nl = size_t(c.B) * c.H * c.Tq;
    Vec q = randn(nq, 21), k = randn(nkv, 22), v = randn(nkv, 23);
    Vec out(nq), lse(nl);
    cpu.attentionForward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tcap, c.H, c.Hkv, c.D,
                         c.pos0);
    Dev gq(gpu, q), gk(gpu, k), gv(gpu, v), go(gpu, nq), gl(gpu, nl);
    gpu.attentionForward(go.f(), gl.f(), gq.f(), gk.f(), gv.f(), c.B, c.Tq, c.Tcap, c.H, c.Hkv, c.D, c.pos0);
    char tag[128];
    std::snprintf(tag, sizeof tag, "B%d Tq%d Tcap%d H%d Hkv%d D%d pos0 %d", c.B, c.Tq, c.Tcap, c.H, c.Hkv, c.D, c.pos0);
    near(std::string("attention decode out ") + tag, go.get(), out, "attentionForward", "out", c.D, c.Tq);
    near(std::string("attention decode lse ") + tag, gl.get(), lse, "attentionForward", "lse", c.D, c.Tq);
    gpu.attentionForward(go.f(), nullptr, gq.f(), gk.f(), gv.f(), c.B, c.Tq, c.Tcap, c.H, c.Hkv, c.D, c.pos0);
    near(std::string("attention decode out, lse null ") + tag, go.get(), out, "attentionForward", "out", c.D, c.Tq);
  }
}

// ---- the rest ----------------------------------------------------------------------------------------

void checkOps(pl::Backend& cpu, pl::Backend& gpu) {
  for (size_t n : {size_t(1), size_t(1000), size_t(1) << 20, size_t(3000001)}) {
    const std::string tag = " n" + std::to_string(n);
    Vec a = randn(n, 31), b = randn(n, 32);
    Dev ga(gpu, a), gb(gpu, b), go(gpu, n);
    Vec ref(n);
    cpu.add(ref.data(), a.data(), b.data(), n);
    gpu.add(go.f(), ga.f(), gb.f(), n);
    exact("add" + tag, go.get(), ref, "add", "out");
    Vec y = a;
    cpu.axpy(y.data(), b.data(), -0.3f, n);
    gpu.axpy(ga.f(), gb.f(), -0.3f, n);
    compare("axpy" + tag, ga.get(), y, "axpy", "y", "fp32");
    cpu.scale(y.data(), 1.7f, n);
    gpu.scale(ga.f(), 1.7f, n);
    compare("scale" + tag, ga.get(), y, "scale", "x", "fp32");
    const double s1 = gpu.sumSquares(gb.f(), n), s2 = gpu.sumSquares(gb.f(), n), sc = cpu.sumSquares(b.data(), n);
    const pl::parity::Rule* sumRule = ruleFor("sumSquares" + tag, "sumSquares", "sum", "fp32");
    const bool rerunExact = ruleFor("sumSquares rerun" + tag, "sumSquares", "rerun", "exact") != nullptr;
    if (sumRule && rerunExact)
      expect("sumSquares" + tag, s1 == s2 && pl::parity::withinBound(s1, sc, sumRule->atol(0, 0), sumRule->rtol),
           "gpu " + std::to_string(s1) + " cpu " + std::to_string(sc) + (s1 == s2 ? " (rerun identical)" : " RERUN DIFFERS"));

    gpu.swigluForward(go.f(), ga.f(), gb.f(), n);
    Vec gate = ga.get();  // ga now holds the axpy/scale result: use it as the gate on both sides
    cpu.swigluForward(ref.data(), gate.data(), b.data(), n);
    compare("swigluForward" + tag, go.get(), ref, "swigluForward", "out", "fp32");
    Vec dout = randn(n, 33), dg(n), du(n);
    Dev gdo(gpu, dout), gdg(gpu, n), gdu(gpu, n);
    cpu.swigluBackward(dg.data(), du.data(), dout.data(), gate.data(), b.data(), n);
    gpu.swigluBackward(gdg.f(), gdu.f(), gdo.f(), ga.f(), gb.f(), n);
    compare("swigluBackward dgate" + tag, gdg.get(), dg, "swigluBackward", "dgate", "fp32");
    compare("swigluBackward dup" + tag, gdu.get(), du, "swigluBackward", "dup", "fp32");

    // (an offset past 2^32, as a rank's share of a large global batch has)
    const uint64_t offset = (uint64_t(1) << 33) + 7;
    cpu.dropoutForward(ref.data(), a.data(), n, 0.1f, 1234, offset);
    Dev ga2(gpu, a);
    gpu.dropoutForward(go.f(), ga2.f(), n, 0.1f, 1234, offset);
    exact("dropoutForward" + tag, go.get(), ref, "dropoutForward", "out");
    Vec acc = b;
    cpu.dropoutBackward(acc.data(), dout.data(), n, 0.1f, 1234, offset);
    gpu.dropoutBackward(gb.f(), gdo.f(), n, 0.1f, 1234, offset);
    exact("dropoutBackward" + tag, gb.get(), acc, "dropoutBackward", "dx");

    Vec p = randn(n, 34), g = randn(n, 35), m = randn(n, 36, 0.1f), v = randn(n, 37, 0.01f);
    for (float& x : v) x = x * x;  // second moments are non-negative
    Dev gp(gpu, p), gg(gpu, g), gm(gpu, m), gv(gpu, v);
    pl::AdamWParams hp;
    hp.lr = 3e-4f;
    hp.weightDecay = 0.1f;
    hp.step = 7;
    hp.gradScale = 0.5f;
    cpu.adamw(p.data(), g.data(), m.data(), v.data(), n, hp);
    gpu.adamw(gp.f(), gg.f(), gm.f(), gv.f(), n, hp);
    compare("adamw param" + tag, gp.get(), p, "adamw", "param", "fp32");
    compare("adamw m" + tag, gm.get(), m, "adamw", "m", "fp32");
    compare("adamw v" + tag, gv.get(), v, "adamw", "v", "fp32");
  }

  // SwiGLU on operands that are not 16-byte aligned (one float past an allocation's start): the scalar path.
  {
    const size_t n = 1001;
    Vec gate = randn(n + 1, 38), up = randn(n + 1, 39), dout = randn(n + 1, 40);
    Dev gg(gpu, gate), gu(gpu, up), gdo(gpu, dout), go(gpu, n + 1), gdg(gpu, n + 1), gdu(gpu, n + 1);
    auto tail = [](const Dev& d) {  // elements 1.. of a device buffer
      const Vec all = d.get();
      return Vec(all.begin() + 1, all.end());
    };
    Vec ref(n), dg(n), du(n);
    cpu.swigluForward(ref.data(), gate.data() + 1, up.data() + 1, n);
    gpu.swigluForward(go.f() + 1, gg.f() + 1, gu.f() + 1, n);
    compare("swigluForward n1001 unaligned", tail(go), ref, "swigluForward", "out", "fp32");
    cpu.swigluBackward(dg.data(), du.data(), dout.data() + 1, gate.data() + 1, up.data() + 1, n);
    gpu.swigluBackward(gdg.f() + 1, gdu.f() + 1, gdo.f() + 1, gg.f() + 1, gu.f() + 1, n);
    compare("swigluBackward dgate n1001 unaligned", tail(gdg), dg, "swigluBackward", "dgate", "fp32");
    compare("swigluBackward dup n1001 unaligned", tail(gdu), du, "swigluBackward", "dup", "fp32");
  }

  // C = 30: rows not a multiple of 4 floats (the scalar path); the rest take float4 accesses.
  for (auto nc : {std::pair<int, int>{1, 8}, {5, 30}, {37, 64}, {256, 1000}, {513, 4096}}) {
    const int N = nc.first, C = nc.second;
    const std::string tag = " N" + std::to_string(N) + " C" + std::to_string(C);
    Vec x = randn(size_t(N) * C, 41), w = randn(C, 42), dy = randn(size_t(N) * C, 43);
    Vec out(x.size()), rstd(N), dx = randn(x.size(), 44), dw = randn(C, 45);
    Dev gx(gpu, x), gw(gpu, w), gdy(gpu, dy), go(gpu, x.size()), gr(gpu, N), gdx(gpu, dx), gdw(gpu, dw);
    cpu.rmsnormForward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
    gpu.rmsnormForward(go.f(), gr.f(), gx.f(), gw.f(), N, C, 1e-5f);
    compare("rmsnormForward out" + tag, go.get(), out, "rmsnormForward", "out", "fp32");
    compare("rmsnormForward rstd" + tag, gr.get(), rstd, "rmsnormForward", "rstd", "fp32");
    cpu.rmsnormBackward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), rstd.data(), N, C);
    gpu.rmsnormBackward(gdx.f(), gdw.f(), gdy.f(), gx.f(), gw.f(), gr.f(), N, C);
    compare("rmsnormBackward dinp (accumulated)" + tag, gdx.get(), dx, "rmsnormBackward", "dx", "fp32");
    // dweight sums N rows: sqrt(N) rms(dy) (the normalized x has rms 1).
    compare("rmsnormBackward dweight (accumulated)" + tag, gdw.get(), dw, "rmsnormBackward", "dw", "fp32",
            std::sqrt(double(N)) * rmsOf(dy));
    gpu.rmsnormBackward(gdx.f(), nullptr, gdy.f(), gx.f(), gw.f(), gr.f(), N, C);  // frozen weight: must not crash
    gpu.synchronize();
  }

  {
    const int B = 2, T = 9, H = 3, D = 64, maxT = 40, pos0 = 5;
    Vec cosT(size_t(maxT) * D / 2), sinT(cosT.size());
    for (int t = 0; t < maxT; ++t)
      for (int i = 0; i < D / 2; ++i) {
        const double f = t * std::pow(10000.0, -2.0 * i / D);
        cosT[size_t(t) * D / 2 + i] = float(std::cos(f));
        sinT[size_t(t) * D / 2 + i] = float(std::sin(f));
      }
    Vec x = randn(size_t(B) * T * H * D, 51);
    Dev gx(gpu, x), gc(gpu, cosT), gs(gpu, sinT);
    Vec ref = x;
    cpu.ropeForward(ref.data(), cosT.data(), sinT.data(), B, T, H, D, pos0);
    gpu.ropeForward(gx.f(), gc.f(), gs.f(), B, T, H, D, pos0);
    compare("ropeForward pos0 5", gx.get(), ref, "ropeForward", "out", "fp32");
    cpu.ropeBackward(ref.data(), cosT.data(), sinT.data(), B, T, H, D, pos0);
    gpu.ropeBackward(gx.f(), gc.f(), gs.f(), B, T, H, D, pos0);
    compare("ropeBackward pos0 5 (round trip)", gx.get(), ref, "ropeBackward", "dx", "fp32");
  }

  for (auto nv : {std::pair<int, int>{1, 10}, {64, 1000}, {300, 32000}}) {
    const int N = nv.first, V = nv.second;
    const std::string tag = " N" + std::to_string(N) + " V" + std::to_string(V);
    Vec logits = randn(size_t(N) * V, 61, 3.0f);
    std::vector<int32_t> targets(N);
    for (int n = 0; n < N; ++n) targets[n] = n % 5 == 3 ? -100 : int32_t((n * 7919) % V);
    Vec losses(N), ref = logits;
    Dev gl(gpu, logits), gt(gpu, targets), gloss(gpu, N);
    cpu.crossEntropy(losses.data(), ref.data(), targets.data(), N, V, 1.0f / N, true);
    gpu.crossEntropy(gloss.f(), gl.f(), gt.i(), N, V, 1.0f / N, true);
    compare("crossEntropy losses" + tag, gloss.get(), losses, "crossEntropy", "losses", "fp32");
    compare("crossEntropy grad" + tag, gl.get(), ref, "crossEntropy", "dlogits", "fp32");
    Dev gl2(gpu, logits);
    Vec keep = logits;
    cpu.crossEntropy(losses.data(), keep.data(), targets.data(), N, V, 1.0f, false);
    gpu.crossEntropy(gloss.f(), gl2.f(), gt.i(), N, V, 1.0f, false);
    compare("crossEntropy losses, no grad" + tag, gloss.get(), losses, "crossEntropy", "losses", "fp32");
    exact("crossEntropy no grad leaves logits" + tag, gl2.get(), logits, "crossEntropy", "logits");
  }

  {
    const int N = 777, C = 96, V = 50;
    std::vector<int32_t> tokens(N);
    for (int n = 0; n < N; ++n) tokens[n] = (n * 31 + n / 7) % V;  // repeated tokens on purpose
    Vec wte = randn(size_t(V) * C, 71), dout = randn(size_t(N) * C, 72), out(size_t(N) * C), dwte = randn(wte.size(), 73);
    Dev gw(gpu, wte), gt(gpu, tokens), go(gpu, out.size()), gdo(gpu, dout), gdw(gpu, dwte);
    cpu.embeddingForward(out.data(), tokens.data(), wte.data(), N, C);
    gpu.embeddingForward(go.f(), gt.i(), gw.f(), N, C);
    exact("embeddingForward", go.get(), out, "embeddingForward", "out");
    cpu.embeddingBackward(dwte.data(), dout.data(), tokens.data(), N, C, V);
    gpu.embeddingBackward(gdw.f(), gdo.f(), gt.i(), N, C, V);
    exact("embeddingBackward (accumulated, CPU order)", gdw.get(), dwte, "embeddingBackward", "dwte");
  }
}

void checkMemory(pl::Backend& gpu) {
  {
    Dev z(gpu, 12345);
    const Vec h = z.get();
    expect("allocate zero-fills", std::all_of(h.begin(), h.end(), [](float x) { return x == 0.0f; }), "");
    Vec src = randn(1000, 81);
    Dev a(gpu, src), b(gpu, 1000);
    gpu.copy(b.p, a.p, 1000 * sizeof(float));
    exact("copy", b.get(), src, "copy", "dst");
    gpu.zero(b.p, 500 * sizeof(float));
    Vec want = src;
    std::fill(want.begin(), want.begin() + 500, 0.0f);
    exact("zero (first half)", b.get(), want, "zero", "dst");
  }
  std::string msg;
  try {
    void* p = gpu.allocate(size_t(1) << 50);
    gpu.release(p);
  } catch (const pl::Error& e) {
    msg = e.what();
  }
  expect("allocate 1 PiB throws out of memory", msg.find("out of memory: requested") != std::string::npos, msg);
  bool usable = true;
  try {
    Dev after(gpu, 1000);
    gpu.synchronize();
  } catch (const pl::Error&) {
    usable = false;
  }
  expect("backend usable after out of memory", usable, "");
  msg.clear();
  try {
    Dev q(gpu, 300 * 4);
    gpu.attentionForward(q.f(), nullptr, q.f(), q.f(), q.f(), 1, 4, 4, 1, 1, 300, 0);
  } catch (const pl::Error& e) {
    msg = e.what();
  }
  expect("attention with D = 300 throws", !msg.empty(), msg);
}

}  // namespace

int main(int argc, char** argv) {
  const bool tableOnly = argc > 1 && std::strcmp(argv[1], "--table-only") == 0;
  const int device = argc > 1 && !tableOnly ? std::atoi(argv[1]) : 0;
  const char* tableEnv = std::getenv("PUZZLE_LLAMA_PARITY_TABLE");
  const std::string tablePath = tableEnv && *tableEnv ? tableEnv : PUZZLE_LLAMA_PARITY_TABLE_DEFAULT;
  pl::parity::Table parityTable;
  try {
    parityTable = pl::parity::Table::load(tablePath);
  } catch (const std::exception& e) {
    std::printf("FAIL parity table: %s\n", e.what());
    return 2;
  }
  table = &parityTable;
  std::printf("parity table %s: %zu rows\n", tablePath.c_str(), parityTable.size());
  if (tableOnly) return 0;
  try {
    const unsigned cores = std::thread::hardware_concurrency();
    pl::cpu::CpuBackend cpu(cores > 0 ? int(cores) : 4);
    auto gpu = pl::cuda::createBackend(device);
    std::printf("checking %s against %s\n", gpu->name().c_str(), cpu.name().c_str());
    checkMemory(*gpu);
    checkOps(cpu, *gpu);
    checkAttention(cpu, *gpu, true, "flash");
    // The same backend with each of its other attention kernels (the engine's attentionBackward
    // 'low-memory' runs flash-recompute; simt is the fp32 fallback of the shapes the flash kernels skip).
    auto& cudaGpu = static_cast<pl::cuda::CudaBackend&>(*gpu);
    cudaGpu.setAttentionKernel("flash-recompute");
    checkAttention(cpu, *gpu, true, "flash, dQ recomputed");
    cudaGpu.setAttentionKernel("simt");
    checkAttention(cpu, *gpu, false, "simt");
    cudaGpu.setAttentionKernel("flash");
    {
      pl::cuda::CudaOptions lowMemory;
      lowMemory.keepAttentionScores = false;
      auto recompute = pl::cuda::createBackend(device, lowMemory);
      expect("attentionBackward 'low-memory' runs flash-recompute",
             static_cast<pl::cuda::CudaBackend&>(*recompute).attentionKernel() == "flash-recompute",
             static_cast<pl::cuda::CudaBackend&>(*recompute).attentionKernel());
    }
    checkGemm(cpu, *gpu, "auto", "bf16");
    checkGemmWeightBf16(cpu, *gpu, "auto");
    checkGemmLowRank(cpu, *gpu, "auto");
    // Each of the product's GEMM kernels forced on every shape (CudaOptions::gemm: the harness's hook).
    auto forced = [&](pl::cuda::CudaOptions::Gemm gemm) {
      pl::cuda::CudaOptions o;
      o.gemm = gemm;
      return pl::cuda::createBackend(device, o);
    };
    auto simt = forced(pl::cuda::CudaOptions::Gemm::Simt);
    checkGemm(cpu, *simt, "simt", "fp32");
    auto mma = forced(pl::cuda::CudaOptions::Gemm::Mma);
    checkGemm(cpu, *mma, "mma", "bf16");
    checkGemmLarge(cpu, *mma, "mma");
    checkGemmWeightBf16(cpu, *mma, "mma");
    checkGemmLowRank(cpu, *mma, "mma");
    std::unique_ptr<pl::Backend> wgmma;
    try {
      wgmma = forced(pl::cuda::CudaOptions::Gemm::Wgmma);
    } catch (const pl::Error& e) {
      std::printf("skip gemm[wgmma]: %s\n", e.what());
    }
    if (wgmma) {
      checkGemm(cpu, *wgmma, "wgmma", "bf16");
      checkGemmLarge(cpu, *wgmma, "wgmma");
      checkGemmWidths(cpu, static_cast<pl::cuda::CudaBackend&>(*wgmma));
    }
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    return 2;
  }
  std::printf("%d of %d checks failed\n", failures, checks);
  return failures == 0 ? 0 : 1;
}
