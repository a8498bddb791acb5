// Counts the bytes a backend holds (allocations by pointer, plus growable buffers reported by size) and the
// most it has held: engine.info().allocatedBytes / peakAllocatedBytes, the honest number to put beside
// another framework's peak. Locked: the kernels API may share a CPU backend between jobs.
#pragma once
#include <algorithm>
#include <cstddef>
#include <mutex>
#include <unordered_map>

namespace pl {

class MemoryMeter {
 public:
  void add(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    sizes_[p] = bytes;
    grow(bytes);
  }
  void remove(const void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    current_ -= it->second;
    sizes_.erase(it);
  }
  // A buffer that is not tracked by pointer (a growable scratch) changing from `before` to `after` bytes.
  void resize(size_t before, size_t after) {
    std::lock_guard<std::mutex> lock(mutex_);
    current_ -= std::min(current_, before);
    grow(after);
  }
  size_t current() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
  }
  size_t peak() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }

 private:
  void grow(size_t bytes) {
    current_ += bytes;
    peak_ = std::max(peak_, current_);
  }
  mutable std::mutex mutex_;
  std::unordered_map<const void*, size_t> sizes_;
  size_t current_ = 0;
  size_t peak_ = 0;
};

}  // namespace pl
