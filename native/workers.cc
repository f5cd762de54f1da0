#include "workers.h"
#include <torch/csrc/autograd/profiler_kineto.h>
#include <set>
#include <sstream>
#ifdef KILN_WITH_CUDA_GRAPHS
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

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
  if (rejectFailed(env, status, *job, "readback cancelled")) return;
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

/** The CUDA device index of `synchronize(device)` (-1: the current device); refuses a non-CUDA device. */
int64_t syncIndex(const Args& a) {
  if (!torch::cuda::is_available()) fail("CUDA_UNAVAILABLE", "cuda.synchronize: CUDA is not available (this libtorch has no CUDA support or no GPU is visible)");
  if (!a.has(0)) return -1;
  at::Device d = parseDevice(a.str(0));
  if (!d.is_cuda()) fail("INVALID_ARGUMENT", "cuda.synchronize: '" + a.str(0) + "' is not a CUDA device");
  return d.has_index() ? d.index() : -1;
}

/** cudaSynchronize(device?): waits on this thread until the device has finished all queued work. */
napi_value cudaSynchronize(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  torch::cuda::synchronize(syncIndex(a));
  return nullptr;
  KILN_CATCH(env)
}

/** Waits for a device on a worker thread. */
struct SyncJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  int64_t device = -1;
  std::string error, code;
};

void syncExecute(napi_env, void* data) {
  auto* job = static_cast<SyncJob*>(data);
  try {
    torch::cuda::synchronize(job->device);
  } catch (...) {
    captureCurrent(job->code, job->error);
  }
}

void syncComplete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<SyncJob> job(static_cast<SyncJob*>(data));
  napi_delete_async_work(env, job->work);
  if (rejectFailed(env, status, *job, "synchronize cancelled")) return;
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_resolve_deferred(env, job->deferred, undef);
}

/** cudaSynchronizeAsync(device?) -> Promise resolved once the device has finished its queued work. */
napi_value cudaSynchronizeAsync(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  auto job = std::make_unique<SyncJob>();
  job->device = syncIndex(a);
  return queueJob(env, std::move(job), "kiln.cuda.synchronize", syncExecute, syncComplete);
  KILN_CATCH(env)
}

/** The CUDA device index of a memory query (args[0], default the current device). */
c10::DeviceIndex memoryIndex(const Args& a, const char* who) {
  if (!torch::cuda::is_available()) fail("CUDA_UNAVAILABLE", std::string(who) + ": CUDA is not available (this libtorch has no CUDA support or no GPU is visible)");
#ifdef KILN_WITH_CUDA_GRAPHS
  if (!a.has(0)) return c10::cuda::current_device();
  at::Device d = parseDevice(a.str(0));
  if (!d.is_cuda()) fail("INVALID_ARGUMENT", std::string(who) + ": '" + a.str(0) + "' is not a CUDA device");
  return d.has_index() ? d.index() : c10::cuda::current_device();
#else
  fail("CUDA_UNAVAILABLE", std::string(who) + ": this Kiln build has no access to the CUDA caching allocator (it was built without the CUDA headers, or with KILN_CUDA_GRAPHS=0)");
#endif
}

/** cudaMemoryStats(device?) -> [allocated, peak allocated, reserved, peak reserved, out-of-memory count] of the caching allocator. */
napi_value cudaMemoryStats(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  c10::DeviceIndex idx = memoryIndex(a, "cuda.memoryStats");
#ifdef KILN_WITH_CUDA_GRAPHS
  auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(idx);
  const double values[] = {static_cast<double>(st.allocated_bytes[0].current), static_cast<double>(st.allocated_bytes[0].peak),
                           static_cast<double>(st.reserved_bytes[0].current), static_cast<double>(st.reserved_bytes[0].peak),
                           static_cast<double>(st.num_ooms)};  // [0]: the aggregate over the small and large pools
  napi_value arr;
  napi_create_array_with_length(env, 5, &arr);
  for (uint32_t i = 0; i < 5; ++i) napi_set_element(env, arr, i, a.retNum(values[i]));
  return arr;
#else
  (void)idx;
  return nullptr;
#endif
  KILN_CATCH(env)
}

