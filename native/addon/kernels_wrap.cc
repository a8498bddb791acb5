// The `kernels` object: synchronous single-op entry points (inputs are read in place, outputs are new
// arrays) plus promise-returning timing loops for the benchmarks.
#include "kernels_wrap.h"

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "../core/cpu_features.h"
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

int dim(const Napi::Object& o, const char* key, const std::string& where) {
  return static_cast<int>(intField(o, key, where, 1, kBig));
}

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

// ---- matmul ------------------------------------------------------------------------------------

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.matmul(): ";
  Napi::Object o = objectArg(info, 2, w + "options", false);
  const int M = dim(o, "m", w + "options."), N = dim(o, "n", w + "options."), K = dim(o, "k", w + "options.");
  const bool tA = boolField(o, "transA", w + "options.", false), tB = boolField(o, "transB", w + "options.", false);
  const float alpha = static_cast<float>(numberField(o, "alpha", w + "options.", -1e30, 1e30, 1.0));
  const float beta = static_cast<float>(numberField(o, "beta", w + "options.", -1e30, 1e30, 0.0));
  Napi::Float32Array a = f32Arg(env, arg(info, 0), w + "a", static_cast<size_t>(M) * K);
  Napi::Float32Array b = f32Arg(env, arg(info, 1), w + "b", static_cast<size_t>(K) * N);
  Napi::Float32Array c = Napi::Float32Array::New(env, static_cast<size_t>(M) * N);
  if (has(o, "c")) {
    Napi::Float32Array c0 = f32Arg(env, o.Get("c"), w + "options.c", static_cast<size_t>(M) * N);
    std::copy(c0.Data(), c0.Data() + c0.ElementLength(), c.Data());
  }
  backendArg(o, w + "options.").gemm(c.Data(), a.Data(), b.Data(), M, N, K, tA, tB, alpha, beta);
  return c;
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

Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.linearForward(): ";
  Napi::Object o = objectArg(info, 2, w + "options", false);
  LinearArgs a = linearArgs(info, o, arg(info, 1), w);
  Napi::Float32Array x = f32Arg(env, arg(info, 0), w + "x", static_cast<size_t>(a.M) * a.w.in);
  Napi::Float32Array y = Napi::Float32Array::New(env, static_cast<size_t>(a.M) * a.w.out);
  Napi::Object out = Napi::Object::New(env);
  std::vector<float> h(static_cast<size_t>(a.M) * std::max(1, a.w.r)), xd(static_cast<size_t>(a.M) * a.w.in);
  loraLinearForward(backendArg(o, w + "options."), y.Data(), x.Data(), a.M, a.w, h.data(), xd.data(), a.train, a.seed);
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
  a.w.dW = dw.Data();
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
    a.w.dA = dA.Data();
    a.w.dB = dB.Data();
  }
  std::vector<float> dh(static_cast<size_t>(a.M) * std::max(1, a.w.r)), dxl(static_cast<size_t>(a.M) * a.w.in);
  loraLinearBackward(backendArg(o, w + "options."), dx.Data(), 0.0f, dy.Data(), x.Data(), a.M, a.w, h, xd, dh.data(),
                     dxl.data(), a.train, a.seed);
  out.Set("dx", dx);
  out.Set("dw", dw);
  out.Set("dA", a.w.A ? Napi::Value(dA) : env.Null());
  out.Set("dB", a.w.A ? Napi::Value(dB) : env.Null());
  return out;
}

// ---- embedding ---------------------------------------------------------------------------------

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.embeddingForward(): ";
  Napi::Object o = objectArg(info, 2, w + "options", false);
  const int N = dim(o, "n", w + "options."), C = dim(o, "c", w + "options."), V = dim(o, "v", w + "options.");
  Napi::Int32Array tokens = i32Arg(env, arg(info, 0), w + "tokens", N);
  checkTokens(env, tokens.Data(), N, V, w + "tokens", false);
  Napi::Float32Array wte = f32Arg(env, arg(info, 1), w + "wte", static_cast<size_t>(V) * C);
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(N) * C);
  backendArg(o, w + "options.").embeddingForward(out.Data(), tokens.Data(), wte.Data(), N, C);
  return out;
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.embeddingBackward(): ";
  Napi::Object o = objectArg(info, 2, w + "options", false);
  const int N = dim(o, "n", w + "options."), C = dim(o, "c", w + "options."), V = dim(o, "v", w + "options.");
  Napi::Float32Array dout = f32Arg(env, arg(info, 0), w + "dout", static_cast<size_t>(N) * C);
  Napi::Int32Array tokens = i32Arg(env, arg(info, 1), w + "tokens", N);
  checkTokens(env, tokens.Data(), N, V, w + "tokens", false);
  Napi::Float32Array dwte = Napi::Float32Array::New(env, static_cast<size_t>(V) * C);
  backendArg(o, w + "options.").embeddingBackward(dwte.Data(), dout.Data(), tokens.Data(), N, C, V);
  return dwte;
}

