// `kernels`: each backend op alone, forward and backward, on plain typed arrays, on the CPU or (options.device
// = 'cuda') the process's one CUDA backend: for parity tests and benchmarks.
#pragma once
#include <napi.h>

namespace pl::addon {

Napi::Object DefineKernels(Napi::Env env);

}  // namespace pl::addon
