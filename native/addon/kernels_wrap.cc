// The `kernels` object: synchronous single-op entry points (inputs are read in place, outputs are new
// arrays) plus promise-returning timing loops for the benchmarks. The ops' argument checks, and the dispatch
// of those that are one backend call, are generated from native/ops/spec.mjs into kernels_ops.h; this file
// holds OpCall, the dispatch the spec marks hand-written, and the functions that are not ops.
// Every op takes options.device: 'cpu' (default) runs on the typed arrays in place; 'cuda' uploads the
// inputs to the process's one CudaBackend (created on first use), runs the same Backend op there and
// downloads the outputs.
#include "kernels_wrap.h"
#ifdef PUZZLE_LLAMA_CUDA
#include "../cuda/cuda_backend.h"
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "../core/cpu_features.h"
#include "../core/error.h"
#include "../cpu/cpu_backend.h"
#include "../cpu/simd.h"
#include "../model/llama.h"
#include "../model/lora_linear.h"
#include "args.h"
#include "async.h"

namespace pl::addon {

namespace {

constexpr int64_t kBig = int64_t(1) << 30;

// One backend (and thread pool) per thread count, kept for the process.
cpu::CpuBackend& backendFor(int threads) {
  static std::mutex mutex;
  static std::map<int, std::unique_ptr<cpu::CpuBackend>> backends;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = backends[threads];
  if (!slot) slot = std::make_unique<cpu::CpuBackend>(threads);
  return *slot;
}

cpu::CpuBackend& backendArg(const Napi::Object& o, const std::string& where) {
  return backendFor(static_cast<int>(
      intField(o, "threads", where, 1, 1024, static_cast<int64_t>(cpuFeatures().hardwareThreads))));
}

Napi::Value arg(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i ? info[i] : info.Env().Undefined(); }

// ---- the CUDA backend of the kernels ---------------------------------------------------------------

// One CudaBackend for the process, made on first use (device 0). Not thread-safe, like any backend:
// `cudaMutex()` is held by every call that uses it (the synchronous ops and the timing jobs alike).
std::mutex& cudaMutex() {
  static std::mutex m;
  return m;
}

// The backend, or null with the reason it cannot be had. Caller holds cudaMutex(). A failed creation is
// not cached: a later call tries again.
Backend* cudaBackendLocked(std::string* why, std::string* label) {
#ifdef PUZZLE_LLAMA_CUDA
  static std::unique_ptr<Backend> backend;
  if (!backend) {
    try {
      backend = cuda::createBackend(0);
    } catch (const std::exception& e) {
      *why = e.what();
      return nullptr;
    }
  }
  if (label) {
    auto* cb = dynamic_cast<cuda::CudaBackend*>(backend.get());
    *label = cb ? cb->deviceLabel() : backend->name();
  }
  return backend.get();
#else
  (void)label;
  *why = "this addon is the CPU build (run `npm run build:cuda` where nvcc is installed)";
  return nullptr;
#endif
}

enum class Device { Cpu, Cuda };

Device deviceArg(const Napi::Object& o, const std::string& where) {
  const std::string d = stringField(o, "device", where, std::string("cpu"));
  if (d == "cpu") return Device::Cpu;
  if (d == "cuda") return Device::Cuda;
  throwRange(o.Env(), where + "device must be 'cpu' or 'cuda', got '" + d + "'");
}

// One op call's view of its backend: on the CPU the typed arrays themselves; on CUDA device copies of
// the inputs, device outputs (zero-filled, as new typed arrays are) downloaded by finish(), and the
// backend's lock held for the call. Device memory is released when the call ends, thrown or not.
class OpCall {
 public:
  OpCall(const Napi::Object& o, const std::string& where) : device_(deviceArg(o, where)) {
    if (device_ == Device::Cpu) {
      be_ = &backendArg(o, where);
      return;
    }
    lock_ = std::unique_lock<std::mutex>(cudaMutex());
    std::string why;
    be_ = cudaBackendLocked(&why, nullptr);
    if (!be_) throw Napi::Error::New(o.Env(), where + "device = 'cuda' but no CUDA backend is available: " + why);
  }
  ~OpCall() {
    for (void* p : owned_) {
      try {
        be_->release(p);
      } catch (const std::exception&) {
        // A destructor must not throw; the op's own error (if any) is already on its way.
      }
    }
  }
  OpCall(const OpCall&) = delete;
  OpCall& operator=(const OpCall&) = delete;

  Backend& be() { return *be_; }
  bool onDevice() const { return device_ == Device::Cuda; }

  template <typename T>
  const T* in(const T* host, size_t n) {
    if (!onDevice() || !host) return host;
    T* d = alloc<T>(n);
    be_->upload(d, host, n * sizeof(T));
    return d;
  }
  // Written by the op (and read back by finish()); its starting contents are the host array's when
  // `init`, else zeros.
  float* out(float* host, size_t n, bool init = false) {
    if (!onDevice()) return host;
    float* d = alloc<float>(n);
    if (init) be_->upload(d, host, n * sizeof(float));
    outs_.push_back({host, d, n * sizeof(float)});
    return d;
  }
  // The same for whole typed arrays (the generated bindings of kernels_ops.h).
  const float* in(Napi::Float32Array& host) { return in(host.Data(), host.ElementLength()); }
  const int32_t* in(Napi::Int32Array& host) { return in(host.Data(), host.ElementLength()); }
  float* out(Napi::Float32Array& host, bool init = false) { return out(host.Data(), host.ElementLength(), init); }
  // Scratch the op needs (host vectors on the CPU, device memory on CUDA).
  float* scratch(std::vector<float>& host) {
    if (!onDevice()) return host.data();
    return alloc<float>(host.size());
  }
  // Brings every output back to its typed array (a no-op on the CPU).
  void finish() {
    if (!onDevice()) return;
    be_->synchronize();
    for (const Out& o : outs_) be_->download(o.host, o.dev, o.bytes);
  }