/** cudaEmptyCache(): returns the caching allocator's unused blocks to the driver. */
napi_value cudaEmptyCache(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  memoryIndex(a, "cuda.emptyCache");
#ifdef KILN_WITH_CUDA_GRAPHS
  c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  return nullptr;
  KILN_CATCH(env)
}

/** cudaResetPeakStats(device?): the peaks start again from the current values. */
napi_value cudaResetPeakStats(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  c10::DeviceIndex idx = memoryIndex(a, "cuda.resetPeakMemoryStats");
#ifdef KILN_WITH_CUDA_GRAPHS
  c10::cuda::CUDACachingAllocator::resetPeakStats(idx);
#else
  (void)idx;
#endif
  return nullptr;
  KILN_CATCH(env)
}

using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// KinetoEvent's times are in ns from libtorch 2.x on (startNs/durationNs), in µs before (startUs/durationUs)
template <class E>
auto startNsOf(const E& e, int) -> decltype(e.startNs()) { return e.startNs(); }
template <class E>
uint64_t startNsOf(const E& e, long) { return e.startUs() * 1000; }
template <class E>
auto durationNsOf(const E& e, int) -> decltype(e.durationNs()) { return e.durationNs(); }
template <class E>
uint64_t durationNsOf(const E& e, long) { return e.durationUs() * 1000; }

/**
 * Whether this libtorch was built with Kineto (CUPTI kernel traces; PyTorch's `torch.autograd.kineto_available()`):
 * only such a build saves a trace, so one empty profile, saved once, tells.
 */
bool kinetoBuilt() {
  static const bool built = [] {
    ProfilerConfig cfg(ProfilerState::KINETO);
    std::set<ActivityType> cpu{ActivityType::CPU};
    torch::autograd::profiler::prepareProfiler(cfg, cpu);
    torch::autograd::profiler::enableProfiler(cfg, cpu);
    auto r = torch::autograd::profiler::disableProfiler();
    try {
      r->save("/dev/null");
      return true;
    } catch (const c10::Error&) {
      return false;
    }
  }();
  return built;
}

/**
 * profilerStart(cuda, shapes) -> GPU timing mode: libtorch's (Kineto) profiler records the ops this thread runs from
 * now on, with `shapes` their input shapes; with `cuda` the GPU time too — each kernel, memcpy and memset (mode 1) on
 * a libtorch built with Kineto, else CUDA events around each op (mode 2, PyTorch's KINETO_GPU_FALLBACK).
 */
napi_value profilerStart(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  bool cuda = a.flag(0), shapes = a.flag(1);
  if (torch::profiler::impl::profilerEnabled()) fail("INVALID_ARGUMENT", "profiler: a profile is already being recorded (profiles do not nest)");
  if (cuda && !torch::cuda::is_available()) fail("CUDA_UNAVAILABLE", "profiler: cuda timing needs CUDA (this libtorch has no CUDA support or no GPU is visible)");
  int gpu = cuda ? (kinetoBuilt() ? 1 : 2) : 0;
  ProfilerConfig cfg(gpu == 2 ? ProfilerState::KINETO_GPU_FALLBACK : ProfilerState::KINETO, shapes);
  std::set<ActivityType> acts{ActivityType::CPU};
  if (gpu == 1) acts.insert(ActivityType::CUDA);
  torch::autograd::profiler::prepareProfiler(cfg, acts);
  torch::autograd::profiler::enableProfiler(cfg, acts);
  return a.retNum(gpu);
  KILN_CATCH(env)
}

