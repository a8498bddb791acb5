// A blocking client of the rendezvous store (store_protocol.h) for native code: the Gloo and NCCL
// communicators exchange their bootstrap addresses through it from a worker thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace pl::comm {

struct StoreAddress {
  std::string host;   // rank 0's MASTER_ADDR (an address or a host name)
  int port = 0;
  std::string token;  // the shared secret, when the run has one
};

class StoreClient {
 public:
  // Connects (retrying until timeoutMs: rank 0 may not be listening yet) and says HELLO as a helper of
  // `rank` in a world of `worldSize`. Throws pl::Error naming the address and what went wrong.
  StoreClient(const StoreAddress& address, int rank, int worldSize, int timeoutMs);
  ~StoreClient();
  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  void set(const std::string& key, const std::vector<char>& value);
  // Waits up to timeoutMs for the key; throws when it does not come.
  std::vector<char> get(const std::string& key, int timeoutMs);
  void wait(const std::vector<std::string>& keys, int timeoutMs);
  int64_t add(const std::string& key, int64_t delta);
  int timeoutMs() const { return timeoutMs_; }
  std::string where() const;  // "the rendezvous at host:port"

 private:
  struct Reply {
    uint8_t status = 0;
    std::vector<char> payload;
  };
  Reply call(uint8_t op, const std::vector<char>& args, int waitMs);
  void sendAll(const char* p, size_t n, std::chrono::steady_clock::time_point deadline);
  void recvAll(char* p, size_t n, std::chrono::steady_clock::time_point deadline);

  StoreAddress address_;
  int fd_ = -1;
  int timeoutMs_ = 0;
  uint32_t nextId_ = 1;
};

}  // namespace pl::comm
