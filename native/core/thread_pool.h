// A persistent thread pool: workers wait for work between calls, so a kernel pays microseconds,
// not a thread start, to go parallel. Work is split into fixed chunks, several per thread (chunk -> range
// is a pure function of the task count and the thread count), which keeps every result deterministic for a
// thread count; which thread runs a chunk is decided at run time by an atomic counter (the caller
// included), so a worker that the OS has not scheduled, or a core another process shares, costs at most a
// chunk: the threads that are running take the rest.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pl {

class ThreadPool {
 public:
  // `threads` counts the calling thread: a pool of 1 runs everything inline.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Calls fn(begin, end, chunk) over contiguous ranges that cover [0, n): chunk c gets
  // [c*n/T, (c+1)*n/T) where T = min(n, size * kChunksPerThread) (1 on a pool of one); each chunk runs
  // once, on whichever thread claims it next. Returns when every range is done. Called from inside a task,
  // it runs inline (no nested parallelism, no deadlock).
  static constexpr int kChunksPerThread = 4;
  void parallelFor(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Calls fn(slot) once for each slot in [0, size).
  void onEachThread(const std::function<void(int)>& fn);

 private:
  void workerLoop(int index);
  // Claims and runs slots of generation `gen` until none is left.
  void runSlots(uint64_t gen, const std::function<void(int)>& job, int participants);
  void dispatch(int participants, const std::function<void(int)>& job);

  int size_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::mutex callerMutex_;  // one parallel region at a time, whoever calls
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int)>* job_ = nullptr;
  int participants_ = 0;
  std::atomic<uint64_t> generation_{0};
  // (generation << 32) | next unclaimed slot: claiming checks the generation in the same atomic step,
  // so a worker that wakes late can never take a slot of a newer region.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> pending_{0};  // slots not yet finished
  bool stop_ = false;
  std::exception_ptr error_;
  std::mutex errorMutex_;
};

}  // namespace pl
