// EngineWrap: argument checks, conversions and the promise workers of the Engine surface.
#include "engine_wrap.h"
#ifdef PUZZLE_LLAMA_CUDA
#include "../cuda/cuda_backend.h"
#endif

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>

#include "../core/cpu_features.h"
#include "../core/error.h"
#include "../core/rng.h"
#include "../cpu/cpu_backend.h"
#include "../comm/gradient_buckets.h"
#include "abort_flag.h"
#include "args.h"
#include "async.h"
#include "communicator_wrap.h"

namespace pl::addon {

EngineState::~EngineState() { detach(); }

void EngineState::detach() {
#ifdef PUZZLE_LLAMA_CUDA
  if (comm && backend)
    if (auto* cb = dynamic_cast<cuda::CudaBackend*>(backend.get())) comm->unbindStream(cb->stream());
#endif
  comm.reset();
}

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

LlamaConfig parseConfig(const Napi::Object& o) {
  const std::string w = "Engine.create(): config.";
  LlamaConfig c;
  c.hiddenSize = static_cast<int>(intField(o, "hidden_size", w, 1, 1 << 16));
  c.intermediateSize = static_cast<int>(intField(o, "intermediate_size", w, 1, 1 << 18));
  c.numHiddenLayers = static_cast<int>(intField(o, "num_hidden_layers", w, 1, 1024));
  c.numAttentionHeads = static_cast<int>(intField(o, "num_attention_heads", w, 1, 1024));
  c.numKeyValueHeads = static_cast<int>(intField(o, "num_key_value_heads", w, 1, 1024, c.numAttentionHeads));
  c.vocabSize = static_cast<int>(intField(o, "vocab_size", w, 1, 1 << 22));
  c.maxPositionEmbeddings = static_cast<int>(intField(o, "max_position_embeddings", w, 1, 1 << 20));
  c.rmsNormEps = static_cast<float>(numberField(o, "rms_norm_eps", w, 1e-30, 1.0, 1e-6));
  c.ropeTheta = static_cast<float>(numberField(o, "rope_theta", w, 1e-6, 1e12, 10000.0));
  if (has(o, "rope_scaling")) {
    // Hugging Face's rope_scaling; the engine implements the linear kind (positions divided by the factor)
    const Napi::Value v = o.Get("rope_scaling");
    if (!v.IsObject()) throwType(o.Env(), w + "rope_scaling must be an object or null, got " + describe(v));
    const Napi::Object s = v.As<Napi::Object>();
    const std::string ws = w + "rope_scaling.";
    const std::string type = stringField(s, "rope_type", ws);
    if (type != "linear")
      throwRange(o.Env(), ws + "rope_type must be 'linear' (the only scaling the engine implements), got '" + type + "'");
    c.ropeLinearFactor = static_cast<float>(numberField(s, "factor", ws, 1e-6, 1e30));
  }
  c.tieWordEmbeddings = boolField(o, "tie_word_embeddings", w, false);
  c.initializerRange = static_cast<float>(numberField(o, "initializer_range", w, 0.0, 10.0, 0.02));
  try {
    c.validate();
  } catch (const Error& e) {
    throwRange(o.Env(), std::string("Engine.create(): ") + e.what());
  }
  return c;
}

LoraConfig parseLora(const Napi::Value& v) {
  LoraConfig l;
  if (v.IsUndefined() || v.IsNull()) return l;
  Napi::Env env = v.Env();
  const std::string w = "Engine.create(): lora.";
  if (!v.IsObject()) throwType(env, "Engine.create(): lora must be an object or null, got " + describe(v));
  Napi::Object o = v.As<Napi::Object>();
  l.r = static_cast<int>(intField(o, "r", w, 1, 4096));
  l.alpha = static_cast<float>(numberField(o, "alpha", w, 0.0, 1e6, static_cast<double>(l.r)));
  l.dropout = static_cast<float>(numberField(o, "dropout", w, 0.0, 0.999, 0.0));
  Napi::Value t = o.Get("targets");
  if (!t.IsArray()) throwType(env, w + "targets must be an array of module names, got " + describe(t));
  Napi::Array arr = t.As<Napi::Array>();
  if (arr.Length() == 0) throwRange(env, w + "targets must name at least one module");
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value item = arr.Get(i);
    const std::string name = item.IsString() ? item.As<Napi::String>().Utf8Value() : "";
    int found = -1;
    for (int m = 0; m < kNumModules; ++m)
      if (name == moduleName(m)) found = m;
    if (name == "all-linear") {
      for (int m = 0; m < kNumModules; ++m) l.targets[m] = true;
      continue;
    }
    if (found < 0)
      throwRange(env, w + "targets[" + std::to_string(i) + "] = " + describe(item) +
                          " is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all-linear");
    l.targets[found] = true;
  }
  return l;
}

Napi::Value shapeArray(Napi::Env env, const std::vector<int64_t>& shape) {
  Napi::Array a = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(shape[i])));
  return a;
}

