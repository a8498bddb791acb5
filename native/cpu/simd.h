// Which SIMD code path the CPU kernels take: the best one cpu_features reports, lowered only through
// setActiveIsa() (kernels.setSimd(), for tests and benchmarks, so every path can be checked on one machine).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace pl::cpu {

enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2 };

Isa bestIsa();      // what this CPU can run
Isa activeIsa();    // what kernels use now
void setActiveIsa(Isa isa);  // clamped to bestIsa()
const char* isaName(Isa isa);
bool parseIsa(const std::string& name, Isa* out);

// 64-byte aligned, growable scratch memory (packing buffers, per-thread temporaries).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  float* floats(size_t n) {
    if (n > capacity_) {
      std::free(data_);
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      capacity_ = data_ ? n : 0;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace pl::cpu

// Attributes for the per-ISA clones of a kernel.
#define PL_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,prefer-vector-width=512")))
#define PL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define PL_INLINE inline __attribute__((always_inline))
