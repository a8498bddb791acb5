// Promise-returning background work (sharp's baton pattern): a job's inputs are copied into plain C++
// members on the JS thread, Run() executes on a libuv worker without touching N-API, progress crosses
// back through a queue, and an abort flag (shared with an AbortFlag object) can stop it between units.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <string>

#include "../core/error.h"

namespace pl::addon {

struct ProgressEvent {
  int done = 0;
  int total = 0;
};

class PromiseWorker : public Napi::AsyncProgressQueueWorker<ProgressEvent> {
 public:
  PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncProgressQueueWorker<ProgressEvent>(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }
  void SetProgressCallback(Napi::Function fn) { onProgress_ = Napi::Persistent(fn); }
  void SetAbortFlag(std::shared_ptr<std::atomic<bool>> flag) { abort_ = std::move(flag); }

 protected:
  virtual void Run(const ExecutionProgress& progress) = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;
  // Runs on the JS thread after success or failure (bookkeeping such as clearing a busy flag).
  virtual void Finish() {}
  const std::atomic<bool>* abortFlag() const { return abort_.get(); }
  bool wantsProgress() const { return !onProgress_.IsEmpty(); }

  void Execute(const ExecutionProgress& progress) override {
    try {
      if (abort_ && abort_->load()) throw Aborted();
      Run(progress);
    } catch (const Aborted&) {
      aborted_ = true;
      SetError("The operation was aborted");
    } catch (const std::bad_alloc&) {
      SetError("out of memory");
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Finish();
    Napi::Env env = Env();
    try {
      deferred_.Resolve(Result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error& e) override {
    Finish();
    Napi::Value err = e.Value();
    if (aborted_) err.As<Napi::Object>().Set("name", "AbortError");
    deferred_.Reject(err);
  }

  void OnProgress(const ProgressEvent* data, size_t count) override {
    if (onProgress_.IsEmpty() || count == 0) return;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      const ProgressEvent& last = data[count - 1];
      onProgress_.Call({Napi::Number::New(env, last.done), Napi::Number::New(env, last.total)});
    } catch (const Napi::Error&) {
      // A throwing progress callback must not take the job down; the error is dropped.
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference onProgress_;
  std::shared_ptr<std::atomic<bool>> abort_;
  bool aborted_ = false;
};

}  // namespace pl::addon
