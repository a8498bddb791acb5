// CommunicatorWrap: option checks on the JS thread, the connection and every collective in promise
// workers (a collective blocks until every rank has joined it), results back as typed arrays.
#include "communicator_wrap.h"

#include <chrono>
#include <cstring>

#include "../core/error.h"
#include "addon_data.h"
#include "args.h"
#include "async.h"

namespace pl::addon {

namespace {

comm::DType dtypeField(const Napi::Object& o, const std::string& where) {
  const std::string d = stringField(o, "dtype", where, std::string("f32"));
  if (d == "f32") return comm::DType::F32;
  if (d == "bf16") return comm::DType::BF16;
  throwRange(o.Env(), where + "dtype must be 'f32' or 'bf16', got '" + d + "'");
}

comm::ReduceOp opField(const Napi::Object& o, const std::string& where) {
  const std::string op = stringField(o, "op", where, std::string("sum"));
  if (op == "sum") return comm::ReduceOp::Sum;
  if (op == "average") return comm::ReduceOp::Average;
  throwRange(o.Env(), where + "op must be 'sum' or 'average', got '" + op + "'");
}

// The bytes of any typed array (the collectives move bytes; allReduce checks the element type itself).
struct HostBytes {
  void* data = nullptr;
  size_t bytes = 0;
};

HostBytes typedBytes(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsTypedArray()) throwType(env, where + " must be a typed array, got " + describe(v));
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  return {static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), t.ByteLength()};
}

class ConnectJob : public PromiseWorker {
 public:
  ConnectJob(Napi::Env env, comm::CommOptions options, std::string backend)
      : PromiseWorker(env, "puzzle-llama:connect"), options_(std::move(options)), backend_(std::move(backend)) {}

 protected:
  void Run(const ExecutionProgress&) override {
    comm_ = backend_ == "nccl" ? comm::createNcclCommunicator(options_) : comm::createGlooCommunicator(options_);
  }
  Napi::Value Result(Napi::Env env) override {
    auto* holder = new std::shared_ptr<comm::Communicator>(std::move(comm_));
    Napi::External<std::shared_ptr<comm::Communicator>> ext = Napi::External<std::shared_ptr<comm::Communicator>>::New(
        env, holder, [](Napi::Env, std::shared_ptr<comm::Communicator>* p) { delete p; });
    return env.GetInstanceData<AddonData>()->communicatorClass.New({ext});
  }

 private:
  comm::CommOptions options_;
  std::string backend_;
  std::unique_ptr<comm::Communicator> comm_;
};

// A collective on the communicator: holds the JS objects it reads or writes until it is done.
class CommJob : public PromiseWorker {
 public:
  CommJob(Napi::Env env, const char* name, CommunicatorWrap* wrap, Napi::Object self, std::shared_ptr<comm::Communicator> c)
      : PromiseWorker(env, name), wrap_(wrap), self_(Napi::Persistent(self)), comm_(std::move(c)) {}
  void Keep(Napi::Value v) { kept_ = Napi::Persistent(v.As<Napi::Object>()); }

 protected:
  void Finish() override { wrap_->jobDone(); }
  comm::Communicator& comm() { return *comm_; }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  CommunicatorWrap* wrap_;
  Napi::ObjectReference self_;
  Napi::ObjectReference kept_;
  std::shared_ptr<comm::Communicator> comm_;
};

class AllReduceJob : public CommJob {
 public:
  using CommJob::CommJob;
  HostBytes host;
  size_t count = 0;
  comm::DType dtype = comm::DType::F32;
  comm::ReduceOp op = comm::ReduceOp::Sum;

 protected:
  void Run(const ExecutionProgress&) override { comm().allReduceHost(host.data, count, dtype, op); }
};

class BroadcastJob : public CommJob {
 public:
  using CommJob::CommJob;
  HostBytes host;
  int root = 0;

 protected:
  void Run(const ExecutionProgress&) override { comm().broadcastHost(host.data, host.bytes, root); }
};

class AllGatherJob : public CommJob {
 public:
  using CommJob::CommJob;
  std::vector<uint8_t> mine;
  std::vector<std::vector<uint8_t>> all;

 protected:
  void Run(const ExecutionProgress&) override { all = comm().allGather(mine); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array a = Napi::Array::New(env, all.size());
    for (size_t r = 0; r < all.size(); ++r) {
      Napi::Uint8Array u = Napi::Uint8Array::New(env, all[r].size());
      if (!all[r].empty()) std::memcpy(u.Data(), all[r].data(), all[r].size());
      a.Set(static_cast<uint32_t>(r), u);
    }
    return a;
  }
};

class BarrierJob : public CommJob {
 public:
  using CommJob::CommJob;

 protected:
  void Run(const ExecutionProgress&) override { comm().barrier(); }
};

