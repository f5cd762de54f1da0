#include "errors.h"
#include "tensor.h"

namespace kiln {

std::string torchMessage(const c10::Error& e) {
  std::string msg = e.what_without_backtrace();
  // Older libtorch versions append "Exception raised from ..." inside the message itself.
  auto pos = msg.find("\nException raised from");
  if (pos != std::string::npos) msg = msg.substr(0, pos);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

void throwJs(napi_env env, const char* code, const std::string& message) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;  // a JS exception is already on its way; keep the first one
  KilnEnv* k = nullptr;
  napi_get_instance_data(env, reinterpret_cast<void**>(&k));
  napi_value ctor = nullptr;
  if (k && k->errorCtor) napi_get_reference_value(env, k->errorCtor, &ctor);
  napi_value msg, codeV, err;
  napi_create_string_utf8(env, message.c_str(), message.size(), &msg);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &codeV);
  if (ctor) {
    napi_value argv[2] = {msg, codeV};
    if (napi_new_instance(env, ctor, 2, argv, &err) == napi_ok) {
      napi_throw(env, err);
      return;
    }
  }
  napi_create_error(env, codeV, msg, &err);
  napi_throw(env, err);
}

void throwCurrent(napi_env env) {
  try {
    throw;
  } catch (const KilnFailure& e) {
    throwJs(env, e.code.c_str(), e.what());
  } catch (const c10::Error& e) {
    std::string msg = torchMessage(e);
    // libtorch reports failed CPU allocations and CUDA OOM as plain c10::Errors
    bool oom = msg.find("can't allocate memory") != std::string::npos || msg.find("out of memory") != std::string::npos;
    throwJs(env, oom ? "OUT_OF_MEMORY" : "TORCH", msg);
  } catch (const Napi::Error& e) {
    // already a JS exception (thrown by node-addon-api); leave it pending
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) throwJs(env, "NATIVE", e.Message());
  } catch (const std::bad_alloc&) {
    throwJs(env, "OUT_OF_MEMORY", "out of memory while allocating a tensor");
  } catch (const std::exception& e) {
    // Kiln's own failures are KilnFailure; anything else came out of libtorch (some 1.13
    // checks, e.g. view/reshape size errors, throw std::runtime_error).
    throwJs(env, "TORCH", e.what());
  } catch (...) {
    throwJs(env, "NATIVE", "unknown native error");
  }
}

void captureCurrent(std::string& code, std::string& message) {
  try {
    throw;
  } catch (const KilnFailure& e) {
    code = e.code;
    message = e.what();
  } catch (const c10::Error& e) {
    code = "TORCH";
    message = torchMessage(e);
  } catch (const std::bad_alloc&) {
    code = "OUT_OF_MEMORY";
    message = "out of memory while allocating a tensor";
  } catch (const std::exception& e) {
    code = "TORCH";
    message = e.what();
  } catch (...) {
    code = "NATIVE";
    message = "unknown native error";
  }
}

void rejectJs(napi_env env, napi_deferred deferred, const char* code, const std::string& message) {
  throwJs(env, code, message);
  napi_value err;
  napi_get_and_clear_last_exception(env, &err);
  napi_reject_deferred(env, deferred, err);
}

Napi::Error toNapiError(Napi::Env env, const char* code, const std::string& message) {
  throwJs(env, code, message);
  return env.GetAndClearPendingException();
}

}  // namespace kiln
