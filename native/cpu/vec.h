// Loop bodies shared by the CPU kernels, written so GCC vectorizes them; each kernel instantiates
// them inside AVX-512, AVX2 and portable clones (PL_SIMD_CLONES) and dispatches on activeIsa(). V8 is an
// 8-float GCC vector type: one AVX register in the AVX2/AVX-512 clones, two SSE registers in the portable one.
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

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // the helpers below are always inlined: no vector crosses a call
using V8 = float __attribute__((vector_size(32)));
using V8i = int32_t __attribute__((vector_size(32)));

PL_INLINE V8 load8(const float* p) {
  V8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
PL_INLINE void store8(float* p, V8 v) { std::memcpy(p, &v, sizeof v); }
// A shuffle, not V8{x, x, ...}: GCC 12 lowers that initializer to lane inserts before inlining into an AVX clone.
PL_INLINE V8 splat8(float x) { return __builtin_shufflevector(V8{x}, V8{x}, 0, 0, 0, 0, 0, 0, 0, 0); }
PL_INLINE V8 iota8() { return V8{0, 1, 2, 3, 4, 5, 6, 7}; }
PL_INLINE V8 select8(V8i mask, V8 a, V8 b) { return mask ? a : b; }
PL_INLINE V8 max8(V8 a, V8 b) { return a > b ? a : b; }
PL_INLINE float hsum8(V8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }
PL_INLINE float hmax8(V8 v) {
  float m = v[0];
  for (int i = 1; i < 8; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

// vexp on 8 lanes (the same polynomial, the same results lane by lane).
PL_INLINE V8 vexp8(V8 x) {
  x = x < splat8(-87.0f) ? splat8(-87.0f) : x;
  x = x > splat8(88.0f) ? splat8(88.0f) : x;
  const V8 t = x * 1.44269504088896341f + 12582912.0f;
  const V8 n = t - 12582912.0f;
  V8 r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V8 p = splat8(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const V8i bits = (__builtin_convertvector(n, V8i) + 127) << 23;
  V8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
#pragma GCC diagnostic pop

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
