// Per-environment state of the addon (class constructors), kept as N-API instance data.
#pragma once
#include <napi.h>

namespace pl::addon {

struct AddonData {
  Napi::FunctionReference abortFlagClass;
  Napi::FunctionReference engineClass;
  Napi::FunctionReference communicatorClass;
};

}  // namespace pl::addon
