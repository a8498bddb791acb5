// Loop bodies shared by the CPU kernels, written so GCC vectorizes them; each kernel instantiates
// them inside AVX-512, AVX2 and portable clones (PL_SIMD_CLONES) and dispatches on activeIsa().
#pragma once
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace pl::cpu {

// exp(x) for float, Cephes polynomial, branch-free so it vectorizes; |rel err| < 2e-7 over [-87, 88].
PL_INLINE float vexp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace pl::cpu

// Defines name_avx512 / name_avx2 / name_portable from name##Body and a dispatcher `name`.
#if defined(__x86_64__) || defined(__i386__)
#define PL_SIMD_CLONES(ret, name, params, args)                                 \
  PL_TARGET_AVX512 static ret name##Avx512 params { return name##Body args; } \
  PL_TARGET_AVX2 static ret name##Avx2 params { return name##Body args; }     \
  static ret name##Portable params { return name##Body args; }                \
  static ret name params {                                                     \
    switch (activeIsa()) {                                                     \
      case Isa::Avx512: return name##Avx512 args;                              \
      case Isa::Avx2: return name##Avx2 args;                                  \
      default: return name##Portable args;                                     \
    }                                                                          \
  }
#else
#define PL_SIMD_CLONES(ret, name, params, args) \
  static ret name params { return name##Body args; }
#endif