// Back-to-back all-reduces of one buffer in backend memory: the mean time of one, after warm-up.
class TimeAllReduceJob : public CommJob {
 public:
  using CommJob::CommJob;
  size_t bytes = 0;
  comm::DType dtype = comm::DType::F32;
  comm::ReduceOp op = comm::ReduceOp::Sum;
  int iterations = 0, warmup = 0;
  double seconds = 0.0;

 protected:
  void Run(const ExecutionProgress&) override {
    comm::Communicator& c = comm();
    void* buf = c.allocate(bytes);
    struct Release {
      comm::Communicator& c;
      void* p;
      ~Release() { c.release(p); }
    } release{c, buf};
    const size_t count = bytes / comm::dtypeBytes(dtype);
    if (!c.deviceMemory()) std::memset(buf, 0, bytes);
    for (int i = 0; i < warmup; ++i) c.allReduce(buf, count, dtype, op);
    c.wait();
    c.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i) c.allReduce(buf, count, dtype, op);
    c.wait();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iterations;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("seconds", seconds);
    return o;
  }
};

}  // namespace

Napi::Function CommunicatorWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeCommunicator",
                     {
                         InstanceMethod<&CommunicatorWrap::Info>("info"),
                         InstanceMethod<&CommunicatorWrap::AllReduce>("allReduce"),
                         InstanceMethod<&CommunicatorWrap::Broadcast>("broadcast"),
                         InstanceMethod<&CommunicatorWrap::AllGather>("allGather"),
                         InstanceMethod<&CommunicatorWrap::Barrier>("barrier"),
                         InstanceMethod<&CommunicatorWrap::TimeAllReduce>("timeAllReduce"),
                         InstanceMethod<&CommunicatorWrap::Close>("close"),
                     });
}

CommunicatorWrap::CommunicatorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CommunicatorWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "NativeCommunicator: use createCommunicator(), not new");
  // Taken out of the holder: the External lives until a garbage collection, and close() must not wait for one.
  comm_ = std::move(*info[0].As<Napi::External<std::shared_ptr<comm::Communicator>>>().Data());
}

Napi::Value CommunicatorWrap::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "createCommunicator(): options.";
  Napi::Object o = objectArg(info, 0, "createCommunicator(): options", false);
  const std::string backend = stringField(o, "backend", w);
  if (backend != "gloo" && backend != "nccl")
    throwRange(env, w + "backend must be 'gloo' or 'nccl', got '" + backend + "'");
  comm::CommOptions c;
  c.size = static_cast<int>(intField(o, "worldSize", w, 1, 1 << 20));
  c.rank = static_cast<int>(intField(o, "rank", w, 0, c.size - 1));
  c.store.host = stringField(o, "storeHost", w);
  c.store.port = static_cast<int>(intField(o, "storePort", w, 1, 65535));
  c.store.token = stringField(o, "token", w, std::string());
  c.prefix = stringField(o, "prefix", w, std::string("comm/"));
  c.timeoutMs = static_cast<int>(intField(o, "timeoutMs", w, 1, 7 * 24 * 3600 * 1000, 300000));
  c.hostname = stringField(o, "hostname", w, std::string("127.0.0.1"));
  c.iface = stringField(o, "iface", w, std::string());
  c.deviceIndex = static_cast<int>(intField(o, "deviceIndex", w, 0, 1024, 0));
  Napi::Value libs = o.Get("ncclLibraries");
  if (!libs.IsUndefined() && !libs.IsNull()) {
    if (!libs.IsArray()) throwType(env, w + "ncclLibraries must be an array of paths, got " + describe(libs));
    Napi::Array a = libs.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      if (!a.Get(i).IsString()) throwType(env, w + "ncclLibraries[" + std::to_string(i) + "] must be a string");
      c.ncclLibraries.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    }
  }
  auto* job = new ConnectJob(env, std::move(c), backend);
  job->Queue();
  return job->Promise();
}

std::shared_ptr<comm::Communicator> CommunicatorWrap::From(Napi::Env env, const Napi::Value& v, const std::string& where) {
  Napi::FunctionReference& cls = env.GetInstanceData<AddonData>()->communicatorClass;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(cls.Value()))
    throwType(env, where + " must be a Communicator (from createCommunicator()), got " + describe(v));
  CommunicatorWrap* w = Napi::ObjectWrap<CommunicatorWrap>::Unwrap(v.As<Napi::Object>());
  if (!w->comm_) throw Napi::Error::New(env, where + ": the communicator was closed");
  return w->comm_;
}

comm::Communicator& CommunicatorWrap::usable(Napi::Env env, const std::string& where) {
  if (!comm_) throw Napi::Error::New(env, where + ": the communicator was closed");
  if (busy_) throw Napi::Error::New(env, where + ": the communicator is busy with another collective; await it first");
  return *comm_;
}

