// The slice of NCCL's C API the NCCL communicator calls, declared here (so that building needs no NCCL
// headers) and bound at run time with dlopen from the first candidate library that loads. The values are
// NCCL 2.x's (nccl.h): data types, reduction ops and result codes have been stable since NCCL 2.10.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

struct CUstream_st;

namespace pl::comm::nccl {

struct Comm;  // ncclComm (opaque)
using CommHandle = Comm*;
struct UniqueId {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
};

enum Result : int { kSuccess = 0, kInProgress = 7 };
enum DataType : int { kUint8 = 1, kFloat32 = 7, kBfloat16 = 9 };
enum RedOp : int { kSum = 0, kAvg = 4 };

struct Api {
  std::string path;  // the library that loaded
  int version = 0;   // ncclGetVersion's code, e.g. 22703 for 2.27.3
  int (*getVersion)(int*) = nullptr;
  int (*getUniqueId)(UniqueId*) = nullptr;
  int (*commInitRank)(CommHandle*, int, UniqueId, int) = nullptr;
  int (*commDestroy)(CommHandle) = nullptr;
  int (*commAbort)(CommHandle) = nullptr;
  int (*commGetAsyncError)(CommHandle, int*) = nullptr;
  const char* (*getErrorString)(int) = nullptr;
  const char* (*getLastError)(CommHandle) = nullptr;  // NCCL >= 2.13; null before
  int (*allReduce)(const void*, void*, size_t, int, int, CommHandle, CUstream_st*) = nullptr;
  int (*broadcast)(const void*, void*, size_t, int, int, CommHandle, CUstream_st*) = nullptr;
  int (*allGather)(const void*, void*, size_t, int, CommHandle, CUstream_st*) = nullptr;
  std::string versionText() const;  // "2.27.3"
};

// The process's NCCL, loaded on first use from the first of `candidates` that dlopen accepts and that has
// every symbol above. Throws pl::Error listing each candidate and why it failed.
const Api& load(const std::vector<std::string>& candidates);

}  // namespace pl::comm::nccl