void jsonString(std::ostringstream& json, const std::string& s) {
  json << '"';
  for (char c : s) {
    if (c == '"' || c == '\\') json << '\\' << c;
    else if (static_cast<unsigned char>(c) >= 0x20) json << c;
  }
  json << '"';
}

/**
 * profilerStop(tracePath, gpuMode) -> JSON `{saved, events}`: every event recorded since profilerStart, each
 * [name, onGpu, thread (or stream), startNs (from the first event's), durationNs, correlationId, linkedCorrelationId, cudaEventUs, async,
 * Kineto activity type (0 an op, 1 a user range, others GPU work or CUDA runtime calls), shapes or null] (cudaEventUs: an op's CUDA-event time in
 * mode 2, else -1). With a path, a Kineto build writes
 * its Chrome trace there (`saved`); other builds leave the trace to the caller.
 */
napi_value profilerStop(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  std::string trace = a.has(0) ? a.str(0) : "";
  int gpu = static_cast<int>(a.num(1));  // what profilerStart returned
  if (!torch::profiler::impl::profilerEnabled()) fail("INVALID_ARGUMENT", "profiler: no profile is being recorded");
  auto result = torch::autograd::profiler::disableProfiler();
  bool saved = false;
  if (!trace.empty() && kinetoBuilt()) {
    result->save(trace);
    saved = true;
  }
  std::ostringstream json;
  json << "{\"saved\":" << (saved ? "true" : "false") << ",\"events\":[";
  uint64_t t0 = UINT64_MAX;  // starts are sent relative to the first (ns since the epoch lose precision as doubles)
  for (const auto& e : result->events()) t0 = std::min<uint64_t>(t0, startNsOf(e, 0));
  bool first = true;
  for (const auto& e : result->events()) {
    if (e.name() == "[memory]") continue;
    bool onGpu = e.deviceType() != c10::DeviceType::CPU;
    int64_t cudaUs = -1;
    if (gpu == 2 && !onGpu) {
      try {
        cudaUs = e.cudaElapsedUs();
      } catch (const c10::Error&) {
        cudaUs = -1;
      }
    }
    json << (first ? "[" : ",[");
    first = false;
    jsonString(json, e.name());
    json << "," << (onGpu ? 1 : 0) << "," << (onGpu ? e.deviceResourceId() : static_cast<int64_t>(e.startThreadId())) << ","
         << startNsOf(e, 0) - t0 << "," << durationNsOf(e, 0) << "," << e.correlationId() << "," << e.linkedCorrelationId() << ","
         << cudaUs << "," << (e.isAsync() ? 1 : 0) << "," << static_cast<int>(e.activityType()) << ",";
    if (e.hasShapes()) {
      std::ostringstream sh;
      sh << "[";
      bool f = true;
      for (const auto& s : e.shapes()) {
        sh << (f ? "[" : ", [");
        f = false;
        for (size_t i = 0; i < s.size(); ++i) sh << (i ? ", " : "") << s[i];
        sh << "]";
      }
      sh << "]";
      jsonString(json, sh.str());
    } else {
      json << "null";
    }
    json << "]";
  }
  json << "]}";
  return a.retStr(json.str());
  KILN_CATCH(env)
}

}  // namespace

void registerWorkers(napi_env env, napi_value exports, KilnEnv* k) {
  defineFn(env, exports, k, "cudaMemoryStats", cudaMemoryStats);
  defineFn(env, exports, k, "cudaEmptyCache", cudaEmptyCache);
  defineFn(env, exports, k, "cudaResetPeakStats", cudaResetPeakStats);
  defineFn(env, exports, k, "dataAsync", dataAsync);
  defineFn(env, exports, k, "cudaSynchronize", cudaSynchronize);
  defineFn(env, exports, k, "cudaSynchronizeAsync", cudaSynchronizeAsync);
  defineFn(env, exports, k, "profilerStart", profilerStart);
  defineFn(env, exports, k, "profilerStop", profilerStop);
}

}  // namespace kiln
