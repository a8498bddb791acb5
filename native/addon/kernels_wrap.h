// `kernels`: each CPU op alone, forward and backward, on plain typed arrays (parity tests, benchmarks).
#pragma once
#include <napi.h>

namespace pl::addon {

Napi::Object DefineKernels(Napi::Env env);

}  // namespace pl::addon