 private:
  struct Out {
    float* host;
    float* dev;
    size_t bytes;
  };
  template <typename T>
  T* alloc(size_t n) {
    void* p = be_->allocate(std::max<size_t>(1, n) * sizeof(T));
    owned_.push_back(p);
    return static_cast<T*>(p);
  }

  Device device_;
  Backend* be_ = nullptr;
  std::unique_lock<std::mutex> lock_;
  std::vector<void*> owned_;
  std::vector<Out> outs_;
};

int dim(const Napi::Object& o, const char* key, const std::string& where) {
  return static_cast<int>(intField(o, key, where, 1, kBig));
}

}  // namespace
}  // namespace pl::addon

// Each op's argument checks, and the dispatch of those that are one backend call (made from native/ops/spec.mjs).
#include "kernels_ops.h"

namespace pl::addon {
namespace {

// ---- simd level --------------------------------------------------------------------------------

Napi::Value Simd(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cpu::isaName(cpu::activeIsa())); }

Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value v = arg(info, 0);
  cpu::Isa isa;
  if (!v.IsString() || !cpu::parseIsa(v.As<Napi::String>().Utf8Value(), &isa))
    throwType(env, "kernels.setSimd(): level must be 'avx512', 'avx2' or 'portable', got " + describe(v));
  cpu::setActiveIsa(isa);
  return Napi::String::New(env, cpu::isaName(cpu::activeIsa()));
}

// ---- linear with LoRA --------------------------------------------------------------------------

struct LinearArgs {
  LinearWeights w;
  int M = 0;
  bool train = false;
  uint64_t seed = 0;
};

LinearArgs linearArgs(const Napi::CallbackInfo& info, const Napi::Object& o, const Napi::Value& wv,
                      const std::string& w) {
  Napi::Env env = info.Env();
  LinearArgs a;
  a.M = dim(o, "m", w + "options.");
  a.w.in = dim(o, "in", w + "options.");
  a.w.out = dim(o, "out", w + "options.");
  a.w.W = f32Arg(env, wv, w + "w", static_cast<size_t>(a.w.out) * a.w.in).Data();
  if (has(o, "loraA")) {
    a.w.r = dim(o, "r", w + "options.");
    a.w.A = f32Arg(env, o.Get("loraA"), w + "options.loraA", static_cast<size_t>(a.w.r) * a.w.in).Data();
    a.w.B = f32Arg(env, o.Get("loraB"), w + "options.loraB", static_cast<size_t>(a.w.out) * a.w.r).Data();
    a.w.scale = static_cast<float>(numberField(o, "scale", w + "options.", -1e30, 1e30));
    a.w.dropout = static_cast<float>(numberField(o, "dropout", w + "options.", 0.0, 0.999, 0.0));
    a.train = boolField(o, "train", w + "options.", false);
    a.seed = static_cast<uint64_t>(intField(o, "seed", w + "options.", 0, int64_t(1) << 53, 0));
  }
  return a;
}