// ---- workers -------------------------------------------------------------------------------------

class EngineJob : public PromiseWorker {
 public:
  EngineJob(Napi::Env env, const char* name, EngineWrap* wrap, Napi::Object self, std::shared_ptr<EngineState> state)
      : PromiseWorker(env, name), wrap_(wrap), self_(Napi::Persistent(self)), state_(std::move(state)) {}

 protected:
  void Finish() override { wrap_->jobDone(); }
  LlamaModel& model() { return *state_->model; }
  ProgressFn progressFn(const ExecutionProgress& p) {
    if (!wantsProgress()) return {};
    return [&p](int done, int total) {
      ProgressEvent e{done, total};
      p.Send(&e, 1);
    };
  }

 private:
  EngineWrap* wrap_;
  Napi::ObjectReference self_;  // keeps the engine object alive while the job runs
  std::shared_ptr<EngineState> state_;
};

class ForwardJob : public EngineJob {
 public:
  using EngineJob::EngineJob;
  std::vector<int32_t> tokens;
  int B = 0, T = 0;
  std::vector<float> logits;

 protected:
  void Run(const ExecutionProgress&) override {
    logits.resize(static_cast<size_t>(B) * T * model().config().vocabSize);
    model().forward(tokens.data(), B, T, logits.data(), abortFlag());
  }
  Napi::Value Result(Napi::Env env) override { return newF32(env, logits.size(), logits.data()); }
};

class ForwardBackwardJob : public EngineJob {
 public:
  using EngineJob::EngineJob;
  std::vector<int32_t> tokens, targets;
  int B = 0, T = 0;
  BackwardOptions options;
  std::shared_ptr<comm::Communicator> reduceOver;  // set: sum the gradients over it, bucket by bucket
  size_t bucketBytes = 0;
  double loss = 0.0;
  int64_t counted = 0;

 protected:
  void Run(const ExecutionProgress& p) override {
    std::unique_ptr<comm::GradientBuckets> buckets;
    if (reduceOver) {
      const ModelBuffers b = model().buffers();
      buckets = std::make_unique<comm::GradientBuckets>(*reduceOver, b.grads, b.trainableCount, bucketBytes);
      options.sink = buckets.get();
    }
    try {
      loss = model().forwardBackward(tokens.data(), targets.data(), B, T, options, abortFlag(), progressFn(p), &counted);
    } catch (...) {
      // Buckets in flight still write the gradients: let them land before the error travels on.
      if (reduceOver) {
        try {
          reduceOver->wait();
        } catch (...) {
        }
      }
      throw;
    }
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", loss);
    o.Set("tokens", static_cast<double>(counted));
    return o;
  }
};

class StepJob : public EngineJob {
 public:
  using EngineJob::EngineJob;
  StepOptions options;
  StepResult result;

 protected:
  void Run(const ExecutionProgress&) override { result = model().step(options); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("gradNorm", result.gradNorm);
    o.Set("clipScale", result.clipScale);
    o.Set("step", result.step);
    o.Set("skipped", result.skipped);
    return o;
  }
};

// Every rank's model arrays and AdamW step become root's: parameters (both buffers), m and v.
class BroadcastStateJob : public EngineJob {
 public:
  using EngineJob::EngineJob;
  std::shared_ptr<comm::Communicator> over;
  int root = 0;

 protected:
  void Run(const ExecutionProgress&) override {
    comm::Communicator& c = *over;
    const ModelBuffers b = model().buffers();
    c.broadcast(b.params, b.paramCount * sizeof(float), root);
    if (b.frozenCount > 0) c.broadcast(b.frozen, b.frozenCount * sizeof(uint16_t), root);
    if (b.trainableCount > 0) {
      c.broadcast(b.adamM, b.trainableCount * sizeof(float), root);
      c.broadcast(b.adamV, b.trainableCount * sizeof(float), root);
    }
    int32_t step = model().stepCount();
    c.broadcastHost(&step, sizeof step, root);
    model().setStepCount(step);
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
};

class GenerateJob : public EngineJob {
 public:
  using EngineJob::EngineJob;
  std::vector<std::vector<int32_t>> prompts, outputs;
  GenerateOptions options;

 protected:
  void Run(const ExecutionProgress& p) override { outputs = model().generate(prompts, options, abortFlag(), progressFn(p)); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array a = Napi::Array::New(env, outputs.size());
    for (size_t i = 0; i < outputs.size(); ++i) a.Set(static_cast<uint32_t>(i), newI32(env, outputs[i].size(), outputs[i].data()));
    return a;
  }
};

class DecodeJob : public EngineJob {
 public:
  using EngineJob::EngineJob;
  std::vector<int32_t> tokens;
  int B = 0, P = 0, maxNew = 0;
  bool start = false;
  std::vector<float> logits;

