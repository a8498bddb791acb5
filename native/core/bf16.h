// bfloat16 on the host: round-to-nearest-even narrowing (NaN stays NaN) and exact widening, bit for bit
// what __float2bfloat16_rn and __bfloat162float do on the GPU.
#pragma once
#include <cstdint>
#include <cstring>

namespace pl {

inline uint16_t toBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float fromBf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace pl
