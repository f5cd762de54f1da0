// The tensor table: JS holds tensors as integer handles into a per-environment table of
// at::Tensor (DESIGN.md "The native boundary": the lean handle design). This header also
// holds the small raw-N-API argument helpers every native function file uses.
#pragma once
#include "errors.h"

namespace kiln {

/** Per-environment state (napi instance data); no global mutable state in the addon. */
struct KilnEnv {
  std::vector<at::Tensor> slots;     // handle -> tensor; undefined tensor = free slot
  std::vector<int64_t> slotBytes;    // CPU bytes reported to V8 for each slot
  std::vector<int32_t> freeList;
  napi_ref errorCtor = nullptr;      // lib/errors.ts KilnError
  int64_t live = 0;                  // live handles
  int64_t externalPending = 0;       // bytes not yet passed to napi_adjust_external_memory
  std::shared_ptr<void> runnables;   // module.cc's table of compiled programs / TorchScript modules
  std::shared_ptr<void> decodePool;  // decode.cc's decoder threads
  int64_t staleLeaves = 0;           // while a CUDA graph records: leaves an older autograd graph still holds (see graphBegin)

  /** Leaf tensors in the table that require grad, on device d, that a live autograd graph still references (by their gradient accumulator). */
  int64_t liveGraphLeaves(const at::Device& d) const;

  int32_t put(at::Tensor t);
  const at::Tensor& get(int32_t id) const;
  void release(int32_t id);
  void flushExternal(napi_env env, bool force = false);
};

/** Callback data: the environment plus an optional operation pointer (generic op wrappers). */
struct FnData {
  KilnEnv* k;
  void* op;
};

/** Arguments of one raw N-API call, with typed readers that throw KilnFailure. */
struct Args {
  napi_env env;
  KilnEnv* k = nullptr;
  void* op = nullptr;
  static constexpr size_t kMaxArgs = 20;
  size_t argc = kMaxArgs;
  napi_value argv[kMaxArgs];

  Args(napi_env e, napi_callback_info info);
  bool has(size_t i) const;  // present and not undefined/null
  const at::Tensor& t(size_t i) const;
  c10::optional<at::Tensor> optT(size_t i) const;  // handle or -1/undefined
  int32_t i32(size_t i) const;
  int64_t i64(size_t i) const;
  double num(size_t i) const;
  bool flag(size_t i) const;
  std::string str(size_t i) const;
  std::vector<int64_t> ints(size_t i) const;
  std::vector<at::Tensor> tensors(size_t i) const;
  at::Scalar scalar(size_t i) const;
  c10::optional<at::Scalar> optScalar(size_t i) const;
  at::TensorOptions options(size_t dtypeIdx, size_t deviceIdx) const;

  napi_value ret(at::Tensor t) const;                    // new handle
  napi_value retList(const std::vector<at::Tensor>& ts) const;  // array of handles (-1 = none)
  napi_value retNum(double v) const;
  napi_value retBool(bool v) const;
  napi_value retStr(const std::string& s) const;
  napi_value undefined() const;
};

[[noreturn]] void fail(const char* code, const std::string& msg);
at::ScalarType toScalarType(int32_t code);
at::Device parseDevice(const std::string& s);

/** A contiguous CPU copy in a dtype JS can hold (half/bfloat16 read back as float32). */
at::Tensor readable(const at::Tensor& t, bool raw = false);

using RawFn = napi_value (*)(napi_env, napi_callback_info);
/** Defines exports[name] = fn with FnData{k, op} as callback data. */
void defineFn(napi_env env, napi_value exports, KilnEnv* k, const char* name, RawFn fn, void* op = nullptr);

// Registration entry points of each file.
void registerTensor(napi_env env, napi_value exports, KilnEnv* k);
void registerOps(napi_env env, napi_value exports, KilnEnv* k);
void registerFunctional(napi_env env, napi_value exports, KilnEnv* k);
void registerWorkers(napi_env env, napi_value exports, KilnEnv* k);
void registerOptim(napi_env env, napi_value exports, KilnEnv* k);
void registerModule(napi_env env, napi_value exports, KilnEnv* k);
void registerDecode(napi_env env, napi_value exports, KilnEnv* k);

}  // namespace kiln