 protected:
  void Run(const ExecutionProgress&) override {
    logits.resize(static_cast<size_t>(start ? B : model().decodeBatch()) * model().config().vocabSize);
    if (start) model().decodeStart(tokens.data(), B, P, maxNew, logits.data());
    else model().decodeNext(tokens.data(), logits.data());
  }
  Napi::Value Result(Napi::Env env) override { return newF32(env, logits.size(), logits.data()); }
};

// The synchronous methods run their body inside this: a Napi::Error passes through; anything else (a CUDA
// transfer's std::exception, bad_alloc, a foreign throw) becomes a JS error naming the call. Nothing may
// escape to N-API, where an uncaught C++ exception aborts the process.
// PUZZLE_LLAMA_NATIVE_FAULT="<call>:std|alloc|foreign" (say "getParameter():std") makes that call throw a
// std::runtime_error, a std::bad_alloc or a non-std value inside the guard: the tests' way of checking it.
void injectedFault(const char* where) {
  const char* spec = std::getenv("PUZZLE_LLAMA_NATIVE_FAULT");
  if (spec == nullptr || *spec == '\0') return;
  const std::string s(spec);
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || s.compare(0, colon, where) != 0) return;
  const std::string kind = s.substr(colon + 1);
  if (kind == "std") throw std::runtime_error("injected fault");
  if (kind == "alloc") throw std::bad_alloc();
  if (kind == "foreign") throw 42;
}

template <typename Body>
Napi::Value guarded(Napi::Env env, const char* where, Body&& body) {
  try {
    injectedFault(where);
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, std::string(where) + ": out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string(where) + ": " + e.what());
  } catch (...) {
    throw Napi::Error::New(env, std::string(where) + ": an unknown native error");
  }
}

}  // namespace

Napi::Function EngineWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {
                         InstanceMethod<&EngineWrap::Info>("info"),
                         InstanceMethod<&EngineWrap::Parameters>("parameters"),
                         InstanceMethod<&EngineWrap::GetParameter>("getParameter"),
                         InstanceMethod<&EngineWrap::SetParameter>("setParameter"),
                         InstanceMethod<&EngineWrap::GetGradient>("getGradient"),
                         InstanceMethod<&EngineWrap::GetOptimizerState>("getOptimizerState"),
                         InstanceMethod<&EngineWrap::SetOptimizerState>("setOptimizerState"),
                         InstanceMethod<&EngineWrap::Forward>("forward"),
                         InstanceMethod<&EngineWrap::ForwardBackward>("forwardBackward"),
                         InstanceMethod<&EngineWrap::Step>("step"),
                         InstanceMethod<&EngineWrap::Generate>("generate"),
                         InstanceMethod<&EngineWrap::DecodeStart>("decodeStart"),
                         InstanceMethod<&EngineWrap::DecodeNext>("decodeNext"),
                         InstanceMethod<&EngineWrap::DecodeReorder>("decodeReorder"),
                         InstanceMethod<&EngineWrap::DecodeEnd>("decodeEnd"),
                         InstanceMethod<&EngineWrap::Dispose>("dispose"),
                         InstanceMethod<&EngineWrap::Disposed>("disposed"),
                         InstanceMethod<&EngineWrap::Profile>("profile"),
                         InstanceMethod<&EngineWrap::ActivationBytes>("activationBytes"),
                         InstanceMethod<&EngineWrap::AttachCommunicator>("attachCommunicator"),
                         InstanceMethod<&EngineWrap::BroadcastState>("broadcastState"),
                         InstanceMethod<&EngineWrap::ParameterSumSquares>("parameterSumSquares"),
                     });
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  Napi::Env env = info.Env();
  Napi::Object o = objectArg(info, 0, "Engine.create(): options", false);
  Napi::Value cfg = o.Get("config");
  if (!cfg.IsObject()) throwType(env, "Engine.create(): config must be an object, got " + describe(cfg));
  const LlamaConfig config = parseConfig(cfg.As<Napi::Object>());
  const LoraConfig lora = parseLora(o.Get("lora"));
  const std::string device = stringField(o, "device", "Engine.create(): options.", std::string("cpu"));
  if (device != "cpu" && device != "auto" && device != "cuda")
    throwRange(env, "Engine.create(): options.device must be 'auto', 'cpu' or 'cuda', got '" + device + "'");
  const int deviceIndex = static_cast<int>(intField(o, "deviceIndex", "Engine.create(): options.", 0, 1024, 0));
#ifndef PUZZLE_LLAMA_CUDA
  if (device == "cuda")
    throwRange(env, "Engine.create(): options.device = 'cuda' but this addon was built without CUDA (run `npm run build:cuda`)");
  (void)deviceIndex;