// ---- rmsnorm -----------------------------------------------------------------------------------

Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.rmsnormForward(): ";
  Napi::Object o = objectArg(info, 2, w + "options", false);
  const int N = dim(o, "n", w + "options."), C = dim(o, "c", w + "options.");
  const float eps = static_cast<float>(numberField(o, "eps", w + "options.", 0.0, 1.0, 1e-6));
  Napi::Float32Array x = f32Arg(env, arg(info, 0), w + "x", static_cast<size_t>(N) * C);
  Napi::Float32Array weight = f32Arg(env, arg(info, 1), w + "weight", C);
  Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(N) * C), rstd = Napi::Float32Array::New(env, N);
  backendArg(o, w + "options.").rmsnormForward(out.Data(), rstd.Data(), x.Data(), weight.Data(), N, C, eps);
  Napi::Object r = Napi::Object::New(env);
  r.Set("out", out);
  r.Set("rstd", rstd);
  return r;
}

Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.rmsnormBackward(): ";
  Napi::Object o = objectArg(info, 4, w + "options", false);
  const int N = dim(o, "n", w + "options."), C = dim(o, "c", w + "options.");
  Napi::Float32Array dout = f32Arg(env, arg(info, 0), w + "dout", static_cast<size_t>(N) * C);
  Napi::Float32Array x = f32Arg(env, arg(info, 1), w + "x", static_cast<size_t>(N) * C);
  Napi::Float32Array weight = f32Arg(env, arg(info, 2), w + "weight", C);
  Napi::Float32Array rstd = f32Arg(env, arg(info, 3), w + "rstd", N);
  Napi::Float32Array dx = Napi::Float32Array::New(env, static_cast<size_t>(N) * C), dw = Napi::Float32Array::New(env, C);
  backendArg(o, w + "options.")
      .rmsnormBackward(dx.Data(), dw.Data(), dout.Data(), x.Data(), weight.Data(), rstd.Data(), N, C);
  Napi::Object r = Napi::Object::New(env);
  r.Set("dx", dx);
  r.Set("dw", dw);
  return r;
}

// ---- rope --------------------------------------------------------------------------------------