// The weights' pointers as the call's backend sees them (device copies on CUDA).
LinearWeights weightsOn(OpCall& call, const LinearWeights& host) {
  LinearWeights d = host;
  d.W = call.in(host.W, static_cast<size_t>(host.out) * host.in);
  if (host.A) {
    d.A = call.in(host.A, static_cast<size_t>(host.r) * host.in);
    d.B = call.in(host.B, static_cast<size_t>(host.out) * host.r);
  }
  return d;
}

Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.linearForward(): ";
  Napi::Object o = objectArg(info, 2, w + "options", false);
  LinearArgs a = linearArgs(info, o, arg(info, 1), w);
  Napi::Float32Array x = f32Arg(env, arg(info, 0), w + "x", static_cast<size_t>(a.M) * a.w.in);
  Napi::Float32Array y = Napi::Float32Array::New(env, static_cast<size_t>(a.M) * a.w.out);
  Napi::Object out = Napi::Object::New(env);
  std::vector<float> h(static_cast<size_t>(a.M) * std::max(1, a.w.r)), xd(static_cast<size_t>(a.M) * a.w.in);
  {
    OpCall call(o, w + "options.");
    const LinearWeights dw = weightsOn(call, a.w);
    loraLinearForward(call.be(), call.out(y.Data(), y.ElementLength()), call.in(x.Data(), x.ElementLength()), a.M, dw,
                      call.out(h.data(), h.size()), call.out(xd.data(), xd.size()), a.train, a.seed);
    call.finish();
  }
  out.Set("y", y);
  out.Set("h", a.w.A ? Napi::Value(newF32(env, h.size(), h.data())) : env.Null());
  out.Set("xd", a.w.A && a.train && a.w.dropout > 0 ? Napi::Value(newF32(env, xd.size(), xd.data())) : env.Null());
  return out;
}

Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.linearBackward(): ";
  Napi::Object o = objectArg(info, 3, w + "options", false);
  LinearArgs a = linearArgs(info, o, arg(info, 2), w);
  Napi::Float32Array dy = f32Arg(env, arg(info, 0), w + "dy", static_cast<size_t>(a.M) * a.w.out);
  Napi::Float32Array x = f32Arg(env, arg(info, 1), w + "x", static_cast<size_t>(a.M) * a.w.in);
  Napi::Float32Array dx = Napi::Float32Array::New(env, static_cast<size_t>(a.M) * a.w.in);
  Napi::Float32Array dw = Napi::Float32Array::New(env, static_cast<size_t>(a.w.out) * a.w.in);
  const float* h = nullptr;
  const float* xd = nullptr;
  Napi::Object out = Napi::Object::New(env);
  Napi::Float32Array dA, dB;
  if (a.w.A) {
    h = f32Arg(env, o.Get("h"), w + "options.h", static_cast<size_t>(a.M) * a.w.r).Data();
    if (a.train && a.w.dropout > 0)
      xd = f32Arg(env, o.Get("xd"), w + "options.xd", static_cast<size_t>(a.M) * a.w.in).Data();
    dA = Napi::Float32Array::New(env, static_cast<size_t>(a.w.r) * a.w.in);
    dB = Napi::Float32Array::New(env, static_cast<size_t>(a.w.out) * a.w.r);
  }
  std::vector<float> dh(static_cast<size_t>(a.M) * std::max(1, a.w.r)), dxl(static_cast<size_t>(a.M) * a.w.in);
  {
    OpCall call(o, w + "options.");
    LinearWeights lw = weightsOn(call, a.w);
    lw.dW = call.out(dw.Data(), dw.ElementLength());
    if (a.w.A) {
      lw.dA = call.out(dA.Data(), dA.ElementLength());
      lw.dB = call.out(dB.Data(), dB.ElementLength());
    }
    loraLinearBackward(call.be(), call.out(dx.Data(), dx.ElementLength()), 0.0f, call.in(dy.Data(), dy.ElementLength()),
                       call.in(x.Data(), x.ElementLength()), a.M, lw, call.in(h, static_cast<size_t>(a.M) * a.w.r),
                       call.in(xd, static_cast<size_t>(a.M) * a.w.in), call.scratch(dh), call.scratch(dxl), a.train,
                       a.seed);
    call.finish();
  }
  out.Set("dx", dx);
  out.Set("dw", dw);
  out.Set("dA", a.w.A ? Napi::Value(dA) : env.Null());
  out.Set("dB", a.w.A ? Napi::Value(dB) : env.Null());
  return out;
}

// ---- rope --------------------------------------------------------------------------------------

// The cos/sin tables of theta for positions [0, pos0 + t), made here; the rotation on a copy of x.
template <typename Args>
Napi::Value Rope(Args a, bool backward) {
  std::vector<float> cosT, sinT;
  ropeTables(a.theta, a.d, a.pos0 + a.t, cosT, sinT);
  OpCall call(a.options, backward ? "kernels.ropeBackward(): options." : "kernels.ropeForward(): options.");
  float* x = call.out(a.out_out, true);
  const float* c = call.in(cosT.data(), cosT.size());
  const float* s = call.in(sinT.data(), sinT.size());
  if (backward) call.be().ropeBackward(x, c, s, a.b, a.t, a.h, a.d, a.pos0);
  else call.be().ropeForward(x, c, s, a.b, a.t, a.h, a.d, a.pos0);
  call.finish();
  return a.out_out;
}
Napi::Value RopeForward(const Napi::CallbackInfo& info) { return Rope(parseRopeForward(info), false); }
Napi::Value RopeBackward(const Napi::CallbackInfo& info) { return Rope(parseRopeBackward(info), true); }

// ---- attention ---------------------------------------------------------------------------------

struct AttnDims {
  int B, T, H, Hkv, D;
};
AttnDims attnDims(const Napi::Object& o, const std::string& w) {
  AttnDims d{dim(o, "b", w), dim(o, "t", w), dim(o, "h", w), dim(o, "hkv", w), dim(o, "d", w)};
  if (d.H % d.Hkv) throwRange(o.Env(), w + "h = " + std::to_string(d.H) + " must be a multiple of hkv = " + std::to_string(d.Hkv));
  if (d.D > 256) throwRange(o.Env(), w + "d = " + std::to_string(d.D) + " must be at most 256");
  return d;
}

// options.kernel: which CUDA attention kernels a call runs ("" = the backend's own choice; no effect on the
// CPU). Validated here, applied by AttentionKernelScope.
std::string attentionKernelArg(const Napi::Object& o, const std::string& w) {
  if (o.Get("kernel").IsUndefined()) return "";
  const std::string kernel = stringField(o, "kernel", w, std::string("flash"));
  if (kernel != "flash" && kernel != "flash-recompute")
    throwRange(o.Env(), w + "kernel must be 'flash' or 'flash-recompute', got '" + kernel + "'");
  return kernel;
}

// Sets the shared CUDA backend's attention kernels for one call (the caller holds the backend's lock) and
// puts the previous ones back after it.
class AttentionKernelScope {
 public:
  AttentionKernelScope(Backend& be, bool cuda, const std::string& kernel) {
#ifdef PUZZLE_LLAMA_CUDA
    if (!cuda || kernel.empty()) return;
    auto* backend = static_cast<cuda::CudaBackend*>(&be);
    const std::string before = backend->attentionKernel();
    backend->setAttentionKernel(kernel);
    before_ = before;
    cuda_ = backend;
#else
    (void)be;
    (void)cuda;
    (void)kernel;
#endif
  }
  ~AttentionKernelScope() {
#ifdef PUZZLE_LLAMA_CUDA
    if (cuda_) cuda_->setAttentionKernel(before_);  // a name it gave: cannot throw
#endif
  }
  AttentionKernelScope(const AttentionKernelScope&) = delete;
  AttentionKernelScope& operator=(const AttentionKernelScope&) = delete;

