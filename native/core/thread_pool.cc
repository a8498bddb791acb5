// The persistent thread pool: a generation counter wakes workers, who spin briefly (yielding the core now
// and then, so an oversubscribed machine runs whoever has work) before sleeping; every participant, the
// caller included, claims chunks from one atomic counter until none is left.
#include "thread_pool.h"

#include <algorithm>

namespace pl {

namespace {
thread_local bool tlsInsidePool = false;
constexpr int kSpinIterations = 20000;

// One wait step of a spin: a pause, and every 256th a yield of the core.
inline void spinPause(int spins) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
  if ((spins & 255) == 255) std::this_thread::yield();
}
}  // namespace

ThreadPool::ThreadPool(int threads) : size_(std::max(1, threads)) {
  for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i] { workerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::workerLoop(int index) {
  tlsInsidePool = true;
  uint64_t seen = 0;
  for (;;) {
    // Spin a little: kernels come in quick succession during a training step.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) spinPause(++spins);
    const std::function<void(int)>* job = nullptr;
    int participants = 0;
    uint64_t gen = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
      seen = gen = generation_.load(std::memory_order_acquire);
      job = job_;
      participants = participants_;
    }
    (void)index;
    if (job) runSlots(gen, *job, participants);
  }
}

void ThreadPool::runSlots(uint64_t gen, const std::function<void(int)>& job, int participants) {
  for (;;) {
    uint64_t v = claim_.load(std::memory_order_acquire);
    int slot;
    do {
      if ((v >> 32) != (gen & 0xffffffffu) || static_cast<int>(v & 0xffffffffu) >= participants) return;
      slot = static_cast<int>(v & 0xffffffffu);
    } while (!claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire));
    try {
      job(slot);
    } catch (...) {
      std::lock_guard<std::mutex> lock(errorMutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }
}

void ThreadPool::dispatch(int participants, const std::function<void(int)>& job) {
  if (participants <= 1 || tlsInsidePool || workers_.empty()) {
    for (int t = 0; t < participants; ++t) job(t);
    return;
  }
  std::lock_guard<std::mutex> caller(callerMutex_);
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &job;
    participants_ = participants;
    pending_.store(participants, std::memory_order_release);
    error_ = nullptr;
    gen = generation_.fetch_add(1, std::memory_order_acq_rel) + 1;
    claim_.store((gen & 0xffffffffu) << 32, std::memory_order_release);
  }
  wake_.notify_all();
  tlsInsidePool = true;
  runSlots(gen, job, participants);  // the caller works too, and takes every slot nobody else has
  tlsInsidePool = false;
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0 && spins < kSpinIterations) spinPause(++spins);
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = nullptr;  // a worker waking after this region finds nothing to run
  }
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::parallelFor(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  const int t = static_cast<int>(std::min<int64_t>(size_ == 1 ? 1 : static_cast<int64_t>(size_) * kChunksPerThread, n));
  std::function<void(int)> job = [&](int i) {
    const int64_t begin = n * i / t, end = n * (i + 1) / t;
    if (begin < end) fn(begin, end, i);
  };
  dispatch(t, job);
}

void ThreadPool::onEachThread(const std::function<void(int)>& fn) { dispatch(size_, fn); }

}  // namespace pl
