// OpProfile: CUDA events around the backend's ops, totals per op name (see op_profile.h).
#include "op_profile.h"

#include <algorithm>
#include <cstdio>

#include "common.cuh"

namespace pl::cuda {

OpProfile::~OpProfile() {
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.stop);
  }
  for (cudaEvent_t e : free_) cudaEventDestroy(e);
}

cudaEvent_t OpProfile::event() {
  if (!free_.empty()) {
    cudaEvent_t e = free_.back();
    free_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  checkCuda(cudaEventCreate(&e), "cudaEventCreate (op profile)");
  return e;
}

void OpProfile::begin(const char* name) {
  Pending p{name, event(), nullptr};
  checkCuda(cudaEventRecord(p.start, stream_), "cudaEventRecord (op profile)");
  pending_.push_back(p);
}

void OpProfile::end() {
  if (pending_.empty() || pending_.back().stop) return;
  cudaEvent_t stop = event();
  if (cudaEventRecord(stop, stream_) != cudaSuccess) {
    cudaGetLastError();
    free_.push_back(stop);
    return;
  }
  pending_.back().stop = stop;
}

void OpProfile::harvest() {
  for (const Pending& p : pending_) {
    float ms = 0.0f;
    if (p.stop && cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) {
      Total& t = totals_[p.name];
      t.ms += ms;
      ++t.calls;
    } else {
      cudaGetLastError();
    }
    free_.push_back(p.start);
    if (p.stop) free_.push_back(p.stop);
  }
  pending_.clear();
}

std::string OpProfile::report() const {
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double all = 0.0;
  for (const auto& r : rows) all += r.second.ms;
  std::string out;
  char line[256];
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "%-44s %10.3f ms %7ld calls %9.1f us/call %5.1f%%\n", r.first.c_str(),
                  r.second.ms, r.second.calls, 1e3 * r.second.ms / double(r.second.calls),
                  all > 0 ? 100.0 * r.second.ms / all : 0.0);
    out += line;
  }
  std::snprintf(line, sizeof line, "%-44s %10.3f ms\n", "total (op time on the stream)", all);
  out += line;
  return out;
}

}  // namespace pl::cuda