 private:
#ifdef PUZZLE_LLAMA_CUDA
  cuda::CudaBackend* cuda_ = nullptr;
  std::string before_;
#endif
};

// Without tcap/pos0 this is causal self-attention over t positions. With them (KV-cache decode), the t
// queries sit at positions pos0.. and k, v hold tcap rows of which [0, pos0 + t) are read.
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  AttentionForwardArgs a = parseAttentionForward(info);
  {
    OpCall call(a.options, "kernels.attentionForward(): options.");
    AttentionKernelScope scope(call.be(), call.onDevice(), a.kernel);
    call.be().attentionForward(call.out(a.out_out), call.out(a.out_lse), call.in(a.in_q), call.in(a.in_k), call.in(a.in_v),
                               a.b, a.t, a.tcap, a.h, a.hkv, a.d, a.pos0);
    call.finish();
  }
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("out", a.out_out);
  r.Set("lse", a.out_lse);
  return r;
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  AttentionBackwardArgs a = parseAttentionBackward(info);
  {
    OpCall call(a.options, "kernels.attentionBackward(): options.");
    AttentionKernelScope scope(call.be(), call.onDevice(), a.kernel);
    call.be().attentionBackward(call.out(a.out_dq), call.out(a.out_dk), call.out(a.out_dv), call.in(a.in_dout),
                                call.in(a.in_q), call.in(a.in_k), call.in(a.in_v), call.in(a.in_out), call.in(a.in_lse),
                                a.b, a.t, a.h, a.hkv, a.d);
    call.finish();
  }
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("dq", a.out_dq);
  r.Set("dk", a.out_dk);
  r.Set("dv", a.out_dv);
  return r;
}

// ---- CUDA availability -----------------------------------------------------------------------------

// { ok, reason, device? }: whether device 'cuda' works in this process, creating the backend if need be.
Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  std::string why, label;
  Backend* be = nullptr;
  {
    std::lock_guard<std::mutex> lock(cudaMutex());
    be = cudaBackendLocked(&why, &label);
  }
  r.Set("ok", be != nullptr);
  r.Set("reason", be ? env.Null() : Napi::Value(Napi::String::New(env, why)));
  if (be) r.Set("device", label);
#ifdef PUZZLE_LLAMA_CUDA
  if (be) {
    const bool hopper = static_cast<cuda::CudaBackend*>(be)->hopperGemm();
    r.Set("gemm", hopper ? "wgmma + TMA (sm_90a) from 4M multiply-adds, mma.sync below" : "mma.sync (bf16 tensor cores)");
  }
#endif
  return r;
}

// ---- timing loops (promise workers) --------------------------------------------------------------

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double medianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.empty() ? 0.0 : v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Inputs in [-0.5, 0.5), the same on every backend, written to backend memory.
void fillPattern(Backend& be, float* dst, size_t n, size_t mul) {
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = static_cast<float>((i * mul) % 1000) * 1e-3f - 0.5f;
  be.upload(dst, h.data(), n * sizeof(float));
}

// Runs `once` after a warm-up, `repeats` times, each timed to completion (synchronize() waits for the
// GPU; a no-op on the CPU); checks the abort flag between repeats.
template <typename F>
std::vector<double> timeRepeats(Backend& be, int repeats, const std::atomic<bool>* abort, F once) {
  once();
  be.synchronize();
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    if (abort && abort->load()) throw Aborted();
    auto t0 = std::chrono::steady_clock::now();
    once();
    be.synchronize();
    times.push_back(seconds(t0));
  }
  return times;
}

