// Device discovery through the CUDA runtime (linked statically).
#include "device_info.h"

#include <cuda_runtime.h>

namespace pl::cuda {

std::vector<DeviceInfo> listDevices(std::string* whyNone) {
  std::vector<DeviceInfo> out;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (whyNone) *whyNone = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return out;
  }
  if (count == 0 && whyNone) *whyNone = "no CUDA device is visible";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    DeviceInfo d;
    d.index = i;
    d.name = prop.name;
    d.major = prop.major;
    d.minor = prop.minor;
    d.totalMemory = prop.totalGlobalMem;
    d.multiprocessors = prop.multiProcessorCount;
    out.push_back(d);
  }
  return out;
}

int runtimeVersion() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace pl::cuda
