// Field readers and checks for the N-API surface.
#include "args.h"

#include <cmath>
#include <cstring>
#include <sstream>

namespace pl::addon {

void throwType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }
void throwRange(Napi::Env env, const std::string& message) { throw Napi::RangeError::New(env, message); }

std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
  if (v.IsNumber()) {
    std::ostringstream s;
    s << v.As<Napi::Number>().DoubleValue();
    return s.str();
  }
  if (v.IsString()) return "'" + v.As<Napi::String>().Utf8Value() + "'";
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_float32_array: return "a Float32Array";
      case napi_int32_array: return "an Int32Array";
      case napi_float64_array: return "a Float64Array";
      case napi_uint16_array: return "a Uint16Array";
      default: return "a typed array of another type";
    }
  }
  if (v.IsArray()) return "an array";
  if (v.IsFunction()) return "a function";
  return "an object";
}

Napi::Object objectArg(const Napi::CallbackInfo& info, size_t i, const std::string& where, bool optional) {
  Napi::Value v = info.Length() > i ? info[i] : info.Env().Undefined();
  if (v.IsUndefined() && optional) return Napi::Object::New(info.Env());
  if (!v.IsObject() || v.IsArray()) throwType(info.Env(), where + " must be an object, got " + describe(v));
  return v.As<Napi::Object>();
}

bool has(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

int64_t intField(const Napi::Object& o, const char* key, const std::string& where, int64_t lo, int64_t hi,
                 std::optional<int64_t> fallback) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get(key);
  if ((v.IsUndefined() || v.IsNull()) && fallback) return *fallback;
  const std::string field = where + key;
  if (!v.IsNumber()) throwType(env, field + " must be an integer, got " + describe(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d) throwType(env, field + " must be an integer, got " + describe(v));
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throwRange(env, field + " = " + describe(v) + " is out of range [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "]");
  return static_cast<int64_t>(d);
}

double numberField(const Napi::Object& o, const char* key, const std::string& where, double lo, double hi,
                   std::optional<double> fallback) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get(key);
  if ((v.IsUndefined() || v.IsNull()) && fallback) return *fallback;
  const std::string field = where + key;
  if (!v.IsNumber()) throwType(env, field + " must be a number, got " + describe(v));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (std::isnan(d)) throwRange(env, field + " must be a number, got NaN");
  if (d < lo || d > hi) {
    std::ostringstream s;
    s << field << " = " << describe(v) << " is out of range [" << lo << ", " << hi << "]";
    throwRange(env, s.str());
  }
  return d;
}

bool boolField(const Napi::Object& o, const char* key, const std::string& where, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throwType(o.Env(), where + key + " must be a boolean, got " + describe(v));
  return v.As<Napi::Boolean>().Value();
}

std::string stringField(const Napi::Object& o, const char* key, const std::string& where,
                        std::optional<std::string> fallback) {
  Napi::Value v = o.Get(key);
  if ((v.IsUndefined() || v.IsNull()) && fallback) return *fallback;
  if (!v.IsString()) throwType(o.Env(), where + key + " must be a string, got " + describe(v));
  return v.As<Napi::String>().Utf8Value();
}

Napi::Float32Array f32Arg(Napi::Env env, const Napi::Value& v, const std::string& where, size_t expected) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throwType(env, where + " must be a Float32Array, got " + describe(v));
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  if (expected != SIZE_MAX && a.ElementLength() != expected)
    throwRange(env, where + " has " + std::to_string(a.ElementLength()) + " elements, expected " +
                        std::to_string(expected));
  return a;
}

Napi::Int32Array i32Arg(Napi::Env env, const Napi::Value& v, const std::string& where, size_t expected) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throwType(env, where + " must be an Int32Array, got " + describe(v));
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  if (expected != SIZE_MAX && a.ElementLength() != expected)
    throwRange(env, where + " has " + std::to_string(a.ElementLength()) + " elements, expected " +
                        std::to_string(expected));
  return a;
}

Napi::Float32Array newF32(Napi::Env env, size_t n, const float* src) {
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  if (src && n) std::memcpy(a.Data(), src, n * sizeof(float));
  return a;
}

Napi::Int32Array newI32(Napi::Env env, size_t n, const int32_t* src) {
  Napi::Int32Array a = Napi::Int32Array::New(env, n);
  if (src && n) std::memcpy(a.Data(), src, n * sizeof(int32_t));
  return a;
}

void checkTokens(Napi::Env env, const int32_t* tokens, size_t n, int vocab, const std::string& where,
                 bool allowIgnore) {
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = tokens[i];
    if ((t < 0 || t >= vocab) && !(allowIgnore && t == -100))
      throwRange(env, where + "[" + std::to_string(i) + "] = " + std::to_string(t) + " is out of range [0, " +
                          std::to_string(vocab) + ")" + (allowIgnore ? " (or -100 to ignore)" : ""));
  }
}

}  // namespace pl::addon
