#include "workers.h"

namespace kiln {

namespace {

/** Reads a tensor back to a CPU buffer off the main thread; resolves with an ArrayBuffer. */
struct ReadJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  at::Tensor src;      // the job's own reference
  at::Tensor result;   // contiguous CPU copy
  std::string error;
  std::string code;
};

void readExecute(napi_env, void* data) {
  auto* job = static_cast<ReadJob*>(data);
  try {
    job->result = readable(job->src);
    if (job->result.data_ptr() == job->src.data_ptr()) job->result = job->result.clone();
  } catch (...) {
    captureCurrent(job->code, job->error);
  }
}

void readComplete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<ReadJob> job(static_cast<ReadJob*>(data));
  napi_delete_async_work(env, job->work);
  if (!job->error.empty() || status != napi_ok) {
    rejectJs(env, job->deferred, job->code.empty() ? "NATIVE" : job->code.c_str(), job->error.empty() ? "readback cancelled" : job->error);
    return;
  }
  // Zero-copy: the ArrayBuffer owns a reference to the CPU tensor's memory.
  auto* holder = new at::Tensor(std::move(job->result));
  size_t n = holder->numel() * holder->element_size();
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(
      env, holder->data_ptr(), n, [](napi_env, void*, void* hint) { delete static_cast<at::Tensor*>(hint); }, holder, &ab);
  if (st != napi_ok) {  // runtimes that forbid external buffers: copy
    void* dst;
    napi_create_arraybuffer(env, n, &dst, &ab);
    if (n) std::memcpy(dst, holder->data_ptr(), n);
    delete holder;
  }
  napi_resolve_deferred(env, job->deferred, ab);
}

napi_value dataAsync(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  auto job = std::make_unique<ReadJob>();
  job->src = a.t(0);
  return queueJob(env, std::move(job), "kiln.data", readExecute, readComplete);
  KILN_CATCH(env)
}

}  // namespace

void registerWorkers(napi_env env, napi_value exports, KilnEnv* k) {
  defineFn(env, exports, k, "dataAsync", dataAsync);
}

}  // namespace kiln
