// The binding of kernels.fmaPeak({ threads, ms }): checks the options, runs the measurement on a promise
// worker (one pool per thread count, kept for the process) and reports GFLOP/s per wall second and per
// CPU second (the second is what the cores did while they ran; the first what the caller got on a shared
// machine).
#include "peak_wrap.h"

#include <map>
#include <memory>
#include <mutex>

#include "../core/cpu_features.h"
#include "../core/thread_pool.h"
#include "../cpu/peak.h"
#include "args.h"
#include "async.h"

namespace pl::addon {

namespace {

ThreadPool& peakPool(int threads) {
  static std::mutex mutex;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = pools[threads];
  if (!slot) slot = std::make_unique<ThreadPool>(threads);
  return *slot;
}

class FmaPeakJob : public PromiseWorker {
 public:
  FmaPeakJob(Napi::Env env, int threads, double ms)
      : PromiseWorker(env, "puzzle-llama:fmaPeak"), threads_(threads), ms_(ms) {}

 protected:
  void Run(const ExecutionProgress&) override { r_ = cpu::measureFmaPeak(peakPool(threads_), ms_ * 1e-3); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("gflops", r_.flops / r_.wallSeconds * 1e-9);
    o.Set("gflopsPerCpuSecond", r_.cpuSeconds > 0 ? r_.flops / r_.cpuSeconds * 1e-9 : 0.0);
    o.Set("flops", r_.flops);
    o.Set("wallSeconds", r_.wallSeconds);
    o.Set("cpuSeconds", r_.cpuSeconds);
    o.Set("threads", r_.threads);
    o.Set("accumulators", r_.accumulators);
    o.Set("lanes", r_.lanes);
    o.Set("isa", r_.isa);
    return o;
  }

 private:
  int threads_;
  double ms_;
  cpu::FmaPeak r_;
};

Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.fmaPeak(): options.";
  Napi::Object o = objectArg(info, 0, "kernels.fmaPeak(): options", true);
  const int threads = static_cast<int>(intField(o, "threads", w, 1, 1024, cpuFeatures().hardwareThreads));
  const double ms = numberField(o, "ms", w, 1, 60000, 200);
  auto* job = new FmaPeakJob(env, threads, ms);
  job->Queue();
  return job->Promise();
}

}  // namespace

void AddFmaPeak(Napi::Env env, Napi::Object kernels) {
  kernels.Set("fmaPeak", Napi::Function::New(env, FmaPeak, "fmaPeak"));
}

}  // namespace pl::addon
