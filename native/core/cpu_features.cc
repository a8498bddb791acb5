// Runtime CPU feature detection (cpuid through the compiler's builtins).
#include "cpu_features.h"

#include <thread>

namespace pl {

static CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
  f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
#endif
  unsigned n = std::thread::hardware_concurrency();
  f.hardwareThreads = n == 0 ? 1 : n;
  return f;
}

const CpuFeatures& cpuFeatures() {
  static const CpuFeatures features = detect();
  return features;
}

std::string simdLevel() {
  const CpuFeatures& f = cpuFeatures();
  if (f.avx512f && f.avx512bw) return "avx512";
  if (f.avx2 && f.fma) return "avx2";
  return "portable";
}

}  // namespace pl