#endif
  seed_ = static_cast<uint64_t>(intField(o, "seed", "Engine.create(): options.", 0, (int64_t(1) << 53), 0));
  const bool initializeBase = boolField(o, "initializeBase", "Engine.create(): options.", true);
  const std::string frozenWeights = stringField(o, "frozenWeights", "Engine.create(): options.", std::string("fp32"));
  if (frozenWeights != "fp32" && frozenWeights != "bf16")
    throwRange(env, "Engine.create(): options.frozenWeights must be 'fp32' or 'bf16', got '" + frozenWeights + "'");
  if (frozenWeights == "bf16" && !lora.enabled())
    throwRange(env, "Engine.create(): options.frozenWeights = 'bf16' needs options.lora (full training updates every weight)");
  const bool checkpointing = boolField(o, "gradientCheckpointing", "Engine.create(): options.", false);
  // Memory against speed in the CUDA attention backward (no effect on the CPU backend).
  const std::string attentionBackward = stringField(o, "attentionBackward", "Engine.create(): options.", std::string("fast"));
  if (attentionBackward != "fast" && attentionBackward != "low-memory")
    throwRange(env, "Engine.create(): options.attentionBackward must be 'fast' or 'low-memory', got '" + attentionBackward + "'");
  const int threads = static_cast<int>(intField(o, "threads", "Engine.create(): options.", 1, 1024,
                                                static_cast<int64_t>(cpuFeatures().hardwareThreads)));
  state_ = std::make_shared<EngineState>();
  try {
#ifdef PUZZLE_LLAMA_CUDA
    if (device == "cuda" || device == "auto") {
      try {
        cuda::CudaOptions cudaOptions;
        cudaOptions.keepAttentionScores = attentionBackward == "fast";
        state_->backend = cuda::createBackend(deviceIndex, cudaOptions);
      } catch (const std::exception& e) {
        if (device == "cuda") throw;
        // 'auto' without a usable GPU: the CPU backend, and info().note says why
        state_->note = std::string("no usable CUDA device (") + e.what() + "); running on the CPU";
      }
    }
#endif
    if (!state_->backend) state_->backend = std::make_unique<cpu::CpuBackend>(threads);
    state_->model =
        std::make_unique<LlamaModel>(*state_->backend, config, lora, seed_, initializeBase, frozenWeights == "bf16");
    state_->model->setGradientCheckpointing(checkpointing);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "Engine.create(): out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("Engine.create(): ") + e.what());
  }
  reportMemory(env);
}

EngineWrap::~EngineWrap() {
  // GC without dispose(): release the model (no job can be running, since jobs hold a reference).
  state_.reset();
}

void EngineWrap::reportMemory(Napi::Env env) {
  const int64_t now = state_ && state_->model ? static_cast<int64_t>(state_->model->memoryBytes()) : 0;
  if (now != reportedBytes_) Napi::MemoryManagement::AdjustExternalMemory(env, now - reportedBytes_);
  reportedBytes_ = now;
}

void EngineWrap::jobDone() {
  busy_ = false;
  busyWith_.clear();
  reportMemory(Env());
}

LlamaModel& EngineWrap::usable(Napi::Env env, const std::string& where) {
  if (!state_) throw Napi::Error::New(env, where + ": the engine was disposed");
  if (busy_) throw Napi::Error::New(env, where + ": the engine is busy with " + busyWith_ + "; await it first");
  return *state_->model;
}

const TensorInfo& EngineWrap::tensorArg(const Napi::CallbackInfo& info, const std::string& where) {
  LlamaModel& m = usable(info.Env(), where);
  Napi::Value v = info.Length() > 0 ? info[0] : info.Env().Undefined();
  if (!v.IsString()) throwType(info.Env(), where + ": name must be a string, got " + describe(v));
  const std::string name = v.As<Napi::String>().Utf8Value();
  const TensorInfo* t = m.find(name);
  if (!t) throwRange(info.Env(), where + ": no tensor named '" + name + "' (see parameterNames())");
  return *t;
}

Napi::Value EngineWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!state_) throw Napi::Error::New(env, "info(): the engine was disposed");
  LlamaModel& m = *state_->model;
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", state_->backend->name());
  o.Set("note", state_->note.empty() ? env.Null() : Napi::Value(Napi::String::New(env, state_->note)));
  o.Set("threads", state_->backend->threads());
  o.Set("parameterCount", static_cast<double>(m.parameterCount()));
  o.Set("trainableCount", static_cast<double>(m.trainableCount()));
  o.Set("memoryBytes", static_cast<double>(m.memoryBytes()));
  o.Set("allocatedBytes", static_cast<double>(state_->backend->allocatedBytes()));
  o.Set("peakAllocatedBytes", static_cast<double>(state_->backend->peakAllocatedBytes()));
  o.Set("step", m.stepCount());
  return o;
}

Napi::Value EngineWrap::Parameters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "parameters()");
  Napi::Array a = Napi::Array::New(env, m.tensors().size());
  // In file order: the table is stored trainable-first, but callers expect the model's order.
  std::vector<const TensorInfo*> order;
  for (const TensorInfo& t : m.tensors()) order.push_back(&t);
  uint32_t i = 0;
  for (const TensorInfo* t : order) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t->name);
    o.Set("shape", shapeArray(env, t->shape));
    o.Set("trainable", t->trainable);
    a.Set(i++, o);
  }
  return a;
}