Napi::Value Rope(const Napi::CallbackInfo& info, bool backward) {
  Napi::Env env = info.Env();
  const std::string w = backward ? "kernels.ropeBackward(): " : "kernels.ropeForward(): ";
  Napi::Object o = objectArg(info, 1, w + "options", false);
  const int B = dim(o, "b", w + "options."), T = dim(o, "t", w + "options."), H = dim(o, "h", w + "options."),
            D = dim(o, "d", w + "options.");
  if (D % 2) throwRange(env, w + "options.d = " + std::to_string(D) + " must be even");
  const int pos0 = static_cast<int>(intField(o, "pos0", w + "options.", 0, kBig, 0));
  const float theta = static_cast<float>(numberField(o, "theta", w + "options.", 1e-6, 1e12, 10000.0));
  Napi::Float32Array x = f32Arg(env, arg(info, 0), w + "x", static_cast<size_t>(B) * T * H * D);
  std::vector<float> cosT, sinT;
  ropeTables(theta, D, pos0 + T, cosT, sinT);
  Napi::Float32Array out = newF32(env, x.ElementLength(), x.Data());
  auto& be = backendArg(o, w + "options.");
  if (backward) be.ropeBackward(out.Data(), cosT.data(), sinT.data(), B, T, H, D, pos0);
  else be.ropeForward(out.Data(), cosT.data(), sinT.data(), B, T, H, D, pos0);
  return out;
}
Napi::Value RopeForward(const Napi::CallbackInfo& info) { return Rope(info, false); }
Napi::Value RopeBackward(const Napi::CallbackInfo& info) { return Rope(info, true); }

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

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.attentionForward(): ";
  Napi::Object o = objectArg(info, 3, w + "options", false);
  const AttnDims d = attnDims(o, w + "options.");
  const size_t qn = static_cast<size_t>(d.B) * d.T * d.H * d.D, kn = static_cast<size_t>(d.B) * d.T * d.Hkv * d.D;
  Napi::Float32Array q = f32Arg(env, arg(info, 0), w + "q", qn);
  Napi::Float32Array k = f32Arg(env, arg(info, 1), w + "k", kn);
  Napi::Float32Array v = f32Arg(env, arg(info, 2), w + "v", kn);
  Napi::Float32Array out = Napi::Float32Array::New(env, qn), lse = Napi::Float32Array::New(env, static_cast<size_t>(d.B) * d.H * d.T);
  backendArg(o, w + "options.")
      .attentionForward(out.Data(), lse.Data(), q.Data(), k.Data(), v.Data(), d.B, d.T, d.T, d.H, d.Hkv, d.D, 0);
  Napi::Object r = Napi::Object::New(env);
  r.Set("out", out);
  r.Set("lse", lse);
  return r;
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.attentionBackward(): ";
  Napi::Object o = objectArg(info, 6, w + "options", false);
  const AttnDims d = attnDims(o, w + "options.");
  const size_t qn = static_cast<size_t>(d.B) * d.T * d.H * d.D, kn = static_cast<size_t>(d.B) * d.T * d.Hkv * d.D;
  Napi::Float32Array dout = f32Arg(env, arg(info, 0), w + "dout", qn);
  Napi::Float32Array q = f32Arg(env, arg(info, 1), w + "q", qn);
  Napi::Float32Array k = f32Arg(env, arg(info, 2), w + "k", kn);
  Napi::Float32Array v = f32Arg(env, arg(info, 3), w + "v", kn);
  Napi::Float32Array out = f32Arg(env, arg(info, 4), w + "out", qn);
  Napi::Float32Array lse = f32Arg(env, arg(info, 5), w + "lse", static_cast<size_t>(d.B) * d.H * d.T);
  Napi::Float32Array dq = Napi::Float32Array::New(env, qn), dk = Napi::Float32Array::New(env, kn),
                     dv = Napi::Float32Array::New(env, kn);
  backendArg(o, w + "options.")
      .attentionBackward(dq.Data(), dk.Data(), dv.Data(), dout.Data(), q.Data(), k.Data(), v.Data(), out.Data(),
                         lse.Data(), d.B, d.T, d.H, d.Hkv, d.D);
  Napi::Object r = Napi::Object::New(env);
  r.Set("dq", dq);
  r.Set("dk", dk);
  r.Set("dv", dv);
  return r;
}

// ---- swiglu, cross-entropy, adamw ----------------------------------------------------------------

Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.swigluForward(): ";
  Napi::Object o = objectArg(info, 2, w + "options", true);
  Napi::Float32Array g = f32Arg(env, arg(info, 0), w + "gate", SIZE_MAX);
  Napi::Float32Array u = f32Arg(env, arg(info, 1), w + "up", g.ElementLength());
  Napi::Float32Array out = Napi::Float32Array::New(env, g.ElementLength());
  backendArg(o, w + "options.").swigluForward(out.Data(), g.Data(), u.Data(), g.ElementLength());
  return out;
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.swigluBackward(): ";
  Napi::Object o = objectArg(info, 3, w + "options", true);
  Napi::Float32Array dy = f32Arg(env, arg(info, 0), w + "dout", SIZE_MAX);
  Napi::Float32Array g = f32Arg(env, arg(info, 1), w + "gate", dy.ElementLength());
  Napi::Float32Array u = f32Arg(env, arg(info, 2), w + "up", dy.ElementLength());
  Napi::Float32Array dg = Napi::Float32Array::New(env, dy.ElementLength()), du = Napi::Float32Array::New(env, dy.ElementLength());
  backendArg(o, w + "options.").swigluBackward(dg.Data(), du.Data(), dy.Data(), g.Data(), u.Data(), dy.ElementLength());
  Napi::Object r = Napi::Object::New(env);
  r.Set("dgate", dg);
  r.Set("dup", du);
  return r;
}

Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.crossEntropy(): ";
  Napi::Object o = objectArg(info, 2, w + "options", false);
  const int N = dim(o, "n", w + "options."), V = dim(o, "v", w + "options.");
  const float dscale = static_cast<float>(numberField(o, "dscale", w + "options.", -1e30, 1e30, 1.0));
  Napi::Float32Array logits = f32Arg(env, arg(info, 0), w + "logits", static_cast<size_t>(N) * V);
  Napi::Int32Array targets = i32Arg(env, arg(info, 1), w + "targets", N);
  checkTokens(env, targets.Data(), N, V, w + "targets", true);
  Napi::Float32Array d = newF32(env, logits.ElementLength(), logits.Data());
  Napi::Float32Array losses = Napi::Float32Array::New(env, N);
  backendArg(o, w + "options.").crossEntropy(losses.Data(), d.Data(), targets.Data(), N, V, dscale, true);
  Napi::Object r = Napi::Object::New(env);
  r.Set("losses", losses);
  r.Set("dlogits", d);
  return r;
}

