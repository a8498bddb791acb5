// Binds NCCL's functions with dlopen/dlsym: once per process, from the first candidate that has them all.
#include "nccl_api.h"

#include <dlfcn.h>

#include <mutex>

#include "../core/error.h"

namespace pl::comm::nccl {

std::string Api::versionText() const {
  // Codes are X*10000 + Y*100 + Z from 2.9 on (X*1000 + Y*100 + Z before).
  const int major = version >= 10000 ? version / 10000 : version / 1000;
  const int minor = version >= 10000 ? (version / 100) % 100 : (version / 100) % 10;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(version % 100);
}

namespace {

template <typename F>
bool bind(void* handle, const char* name, F& fn, std::string* missing) {
  fn = reinterpret_cast<F>(dlsym(handle, name));
  if (!fn && missing->empty()) *missing = name;
  return fn != nullptr;
}

bool tryLoad(const std::string& path, Api& api, std::string* why) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    *why = e ? e : "dlopen failed";
    return false;
  }
  std::string missing;
  bind(handle, "ncclGetVersion", api.getVersion, &missing);
  bind(handle, "ncclGetUniqueId", api.getUniqueId, &missing);
  bind(handle, "ncclCommInitRank", api.commInitRank, &missing);
  bind(handle, "ncclCommDestroy", api.commDestroy, &missing);
  bind(handle, "ncclCommAbort", api.commAbort, &missing);
  bind(handle, "ncclCommGetAsyncError", api.commGetAsyncError, &missing);
  bind(handle, "ncclGetErrorString", api.getErrorString, &missing);
  bind(handle, "ncclAllReduce", api.allReduce, &missing);
  bind(handle, "ncclBroadcast", api.broadcast, &missing);
  bind(handle, "ncclAllGather", api.allGather, &missing);
  if (!missing.empty()) {
    *why = "it has no " + missing + " (too old an NCCL?)";
    dlclose(handle);
    return false;
  }
  api.getLastError = reinterpret_cast<const char* (*)(CommHandle)>(dlsym(handle, "ncclGetLastError"));
  if (api.getVersion(&api.version) != kSuccess) {
    *why = "ncclGetVersion failed";
    dlclose(handle);
    return false;
  }
  if (api.version < 21000) {
    *why = "it is NCCL " + api.versionText() + "; bf16 and average need 2.10 or newer";
    dlclose(handle);
    return false;
  }
  api.path = path;
  return true;  // the handle stays open for the process's life
}

}  // namespace

const Api& load(const std::vector<std::string>& candidates) {
  static std::mutex mutex;
  static Api api;
  std::lock_guard<std::mutex> lock(mutex);
  if (!api.path.empty()) return api;
  std::string tried;
  for (const std::string& path : candidates) {
    std::string why;
    Api attempt;
    if (tryLoad(path, attempt, &why)) {
      api = attempt;
      return api;
    }
    tried += "\n  " + path + ": " + why;
  }
  throw Error("NCCL (libnccl.so.2) could not be loaded; tried:" + (tried.empty() ? std::string(" nothing") : tried) +
              "\nInstall NCCL, or point PUZZLE_LLAMA_NCCL (or NCCL_HOME) at it; `pip install nvidia-nccl-cu12` "
              "provides one that is found through Python");
}

}  // namespace pl::comm::nccl
