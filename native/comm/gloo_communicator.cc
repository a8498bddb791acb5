// The Gloo communicator (the CPU backend's): a full mesh of TCP pairs set up through the rendezvous
// store, ring all-reduce (the same bits on every rank) on a worker thread of its own so that gradient
// buckets reduce while the backward pass goes on, and every collective bounded by the run's timeout.
// Compiled in when the build finds Gloo's headers (Debian's libgloo-dev); otherwise creating one throws.
#include "communicator.h"

#include "../core/error.h"

#ifdef PUZZLE_LLAMA_GLOO
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "../core/bf16.h"
#endif

namespace pl::comm {

#ifndef PUZZLE_LLAMA_GLOO

bool glooAvailable() { return false; }

std::unique_ptr<Communicator> createGlooCommunicator(const CommOptions&) {
  throw Error(
      "multi-process training on the CPU needs Gloo, and this addon was built without it: install Debian's "
      "libgloo-dev (`sudo apt-get install libgloo-dev`), then rebuild the addon (`npm rebuild puzzle-llama` or "
      "`npx node-gyp rebuild` in the package)");
}

#else

bool glooAvailable() { return true; }

namespace {

// Gloo's rendezvous keys, kept under this communicator's prefix in our store.
class GlooStore : public gloo::rendezvous::Store {
 public:
  GlooStore(StoreClient& client, std::string prefix) : client_(client), prefix_(std::move(prefix)) {}
  void set(const std::string& key, const std::vector<char>& data) override { client_.set(prefix_ + key, data); }
  std::vector<char> get(const std::string& key) override { return client_.get(prefix_ + key, client_.timeoutMs()); }
  void wait(const std::vector<std::string>& keys) override { wait(keys, std::chrono::milliseconds(client_.timeoutMs())); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> full;
    for (const std::string& k : keys) full.push_back(prefix_ + k);
    client_.wait(full, static_cast<int>(timeout.count()));
  }

 private:
  StoreClient& client_;
  std::string prefix_;
};

std::string megabytes(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(const CommOptions& o) : Communicator(o.rank, o.size), timeout_(o.timeoutMs) {
    gloo::transport::tcp::attr attr;
    if (!o.iface.empty()) attr.iface = o.iface;
    else attr.hostname = o.hostname;
    try {
      device_ = gloo::transport::tcp::CreateDevice(attr);
    } catch (const std::exception& e) {
      throw Error("gloo: cannot listen on " + (o.iface.empty() ? "address " + o.hostname : "interface " + o.iface) +
                  ": " + e.what());
    }
    StoreClient client(o.store, o.rank, o.size, o.timeoutMs);
    GlooStore store(client, o.prefix);
    auto context = std::make_shared<gloo::rendezvous::Context>(o.rank, o.size);
    context->setTimeout(timeout_);
    try {
      context->connectFullMesh(store, device_);
    } catch (const std::exception& e) {
      throw Error("gloo rank " + std::to_string(o.rank) + " of " + std::to_string(o.size) +
                  ": connecting to the other ranks failed: " + e.what());
    }
    context_ = std::move(context);
    worker_ = std::thread([this] { workerLoop(); });
  }

  ~GlooCommunicator() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  std::string backend() const override { return "gloo"; }
  std::string library() const override { return "gloo (tcp transport)"; }
  bool deviceMemory() const override { return false; }
  void* allocate(size_t bytes) override { return ::operator new(bytes); }
  void release(void* p) override { ::operator delete(p); }

  void allReduce(void* data, size_t count, DType dtype, ReduceOp op) override {
    checkHealthy();
    if (count == 0) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(Job{data, count, dtype, op});
      ++pending_;
    }
    wake_.notify_all();
  }

  void wait() override {
    checkHealthy();
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [this] { return pending_ == 0; });
    if (!error_.empty()) {
      const std::string e = error_;
      lock.unlock();
      failWith(e);
    }
  }

  void broadcast(void* data, size_t bytes, int root) override {
    wait();
    if (bytes == 0 || size() == 1) return;
    try {
      gloo::BroadcastOptions o(context_);
      o.setOutput(static_cast<uint8_t*>(data), bytes);
      o.setRoot(root);
      o.setTag(nextTag());
      o.setTimeout(timeout_);
      gloo::broadcast(o);
    } catch (const std::exception& e) {
      fail("broadcast of " + megabytes(bytes) + " from rank " + std::to_string(root), e.what());
    }
  }

