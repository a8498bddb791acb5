// N-API entry point: registers the native surface that lib/engine/native.ts types.
#include <napi.h>

#include "../comm/communicator.h"
#include "../core/cpu_features.h"
#include "../cpu/simd.h"
#include "abort_flag.h"
#include "addon_data.h"
#include "communicator_wrap.h"
#include "engine_wrap.h"
#include "kernels_wrap.h"
#include "peak_wrap.h"
#ifdef PUZZLE_LLAMA_CUDA
#include "../cuda/device_info.h"
#endif

namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
#ifdef PUZZLE_LLAMA_CUDA
  out.Set("build", "cuda");
  out.Set("cudaRuntimeVersion", pl::cuda::runtimeVersion());
#else
  out.Set("build", "cpu");
  out.Set("cudaRuntimeVersion", env.Null());
#endif
  const pl::CpuFeatures& f = pl::cpuFeatures();
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("simd", pl::cpu::isaName(pl::cpu::bestIsa()));
  cpu.Set("avx2", f.avx2 && f.fma);
  cpu.Set("avx512", f.avx512f && f.avx512bw);
  cpu.Set("avx512bf16", f.avx512bf16);
  cpu.Set("hardwareThreads", f.hardwareThreads);
  out.Set("cpu", cpu);
  out.Set("gloo", pl::comm::glooAvailable());
  return out;
}

Napi::Value CudaDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array list = Napi::Array::New(env);
#ifdef PUZZLE_LLAMA_CUDA
  std::string why;
  auto devices = pl::cuda::listDevices(&why);
  for (size_t i = 0; i < devices.size(); ++i) {
    const auto& d = devices[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", d.index);
    o.Set("name", d.name);
    o.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    o.Set("totalMemory", static_cast<double>(d.totalMemory));
    o.Set("multiprocessors", d.multiprocessors);
    list.Set(static_cast<uint32_t>(i), o);
  }
  out.Set("reason", devices.empty() ? Napi::Value(Napi::String::New(env, why)) : env.Null());
#else
  out.Set("reason", "this addon was built without CUDA (run `npm run build:cuda` where nvcc is installed)");
#endif
  out.Set("devices", list);
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("cudaDevices", Napi::Function::New(env, CudaDevices, "cudaDevices"));
  auto* data = new pl::addon::AddonData();
  Napi::Function abortFlag = pl::addon::AbortFlag::Define(env);
  Napi::Function engine = pl::addon::EngineWrap::Define(env);
  Napi::Function communicator = pl::addon::CommunicatorWrap::Define(env);
  data->abortFlagClass = Napi::Persistent(abortFlag);
  data->engineClass = Napi::Persistent(engine);
  data->communicatorClass = Napi::Persistent(communicator);
  env.SetInstanceData<pl::addon::AddonData>(data);
  exports.Set("AbortFlag", abortFlag);
  exports.Set("NativeEngine", engine);
  exports.Set("NativeCommunicator", communicator);
  exports.Set("createCommunicator", Napi::Function::New(env, pl::addon::CommunicatorWrap::Create, "createCommunicator"));
  Napi::Object kernels = pl::addon::DefineKernels(env);
  pl::addon::AddFmaPeak(env, kernels);
  exports.Set("kernels", kernels);
  return exports;
}

}  // namespace

NODE_API_MODULE(puzzle_llama, Init)
