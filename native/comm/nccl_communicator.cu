// The NCCL communicator (the CUDA backend's), built into the CUDA addon and bound to NCCL at run time
// (nccl_api.h). Collectives run on a stream of their own: each waits for an event recorded on the compute
// stream when it is started (so gradient buckets reduce while the backward pass goes on), and wait()
// polls its completion together with NCCL's asynchronous errors; a collective that has not finished
// within the timeout is aborted (ncclCommAbort) and becomes an error, never a hang.
#include <cuda_runtime.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "../core/error.h"
#include "communicator.h"
#include "nccl_api.h"

namespace pl::comm {

namespace {

using Clock = std::chrono::steady_clock;

std::string megabytes(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

void cudaOk(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string(what) + ": " + cudaGetErrorString(e));
}

class NcclCommunicator final : public Communicator {
 public:
  explicit NcclCommunicator(const CommOptions& o)
      : Communicator(o.rank, o.size), api_(nccl::load(o.ncclLibraries)), device_(o.deviceIndex), timeoutMs_(o.timeoutMs) {
    cudaOk(cudaSetDevice(device_), ("nccl: CUDA device " + std::to_string(device_)).c_str());
    StoreClient store(o.store, o.rank, o.size, o.timeoutMs);
    nccl::UniqueId id{};
    const std::string key = o.prefix + "nccl-id";
    if (o.rank == 0) {
      check(api_.getUniqueId(&id), "ncclGetUniqueId");
      store.set(key, std::vector<char>(id.internal, id.internal + sizeof id.internal));
    } else {
      const std::vector<char> v = store.get(key, o.timeoutMs);
      if (v.size() != sizeof id.internal) throw Error("nccl: the unique id in the store has " + std::to_string(v.size()) + " bytes");
      std::memcpy(id.internal, v.data(), v.size());
    }
    // ncclCommInitRank blocks until every rank calls it: meet in the store first, where waiting is bounded.
    store.set(o.prefix + "nccl-ready/" + std::to_string(o.rank), {'1'});
    std::vector<std::string> ready;
    for (int r = 0; r < o.size; ++r) ready.push_back(o.prefix + "nccl-ready/" + std::to_string(r));
    store.wait(ready, o.timeoutMs);
    check(api_.commInitRank(&comm_, o.size, id, o.rank), "ncclCommInitRank");
    cudaOk(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "nccl: cudaStreamCreate");
    cudaOk(cudaEventCreateWithFlags(&started_, cudaEventDisableTiming), "nccl: cudaEventCreate");
    cudaOk(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "nccl: cudaEventCreate");
  }

  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (comm_) (broken_ ? api_.commAbort : api_.commDestroy)(comm_);
    if (scratch_) cudaFree(scratch_);
    if (started_) cudaEventDestroy(started_);
    if (done_) cudaEventDestroy(done_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string backend() const override { return "nccl"; }
  std::string library() const override { return "NCCL " + api_.versionText() + " (" + api_.path + ")"; }
  bool deviceMemory() const override { return true; }

  void bindStream(void* stream, int device) override {
    if (device != device_)
      throw Error("this NCCL communicator lives on CUDA device " + std::to_string(device_) +
                  " but the engine runs on device " + std::to_string(device));
    compute_ = static_cast<cudaStream_t>(stream);
  }

  void unbindStream(void* stream) override {
    if (compute_ == static_cast<cudaStream_t>(stream)) compute_ = nullptr;
  }

  void* allocate(size_t bytes) override {
    cudaSetDevice(device_);
    void* p = nullptr;
    cudaOk(cudaMalloc(&p, bytes), "nccl: cudaMalloc");
    return p;
  }
  void release(void* p) override {
    cudaSetDevice(device_);
    cudaFree(p);
  }

  void allReduce(void* data, size_t count, DType dtype, ReduceOp op) override {
    checkHealthy();
    if (count == 0) return;
    const std::string what = "all-reduce of " + std::to_string(count) + " " + dtypeName(dtype) + " (" +
                             megabytes(count * dtypeBytes(dtype)) + ")";
    afterCompute(what);
    enqueued(api_.allReduce(data, data, count, ncclType(dtype), op == ReduceOp::Sum ? nccl::kSum : nccl::kAvg, comm_, stream_), what);
  }

  void wait() override {
    checkHealthy();
    if (!inFlight_) return;
    cudaSetDevice(device_);
    cudaOk(cudaEventRecord(done_, stream_), "nccl: cudaEventRecord");
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs_);
    for (;;) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) broke(lastOp_, std::string("CUDA: ") + cudaGetErrorString(q));
      int async = nccl::kSuccess;
      api_.commGetAsyncError(comm_, &async);
      if (async != nccl::kSuccess && async != nccl::kInProgress) broke(lastOp_, errorText(async));
      if (Clock::now() > deadline)
        broke(lastOp_, "it did not finish within " + std::to_string(timeoutMs_ / 1000) +
                           " s (a rank died or stopped answering); the communicator was aborted");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    inFlight_ = false;
    // Compute queued from now on is ordered after the collectives.
    if (compute_) cudaOk(cudaStreamWaitEvent(compute_, done_, 0), "nccl: cudaStreamWaitEvent");
  }

  void broadcast(void* data, size_t bytes, int root) override {
    checkHealthy();
    if (bytes == 0) return;
    const std::string what = "broadcast of " + megabytes(bytes) + " from rank " + std::to_string(root);
    afterCompute(what);
    enqueued(api_.broadcast(data, data, bytes, nccl::kUint8, root, comm_, stream_), what);
    wait();
  }