Napi::Value CommunicatorWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!comm_) throw Napi::Error::New(env, "info(): the communicator was closed");
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", comm_->backend());
  o.Set("library", comm_->library());
  o.Set("rank", comm_->rank());
  o.Set("worldSize", comm_->size());
  o.Set("deviceMemory", comm_->deviceMemory());
  return o;
}

Napi::Value CommunicatorWrap::AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "allReduce(): ";
  usable(env, "allReduce()");
  Napi::Object o = objectArg(info, 1, w + "options", true);
  const comm::DType dtype = dtypeField(o, w + "options.");
  const comm::ReduceOp op = opField(o, w + "options.");
  Napi::Value data = info.Length() > 0 ? info[0] : env.Undefined();
  const napi_typedarray_type want = dtype == comm::DType::F32 ? napi_float32_array : napi_uint16_array;
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != want)
    throwType(env, w + "data must be a " + (dtype == comm::DType::F32 ? "Float32Array" : "Uint16Array (bf16 bits)") +
                       " for dtype '" + comm::dtypeName(dtype) + "', got " + describe(data));
  auto* job = new AllReduceJob(env, "puzzle-llama:allReduce", this, Value(), comm_);
  job->host = typedBytes(env, data, w + "data");
  job->count = job->host.bytes / comm::dtypeBytes(dtype);
  job->dtype = dtype;
  job->op = op;
  job->Keep(data);
  busy_ = true;
  job->Queue();
  return job->Promise();
}

Napi::Value CommunicatorWrap::Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  comm::Communicator& c = usable(env, "broadcast()");
  Napi::Value data = info.Length() > 0 ? info[0] : env.Undefined();
  Napi::Object holder = Napi::Object::New(env);
  holder.Set("root", info.Length() > 1 ? info[1] : env.Undefined());
  auto* job = new BroadcastJob(env, "puzzle-llama:broadcast", this, Value(), comm_);
  std::unique_ptr<BroadcastJob> guard(job);
  job->root = static_cast<int>(intField(holder, "root", "broadcast(): ", 0, c.size() - 1));
  job->host = typedBytes(env, data, "broadcast(): data");
  job->Keep(data);
  busy_ = true;
  guard.release()->Queue();
  return job->Promise();
}

Napi::Value CommunicatorWrap::AllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  usable(env, "allGather()");
  Napi::Value data = info.Length() > 0 ? info[0] : env.Undefined();
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throwType(env, "allGather(): data must be a Uint8Array, got " + describe(data));
  const HostBytes h = typedBytes(env, data, "allGather(): data");
  if (h.bytes > (size_t(1) << 28)) throwRange(env, "allGather(): data holds " + std::to_string(h.bytes) + " bytes; at most 256 MiB");
  auto* job = new AllGatherJob(env, "puzzle-llama:allGather", this, Value(), comm_);
  job->mine.assign(static_cast<uint8_t*>(h.data), static_cast<uint8_t*>(h.data) + h.bytes);
  busy_ = true;
  job->Queue();
  return job->Promise();
}

Napi::Value CommunicatorWrap::Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  usable(env, "barrier()");
  auto* job = new BarrierJob(env, "puzzle-llama:barrier", this, Value(), comm_);
  busy_ = true;
  job->Queue();
  return job->Promise();
}

Napi::Value CommunicatorWrap::TimeAllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string w = "timeAllReduce(): options.";
  usable(env, "timeAllReduce()");
  Napi::Object o = objectArg(info, 0, "timeAllReduce(): options", false);
  auto* job = new TimeAllReduceJob(env, "puzzle-llama:timeAllReduce", this, Value(), comm_);
  std::unique_ptr<TimeAllReduceJob> guard(job);
  job->dtype = dtypeField(o, w);
  job->op = opField(o, w);
  const int64_t unit = static_cast<int64_t>(comm::dtypeBytes(job->dtype));
  job->bytes = static_cast<size_t>(intField(o, "bytes", w, unit, int64_t(1) << 34));
  if (job->bytes % unit != 0) throwRange(env, w + "bytes = " + std::to_string(job->bytes) + " is not a multiple of the element size");
  job->iterations = static_cast<int>(intField(o, "iterations", w, 1, 1 << 20, 20));
  job->warmup = static_cast<int>(intField(o, "warmup", w, 0, 1 << 20, 3));
  busy_ = true;
  guard.release()->Queue();
  return job->Promise();
}

Napi::Value CommunicatorWrap::Close(const Napi::CallbackInfo& info) {
  // Idempotent. An engine it is attached to keeps its own reference until the engine is disposed.
  if (busy_) throw Napi::Error::New(info.Env(), "close(): a collective is running; await it first");
  comm_.reset();
  return info.Env().Undefined();
}

}  // namespace pl::addon
