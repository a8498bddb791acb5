// Per-op wall time of the CPU backend (engine.profile()): a steady-clock span around each op, folded into
// per-name totals with the op's FLOPs and bytes moved, so the report says where a step's time goes and how
// close each op runs to the machine's compute or memory limit. Off unless asked (a null profile costs a branch).
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace pl::cpu {

class OpProfile {
 public:
  // Adds one call of `name` that took `ns` nanoseconds and did `flops` floating-point operations over
  // `bytes` bytes of memory traffic (0 where not counted).
  void add(const std::string& name, int64_t ns, double flops, double bytes);
  // One line per op name, the largest total first: total ms, calls, us/call, share of the profiled time,
  // GFLOP/s and GB/s; then the total.
  std::string report() const;

 private:
  struct Total {
    int64_t ns = 0;
    long calls = 0;
    double flops = 0.0, bytes = 0.0;
  };
  std::map<std::string, Total> totals_;
};

// Times the op of its scope when a profile is given (null: nothing happens, not even the clock read).
class ProfileScope {
 public:
  ProfileScope(OpProfile* profile, const char* name, double flops = 0.0, double bytes = 0.0)
      : profile_(profile), name_(name), flops_(flops), bytes_(bytes) {
    if (profile_) start_ = std::chrono::steady_clock::now();
  }
  // A name built at run time (a GEMM's shape): `name` is only evaluated by callers when profiling.
  ProfileScope(OpProfile* profile, std::string name, double flops, double bytes)
      : profile_(profile), owned_(std::move(name)), flops_(flops), bytes_(bytes) {
    name_ = owned_.c_str();
    if (profile_) start_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() {
    if (!profile_) return;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_);
    profile_->add(name_, ns.count(), flops_, bytes_);
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  OpProfile* profile_;
  std::string owned_;
  const char* name_ = "";
  double flops_, bytes_;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace pl::cpu
