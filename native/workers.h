// Async work on native worker threads, returning Promises (readback now; forward and
// save/load later). Each job holds its own at::Tensor references, so dispose() during a job
// cannot free memory still in use.
#pragma once
#include "tensor.h"

namespace kiln {

/**
 * Queues `job` (a struct with `napi_async_work work` and `napi_deferred deferred`) on libuv's
 * pool and returns its promise; `complete` takes ownership of the job and settles the promise.
 */
template <typename Job>
napi_value queueJob(napi_env env, std::unique_ptr<Job> job, const char* name, napi_async_execute_callback execute,
                    napi_async_complete_callback complete) {
  napi_value promise, resource;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(env, nullptr, resource, execute, complete, job.get(), &job->work);
  napi_queue_async_work(env, job->work);
  job.release();
  return promise;
}

/**
 * In a job's complete callback (a job with `deferred`, `error` and `code`): rejects its promise when its
 * execute step failed or libuv cancelled it (`cancelled` is the message then); returns whether it did.
 */
template <typename Job>
bool rejectFailed(napi_env env, napi_status status, Job& job, const char* cancelled) {
  if (job.error.empty() && status == napi_ok) return false;
  rejectJs(env, job.deferred, job.code.empty() ? "NATIVE" : job.code.c_str(), job.error.empty() ? cancelled : job.error);
  return true;
}

}  // namespace kiln
