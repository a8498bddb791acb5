// The AbortFlag class.
#include "abort_flag.h"

#include "addon_data.h"
#include "args.h"

namespace pl::addon {

Napi::Function AbortFlag::Define(Napi::Env env) {
  return DefineClass(env, "AbortFlag",
                     {InstanceMethod<&AbortFlag::Abort>("abort"), InstanceMethod<&AbortFlag::Aborted>("aborted")});
}

AbortFlag::AbortFlag(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<AbortFlag>(info), flag_(std::make_shared<std::atomic<bool>>(false)) {}

Napi::Value AbortFlag::Abort(const Napi::CallbackInfo& info) {
  flag_->store(true);
  return info.Env().Undefined();
}

Napi::Value AbortFlag::Aborted(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag_->load()); }

std::shared_ptr<std::atomic<bool>> AbortFlag::From(const Napi::Object& options, const std::string& where) {
  Napi::Env env = options.Env();
  Napi::Value v = options.Get("abort");
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  AddonData* data = env.GetInstanceData<AddonData>();
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data->abortFlagClass.Value()))
    throwType(env, where + "abort must be an AbortFlag (from createAbortFlag()), got " + describe(v));
  return Napi::ObjectWrap<AbortFlag>::Unwrap(v.As<Napi::Object>())->flag();
}

}  // namespace pl::addon
