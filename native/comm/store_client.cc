// StoreClient: one TCP connection to rank 0's rendezvous store, requests answered one at a time, every
// wait bounded by a deadline (poll), so that a silent or dead rank 0 becomes an error, never a hang.
#include "store_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "../core/error.h"
#include "store_protocol.h"

namespace pl::comm {

namespace {

using Clock = std::chrono::steady_clock;

void putU32(std::vector<char>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

void putI64(std::vector<char>& out, int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((u >> s) & 0xff));
}

void putBytes(std::vector<char>& out, const char* p, size_t n) {
  putU32(out, static_cast<uint32_t>(n));
  out.insert(out.end(), p, p + n);
}

void putString(std::vector<char>& out, const std::string& s) { putBytes(out, s.data(), s.size()); }

uint32_t getU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

int remainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// One non-blocking connect attempt bounded by the deadline; returns the socket or -1 with errno's text.
int connectOnce(const addrinfo* ai, Clock::time_point deadline, std::string* why) {
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    *why = std::strerror(errno);
    return -1;
  }
  const int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, std::max(1, remainingMs(deadline)));
    int err = ready == 0 ? ETIMEDOUT : errno;
    if (ready == 1) {
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    rc = ready == 1 && err == 0 ? 0 : -1;
    errno = err;
  }
  if (rc != 0) {
    *why = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

StoreClient::StoreClient(const StoreAddress& address, int rank, int worldSize, int timeoutMs)
    : address_(address), timeoutMs_(timeoutMs) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(address.port);
  const int gai = getaddrinfo(address.host.c_str(), port.c_str(), &hints, &list);
  if (gai != 0) throw Error(where() + ": cannot resolve '" + address.host + "': " + gai_strerror(gai));
  std::string why = "no address";
  // Rank 0 may not listen yet: retry until the deadline, backing off up to half a second.
  for (int attempt = 0; fd_ < 0; ++attempt) {
    for (const addrinfo* ai = list; ai && fd_ < 0; ai = ai->ai_next) fd_ = connectOnce(ai, deadline, &why);
    if (fd_ >= 0 || remainingMs(deadline) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(500, 20 << std::min(attempt, 5))));
  }
  freeaddrinfo(list);
  if (fd_ < 0)
    throw Error(where() + " did not accept a connection within " + std::to_string(timeoutMs) + " ms (" + why +
                "); is rank 0 running?");
  std::vector<char> args;
  putBytes(args, store::kMagic, sizeof store::kMagic - 1);
  putU32(args, store::kVersion);
  putU32(args, static_cast<uint32_t>(worldSize));
  putU32(args, static_cast<uint32_t>(rank));
  putString(args, address.token);
  args.push_back(static_cast<char>(store::kHelper));
  Reply r;
  try {
    r = call(store::kHello, args, 0);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  if (r.status != store::kOk) {
    ::close(fd_);
    fd_ = -1;
    throw Error(where() + " refused rank " + std::to_string(rank) + ": " + std::string(r.payload.begin(), r.payload.end()));
  }
}

StoreClient::~StoreClient() {
  if (fd_ >= 0) ::close(fd_);
}

std::string StoreClient::where() const { return "the rendezvous at " + address_.host + ":" + std::to_string(address_.port); }

void StoreClient::sendAll(const char* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    pollfd pf{fd_, POLLOUT, 0};
    const int rc = ::poll(&pf, 1, remainingMs(deadline));
    if (rc == 0) throw Error(where() + " did not take a request in time");
    if (rc < 0 && errno == EINTR) continue;
    const ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (k <= 0) throw Error(where() + " is gone (" + std::strerror(errno) + "): rank 0 has probably exited");
    p += k;
    n -= static_cast<size_t>(k);
  }
}

