// `kernels.fmaPeak()`: the machine's measured fp32 FMA peak (native/cpu/peak.cc), added to the kernels object.
#pragma once
#include <napi.h>

namespace pl::addon {

// Sets kernels.fmaPeak(options) -> Promise<{ gflops, gflopsPerCpuSecond, ... }>.
void AddFmaPeak(Napi::Env env, Napi::Object kernels);

}  // namespace pl::addon