// Backend memory for a timing job, released when the job ends.
class Scratch {
 public:
  explicit Scratch(Backend& be) : be_(be) {}
  ~Scratch() {
    for (void* p : owned_) {
      try {
        be_.release(p);
      } catch (const std::exception&) {
      }
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* floats(size_t n) {
    owned_.push_back(be_.allocate(std::max<size_t>(1, n) * sizeof(float)));
    return static_cast<float*>(owned_.back());
  }

 private:
  Backend& be_;
  std::vector<void*> owned_;
};

// The backend a timing job runs on, with the CUDA lock held for the job when that is the one.
class JobBackend {
 public:
  JobBackend(Device device, int threads) {
    if (device == Device::Cpu) {
      be_ = &backendFor(threads);
      return;
    }
    lock_ = std::unique_lock<std::mutex>(cudaMutex());
    std::string why;
    be_ = cudaBackendLocked(&why, nullptr);
    if (!be_) throw Error("device = 'cuda' but no CUDA backend is available: " + why);
  }
  Backend& operator*() { return *be_; }

 private:
  Backend* be_ = nullptr;
  std::unique_lock<std::mutex> lock_;
};

class TimeMatmulJob : public PromiseWorker {
 public:
  TimeMatmulJob(Napi::Env env, int M, int N, int K, bool tA, bool tB, int repeats, int threads, Device device,
                bool bf16, int tileWidth)
      : PromiseWorker(env, "puzzle-llama:timeMatmul"), M_(M), N_(N), K_(K), tA_(tA), tB_(tB), repeats_(repeats),
        threads_(threads), device_(device), bf16_(bf16), tileWidth_(tileWidth) {}

 protected:
  void Run(const ExecutionProgress&) override {
    JobBackend jb(device_, threads_);
    Backend& be = *jb;
    Scratch mem(be);
    if (bf16_) {
      runBf16(be, mem);
      return;
    }
    float* a = mem.floats(static_cast<size_t>(M_) * K_);
    float* b = mem.floats(static_cast<size_t>(K_) * N_);
    float* c = mem.floats(static_cast<size_t>(M_) * N_);
    fillPattern(be, a, static_cast<size_t>(M_) * K_, 7919);
    fillPattern(be, b, static_cast<size_t>(K_) * N_, 104729);
    times_ = timeRepeats(be, repeats_, abortFlag(),
                         [&] { be.gemm(c, a, b, M_, N_, K_, tA_, tB_, 1.0f, 0.0f); });
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    const double flops = 2.0 * M_ * N_ * K_;
    const double best = *std::min_element(times_.begin(), times_.end());
    double mean = 0.0;
    for (double t : times_) mean += t;
    mean /= static_cast<double>(times_.size());
    const double median = medianOf(times_);
    o.Set("bestSeconds", best);
    o.Set("meanSeconds", mean);
    o.Set("medianSeconds", median);
    o.Set("gflops", flops / best * 1e-9);
    o.Set("meanGflops", flops / mean * 1e-9);
    o.Set("medianGflops", flops / median * 1e-9);
    if (tileWidth_ > 0) o.Set("tileWidth", tileWidth_);
    return o;
  }

 private:
  // bf16 operands already in device memory, K-major (A row-major, B transposed: what torch.mm gets in
  // bf16): the Hopper kernel alone, without the fp32 interface's conversion passes.
  void runBf16(Backend& be, Scratch& mem) {
#ifdef PUZZLE_LLAMA_CUDA
    auto* cuda = device_ == Device::Cuda ? static_cast<cuda::CudaBackend*>(&be) : nullptr;
    if (!cuda || !cuda->hopperGemm())
      throw Error("kernels.timeMatmul(): options.operands 'bf16' needs device 'cuda' on a GPU that runs the sm_90a "
                  "(Hopper) GEMM");
    const int ldk = (K_ + 7) / 8 * 8;
    float* a32 = mem.floats(static_cast<size_t>(M_) * K_);
    float* b32 = mem.floats(static_cast<size_t>(N_) * K_);
    fillPattern(be, a32, static_cast<size_t>(M_) * K_, 7919);
    fillPattern(be, b32, static_cast<size_t>(N_) * K_, 104729);
    float* a = mem.floats((static_cast<size_t>(M_) * ldk + 1) / 2);  // bf16: two a float
    float* b = mem.floats((static_cast<size_t>(N_) * ldk + 1) / 2);
    float* c = mem.floats(static_cast<size_t>(M_) * N_);
    cuda->toBf16KMajor(a, a32, M_, K_, true, ldk);
    cuda->toBf16KMajor(b, b32, N_, K_, true, ldk);
    if (tileWidth_ == 0) tileWidth_ = cuda::CudaBackend::hopperGemmWidth(M_, N_, cuda->threads());
    const auto widths = cuda::CudaBackend::hopperGemmWidths();
    if (std::find(widths.begin(), widths.end(), tileWidth_) == widths.end()) {
      std::string known;
      for (int w : widths) known += (known.empty() ? "" : ", ") + std::to_string(w);
      throw Error("kernels.timeMatmul(): options.tileWidth must be one of " + known + ", got " + std::to_string(tileWidth_));
    }
    times_ = timeRepeats(be, repeats_, abortFlag(),
                         [&] { cuda->gemmBf16(c, a, b, M_, N_, K_, ldk, ldk, 1.0f, 0.0f, tileWidth_); });
#else
    (void)be;
    (void)mem;
    throw Error("kernels.timeMatmul(): options.operands 'bf16' needs the CUDA build");
#endif
  }

  int M_, N_, K_;
  bool tA_, tB_;
  int repeats_, threads_;
  Device device_;
  bool bf16_;
  int tileWidth_;  // bf16 operands: the Hopper kernel's output-tile width (0: its own pick, reported back)
  std::vector<double> times_;
};

Napi::Value TimeMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.timeMatmul(): options.";
  Napi::Object o = objectArg(info, 0, "kernels.timeMatmul(): options", false);
  bool bf16 = false;
  const Napi::Value operands = o.Get("operands");
  if (!operands.IsUndefined()) {
    const std::string v = operands.IsString() ? operands.As<Napi::String>().Utf8Value() : "";
    if (v != "fp32" && v != "bf16")
      throwType(env, w + "operands must be 'fp32' or 'bf16', got " + (operands.IsString() ? "'" + v + "'" : "a non-string"));
    bf16 = v == "bf16";
  }
  int tileWidth = 0;
  if (!o.Get("tileWidth").IsUndefined()) {
    if (!bf16) throwType(env, w + "tileWidth applies to operands 'bf16' only");
    tileWidth = static_cast<int>(intField(o, "tileWidth", w, 8, 256, 0));
  }
  auto* job = new TimeMatmulJob(env, dim(o, "m", w), dim(o, "n", w), dim(o, "k", w), boolField(o, "transA", w, false),
                                boolField(o, "transB", w, false), static_cast<int>(intField(o, "repeats", w, 1, 100000, 10)),
                                static_cast<int>(intField(o, "threads", w, 1, 1024, cpuFeatures().hardwareThreads)),
                                deviceArg(o, w), bf16, tileWidth);
  job->Queue();
  return job->Promise();
}

class TimeAttentionJob : public PromiseWorker {
 public:
  // kernel: "" for the backend's own choice, else the CUDA attention kernels to time (no effect on the CPU).
  TimeAttentionJob(Napi::Env env, AttnDims d, int repeats, int threads, Device device, std::string kernel)
      : PromiseWorker(env, "puzzle-llama:timeAttention"), d_(d), repeats_(repeats), threads_(threads), device_(device),
        kernel_(std::move(kernel)) {}

