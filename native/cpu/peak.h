// The machine's fp32 FMA peak, measured: independent FMA chains on every thread of a pool for a given
// time, so benchmarks can print each compute row's fraction of what the cores can do in the same run.
#pragma once
#include <string>

#include "../core/thread_pool.h"

namespace pl::cpu {

struct FmaPeak {
  double flops = 0;        // floating-point operations done, all threads (an FMA counts 2)
  double wallSeconds = 0;  // from the first thread's start to the last one's end
  double cpuSeconds = 0;   // CPU time the threads were given (CLOCK_THREAD_CPUTIME_ID), summed
  int threads = 0;
  int accumulators = 0;    // independent chains per thread
  int lanes = 0;           // fp32 lanes per chain (16 zmm, 8 ymm, 8 portable)
  std::string isa;         // the code path that ran ("avx512", "avx2", "portable")
};

// Runs the chains on each of the pool's threads for `seconds` each (every thread checks its own clock),
// at the active ISA (cpu::activeIsa(), so kernels.setSimd applies). seconds must be > 0.
FmaPeak measureFmaPeak(ThreadPool& pool, double seconds);

}  // namespace pl::cpu
