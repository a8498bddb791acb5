// The one exception type native code throws; the addon turns it into a JS Error with the same message.
#pragma once
#include <stdexcept>
#include <string>

namespace pl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Thrown by long-running work when its abort flag was raised; the addon rejects with an AbortError.
class Aborted : public std::runtime_error {
 public:
  Aborted() : std::runtime_error("the operation was aborted") {}
};

}  // namespace pl

#define PL_CHECK(cond, msg)                 \
  do {                                      \
    if (!(cond)) throw ::pl::Error((msg));  \
  } while (0)