Napi::Value AdamW(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.adamw(): ";
  Napi::Object o = objectArg(info, 4, w + "options", false);
  Napi::Float32Array p = f32Arg(env, arg(info, 0), w + "param", SIZE_MAX);
  const size_t n = p.ElementLength();
  Napi::Float32Array g = f32Arg(env, arg(info, 1), w + "grad", n);
  Napi::Float32Array m = f32Arg(env, arg(info, 2), w + "m", n);
  Napi::Float32Array v = f32Arg(env, arg(info, 3), w + "v", n);
  AdamWParams hp;
  const std::string f = w + "options.";
  hp.lr = static_cast<float>(numberField(o, "lr", f, 0.0, 1e6));
  hp.beta1 = static_cast<float>(numberField(o, "beta1", f, 0.0, 0.999999, 0.9));
  hp.beta2 = static_cast<float>(numberField(o, "beta2", f, 0.0, 0.999999999, 0.999));
  hp.eps = static_cast<float>(numberField(o, "eps", f, 0.0, 1.0, 1e-8));
  hp.weightDecay = static_cast<float>(numberField(o, "weightDecay", f, 0.0, 1e6, 0.0));
  hp.step = static_cast<int>(intField(o, "step", f, 1, kBig, 1));
  hp.gradScale = static_cast<float>(numberField(o, "gradScale", f, 0.0, 1e30, 1.0));
  Napi::Float32Array p2 = newF32(env, n, p.Data()), m2 = newF32(env, n, m.Data()), v2 = newF32(env, n, v.Data());
  backendArg(o, f).adamw(p2.Data(), g.Data(), m2.Data(), v2.Data(), n, hp);
  Napi::Object r = Napi::Object::New(env);
  r.Set("param", p2);
  r.Set("m", m2);
  r.Set("v", v2);
  return r;
}

// ---- timing loops (promise workers) --------------------------------------------------------------

class TimeMatmulJob : public PromiseWorker {
 public:
  TimeMatmulJob(Napi::Env env, int M, int N, int K, bool tA, bool tB, int repeats, int threads)
      : PromiseWorker(env, "puzzle-llama:timeMatmul"), M_(M), N_(N), K_(K), tA_(tA), tB_(tB), repeats_(repeats), threads_(threads) {}

 protected:
  void Run(const ExecutionProgress&) override {
    cpu::CpuBackend& be = backendFor(threads_);
    std::vector<float> a(static_cast<size_t>(M_) * K_), b(static_cast<size_t>(K_) * N_), c(static_cast<size_t>(M_) * N_);
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>((i * 104729) % 1000) * 1e-3f - 0.5f;
    be.gemm(c.data(), a.data(), b.data(), M_, N_, K_, tA_, tB_, 1.0f, 0.0f);  // warm-up
    best_ = 1e30;
    double total = 0.0;
    for (int r = 0; r < repeats_; ++r) {
      if (abortFlag() && abortFlag()->load()) throw Aborted();
      auto t0 = std::chrono::steady_clock::now();
      be.gemm(c.data(), a.data(), b.data(), M_, N_, K_, tA_, tB_, 1.0f, 0.0f);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best_ = std::min(best_, s);
      total += s;
    }
    mean_ = total / repeats_;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    const double flops = 2.0 * M_ * N_ * K_;
    o.Set("bestSeconds", best_);
    o.Set("meanSeconds", mean_);
    o.Set("gflops", flops / best_ * 1e-9);
    o.Set("meanGflops", flops / mean_ * 1e-9);
    return o;
  }