// activationBytes({ rows, train, checkpointing }): what a step over `rows` tokens would allocate.
Napi::Value EngineWrap::ActivationBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  usable(env, "activationBytes()");
  const std::string w = "activationBytes(): ";
  Napi::Object o = objectArg(info, 0, "activationBytes(): options", false);
  const int rows = static_cast<int>(intField(o, "rows", w, 1, 1 << 30, std::nullopt));
  const bool train = boolField(o, "train", w, true);
  const bool checkpointing = boolField(o, "checkpointing", w, state_->model->gradientCheckpointing());
  return Napi::Number::New(env, static_cast<double>(state_->model->activationBytes(rows, train, rows, checkpointing)));
}

// profile(true) clears and starts per-op timing; profile(false) stops it and returns the report.
Napi::Value EngineWrap::Profile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  usable(env, "profile()");
  Napi::Value v = info.Length() > 0 ? info[0] : env.Undefined();
  if (!v.IsBoolean()) throwType(env, "profile(): on must be a boolean, got " + describe(v));
  Backend& be = *state_->backend;
  try {
    if (v.As<Napi::Boolean>().Value()) {
      be.setProfiling(true);
      return Napi::String::New(env, "");
    }
    const std::string report = be.profileReport();
    be.setProfiling(false);
    return Napi::String::New(env, report);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("profile(): ") + e.what());
  }
}

Napi::Value EngineWrap::GetParameter(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), "getParameter()", [&]() -> Napi::Value {
    const TensorInfo& t = tensorArg(info, "getParameter()");
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), t.numel);
    state_->model->getParameter(t, out.Data());
    return out;
  });
}

Napi::Value EngineWrap::SetParameter(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), "setParameter()", [&]() -> Napi::Value {
    const TensorInfo& t = tensorArg(info, "setParameter()");
    Napi::Float32Array data = f32Arg(info.Env(), info.Length() > 1 ? info[1] : info.Env().Undefined(),
                                     "setParameter(): data for '" + t.name + "'", t.numel);
    const float* p = data.Data();
    for (size_t i = 0; i < t.numel; ++i)
      if (!std::isfinite(p[i]))
        throwRange(info.Env(), "setParameter(): data for '" + t.name + "'[" + std::to_string(i) + "] is not finite");
    state_->model->setParameter(t, p);
    return info.Env().Undefined();
  });
}

Napi::Value EngineWrap::GetGradient(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), "getGradient()", [&]() -> Napi::Value {
    const TensorInfo& t = tensorArg(info, "getGradient()");
    if (!t.trainable) throwRange(info.Env(), "getGradient(): '" + t.name + "' is frozen and has no gradient");
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), t.numel);
    state_->model->getGradient(t, out.Data());
    return out;
  });
}

Napi::Value EngineWrap::GetOptimizerState(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), "getOptimizerState()", [&]() -> Napi::Value {
    const TensorInfo& t = tensorArg(info, "getOptimizerState()");
    Napi::Env env = info.Env();
    if (!t.trainable) throwRange(env, "getOptimizerState(): '" + t.name + "' is frozen and has no optimizer state");
    Napi::Float32Array m = Napi::Float32Array::New(env, t.numel), v = Napi::Float32Array::New(env, t.numel);
    state_->model->getOptimizerState(t, 0, m.Data());
    state_->model->getOptimizerState(t, 1, v.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("expAvg", m);
    o.Set("expAvgSq", v);
    return o;
  });
}

Napi::Value EngineWrap::SetOptimizerState(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), "setOptimizerState()", [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].IsNumber()) {
      // setOptimizerState(stepCount): the AdamW step counter alone.
      usable(env, "setOptimizerState()");
      Napi::Object o = Napi::Object::New(env);
      o.Set("step", info[0]);
      state_->model->setStepCount(static_cast<int>(intField(o, "step", "setOptimizerState(): ", 0, kIntMax)));
      return env.Undefined();
    }
    const TensorInfo& t = tensorArg(info, "setOptimizerState()");
    if (!t.trainable) throwRange(env, "setOptimizerState(): '" + t.name + "' is frozen and has no optimizer state");
    Napi::Object o = objectArg(info, 1, "setOptimizerState(): state", false);
    Napi::Float32Array m = f32Arg(env, o.Get("expAvg"), "setOptimizerState(): state.expAvg", t.numel);
    Napi::Float32Array v = f32Arg(env, o.Get("expAvgSq"), "setOptimizerState(): state.expAvgSq", t.numel);
    state_->model->setOptimizerState(t, 0, m.Data());
    state_->model->setOptimizerState(t, 1, v.Data());
    return env.Undefined();
  });
}

