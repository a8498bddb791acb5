// What CUDA devices this process can see; compiled only into the CUDA build.
#pragma once
#include <string>
#include <vector>

namespace pl::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0;
  int minor = 0;
  size_t totalMemory = 0;
  int multiprocessors = 0;
};

// Lists visible devices. An absent driver or no device gives an empty list and a reason, never a throw.
std::vector<DeviceInfo> listDevices(std::string* whyNone);
int runtimeVersion();

}  // namespace pl::cuda