void StoreClient::recvAll(char* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    pollfd pf{fd_, POLLIN, 0};
    const int rc = ::poll(&pf, 1, remainingMs(deadline));
    if (rc == 0) throw Error(where() + " did not answer in time: rank 0 may be stuck");
    if (rc < 0 && errno == EINTR) continue;
    const ssize_t k = ::recv(fd_, p, n, 0);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (k == 0) throw Error(where() + " closed the connection: rank 0 has probably exited");
    if (k < 0) throw Error(where() + ": " + std::strerror(errno));
    p += k;
    n -= static_cast<size_t>(k);
  }
}

StoreClient::Reply StoreClient::call(uint8_t op, const std::vector<char>& args, int waitMs) {
  // The server answers a waiting GET/WAIT by its own timeout; allow it that long plus the usual margin.
  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(waitMs) + timeoutMs_ + 5000);
  const uint32_t id = nextId_++;
  std::vector<char> frame;
  putU32(frame, static_cast<uint32_t>(5 + args.size()));
  putU32(frame, id);
  frame.push_back(static_cast<char>(op));
  frame.insert(frame.end(), args.begin(), args.end());
  sendAll(frame.data(), frame.size(), deadline);
  char head[4];
  recvAll(head, 4, deadline);
  const uint32_t len = getU32(head);
  if (len < 5 || len > store::kMaxFrame) throw Error(where() + " sent a malformed frame (" + std::to_string(len) + " bytes)");
  std::vector<char> body(len);
  recvAll(body.data(), len, deadline);
  if (getU32(body.data()) != id) throw Error(where() + " answered a request it was not asked");
  Reply r;
  r.status = static_cast<uint8_t>(body[4]);
  if (r.status == store::kValue || r.status == store::kError) {
    if (len < 9 || getU32(body.data() + 5) != len - 9) throw Error(where() + " sent a malformed payload");
    r.payload.assign(body.begin() + 9, body.end());
  }
  return r;
}

void StoreClient::set(const std::string& key, const std::vector<char>& value) {
  std::vector<char> args;
  putString(args, key);
  putBytes(args, value.data(), value.size());
  Reply r = call(store::kSet, args, 0);
  if (r.status != store::kOk) throw Error(where() + ": set '" + key + "' failed: " + std::string(r.payload.begin(), r.payload.end()));
}

std::vector<char> StoreClient::get(const std::string& key, int timeoutMs) {
  std::vector<char> args;
  putString(args, key);
  putU32(args, static_cast<uint32_t>(timeoutMs));
  Reply r = call(store::kGet, args, timeoutMs);
  if (r.status == store::kTimeout)
    throw Error(where() + ": '" + key + "' did not appear within " + std::to_string(timeoutMs) + " ms (a rank is missing or stuck)");
  if (r.status != store::kValue) throw Error(where() + ": get '" + key + "' failed: " + std::string(r.payload.begin(), r.payload.end()));
  return r.payload;
}

void StoreClient::wait(const std::vector<std::string>& keys, int timeoutMs) {
  std::vector<char> args;
  putU32(args, static_cast<uint32_t>(keys.size()));
  for (const std::string& k : keys) putString(args, k);
  putU32(args, static_cast<uint32_t>(timeoutMs));
  Reply r = call(store::kWait, args, timeoutMs);
  if (r.status == store::kTimeout)
    throw Error(where() + ": " + std::to_string(keys.size()) + " key(s) from '" + (keys.empty() ? "" : keys[0]) +
                "'... did not all appear within " + std::to_string(timeoutMs) + " ms (a rank is missing or stuck)");
  if (r.status != store::kOk) throw Error(where() + ": wait failed: " + std::string(r.payload.begin(), r.payload.end()));
}

int64_t StoreClient::add(const std::string& key, int64_t delta) {
  std::vector<char> args;
  putString(args, key);
  putI64(args, delta);
  Reply r = call(store::kAdd, args, 0);
  if (r.status != store::kValue || r.payload.size() != 8)
    throw Error(where() + ": add '" + key + "' failed: " + std::string(r.payload.begin(), r.payload.end()));
  uint64_t u = 0;
  for (char c : r.payload) u = (u << 8) | static_cast<unsigned char>(c);
  return static_cast<int64_t>(u);
}

}  // namespace pl::comm