namespace {
// Reads batch/seq from options and checks tokens against them.
void batchShape(const Napi::Object& o, const std::string& where, const LlamaConfig& c, int* B, int* T) {
  *B = static_cast<int>(intField(o, "batch", where + ": options.", 1, kIntMax));
  *T = static_cast<int>(intField(o, "seq", where + ": options.", 1, c.maxPositionEmbeddings));
  if (static_cast<int64_t>(*B) * *T > (int64_t(1) << 26))
    throwRange(o.Env(), where + ": batch * seq = " + std::to_string(int64_t(*B) * *T) + " is too large");
}
}  // namespace

Napi::Value EngineWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "forward()");
  Napi::Object o = objectArg(info, 1, "forward(): options", false);
  int B, T;
  batchShape(o, "forward()", m.config(), &B, &T);
  Napi::Int32Array tokens = i32Arg(env, info[0], "forward(): tokens", static_cast<size_t>(B) * T);
  checkTokens(env, tokens.Data(), tokens.ElementLength(), m.config().vocabSize, "forward(): tokens", false);
  auto abort = AbortFlag::From(o, "forward(): options.");
  auto* job = new ForwardJob(env, "puzzle-llama:forward", this, Value(), state_);
  job->tokens.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
  job->B = B;
  job->T = T;
  job->SetAbortFlag(abort);
  busy_ = true;
  busyWith_ = "forward()";
  job->Queue();
  return job->Promise();
}

Napi::Value EngineWrap::ForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "forwardBackward()");
  Napi::Object o = objectArg(info, 2, "forwardBackward(): options", false);
  int B, T;
  batchShape(o, "forwardBackward()", m.config(), &B, &T);
  const size_t n = static_cast<size_t>(B) * T;
  Napi::Int32Array tokens = i32Arg(env, info[0], "forwardBackward(): tokens", n);
  Napi::Int32Array targets = i32Arg(env, info.Length() > 1 ? info[1] : env.Undefined(), "forwardBackward(): targets", n);
  checkTokens(env, tokens.Data(), n, m.config().vocabSize, "forwardBackward(): tokens", false);
  checkTokens(env, targets.Data(), n, m.config().vocabSize, "forwardBackward(): targets", true);
  auto* job = new ForwardBackwardJob(env, "puzzle-llama:forwardBackward", this, Value(), state_);
  std::unique_ptr<ForwardBackwardJob> guard(job);
  job->tokens.assign(tokens.Data(), tokens.Data() + n);
  job->targets.assign(targets.Data(), targets.Data() + n);
  job->B = B;
  job->T = T;
  const std::string w = "forwardBackward(): options.";
  job->options.accumulate = boolField(o, "accumulate", w, false);
  job->options.rowOffset = intField(o, "rowOffset", w, 0, int64_t(1) << 50, 0);
  job->options.lossTokens = numberField(o, "lossTokens", w, 0.0, 1e15, 0.0);
  if (boolField(o, "reduceGradients", w, false)) {
    if (!state_->comm) throwType(env, w + "reduceGradients needs a communicator (attachCommunicator() first)");
    job->reduceOver = state_->comm;
    job->bucketBytes = state_->bucketBytes;
  }
  ++calls_;
  job->options.dropoutSeed = has(o, "dropoutSeed")
                         ? static_cast<uint64_t>(intField(o, "dropoutSeed", "forwardBackward(): options.", 0, int64_t(1) << 53))
                         : mixSeed(seed_ ^ 0xD509u, calls_);
  job->SetAbortFlag(AbortFlag::From(o, "forwardBackward(): options."));
  Napi::Value cb = o.Get("onProgress");
  if (cb.IsFunction()) job->SetProgressCallback(cb.As<Napi::Function>());
  else if (!cb.IsUndefined() && !cb.IsNull())
    throwType(env, "forwardBackward(): options.onProgress must be a function, got " + describe(cb));
  busy_ = true;
  busyWith_ = "forwardBackward()";
  guard.release();
  job->Queue();
  return job->Promise();
}

Napi::Value EngineWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "step()");
  (void)m;
  Napi::Object o = objectArg(info, 0, "step(): options", false);
  const std::string w = "step(): options.";
  StepOptions s;
  const double inf = std::numeric_limits<double>::infinity();
  s.lr = static_cast<float>(numberField(o, "lr", w, 0.0, 1e6));
  s.beta1 = static_cast<float>(numberField(o, "beta1", w, 0.0, 0.999999, 0.9));
  s.beta2 = static_cast<float>(numberField(o, "beta2", w, 0.0, 0.999999999, 0.999));
  s.eps = static_cast<float>(numberField(o, "eps", w, 0.0, 1.0, 1e-8));
  s.weightDecay = static_cast<float>(numberField(o, "weightDecay", w, 0.0, 1e6, 0.0));
  s.maxGradNorm = static_cast<float>(numberField(o, "maxGradNorm", w, 0.0, inf, 0.0));
  s.gradScale = static_cast<float>(numberField(o, "gradScale", w, 0.0, 1e30, 1.0));
  auto* job = new StepJob(env, "puzzle-llama:step", this, Value(), state_);
  job->options = s;
  busy_ = true;
  busyWith_ = "step()";
  job->Queue();
  return job->Promise();
}

