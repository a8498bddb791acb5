// The SIMD level the CPU kernels dispatch on.
#include "simd.h"

#include <atomic>

#include "../core/cpu_features.h"

namespace pl::cpu {

Isa bestIsa() {
  static const Isa best = [] {
    const CpuFeatures& f = cpuFeatures();
    if (f.avx512f && f.avx512bw && f.fma) return Isa::Avx512;
    if (f.avx2 && f.fma) return Isa::Avx2;
    return Isa::Portable;
  }();
  return best;
}

static std::atomic<int>& activeSlot() {
  // The best level this CPU runs; only kernels.setSimd() (tests and benchmarks) lowers it: no environment
  // variable picks a kernel.
  static std::atomic<int> slot{static_cast<int>(bestIsa())};
  return slot;
}

Isa activeIsa() { return static_cast<Isa>(activeSlot().load(std::memory_order_relaxed)); }

void setActiveIsa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(bestIsa())) isa = bestIsa();
  activeSlot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

bool parseIsa(const std::string& name, Isa* out) {
  if (name == "avx512") *out = Isa::Avx512;
  else if (name == "avx2") *out = Isa::Avx2;
  else if (name == "portable") *out = Isa::Portable;
  else return false;
  return true;
}

}  // namespace pl::cpu
