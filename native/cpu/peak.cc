// Measures the fp32 FMA peak: per thread, 12 independent chains acc = acc * m + c (enough to cover the FMA
// latency on two pipes: Zen 3's 4-5 cycles x 2 needs 8-10), in zmm with AVX-512, ymm with AVX2 + FMA, and a
// plain multiply-add over 8-float arrays (what the compiler vectorizes at the baseline ISA) elsewhere.
// m < 1 keeps every chain bounded (it converges to c / (1 - m)): no overflow, no denormals.
#include "peak.h"

#include <immintrin.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "simd.h"

namespace pl::cpu {

namespace {

constexpr int kAcc = 12;
constexpr int64_t kChunk = 1 << 14;  // iterations between clock checks (~0.1 ms at AVX2 rates)

double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Each runs `iterations` rounds of kAcc FMAs and returns a value that depends on every chain.
PL_TARGET_AVX512 float chainsAvx512(int64_t iterations, float seed) {
  const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
  __m512 a0 = _mm512_set1_ps(seed), a1 = _mm512_add_ps(a0, c), a2 = _mm512_add_ps(a1, c), a3 = _mm512_add_ps(a2, c);
  __m512 a4 = _mm512_add_ps(a3, c), a5 = _mm512_add_ps(a4, c), a6 = _mm512_add_ps(a5, c), a7 = _mm512_add_ps(a6, c);
  __m512 a8 = _mm512_add_ps(a7, c), a9 = _mm512_add_ps(a8, c), a10 = _mm512_add_ps(a9, c), a11 = _mm512_add_ps(a10, c);
  for (int64_t i = 0; i < iterations; ++i) {
    a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);
    a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);
    a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);
    a9 = _mm512_fmadd_ps(a9, m, c); a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  float total = 0;
  for (float x : lanes) total += x;
  return total;
}

PL_TARGET_AVX2 float chainsAvx2(int64_t iterations, float seed) {
  const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
  __m256 a0 = _mm256_set1_ps(seed), a1 = _mm256_add_ps(a0, c), a2 = _mm256_add_ps(a1, c), a3 = _mm256_add_ps(a2, c);
  __m256 a4 = _mm256_add_ps(a3, c), a5 = _mm256_add_ps(a4, c), a6 = _mm256_add_ps(a5, c), a7 = _mm256_add_ps(a6, c);
  __m256 a8 = _mm256_add_ps(a7, c), a9 = _mm256_add_ps(a8, c), a10 = _mm256_add_ps(a9, c), a11 = _mm256_add_ps(a10, c);
  for (int64_t i = 0; i < iterations; ++i) {
    a0 = _mm256_fmadd_ps(a0, m, c); a1 = _mm256_fmadd_ps(a1, m, c); a2 = _mm256_fmadd_ps(a2, m, c);
    a3 = _mm256_fmadd_ps(a3, m, c); a4 = _mm256_fmadd_ps(a4, m, c); a5 = _mm256_fmadd_ps(a5, m, c);
    a6 = _mm256_fmadd_ps(a6, m, c); a7 = _mm256_fmadd_ps(a7, m, c); a8 = _mm256_fmadd_ps(a8, m, c);
    a9 = _mm256_fmadd_ps(a9, m, c); a10 = _mm256_fmadd_ps(a10, m, c); a11 = _mm256_fmadd_ps(a11, m, c);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float total = 0;
  for (float x : lanes) total += x;
  return total;
}

float chainsPortable(int64_t iterations, float seed) {
  float acc[kAcc][8];
  for (int j = 0; j < kAcc; ++j)
    for (int l = 0; l < 8; ++l) acc[j][l] = seed + 1e-3f * static_cast<float>(j);
  for (int64_t i = 0; i < iterations; ++i)
    for (int j = 0; j < kAcc; ++j)
      for (int l = 0; l < 8; ++l) acc[j][l] = acc[j][l] * 0.999f + 1e-3f;
  float total = 0;
  for (int j = 0; j < kAcc; ++j)
    for (int l = 0; l < 8; ++l) total += acc[j][l];
  return total;
}

}  // namespace

FmaPeak measureFmaPeak(ThreadPool& pool, double seconds) {
  if (!(seconds > 0)) throw std::invalid_argument("measureFmaPeak(): seconds must be > 0");
  const Isa isa = activeIsa();
  const int lanes = isa == Isa::Avx512 ? 16 : 8;
  auto chains = isa == Isa::Avx512 ? chainsAvx512 : isa == Isa::Avx2 ? chainsAvx2 : chainsPortable;
  const int threads = pool.size();
  std::vector<int64_t> iterations(static_cast<size_t>(threads), 0);
  std::vector<double> cpu(static_cast<size_t>(threads), 0.0);
  std::atomic<float> sink{0.0f};
  using Clock = std::chrono::steady_clock;
  const auto budget = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto start = Clock::now();
  pool.onEachThread([&](int slot) {
    const double cpu0 = threadCpuSeconds();
    const auto end = Clock::now() + budget;
    int64_t done = 0;
    float keep = 0;
    do {
      keep += chains(kChunk, 0.5f + 1e-4f * static_cast<float>(slot));
      done += kChunk;
    } while (Clock::now() < end);
    iterations[static_cast<size_t>(slot)] = done;
    cpu[static_cast<size_t>(slot)] = threadCpuSeconds() - cpu0;
    float expected = sink.load();
    while (!sink.compare_exchange_weak(expected, expected + keep)) {
    }
  });
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  if (!(sink.load() > 0)) throw std::runtime_error("measureFmaPeak(): the chains produced no result");
  FmaPeak r;
  for (int t = 0; t < threads; ++t) {
    r.flops += 2.0 * kAcc * lanes * static_cast<double>(iterations[static_cast<size_t>(t)]);
    r.cpuSeconds += cpu[static_cast<size_t>(t)];
  }
  r.wallSeconds = wall;
  r.threads = threads;
  r.accumulators = kAcc;
  r.lanes = lanes;
  r.isa = isaName(isa);
  return r;
}

}  // namespace pl::cpu