Napi::Value EngineWrap::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "generate()");
  const LlamaConfig& c = m.config();
  Napi::Value pv = info.Length() > 0 ? info[0] : env.Undefined();
  if (!pv.IsArray()) throwType(env, "generate(): prompts must be an array of Int32Array, got " + describe(pv));
  Napi::Object o = objectArg(info, 1, "generate(): options", true);
  const std::string w = "generate(): options.";
  GenerateOptions g;
  g.maxNewTokens = static_cast<int>(intField(o, "maxNewTokens", w, 1, c.maxPositionEmbeddings, 16));
  g.temperature = static_cast<float>(numberField(o, "temperature", w, 0.0, 1e6, 0.0));
  g.topK = static_cast<int>(intField(o, "topK", w, 0, c.vocabSize, 0));
  g.seed = static_cast<uint64_t>(intField(o, "seed", w, 0, int64_t(1) << 53, 0));
  Napi::Value stops = o.Get("stopTokens");
  if (!stops.IsUndefined() && !stops.IsNull()) {
    if (!stops.IsArray()) throwType(env, w + "stopTokens must be an array of token ids, got " + describe(stops));
    Napi::Array sa = stops.As<Napi::Array>();
    Napi::Object holder = Napi::Object::New(env);
    for (uint32_t i = 0; i < sa.Length(); ++i) {
      holder.Set("id", sa.Get(i));
      g.stopTokens.push_back(static_cast<int32_t>(
          intField(holder, "id", w + "stopTokens[" + std::to_string(i) + "] (", 0, c.vocabSize - 1)));
    }
  }
  Napi::Array pa = pv.As<Napi::Array>();
  auto* job = new GenerateJob(env, "puzzle-llama:generate", this, Value(), state_);
  std::unique_ptr<GenerateJob> guard(job);
  for (uint32_t i = 0; i < pa.Length(); ++i) {
    const std::string where = "generate(): prompts[" + std::to_string(i) + "]";
    Napi::Int32Array p = i32Arg(env, pa.Get(i), where, SIZE_MAX);
    if (p.ElementLength() == 0) throwRange(env, where + " is empty");
    if (static_cast<int64_t>(p.ElementLength()) + g.maxNewTokens > c.maxPositionEmbeddings)
      throwRange(env, where + " has " + std::to_string(p.ElementLength()) + " tokens; with maxNewTokens = " +
                          std::to_string(g.maxNewTokens) + " it exceeds max_position_embeddings = " +
                          std::to_string(c.maxPositionEmbeddings));
    checkTokens(env, p.Data(), p.ElementLength(), c.vocabSize, where, false);
    job->prompts.emplace_back(p.Data(), p.Data() + p.ElementLength());
  }
  job->options = g;
  job->SetAbortFlag(AbortFlag::From(o, w));
  Napi::Value cb = o.Get("onProgress");
  if (cb.IsFunction()) job->SetProgressCallback(cb.As<Napi::Function>());
  else if (!cb.IsUndefined() && !cb.IsNull()) throwType(env, w + "onProgress must be a function, got " + describe(cb));
  busy_ = true;
  busyWith_ = "generate()";
  guard.release();
  job->Queue();
  return job->Promise();
}

Napi::Value EngineWrap::DecodeStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "decodeStart()");
  const LlamaConfig& c = m.config();
  Napi::Object o = objectArg(info, 1, "decodeStart(): options", false);
  const std::string w = "decodeStart(): options.";
  const int B = static_cast<int>(intField(o, "batch", w, 1, 1 << 16));
  const int P = static_cast<int>(intField(o, "promptLength", w, 1, c.maxPositionEmbeddings));
  const int maxNew = static_cast<int>(intField(o, "maxNewTokens", w, 0, c.maxPositionEmbeddings));
  if (P + maxNew > c.maxPositionEmbeddings)
    throwRange(env, "decodeStart(): promptLength + maxNewTokens = " + std::to_string(P + maxNew) +
                        " exceeds max_position_embeddings = " + std::to_string(c.maxPositionEmbeddings));
  Napi::Int32Array tokens = i32Arg(env, info[0], "decodeStart(): tokens", static_cast<size_t>(B) * P);
  checkTokens(env, tokens.Data(), tokens.ElementLength(), c.vocabSize, "decodeStart(): tokens", false);
  auto* job = new DecodeJob(env, "puzzle-llama:decodeStart", this, Value(), state_);
  job->tokens.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
  job->B = B;
  job->P = P;
  job->maxNew = maxNew;
  job->start = true;
  busy_ = true;
  busyWith_ = "decodeStart()";
  job->Queue();
  return job->Promise();
}