  std::vector<std::vector<uint8_t>> allGather(const std::vector<uint8_t>& mine) override {
    wait();
    const int n = size();
    std::vector<std::vector<uint8_t>> out(n);
    if (n == 1) {
      out[0] = mine;
      return out;
    }
    try {
      // Lengths first, then every rank's bytes padded to the longest.
      uint64_t len = mine.size();
      std::vector<uint64_t> lens(n);
      {
        gloo::AllgatherOptions o(context_);
        o.setInput(&len, 1);
        o.setOutput(lens.data(), lens.size());
        o.setTag(nextTag());
        o.setTimeout(timeout_);
        gloo::allgather(o);
      }
      uint64_t longest = 0;
      for (uint64_t l : lens) longest = std::max(longest, l);
      if (longest > 0) {
        std::vector<uint8_t> in(longest, 0), all(longest * n);
        std::memcpy(in.data(), mine.data(), mine.size());
        gloo::AllgatherOptions o(context_);
        o.setInput(in.data(), in.size());
        o.setOutput(all.data(), all.size());
        o.setTag(nextTag());
        o.setTimeout(timeout_);
        gloo::allgather(o);
        for (int r = 0; r < n; ++r) out[r].assign(all.begin() + r * longest, all.begin() + r * longest + lens[r]);
      }
    } catch (const std::exception& e) {
      fail("all-gather of " + std::to_string(mine.size()) + " bytes", e.what());
    }
    return out;
  }

  void barrier() override {
    wait();
    if (size() == 1) return;
    try {
      gloo::BarrierOptions o(context_);
      o.setTag(nextTag());
      o.setTimeout(timeout_);
      gloo::barrier(o);
    } catch (const std::exception& e) {
      fail("barrier", e.what());
    }
  }

 private:
  struct Job {
    void* data;
    size_t count;
    DType dtype;
    ReduceOp op;
  };

  uint32_t nextTag() { return tag_++ & 0x3fffffffu; }

  [[noreturn]] void failWith(const std::string& message) { fail(message.substr(0, message.find('\n')), message.substr(message.find('\n') + 1)); }

  void run(const Job& job) {
    if (size() > 1) {
      gloo::AllreduceOptions o(context_);
      if (job.dtype == DType::F32) {
        o.setOutput(static_cast<float*>(job.data), job.count);
        o.setReduceFunction([](void* c, const void* a, const void* b, size_t n) {
          float* z = static_cast<float*>(c);
          const float* x = static_cast<const float*>(a);
          const float* y = static_cast<const float*>(b);
          for (size_t i = 0; i < n; ++i) z[i] = x[i] + y[i];
        });
      } else {
        o.setOutput(static_cast<uint16_t*>(job.data), job.count);
        o.setReduceFunction([](void* c, const void* a, const void* b, size_t n) {
          uint16_t* z = static_cast<uint16_t*>(c);
          const uint16_t* x = static_cast<const uint16_t*>(a);
          const uint16_t* y = static_cast<const uint16_t*>(b);
          for (size_t i = 0; i < n; ++i) z[i] = toBf16(fromBf16(x[i]) + fromBf16(y[i]));
        });
      }
      o.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
      o.setTag(nextTag());
      o.setTimeout(timeout_);
      gloo::allreduce(o);
    }
    if (job.op == ReduceOp::Average) {
      const float s = 1.0f / static_cast<float>(size());
      if (job.dtype == DType::F32) {
        float* x = static_cast<float*>(job.data);
        for (size_t i = 0; i < job.count; ++i) x[i] *= s;
      } else {
        uint16_t* x = static_cast<uint16_t*>(job.data);
        for (size_t i = 0; i < job.count; ++i) x[i] = toBf16(fromBf16(x[i]) * s);
      }
    }
  }

  void workerLoop() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      Job job = queue_.front();
      queue_.pop_front();
      const bool skip = !error_.empty();  // after a failure the rest of the queue is dropped
      lock.unlock();
      std::string why;
      if (!skip) {
        try {
          run(job);
        } catch (const std::exception& e) {
          why = e.what();
        }
      }
      lock.lock();
      if (!why.empty() && error_.empty())
        error_ = "all-reduce of " + std::to_string(job.count) + " " + dtypeName(job.dtype) + " (" +
                 megabytes(job.count * dtypeBytes(job.dtype)) + ")\n" + why;
      if (--pending_ == 0) idle_.notify_all();
    }
  }

  std::chrono::milliseconds timeout_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t tag_ = 1;
  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<Job> queue_;
  size_t pending_ = 0;
  bool stopping_ = false;
  std::string error_;
};

}  // namespace

std::unique_ptr<Communicator> createGlooCommunicator(const CommOptions& options) {
  return std::make_unique<GlooCommunicator>(options);
}

#endif

}  // namespace pl::comm