 private:
  int M_, N_, K_;
  bool tA_, tB_;
  int repeats_, threads_;
  double best_ = 0, mean_ = 0;
};

Napi::Value TimeMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.timeMatmul(): options.";
  Napi::Object o = objectArg(info, 0, "kernels.timeMatmul(): options", false);
  auto* job = new TimeMatmulJob(env, dim(o, "m", w), dim(o, "n", w), dim(o, "k", w), boolField(o, "transA", w, false),
                                boolField(o, "transB", w, false), static_cast<int>(intField(o, "repeats", w, 1, 100000, 10)),
                                static_cast<int>(intField(o, "threads", w, 1, 1024, cpuFeatures().hardwareThreads)));
  job->Queue();
  return job->Promise();
}

class TimeAttentionJob : public PromiseWorker {
 public:
  TimeAttentionJob(Napi::Env env, AttnDims d, int repeats, int threads)
      : PromiseWorker(env, "puzzle-llama:timeAttention"), d_(d), repeats_(repeats), threads_(threads) {}

 protected:
  void Run(const ExecutionProgress&) override {
    cpu::CpuBackend& be = backendFor(threads_);
    const size_t qn = static_cast<size_t>(d_.B) * d_.T * d_.H * d_.D, kn = static_cast<size_t>(d_.B) * d_.T * d_.Hkv * d_.D;
    std::vector<float> q(qn), k(kn), v(kn), out(qn), dout(qn), dq(qn), dk(kn), dv(kn),
        lse(static_cast<size_t>(d_.B) * d_.H * d_.T);
    for (size_t i = 0; i < qn; ++i) q[i] = dout[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < kn; ++i) k[i] = v[i] = static_cast<float>((i * 104729) % 1000) * 1e-3f - 0.5f;
    auto once = [&] {
      be.attentionForward(out.data(), lse.data(), q.data(), k.data(), v.data(), d_.B, d_.T, d_.T, d_.H, d_.Hkv, d_.D, 0);
      be.attentionBackward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                           lse.data(), d_.B, d_.T, d_.H, d_.Hkv, d_.D);
    };
    once();
    best_ = 1e30;
    for (int r = 0; r < repeats_; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      once();
      best_ = std::min(best_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("msFwdBwd", best_ * 1e3);
    return o;
  }

 private:
  AttnDims d_;
  int repeats_, threads_;
  double best_ = 0;
};

Napi::Value TimeAttention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "kernels.timeAttention(): options.";
  Napi::Object o = objectArg(info, 0, "kernels.timeAttention(): options", false);
  auto* job = new TimeAttentionJob(env, attnDims(o, w), static_cast<int>(intField(o, "repeats", w, 1, 100000, 10)),
                                   static_cast<int>(intField(o, "threads", w, 1, 1024, cpuFeatures().hardwareThreads)));
  job->Queue();
  return job->Promise();
}

}  // namespace

Napi::Object DefineKernels(Napi::Env env) {
  Napi::Object k = Napi::Object::New(env);
  auto add = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    k.Set(name, Napi::Function::New(env, fn, name));
  };
  add("simd", Simd);
  add("setSimd", SetSimd);
  add("matmul", Matmul);
  add("linearForward", LinearForward);
  add("linearBackward", LinearBackward);
  add("embeddingForward", EmbeddingForward);
  add("embeddingBackward", EmbeddingBackward);
  add("rmsnormForward", RmsnormForward);
  add("rmsnormBackward", RmsnormBackward);
  add("ropeForward", RopeForward);
  add("ropeBackward", RopeBackward);
  add("attentionForward", AttentionForward);
  add("attentionBackward", AttentionBackward);
  add("swigluForward", SwigluForward);
  add("swigluBackward", SwigluBackward);
  add("crossEntropy", CrossEntropy);
  add("adamw", AdamW);
  add("timeMatmul", TimeMatmul);
  add("timeAttention", TimeAttention);
  return k;
}

}  // namespace pl::addon
