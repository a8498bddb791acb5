// The collectives data-parallel training needs, behind one interface: NCCL for the CUDA backend
// (nccl_communicator.cu, loaded at run time), Gloo for the CPU backend (gloo_communicator.cc). Buffers
// live where the engine's backend keeps its tensors: device memory for NCCL, host memory for Gloo.
// Failures throw pl::Error naming the rank and the operation; a communicator that failed once refuses
// every later call with the first error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "store_client.h"

namespace pl::comm {

enum class DType { F32, BF16 };
enum class ReduceOp { Sum, Average };

size_t dtypeBytes(DType d);
const char* dtypeName(DType d);
const char* reduceOpName(ReduceOp op);

struct CommOptions {
  int rank = 0;
  int size = 1;
  StoreAddress store;
  std::string prefix;   // the store keys' namespace: one per communicator of a run
  int timeoutMs = 300000;  // the connection and every collective fail after this long
  // Gloo: the address (or, when iface is set, the network interface) this rank listens on for its peers.
  std::string hostname = "127.0.0.1";
  std::string iface;
  // NCCL: the CUDA device, and libnccl.so.2 candidates to dlopen in order.
  int deviceIndex = 0;
  std::vector<std::string> ncclLibraries;
};

class Communicator {
 public:
  Communicator(int rank, int size) : rank_(rank), size_(size) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual std::string backend() const = 0;  // "gloo" | "nccl"
  // Which library, where from (NCCL: the path and version it loaded).
  virtual std::string library() const = 0;
  virtual bool deviceMemory() const = 0;

  // ---- on backend memory ------------------------------------------------------------------------
  // In place over `count` elements at `data`. Asynchronous: it starts after the compute work queued before
  // the call (the bound stream, for NCCL) and is complete when wait() returns; calls run in order.
  virtual void allReduce(void* data, size_t count, DType dtype, ReduceOp op) = 0;
  // Every collective started so far has completed, and compute queued afterwards is ordered after them.
  // Throws when one failed, or when one has not finished within the timeout (NCCL: it is aborted).
  virtual void wait() = 0;
  // Synchronous: `bytes` at `data` on every rank become root's.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // The compute stream (a cudaStream_t) of the engine on CUDA device `device` that collectives are ordered
  // against; throws when the communicator lives on another device. Host backends have none.
  virtual void bindStream(void* stream, int device) {
    (void)stream;
    (void)device;
  }
  // Forgets `stream` when it is the bound one (its engine is going away).
  virtual void unbindStream(void* stream) { (void)stream; }

  // ---- on host memory ---------------------------------------------------------------------------
  // Synchronous variants for small host buffers (NCCL stages them through device memory).
  virtual void allReduceHost(void* data, size_t count, DType dtype, ReduceOp op);
  virtual void broadcastHost(void* data, size_t bytes, int root);
  // Every rank's bytes, in rank order; each rank may give a different length.
  virtual std::vector<std::vector<uint8_t>> allGather(const std::vector<uint8_t>& mine) = 0;
  virtual void barrier() = 0;

  // Backend memory for benchmarks (timeAllReduce): allocated and freed by the communicator.
  virtual void* allocate(size_t bytes) = 0;
  virtual void release(void* p) = 0;

  // "gloo rank 1 of 2", as messages name this process.
  std::string who() const;

 protected:
  // Rethrows the first failure (a communicator that failed stays failed).
  void checkHealthy() const;
  // Records a failure of `operation` and throws it.
  [[noreturn]] void fail(const std::string& operation, const std::string& why);

 private:
  int rank_, size_;
  std::string failure_;
};

// Sums (or averages) bf16 / f32 `count` elements of b into a, in place (the reductions both backends use
// on the host: widen, add in fp32, round to nearest even).
void reduceInto(void* a, const void* b, size_t count, DType dtype);

bool glooAvailable();
// Connects this rank's Gloo context through the store: blocks until every rank has joined or the timeout
// passes. Throws, saying how to install it, in a build without Gloo.
std::unique_ptr<Communicator> createGlooCommunicator(const CommOptions& options);
// NCCL (CUDA builds): loads libnccl.so.2 from the first candidate that loads, exchanges the unique id
// through the store, and initializes on options.deviceIndex.
std::unique_ptr<Communicator> createNcclCommunicator(const CommOptions& options);

}  // namespace pl::comm
