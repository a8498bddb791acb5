// The native Engine object: owns a backend and a LlamaModel, checks every argument on the JS thread,
// and runs forward / forwardBackward / step / generate as promise workers, one at a time.
#pragma once
#include <napi.h>

#include <memory>

#include "../comm/communicator.h"
#include "../model/backend.h"
#include "../model/llama.h"

namespace pl::addon {

struct EngineState {
  ~EngineState();
  // Stops sharing `comm` (the communicator forgets this engine's stream).
  void detach();
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LlamaModel> model;
  // Why the engine runs where it does, when that is not what was asked for ('auto' without a GPU).
  std::string note;
  // Data parallelism: the communicator gradients are summed over, and the bucket size.
  std::shared_ptr<comm::Communicator> comm;
  size_t bucketBytes = 25u << 20;
};

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;

  // Called by workers on the JS thread when they finish.
  void jobDone();

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Parameters(const Napi::CallbackInfo& info);
  Napi::Value GetParameter(const Napi::CallbackInfo& info);
  Napi::Value SetParameter(const Napi::CallbackInfo& info);
  Napi::Value GetGradient(const Napi::CallbackInfo& info);
  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardBackward(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value DecodeStart(const Napi::CallbackInfo& info);
  Napi::Value DecodeNext(const Napi::CallbackInfo& info);
  Napi::Value DecodeReorder(const Napi::CallbackInfo& info);
  Napi::Value DecodeEnd(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Profile(const Napi::CallbackInfo& info);
  Napi::Value ActivationBytes(const Napi::CallbackInfo& info);
  Napi::Value AttachCommunicator(const Napi::CallbackInfo& info);
  Napi::Value BroadcastState(const Napi::CallbackInfo& info);
  Napi::Value ParameterSumSquares(const Napi::CallbackInfo& info);

  // Throws unless the engine is alive and idle.
  LlamaModel& usable(Napi::Env env, const std::string& where);
  const TensorInfo& tensorArg(const Napi::CallbackInfo& info, const std::string& where);
  void reportMemory(Napi::Env env);

  std::shared_ptr<EngineState> state_;
  bool busy_ = false;
  std::string busyWith_;
  int64_t reportedBytes_ = 0;
  uint64_t seed_ = 0;
  uint64_t calls_ = 0;
};

}  // namespace pl::addon
