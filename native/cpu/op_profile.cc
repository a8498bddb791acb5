// OpProfile: per-name totals of the CPU backend's op spans and their report (see op_profile.h).
#include "op_profile.h"

#include <algorithm>
#include <cstdio>
#include <vector>

namespace pl::cpu {

void OpProfile::add(const std::string& name, int64_t ns, double flops, double bytes) {
  Total& t = totals_[name];
  t.ns += ns;
  ++t.calls;
  t.flops += flops;
  t.bytes += bytes;
}

std::string OpProfile::report() const {
  std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  double all = 0.0, allFlops = 0.0;
  for (const auto& r : rows) {
    all += static_cast<double>(r.second.ns);
    allFlops += r.second.flops;
  }
  std::string out;
  char line[320];
  for (const auto& r : rows) {
    const double ns = static_cast<double>(r.second.ns);
    const double ms = ns * 1e-6;
    std::snprintf(line, sizeof line, "%-44s %10.3f ms %7ld calls %9.1f us/call %5.1f%%", r.first.c_str(), ms,
                  r.second.calls, 1e-3 * ns / static_cast<double>(r.second.calls), all > 0 ? 100.0 * ns / all : 0.0);
    out += line;
    if (r.second.flops > 0 && ns > 0) {
      std::snprintf(line, sizeof line, " %8.1f GFLOP/s", r.second.flops / ns);
      out += line;
    }
    if (r.second.bytes > 0 && ns > 0) {
      std::snprintf(line, sizeof line, " %7.1f GB/s", r.second.bytes / ns);
      out += line;
    }
    out += '\n';
  }
  std::snprintf(line, sizeof line, "%-44s %10.3f ms", "total (op wall time)", all * 1e-6);
  out += line;
  if (allFlops > 0 && all > 0) {
    std::snprintf(line, sizeof line, " %46.1f GFLOP/s", allFlops / all);
    out += line;
  }
  out += '\n';
  return out;
}

}  // namespace pl::cpu