Napi::Value EngineWrap::DecodeNext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "decodeNext()");
  if (!m.decoding()) throw Napi::Error::New(env, "decodeNext(): no decode session (call decodeStart() first)");
  if (m.decodeRemaining() <= 0)
    throw Napi::RangeError::New(env, "decodeNext(): the session's positions are used up (raise maxNewTokens in decodeStart())");
  Napi::Int32Array tokens = i32Arg(env, info.Length() > 0 ? info[0] : env.Undefined(), "decodeNext(): tokens",
                                   static_cast<size_t>(m.decodeBatch()));
  checkTokens(env, tokens.Data(), tokens.ElementLength(), m.config().vocabSize, "decodeNext(): tokens", false);
  auto* job = new DecodeJob(env, "puzzle-llama:decodeNext", this, Value(), state_);
  job->tokens.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
  busy_ = true;
  busyWith_ = "decodeNext()";
  job->Queue();
  return job->Promise();
}

// decodeReorder(rows: Int32Array of the session's batch): row b continues row rows[b] (beam search).
// Copies within the KV cache only, so it runs on the calling thread.
Napi::Value EngineWrap::DecodeReorder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "decodeReorder()");
  if (!m.decoding()) throw Napi::Error::New(env, "decodeReorder(): no decode session (call decodeStart() first)");
  const int B = m.decodeBatch();
  Napi::Int32Array rows = i32Arg(env, info.Length() > 0 ? info[0] : env.Undefined(), "decodeReorder(): rows",
                                 static_cast<size_t>(B));
  for (int b = 0; b < B; ++b)
    if (rows[b] < 0 || rows[b] >= B)
      throwRange(env, "decodeReorder(): rows[" + std::to_string(b) + "] = " + std::to_string(rows[b]) +
                          " is not a row of the session's batch [0, " + std::to_string(B) + ")");
  return guarded(env, "decodeReorder()", [&] {
    m.decodeReorder(rows.Data());
    return env.Undefined();
  });
}

Napi::Value EngineWrap::DecodeEnd(const Napi::CallbackInfo& info) {
  usable(info.Env(), "decodeEnd()").decodeEnd();
  return info.Env().Undefined();
}

// attachCommunicator(comm | null, { bucketBytes }): the communicator forwardBackward({ reduceGradients })
// sums gradients over and broadcastState() goes through. Its memory must be the backend's.
Napi::Value EngineWrap::AttachCommunicator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  usable(env, "attachCommunicator()");
  Napi::Value v = info.Length() > 0 ? info[0] : env.Undefined();
  if (v.IsNull() || v.IsUndefined()) {
    state_->detach();
    return env.Undefined();
  }
  std::shared_ptr<comm::Communicator> c = CommunicatorWrap::From(env, v, "attachCommunicator(): comm");
  Napi::Object o = objectArg(info, 1, "attachCommunicator(): options", true);
  const size_t bucket = static_cast<size_t>(intField(o, "bucketBytes", "attachCommunicator(): options.", 1024, int64_t(1) << 34, 25 << 20));
  const bool onDevice = state_->backend->name() == "cuda";
  if (c->deviceMemory() != onDevice)
    throwType(env, "attachCommunicator(): a " + c->backend() + " communicator works on " +
                       (c->deviceMemory() ? "GPU" : "host") + " memory but this engine runs on the " +
                       state_->backend->name() + " (use " + (onDevice ? "nccl" : "gloo") + ")");
  state_->detach();
#ifdef PUZZLE_LLAMA_CUDA
  if (onDevice) {
    auto* cb = dynamic_cast<cuda::CudaBackend*>(state_->backend.get());
    try {
      c->bindStream(cb->stream(), cb->device());
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("attachCommunicator(): ") + e.what());
    }
  }
#endif
  state_->comm = std::move(c);
  state_->bucketBytes = bucket;
  return env.Undefined();
}

Napi::Value EngineWrap::BroadcastState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  usable(env, "broadcastState()");
  if (!state_->comm) throwType(env, "broadcastState(): no communicator (attachCommunicator() first)");
  Napi::Object holder = Napi::Object::New(env);
  holder.Set("root", info.Length() > 0 ? info[0] : env.Undefined());
  const int root = static_cast<int>(intField(holder, "root", "broadcastState(): ", 0, state_->comm->size() - 1, 0));
  auto* job = new BroadcastStateJob(env, "puzzle-llama:broadcastState", this, Value(), state_);
  job->over = state_->comm;
  job->root = root;
  busy_ = true;
  busyWith_ = "broadcastState()";
  job->Queue();
  return job->Promise();
}

Napi::Value EngineWrap::ParameterSumSquares(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LlamaModel& m = usable(env, "parameterSumSquares()");
  try {
    return Napi::Number::New(env, m.parameterSumSquares());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("parameterSumSquares(): ") + e.what());
  }
}

Napi::Value EngineWrap::Dispose(const Napi::CallbackInfo& info) {
  // Idempotent. A running job keeps its own reference to the state; memory goes when it finishes.
  if (state_) {
    state_.reset();
    reportMemory(info.Env());
  }
  return info.Env().Undefined();
}

Napi::Value EngineWrap::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !state_); }

}  // namespace pl::addon
