// Per-op GPU time of a CUDA backend (engine.profile()): CUDA events recorded around each op on the
// backend's stream, folded into per-name totals once the stream has been waited for. Off unless asked:
// an event pair costs a few microseconds of host time per op.
#pragma once
#include <cuda_runtime_api.h>

#include <map>
#include <string>
#include <vector>

namespace pl::cuda {

class OpProfile {
 public:
  explicit OpProfile(cudaStream_t stream) : stream_(stream) {}
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  void begin(const char* name);  // `name` must outlive the profile (a string literal)
  void end();
  // Folds every recorded pair into the totals; call only after the stream has been synchronized.
  void harvest();
  // One line per op name, the largest total first: total ms, calls, mean us, share of the profiled time.
  std::string report() const;

 private:
  struct Pending {
    const char* name;
    cudaEvent_t start, stop;
  };
  struct Total {
    double ms = 0.0;
    long calls = 0;
  };
  cudaEvent_t event();

  cudaStream_t stream_;
  std::vector<Pending> pending_;
  std::vector<cudaEvent_t> free_;
  std::map<std::string, Total> totals_;
};

// Times the op of its scope when a profile is given (null: nothing happens).
class ProfileScope {
 public:
  ProfileScope(OpProfile* profile, const char* name) : profile_(profile) {
    if (profile_) profile_->begin(name);
  }
  ~ProfileScope() {
    if (profile_) profile_->end();
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  OpProfile* profile_;
};

}  // namespace pl::cuda