 protected:
  void Run(const ExecutionProgress&) override {
    JobBackend jb(device_, threads_);
    Backend& be = *jb;
    AttentionKernelScope scope(be, device_ == Device::Cuda, kernel_);  // for this job only
    Scratch mem(be);
    const size_t qn = static_cast<size_t>(d_.B) * d_.T * d_.H * d_.D, kn = static_cast<size_t>(d_.B) * d_.T * d_.Hkv * d_.D;
    float *q = mem.floats(qn), *k = mem.floats(kn), *v = mem.floats(kn), *out = mem.floats(qn), *dout = mem.floats(qn);
    float *dq = mem.floats(qn), *dk = mem.floats(kn), *dv = mem.floats(kn);
    float* lse = mem.floats(static_cast<size_t>(d_.B) * d_.H * d_.T);
    fillPattern(be, q, qn, 7919);
    fillPattern(be, dout, qn, 7919);
    fillPattern(be, k, kn, 104729);
    fillPattern(be, v, kn, 104729);
    auto fwd = [&] { be.attentionForward(out, lse, q, k, v, d_.B, d_.T, d_.T, d_.H, d_.Hkv, d_.D, 0); };
    fwdTimes_ = timeRepeats(be, repeats_, abortFlag(), fwd);
    auto bwd = [&] { be.attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, d_.B, d_.T, d_.H, d_.Hkv, d_.D); };
    // The backward alone, from the forward's out and lse (it writes dq, dk, dv whole: each call the same work).
    bwdTimes_ = timeRepeats(be, repeats_, abortFlag(), bwd);
    times_ = timeRepeats(be, repeats_, abortFlag(), [&] {
      fwd();
      bwd();
    });
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("msFwdBwd", *std::min_element(times_.begin(), times_.end()) * 1e3);
    o.Set("medianMsFwdBwd", medianOf(times_) * 1e3);
    o.Set("msFwd", *std::min_element(fwdTimes_.begin(), fwdTimes_.end()) * 1e3);
    o.Set("medianMsFwd", medianOf(fwdTimes_) * 1e3);
    o.Set("msBwd", *std::min_element(bwdTimes_.begin(), bwdTimes_.end()) * 1e3);
    o.Set("medianMsBwd", medianOf(bwdTimes_) * 1e3);
    return o;
  }

 private:
  AttnDims d_;
  int repeats_, threads_;
  Device device_;
  std::string kernel_;
  std::vector<double> times_, fwdTimes_, bwdTimes_;
};

Napi::Value TimeAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.timeAttention(): options.";
  Napi::Object o = objectArg(info, 0, "kernels.timeAttention(): options", false);
  const std::string kernel = attentionKernelArg(o, w);
  auto* job = new TimeAttentionJob(env, attnDims(o, w), static_cast<int>(intField(o, "repeats", w, 1, 100000, 10)),
                                   static_cast<int>(intField(o, "threads", w, 1, 1024, cpuFeatures().hardwareThreads)),
                                   deviceArg(o, w), kernel);
  job->Queue();
  return job->Promise();
}

// ---- bandwidth-bound ops ---------------------------------------------------------------------------

// The ops kernels.timeOp() times, and the shape fields each takes (besides repeats, calls, device, threads).
struct TimedOp {
  const char* name;
  const char* fields;  // e.g. "n,c"
};
constexpr TimedOp kTimedOps[] = {
    {"copy", "n"},         {"add", "n"},          {"rmsnormForward", "n,c"}, {"rmsnormBackward", "n,c"},
    {"ropeForward", "b,t,h,d"}, {"ropeBackward", "b,t,h,d"}, {"swigluForward", "n"},  {"swigluBackward", "n"},
    {"crossEntropy", "n,v"}, {"adamw", "n"},      {"embeddingForward", "n,c,v"}, {"embeddingBackward", "n,c,v"},
};

struct OpShape {
  std::string op;
  int64_t n = 1, c = 1, v = 1, b = 1, t = 1, h = 1, d = 2;
};

// Times one backend op on inputs already in backend memory: `repeats` timed batches after a warm-up, each
// batch `calls` calls back to back and then synchronize() (so launch latency is spread over the batch),
// reported per call. bytes is what the op must move at least: every input read once, every output written
// once (an accumulated output counts as read and written), fp32 and int32 elements of 4 bytes:
//   copy 8n; add 12n; rmsnormForward 4(2nc + c + n); rmsnormBackward 4(4nc + 3c + n) (dx and dweight
//   accumulate); ropeForward/Backward 4(2bthd + td) (in place, plus the cos and sin tables);
//   swigluForward 12n; swigluBackward 20n; crossEntropy 4(2nv + 2n) (logits read, dlogits written over
//   them, targets, losses); adamw 28n (param, grad, m, v read; param, m, v written); embeddingForward
//   4(n + 2nc); embeddingBackward 4(nc + n + 2uc), u the distinct tokens (each touched row read and written).
class TimeOpJob : public PromiseWorker {
 public:
  TimeOpJob(Napi::Env env, OpShape shape, int repeats, int calls, int threads, Device device)
      : PromiseWorker(env, "puzzle-llama:timeOp"), s_(std::move(shape)), repeats_(repeats), calls_(calls),
        threads_(threads), device_(device) {}

