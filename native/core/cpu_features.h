// What the host CPU can run: picked once at load time so kernels can dispatch on it.
#pragma once
#include <string>

namespace pl {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512bf16 = false;
  unsigned hardwareThreads = 1;
};

const CpuFeatures& cpuFeatures();
// The widest SIMD level the kernels will use: "avx512", "avx2" or "portable".
std::string simdLevel();

}  // namespace pl
