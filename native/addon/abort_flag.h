// AbortFlag: a native object holding an atomic flag; lib/engine wires an AbortSignal to its abort(),
// and workers that were handed it stop at their next check.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>

namespace pl::addon {

class AbortFlag : public Napi::ObjectWrap<AbortFlag> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit AbortFlag(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag() const { return flag_; }
  // The flag of options.abort when it is an AbortFlag; null when absent; throws when something else.
  static std::shared_ptr<std::atomic<bool>> From(const Napi::Object& options, const std::string& where);

 private:
  Napi::Value Abort(const Napi::CallbackInfo& info);
  Napi::Value Aborted(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag_;
};

}  // namespace pl::addon