 protected:
  void Run(const ExecutionProgress&) override {
    JobBackend jb(device_, threads_);
    Backend& be = *jb;
    Scratch mem(be);
    const size_t n = static_cast<size_t>(s_.n), nc = n * static_cast<size_t>(s_.c);
    const int N = static_cast<int>(s_.n), C = static_cast<int>(s_.c), V = static_cast<int>(s_.v);
    std::function<void()> once;
    auto filled = [&](size_t count, size_t mul) {
      float* p = mem.floats(count);
      fillPattern(be, p, count, mul);
      return p;
    };
    auto tokens = [&](int count, bool ignore) {
      std::vector<int32_t> h(static_cast<size_t>(count));
      for (int i = 0; i < count; ++i) h[i] = ignore && i % 5 == 3 ? -100 : static_cast<int32_t>((int64_t(i) * 7919) % V);
      auto* p = reinterpret_cast<int32_t*>(mem.floats(h.size()));
      be.upload(p, h.data(), h.size() * sizeof(int32_t));
      return std::make_pair(p, std::set<int32_t>(h.begin(), h.end()).size());
    };
    const std::string& op = s_.op;
    if (op == "copy") {
      float *src = filled(n, 7919), *dst = mem.floats(n);
      bytes_ = 8.0 * n;
      once = [&be, dst, src, n] { be.copy(dst, src, n * sizeof(float)); };
    } else if (op == "add") {
      float *a = filled(n, 7919), *b = filled(n, 104729), *out = mem.floats(n);
      bytes_ = 12.0 * n;
      once = [&be, out, a, b, n] { be.add(out, a, b, n); };
    } else if (op == "rmsnormForward" || op == "rmsnormBackward") {
      float *x = filled(nc, 7919), *w = filled(static_cast<size_t>(C), 104729), *out = mem.floats(nc), *rstd = mem.floats(n);
      if (op == "rmsnormForward") {
        bytes_ = 4.0 * (2.0 * nc + C + n);
        once = [&be, out, rstd, x, w, N, C] { be.rmsnormForward(out, rstd, x, w, N, C, 1e-5f); };
      } else {
        be.rmsnormForward(out, rstd, x, w, N, C, 1e-5f);
        float *dout = filled(nc, 104729), *dx = mem.floats(nc), *dw = mem.floats(static_cast<size_t>(C));
        bytes_ = 4.0 * (4.0 * nc + 3.0 * C + n);
        once = [&be, dx, dw, dout, x, w, rstd, N, C] { be.rmsnormBackward(dx, dw, dout, x, w, rstd, N, C); };
      }
    } else if (op == "ropeForward" || op == "ropeBackward") {
      const int B = static_cast<int>(s_.b), T = static_cast<int>(s_.t), H = static_cast<int>(s_.h), D = static_cast<int>(s_.d);
      const size_t nx = static_cast<size_t>(B) * T * H * D;
      std::vector<float> cosT, sinT;
      ropeTables(10000.0f, D, T, cosT, sinT);
      float *x = filled(nx, 7919), *c = mem.floats(cosT.size()), *sn = mem.floats(sinT.size());
      be.upload(c, cosT.data(), cosT.size() * sizeof(float));
      be.upload(sn, sinT.data(), sinT.size() * sizeof(float));
      bytes_ = 4.0 * (2.0 * nx + static_cast<double>(T) * D);
      if (op == "ropeForward") once = [&be, x, c, sn, B, T, H, D] { be.ropeForward(x, c, sn, B, T, H, D, 0); };
      else once = [&be, x, c, sn, B, T, H, D] { be.ropeBackward(x, c, sn, B, T, H, D, 0); };
    } else if (op == "swigluForward") {
      float *g = filled(n, 7919), *u = filled(n, 104729), *out = mem.floats(n);
      bytes_ = 12.0 * n;
      once = [&be, out, g, u, n] { be.swigluForward(out, g, u, n); };
    } else if (op == "swigluBackward") {
      float *g = filled(n, 7919), *u = filled(n, 104729), *dout = filled(n, 31), *dg = mem.floats(n), *du = mem.floats(n);
      bytes_ = 20.0 * n;
      once = [&be, dg, du, dout, g, u, n] { be.swigluBackward(dg, du, dout, g, u, n); };
    } else if (op == "crossEntropy") {
      const size_t nv = n * static_cast<size_t>(V);
      float *logits = filled(nv, 7919), *losses = mem.floats(n);
      int32_t* targets = tokens(N, true).first;
      bytes_ = 4.0 * (2.0 * nv + 2.0 * n);
      // The gradient overwrites the logits: later calls take the previous call's dlogits as their logits
      // (finite values, the same work).
      once = [&be, losses, logits, targets, N, V] { be.crossEntropy(losses, logits, targets, N, V, 1.0f / N, true); };
    } else if (op == "adamw") {
      float *p = filled(n, 7919), *g = filled(n, 104729), *m = mem.floats(n), *v = mem.floats(n);  // m, v zero-filled
      bytes_ = 28.0 * n;
      once = [&be, p, g, m, v, n] {
        AdamWParams hp;
        hp.lr = 1e-4f;
        hp.weightDecay = 0.01f;
        be.adamw(p, g, m, v, n, hp);
      };
    } else if (op == "embeddingForward" || op == "embeddingBackward") {
      float* wte = filled(static_cast<size_t>(V) * C, 7919);
      const auto [tok, distinct] = tokens(N, false);
      int32_t* t = tok;
      float* out = mem.floats(nc);
      if (op == "embeddingForward") {
        bytes_ = 4.0 * (n + 2.0 * nc);
        once = [&be, out, t, wte, N, C] { be.embeddingForward(out, t, wte, N, C); };
      } else {
        float* dout = filled(nc, 104729);
        bytes_ = 4.0 * (nc + n + 2.0 * static_cast<double>(distinct) * C);
        once = [&be, wte, dout, t, N, C, V] { be.embeddingBackward(wte, dout, t, N, C, V); };
      }
    } else {
      throw Error("kernels.timeOp(): unknown op '" + op + "'");  // checked before the job is queued
    }
    const int calls = calls_;
    const auto batches = timeRepeats(be, repeats_, abortFlag(), [&] {
      for (int i = 0; i < calls; ++i) once();
    });
    for (double t : batches) times_.push_back(t / calls);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    const double best = *std::min_element(times_.begin(), times_.end()), median = medianOf(times_);
    o.Set("op", s_.op);
    o.Set("bytes", bytes_);
    o.Set("bestMs", best * 1e3);
    o.Set("medianMs", median * 1e3);
    o.Set("gbps", bytes_ / best * 1e-9);
    o.Set("medianGbps", bytes_ / median * 1e-9);
    return o;
  }

