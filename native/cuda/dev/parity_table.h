// The C++ reader of the parity table native/cuda/parity.tsv for the harness check_backend.cc: the same rules and bound as lib/engine/parity-table.ts.
#pragma once

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace pl::parity {

// One row: the tolerance of one output tensor of one op on one arithmetic path (fp32, bf16, exact).
struct Rule {
  std::string op, tensor, path;
  double atolAbs = 0, atolSqrtK = 0, atolMaxRef = 0, rtol = 0;
  std::string source;  // FILE:LINE

  // atol = atol_abs + atol_sqrtK·sqrtK + atol_maxref·maxRef (sqrtK: sqrt(K)·rms(A)·rms(B); maxRef: max|want|).
  double atol(double sqrtK, double maxRef) const { return atolAbs + atolSqrtK * sqrtK + atolMaxRef * maxRef; }
};

// |got − want| <= atol + rtol·|want|; a non-finite got fails unless it equals want.
inline bool withinBound(double got, double want, double atol, double rtol) {
  if (got == want) return true;
  if (!std::isfinite(want)) return false;
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

class Table {
 public:
  static constexpr const char* kColumns[7] = {"op", "tensor", "path", "atol_abs", "atol_sqrtK", "atol_maxref", "rtol"};

  // Parses the text; a malformed line throws std::runtime_error naming source:LINE and the field.
  static Table parse(const std::string& text, const std::string& source) {
    Table t;
    t.file_ = source;
    std::istringstream in(text);
    std::string line;
    int lineNo = 0;
    bool header = false;
    std::map<std::string, int> seen;
    while (std::getline(in, line)) {
      ++lineNo;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (blank(line) || line[0] == '#') continue;
      const std::string where = source + ":" + std::to_string(lineNo);
      const std::vector<std::string> f = split(line);
      if (!header) {
        bool ok = f.size() == 7;
        for (size_t j = 0; ok && j < 7; ++j) ok = f[j] == kColumns[j];
        if (!ok) throw std::runtime_error(where + ": the header must be the 7 tab-separated columns 'op' 'tensor' 'path' "
                                          "'atol_abs' 'atol_sqrtK' 'atol_maxref' 'rtol', got '" + line + "'");
        header = true;
        continue;
      }
      if (f.size() != 7)
        throw std::runtime_error(where + ": " + std::to_string(f.size()) +
                                 " tab-separated fields, want 7 (op, tensor, path, atol_abs, atol_sqrtK, atol_maxref, rtol)");
      if (!isName(f[0])) throw std::runtime_error(where + ": field op: '" + f[0] + "' is not a name");
      if (!isName(f[1])) throw std::runtime_error(where + ": field tensor: '" + f[1] + "' is not a name");
      if (f[2] != "fp32" && f[2] != "bf16" && f[2] != "exact")
        throw std::runtime_error(where + ": field path: '" + f[2] + "' must be one of fp32, bf16, exact");
      double v[4];
      for (int j = 0; j < 4; ++j) {
        const std::string& s = f[3 + j];
        const std::string column = kColumns[3 + j];
        if (!isNumber(s))
          throw std::runtime_error(where + ": field " + column + ": '" + s + "' is not a non-negative decimal number");
        v[j] = std::strtod(s.c_str(), nullptr);
        if (!std::isfinite(v[j])) throw std::runtime_error(where + ": field " + column + ": '" + s + "' is not finite");
        if (f[2] == "exact" && v[j] != 0.0)
          throw std::runtime_error(where + ": field " + column + ": an exact row has no tolerance (must be 0), got '" + s + "'");
      }
      const std::string k = key(f[0], f[1], f[2]);
      const auto before = seen.find(k);
      if (before != seen.end())
        throw std::runtime_error(where + ": field op/tensor/path: '" + f[0] + " " + f[1] + " " + f[2] + "' repeats line " +
                                 std::to_string(before->second));
      seen[k] = lineNo;
      Rule r;
      r.op = f[0];
      r.tensor = f[1];
      r.path = f[2];
      r.atolAbs = v[0];
      r.atolSqrtK = v[1];
      r.atolMaxRef = v[2];
      r.rtol = v[3];
      r.source = where;
      t.rules_[k] = r;
    }
    if (!header) throw std::runtime_error(source + ": no header line (op, tensor, path, atol_abs, atol_sqrtK, atol_maxref, rtol)");
    return t;
  }

  static Table load(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read the parity table " + path);
    std::ostringstream s;
    s << f.rdbuf();
    return parse(s.str(), path);
  }

  // The row for (op, tensor, path); throws naming the file when there is none.
  const Rule& rule(const std::string& op, const std::string& tensor, const std::string& path) const {
    const auto it = rules_.find(key(op, tensor, path));
    if (it == rules_.end())
      throw std::runtime_error(file_ + ": no row for op '" + op + "', tensor '" + tensor + "', path '" + path + "'");
    return it->second;
  }

  size_t size() const { return rules_.size(); }

 private:
  static std::string key(const std::string& op, const std::string& tensor, const std::string& path) {
    return op + "\t" + tensor + "\t" + path;
  }
  static bool blank(const std::string& s) {
    for (char c : s)
      if (!std::isspace(static_cast<unsigned char>(c))) return false;
    return true;
  }
  static std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> out(1);
    for (char c : line) {
      if (c == '\t') out.emplace_back();
      else out.back() += c;
    }
    return out;
  }
  // [A-Za-z][A-Za-z0-9_.-]*
  static bool isName(const std::string& s) {
    if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
    for (char c : s)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
    return true;
  }
  // (\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?
  static bool isNumber(const std::string& s) {
    size_t i = 0, digits = 0;
    auto isDigit = [&](size_t j) { return j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])); };
    while (isDigit(i)) ++i, ++digits;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (isDigit(i)) ++i, ++digits;
    }
    if (digits == 0) return false;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (!isDigit(i)) return false;
      while (isDigit(i)) ++i;
    }
    return i == s.size();
  }

  std::string file_;
  std::map<std::string, Rule> rules_;
};

}  // namespace pl::parity