  void allReduceHost(void* data, size_t count, DType dtype, ReduceOp op) override {
    const size_t bytes = count * dtypeBytes(dtype);
    void* dev = staging(bytes);
    cudaOk(cudaMemcpyAsync(dev, data, bytes, cudaMemcpyHostToDevice, stream_), "nccl: staging copy");
    allReduce(dev, count, dtype, op);
    cudaOk(cudaMemcpyAsync(data, dev, bytes, cudaMemcpyDeviceToHost, stream_), "nccl: staging copy");
    wait();
  }

  void broadcastHost(void* data, size_t bytes, int root) override {
    void* dev = staging(bytes);
    cudaOk(cudaMemcpyAsync(dev, data, bytes, cudaMemcpyHostToDevice, stream_), "nccl: staging copy");
    broadcast(dev, bytes, root);
    cudaOk(cudaMemcpyAsync(data, dev, bytes, cudaMemcpyDeviceToHost, stream_), "nccl: staging copy");
    inFlight_ = true;
    wait();
  }

  std::vector<std::vector<uint8_t>> allGather(const std::vector<uint8_t>& mine) override {
    const int n = size();
    // Lengths first, then every rank's bytes padded to the longest, both through device staging.
    std::vector<uint64_t> lens(n);
    const uint64_t len = mine.size();
    gather(&len, sizeof len, lens.data(), "all-gather of lengths");
    uint64_t longest = 0;
    for (uint64_t l : lens) longest = std::max(longest, l);
    std::vector<std::vector<uint8_t>> out(n);
    if (longest == 0) return out;
    std::vector<uint8_t> in(longest, 0), all(longest * n);
    std::memcpy(in.data(), mine.data(), mine.size());
    gather(in.data(), longest, all.data(), "all-gather of " + std::to_string(mine.size()) + " bytes");
    for (int r = 0; r < n; ++r) out[r].assign(all.begin() + r * longest, all.begin() + r * longest + lens[r]);
    return out;
  }

  void barrier() override {
    float one = 1.0f;
    allReduceHost(&one, 1, DType::F32, ReduceOp::Sum);
  }

 private:
  static int ncclType(DType d) { return d == DType::F32 ? nccl::kFloat32 : nccl::kBfloat16; }

  std::string errorText(int r) const {
    std::string s = api_.getErrorString(r);
    if (api_.getLastError) {
      const char* last = api_.getLastError(comm_);
      if (last && *last) s += std::string(" (") + last + ")";
    }
    return s;
  }

  void check(int r, const char* what) {
    if (r != nccl::kSuccess) throw Error(std::string("nccl rank ") + std::to_string(rank()) + " of " + std::to_string(size()) + ": " + what + " failed: " + api_.getErrorString(r));
  }

  // The collective about to be queued starts after everything queued on the compute stream so far.
  void afterCompute(const std::string& what) {
    cudaSetDevice(device_);
    lastOp_ = what;
    cudaOk(cudaEventRecord(started_, compute_), "nccl: cudaEventRecord");
    cudaOk(cudaStreamWaitEvent(stream_, started_, 0), "nccl: cudaStreamWaitEvent");
  }

  void enqueued(int r, const std::string& what) {
    if (r != nccl::kSuccess && r != nccl::kInProgress) broke(what, errorText(r));
    inFlight_ = true;
  }

  [[noreturn]] void broke(const std::string& what, const std::string& why) {
    if (!broken_) {
      broken_ = true;
      api_.commAbort(comm_);
      comm_ = nullptr;
    }
    fail(what, why);
  }

  void* staging(size_t bytes) {
    checkHealthy();
    cudaSetDevice(device_);
    if (bytes > scratchBytes_) {
      if (scratch_) cudaFree(scratch_);
      scratch_ = nullptr;
      cudaOk(cudaMalloc(&scratch_, bytes), "nccl: cudaMalloc");
      scratchBytes_ = bytes;
    }
    return scratch_;
  }

  // Host bytes `bytes` per rank in, bytes * size() out, in rank order.
  void gather(const void* in, size_t bytes, void* out, const std::string& what) {
    char* dev = static_cast<char*>(staging(bytes * (size() + 1)));
    cudaOk(cudaMemcpyAsync(dev, in, bytes, cudaMemcpyHostToDevice, stream_), "nccl: staging copy");
    lastOp_ = what;
    enqueued(api_.allGather(dev, dev + bytes, bytes, nccl::kUint8, comm_, stream_), what);
    cudaOk(cudaMemcpyAsync(out, dev + bytes, bytes * size(), cudaMemcpyDeviceToHost, stream_), "nccl: staging copy");
    wait();
  }

  const nccl::Api& api_;
  int device_;
  int timeoutMs_;
  nccl::CommHandle comm_ = nullptr;
  cudaStream_t stream_ = nullptr;   // the collectives'
  cudaStream_t compute_ = nullptr;  // the engine's (null: the legacy default stream)
  cudaEvent_t started_ = nullptr, done_ = nullptr;
  bool inFlight_ = false;
  bool broken_ = false;
  std::string lastOp_;
  void* scratch_ = nullptr;
  size_t scratchBytes_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> createNcclCommunicator(const CommOptions& options) {
  return std::make_unique<NcclCommunicator>(options);
}

}  // namespace pl::comm
