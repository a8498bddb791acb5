// Argument checks for the N-API surface: each reads one field and throws a JS TypeError/RangeError that
// names the call, the field and the value at fault (`forward(): options.batch must be ...`).
#pragma once
#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pl::addon {

[[noreturn]] void throwType(Napi::Env env, const std::string& message);
[[noreturn]] void throwRange(Napi::Env env, const std::string& message);
std::string describe(const Napi::Value& v);

// info[i] as an object; an absent/undefined one gives an empty object when optional.
Napi::Object objectArg(const Napi::CallbackInfo& info, size_t i, const std::string& where, bool optional);
bool has(const Napi::Object& o, const char* key);

int64_t intField(const Napi::Object& o, const char* key, const std::string& where, int64_t lo, int64_t hi,
                 std::optional<int64_t> fallback = std::nullopt);
double numberField(const Napi::Object& o, const char* key, const std::string& where, double lo, double hi,
                   std::optional<double> fallback = std::nullopt);
bool boolField(const Napi::Object& o, const char* key, const std::string& where, bool fallback);
std::string stringField(const Napi::Object& o, const char* key, const std::string& where,
                        std::optional<std::string> fallback = std::nullopt);

// A Float32Array / Int32Array with exactly `expected` elements (any length when expected is SIZE_MAX).
Napi::Float32Array f32Arg(Napi::Env env, const Napi::Value& v, const std::string& where, size_t expected);
Napi::Int32Array i32Arg(Napi::Env env, const Napi::Value& v, const std::string& where, size_t expected);

Napi::Float32Array newF32(Napi::Env env, size_t n, const float* src = nullptr);
Napi::Int32Array newI32(Napi::Env env, size_t n, const int32_t* src = nullptr);

// Checks token ids are in [0, vocab); names the first bad one.
void checkTokens(Napi::Env env, const int32_t* tokens, size_t n, int vocab, const std::string& where,
                 bool allowIgnore);

}  // namespace pl::addon
