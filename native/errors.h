// Errors: every failure on the native side becomes a JS KilnError (lib/errors.ts) with a
// short code and libtorch's message without the C++ backtrace. Nothing may abort Node.
#pragma once
#include "pch.h"

namespace kiln {

/** An error raised by Kiln's own checks on the native side (bad handle, bad argument). */
struct KilnFailure : std::runtime_error {
  std::string code;
  KilnFailure(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

/** libtorch's message without the "Exception raised from ..." backtrace lines. */
std::string torchMessage(const c10::Error& e);

/** Throws `new KilnError(message, code)` in JS (constructor registered by lib/native.ts). */
void throwJs(napi_env env, const char* code, const std::string& message);

/** Converts the exception in flight (inside a catch block) into a pending JS exception. */
void throwCurrent(napi_env env);

/** In a catch block on a worker thread: records the exception's KilnError code and message. */
void captureCurrent(std::string& code, std::string& message);

/** Rejects a promise with `new KilnError(message, code)`. */
void rejectJs(napi_env env, napi_deferred deferred, const char* code, const std::string& message);

/** Same, for node-addon-api code: returns a Napi::Error to throw. */
Napi::Error toNapiError(Napi::Env env, const char* code, const std::string& message);

}  // namespace kiln

// Wraps a raw N-API callback body: any C++ exception becomes a JS KilnError, returns nullptr.
#define KILN_TRY try {
#define KILN_CATCH(env)          \
  }                              \
  catch (...) {                  \
    ::kiln::throwCurrent(env);   \
    return nullptr;              \
  }
