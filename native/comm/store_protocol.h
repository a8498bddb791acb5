// The rendezvous store's wire protocol (version 1), shared by this C++ client and lib/dist's TypeScript
// server and client; docs/ARCHITECTURE.md ("The rendezvous store") describes it in full.
//
// Every message is a frame: a big-endian u32 byte length, then that many bytes. A request is
// u32 id, u8 op, then the op's arguments; its response is u32 id (the same), u8 status, then a payload.
// Strings and byte strings are a u32 length and the bytes; integers are big-endian.
#pragma once
#include <cstdint>

namespace pl::comm::store {

constexpr uint32_t kVersion = 1;
constexpr char kMagic[] = "PZLLSTORE";  // HELLO's first argument (9 bytes, no terminator on the wire)
constexpr uint32_t kMaxFrame = 64u << 20;

enum Op : uint8_t {
  kHello = 1,  // bytes magic, u32 version, u32 worldSize, u32 rank, str token, u8 role -> OK | ERROR
  kSet = 2,    // str key, bytes value -> OK
  kGet = 3,    // str key, u32 timeoutMs -> VALUE bytes | TIMEOUT (waits for the key)
  kWait = 4,   // u32 n, n x str key, u32 timeoutMs -> OK | TIMEOUT
  kAdd = 5,    // str key, i64 delta -> VALUE (8 bytes, the new value)
  kPeers = 6,  // -> VALUE (u32 n, n x (u32 rank, u8 state, u32 ms since last heard))
  kPing = 7,   // -> OK (a member's heartbeat)
  kBye = 8,    // -> OK (a member leaves cleanly)
};

enum Status : uint8_t { kOk = 0, kValue = 1, kTimeout = 2, kError = 3 };

// HELLO's role: a member is a rank's one long-lived connection (its liveness); a helper (the native
// communicators' bootstrap) only reads and writes keys.
enum Role : uint8_t { kMember = 0, kHelper = 1 };

// PEERS' states.
enum PeerState : uint8_t { kNeverJoined = 0, kAlive = 1, kLeft = 2, kLost = 3 };

}  // namespace pl::comm::store
