// CommunicatorWrap: the N-API face of native/comm. `createCommunicator(options)` connects one rank in a
// worker (rendezvous through the store, Gloo's mesh or NCCL's init) and resolves to this object; its
// collectives on host typed arrays return promises and run one at a time. An engine shares the
// communicator (attachCommunicator) for its gradient all-reduce and state broadcast.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "../comm/communicator.h"

namespace pl::addon {

class CommunicatorWrap : public Napi::ObjectWrap<CommunicatorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  // createCommunicator(options) -> Promise<NativeCommunicator>
  static Napi::Value Create(const Napi::CallbackInfo& info);
  explicit CommunicatorWrap(const Napi::CallbackInfo& info);

  // The communicator of a JS value that is a NativeCommunicator (throws naming `where` otherwise, or
  // when it was closed).
  static std::shared_ptr<comm::Communicator> From(Napi::Env env, const Napi::Value& v, const std::string& where);
  void jobDone() { busy_ = false; }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value AllReduce(const Napi::CallbackInfo& info);
  Napi::Value Broadcast(const Napi::CallbackInfo& info);
  Napi::Value AllGather(const Napi::CallbackInfo& info);
  Napi::Value Barrier(const Napi::CallbackInfo& info);
  Napi::Value TimeAllReduce(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  comm::Communicator& usable(Napi::Env env, const std::string& where);

  std::shared_ptr<comm::Communicator> comm_;
  bool busy_ = false;
};

}  // namespace pl::addon