 private:
  OpShape s_;
  int repeats_, calls_, threads_;
  Device device_;
  double bytes_ = 0.0;
  std::vector<double> times_;
};

Napi::Value TimeOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.timeOp(): options.";
  Napi::Object o = objectArg(info, 0, "kernels.timeOp(): options", false);
  OpShape shape;
  shape.op = stringField(o, "op", w);
  const TimedOp* found = nullptr;
  std::string known;
  for (const TimedOp& t : kTimedOps) {
    if (shape.op == t.name) found = &t;
    known += (known.empty() ? "" : ", ") + std::string(t.name);
  }
  if (!found) throwRange(env, w + "op must be one of " + known + ", got '" + shape.op + "'");
  const std::string fields = found->fields;
  auto need = [&](const char* name) { return ("," + fields + ",").find("," + std::string(name) + ",") != std::string::npos; };
  int64_t* slots[] = {&shape.n, &shape.c, &shape.v, &shape.b, &shape.t, &shape.h, &shape.d};
  const char* names[] = {"n", "c", "v", "b", "t", "h", "d"};
  for (int i = 0; i < 7; ++i) {
    if (need(names[i])) *slots[i] = dim(o, names[i], w);
    else if (!o.Get(names[i]).IsUndefined())
      throwType(env, w + names[i] + " does not apply to op '" + shape.op + "' (it takes " + fields + ")");
  }
  if (shape.op.rfind("rope", 0) == 0 && shape.d % 2) throwRange(env, w + "d = " + std::to_string(shape.d) + " must be even");
  const int64_t elements = shape.op == "crossEntropy" ? shape.n * shape.v
                           : shape.op.rfind("rope", 0) == 0 ? shape.b * shape.t * shape.h * shape.d
                           : shape.op.rfind("rmsnorm", 0) == 0 || shape.op.rfind("embedding", 0) == 0 ? shape.n * shape.c
                           : shape.n;
  if (elements > (int64_t(1) << 34)) throwRange(env, w + "the op's largest tensor (" + std::to_string(elements) + " elements) is over 2^34");
  auto* job = new TimeOpJob(env, shape, static_cast<int>(intField(o, "repeats", w, 1, 100000, 10)),
                            static_cast<int>(intField(o, "calls", w, 1, 100000, 10)),
                            static_cast<int>(intField(o, "threads", w, 1, 1024, cpuFeatures().hardwareThreads)),
                            deviceArg(o, w));
  job->Queue();
  return job->Promise();
}

}  // namespace

Napi::Object DefineKernels(Napi::Env env) {
  Napi::Object k = Napi::Object::New(env);
  // A backend failure (a CUDA error, out of memory) becomes a JS error naming the call; Napi errors
  // (argument checks) pass through as they are.
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    k.Set(name, Napi::Function::New(
                    env,
                    [fn, name](const Napi::CallbackInfo& info) -> Napi::Value {
                      try {
                        return fn(info);
                      } catch (const Napi::Error&) {
                        throw;
                      } catch (const std::bad_alloc&) {
                        throw Napi::Error::New(info.Env(), std::string("kernels.") + name + "(): out of memory");
                      } catch (const std::exception& e) {
                        throw Napi::Error::New(info.Env(), std::string("kernels.") + name + "(): " + e.what());
                      }
                    },
                    name));
  };
  add("simd", Simd);
  add("setSimd", SetSimd);
  add("cudaAvailable", CudaAvailable);
#define PL_ADD_OP(name, fn) add(name, fn);
  PL_KERNELS_OPS(PL_ADD_OP)
#undef PL_ADD_OP
  add("timeMatmul", TimeMatmul);
  add("timeAttention", TimeAttention);
  add("timeOp", TimeOp);
  return k;
}

}  // namespace pl::addon
