// What the kernel lab's programs (native/cuda/dev/<op>.cu) share, in the manner of llm.c's dev/cuda/common.h:
// random inputs, device buffers, the check of a version's output against the CPU reference (the worst
// element beside its tolerance), timing with CUDA events, and the loop that checks every version before
// it times it. A program takes an optional version number (`lab_gemm 3`) and exits non-zero when a check
// fails; a version that cannot run on this device (sm_90a only, a shape it does not cover) says why.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "../../core/bf16.h"
#include "../../core/error.h"
#include "../../core/rng.h"
#include "../../cpu/cpu_backend.h"
#include "../common.cuh"
#include "../kernels.h"

namespace lab {

using Vec = std::vector<float>;

inline Vec randn(size_t n, uint64_t seed, float scale = 1.0f) {
  pl::Rng rng(seed);
  Vec v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal()) * scale;
  return v;
}

// x rounded to bf16 in place (what a bf16 kernel sees), and the bf16 bits.
inline std::vector<uint16_t> roundBf16(Vec& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    h[i] = pl::toBf16(x[i]);
    x[i] = pl::fromBf16(h[i]);
  }
  return h;
}

// The CPU backend (all hardware threads): the reference every version is checked against.
inline pl::cpu::CpuBackend& cpu() {
  static pl::cpu::CpuBackend backend(std::max(1u, std::thread::hardware_concurrency()));
  return backend;
}

template <typename T>
struct Buffer {
  T* p = nullptr;
  size_t n = 0;
  explicit Buffer(size_t count) : n(count) {
    pl::cuda::checkCuda(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)), "cudaMalloc");
    pl::cuda::checkCuda(cudaMemset(p, 0, std::max<size_t>(1, n) * sizeof(T)), "cudaMemset");
  }
  template <typename H>
  explicit Buffer(const std::vector<H>& host) : Buffer(host.size()) {
    static_assert(sizeof(H) == sizeof(T), "host and device element sizes differ");
    pl::cuda::checkCuda(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy (upload)");
  }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Vec get() const {
    static_assert(sizeof(T) == sizeof(float), "get() reads floats");
    Vec h(n);
    pl::cuda::checkCuda(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy (download)");
    return h;
  }
};

// |got - want| <= atol + rtol |want| elementwise (NaN fails); prints the worst element against that bound.
inline bool check(const std::string& what, const Vec& got, const Vec& want, double atol, double rtol) {
  double worst = 0.0, maxErr = 0.0;
  size_t at = 0;
  bool finite = got.size() == want.size();
  for (size_t i = 0; finite && i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]);
    if (std::isnan(e)) finite = false;
    const double r = e / (atol + rtol * std::fabs(want[i]));
    maxErr = std::max(maxErr, e);
    if (r > worst) worst = r, at = i;
  }
  const bool ok = finite && worst <= 1.0;
  std::printf("    %-4s %-34s max|err| %.2e, worst at %zu: %.6g vs %.6g = %.2f of tol (atol %.1e, rtol %.1e)\n",
              ok ? "ok" : "FAIL", what.c_str(), maxErr, at, want.empty() ? 0.0 : double(got[at]),
              want.empty() ? 0.0 : double(want[at]), worst, atol, rtol);
  return ok;
}

inline double maxAbs(const Vec& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, std::fabs(double(x)));
  return m;
}

// The median of `repeats` timed calls of fn (after two warm-up calls), in milliseconds.
inline double timeMs(const std::function<void()>& fn, int repeats = 10) {
  fn();
  fn();
  cudaEvent_t start, stop;
  pl::cuda::checkCuda(cudaEventCreate(&start), "cudaEventCreate");
  pl::cuda::checkCuda(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    cudaEventRecord(start);
    fn();
    cudaEventRecord(stop);
    pl::cuda::checkCuda(cudaEventSynchronize(stop), "a timed call");
    float t = 0.0f;
    cudaEventElapsedTime(&t, start, stop);
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// One numbered version of an op: what it is, whether it is the product's (the kernel native/cuda/ runs
// for this shape and device) or the lab's, and why it cannot run here (empty: it can).
struct Version {
  int number;
  std::string name;
  bool product;
  std::function<std::string()> unavailable;
};

// The device the lab runs on (device 0), and whether it runs the sm_90a image.
struct Device {
  cudaStream_t stream = nullptr;  // the legacy default stream: the timers record on it
  int multiprocessors = 0;
  bool hopper = false;
  std::string name;
};

inline Device device() {
  Device d;
  cudaDeviceProp prop{};
  const cudaError_t err = cudaGetDeviceProperties(&prop, 0);
  if (err != cudaSuccess) {
    std::printf("no GPU: %s; the lab runs on a GPU host (its emulators, dev/*.py, run anywhere)\n", cudaGetErrorString(err));
    std::exit(2);
  }
  d.multiprocessors = prop.multiProcessorCount;
  d.name = prop.name;
  d.hopper = pl::cuda::hopperGemmSupported(d.stream);
  std::printf("%s: %d SMs, compute capability %d.%d%s\n", d.name.c_str(), d.multiprocessors, prop.major, prop.minor,
              d.hopper ? ", runs the sm_90a image" : "");
  return d;
}

// The version selected on the command line (0: every version), exiting with a usage line on a bad argument.
inline int selectedVersion(int argc, char** argv, const std::vector<Version>& versions) {
  if (argc < 2) return 0;
  const int v = std::atoi(argv[1]);
  for (const auto& x : versions)
    if (x.number == v) return v;
  std::fprintf(stderr, "usage: %s [version]; versions:", argv[0]);
  for (const auto& x : versions) std::fprintf(stderr, " %d (%s)", x.number, x.name.c_str());
  std::fprintf(stderr, "\n");
  std::exit(2);
}

// Runs each selected version on one case: `run(v)` computes the version's outputs, `verify(v)` checks them
// against the reference (printing each tensor); only a version that passed is timed, `time(v)` printing its
// rate. Returns the number of failed checks.
inline int runCase(const std::vector<Version>& versions, int only, const std::function<void(int)>& run,
                   const std::function<bool(int)>& verify, const std::function<void(int)>& time) {
  int failed = 0;
  for (const auto& v : versions) {
    if (only && v.number != only) continue;
    const std::string why = v.unavailable ? v.unavailable() : std::string();
    std::printf("  version %d, %s%s\n", v.number, v.name.c_str(), v.product ? " [product]" : " [lab]");
    if (!why.empty()) {
      std::printf("    skip: %s\n", why.c_str());
      continue;
    }
    try {
      run(v.number);
      pl::cuda::checkCuda(cudaDeviceSynchronize(), "the version's run");
      if (!verify(v.number)) {
        ++failed;
        std::printf("    not timed: its output differs from the CPU reference\n");
        continue;
      }
      time(v.number);
    } catch (const std::exception& e) {
      ++failed;
      std::printf("    FAIL %s\n", e.what());
    }
  }
  return failed;
}

}  // namespace lab
