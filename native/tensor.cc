// Tensor table, argument helpers, creation, metadata, readback and autograd entry points.
#include "tensor.h"
#include <torch/version.h>
#include <ATen/autocast_mode.h>
#include <dlfcn.h>
#include <unordered_set>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kiln {

// ---------------------------------------------------------------- table

static int64_t cpuBytes(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu()) return 0;
  return static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
}

int64_t KilnEnv::liveGraphLeaves(const at::Device& d) const {
  std::unordered_set<const void*> seen;
  int64_t n = 0;
  for (const at::Tensor& t : slots)
    if (t.defined() && t.requires_grad() && t.is_leaf() && t.device() == d && seen.insert(t.unsafeGetTensorImpl()).second &&
        torch::autograd::impl::try_get_grad_accumulator(t))
      n++;
  return n;
}

int32_t KilnEnv::put(at::Tensor t) {
  int64_t bytes = cpuBytes(t);
  int32_t id;
  if (!freeList.empty()) {
    id = freeList.back();
    freeList.pop_back();
    slots[id] = std::move(t);
    slotBytes[id] = bytes;
  } else {
    id = static_cast<int32_t>(slots.size());
    slots.push_back(std::move(t));
    slotBytes.push_back(bytes);
  }
  ++live;
  externalPending += bytes;
  return id;
}

const at::Tensor& KilnEnv::get(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= slots.size() || !slots[id].defined())
    fail("DISPOSED", "tensor handle " + std::to_string(id) + " is not alive (the tensor was disposed)");
  return slots[id];
}

void KilnEnv::release(int32_t id) {
  if (id < 0 || static_cast<size_t>(id) >= slots.size() || !slots[id].defined()) return;
  slots[id].reset();
  externalPending -= slotBytes[id];
  slotBytes[id] = 0;
  freeList.push_back(id);
  --live;
}

void KilnEnv::flushExternal(napi_env env, bool force) {
  constexpr int64_t kThreshold = 4 << 20;
  if (force || externalPending > kThreshold || externalPending < -kThreshold) {
    int64_t result;
    napi_adjust_external_memory(env, externalPending, &result);
    externalPending = 0;
  }
}

// ---------------------------------------------------------------- args

[[noreturn]] void fail(const char* code, const std::string& msg) { throw KilnFailure(code, msg); }

Args::Args(napi_env e, napi_callback_info info) : env(e) {
  void* data = nullptr;
  napi_get_cb_info(env, info, &argc, argv, nullptr, &data);
  if (argc > kMaxArgs) argc = kMaxArgs;  // napi reports the real count; only kMaxArgs were filled
  auto* fd = static_cast<FnData*>(data);
  k = fd->k;
  op = fd->op;
}

bool Args::has(size_t i) const {
  if (i >= argc) return false;
  napi_valuetype t;
  napi_typeof(env, argv[i], &t);
  return t != napi_undefined && t != napi_null;
}

namespace {
/**
 * Reads an integer exactly: N-API's int32/int64 readers wrap, saturate or truncate (2^32 + h read as handle h, a group
 * count of 2^32 as 0, 1.5 as 1), so the value is read as a double and must be a whole number in [lo, hi].
 */
int64_t exactInt(napi_env env, napi_value v, size_t i, double lo, double hi, const char* what) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= lo && d <= hi) || d != std::floor(d))
    fail("INVALID_ARGUMENT", "argument " + std::to_string(i) + " must be " + what);
  return static_cast<int64_t>(d);
}
constexpr double kI64Lo = -9223372036854775808.0, kI64Hi = 9223372036854774784.0;  // the doubles inside int64's range
}  // namespace

int32_t Args::i32(size_t i) const {
  if (i >= argc) fail("INVALID_ARGUMENT", "argument " + std::to_string(i) + " must be a number");
  return static_cast<int32_t>(exactInt(env, argv[i], i, -2147483648.0, 2147483647.0, "an integer in the 32-bit range"));
}

int64_t Args::i64(size_t i) const {
  if (i >= argc) fail("INVALID_ARGUMENT", "argument " + std::to_string(i) + " must be an integer");
  return exactInt(env, argv[i], i, kI64Lo, kI64Hi, "an integer");
}

double Args::num(size_t i) const {
  double v;
  if (i >= argc || napi_get_value_double(env, argv[i], &v) != napi_ok)
    fail("INVALID_ARGUMENT", "argument " + std::to_string(i) + " must be a number");
  return v;
}

bool Args::flag(size_t i) const {
  bool v = false;
  if (i < argc) napi_get_value_bool(env, argv[i], &v);
  return v;
}

std::string Args::str(size_t i) const {
  size_t len = 0;
  if (i >= argc || napi_get_value_string_utf8(env, argv[i], nullptr, 0, &len) != napi_ok)
    fail("INVALID_ARGUMENT", "argument " + std::to_string(i) + " must be a string");
  std::string s(len, '\0');
  napi_get_value_string_utf8(env, argv[i], &s[0], len + 1, &len);
  return s;
}

const at::Tensor& Args::t(size_t i) const { return k->get(i32(i)); }

c10::optional<at::Tensor> Args::optT(size_t i) const {
  if (!has(i)) return c10::nullopt;
  int32_t id = i32(i);
  if (id < 0) return c10::nullopt;
  return k->get(id);
}

std::vector<int64_t> Args::ints(size_t i) const {
  bool isArray = false;
  if (i < argc) napi_is_array(env, argv[i], &isArray);
  if (!isArray) fail("INVALID_ARGUMENT", "argument " + std::to_string(i) + " must be an array of integers");
  uint32_t n;
  napi_get_array_length(env, argv[i], &n);
  std::vector<int64_t> out(n);
  for (uint32_t j = 0; j < n; ++j) {
    napi_value e;
    napi_get_element(env, argv[i], j, &e);
    out[j] = exactInt(env, e, i, kI64Lo, kI64Hi, "an array of integers");
  }
  return out;
}

std::vector<at::Tensor> Args::tensors(size_t i) const {
  std::vector<int64_t> ids = ints(i);
  std::vector<at::Tensor> out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < INT32_MIN || id > INT32_MAX) fail("INVALID_ARGUMENT", "argument " + std::to_string(i) + " holds a tensor handle out of range");
    out.push_back(k->get(static_cast<int32_t>(id)));
  }
  return out;
}

at::Scalar Args::scalar(size_t i) const {
  if (i < argc) {
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (t == napi_boolean) return at::Scalar(flag(i));
  }
  double v = num(i);
  // Integral values stay integral so that int tensors keep their dtype (PyTorch semantics).
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9007199254740992.0)
    return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

c10::optional<at::Scalar> Args::optScalar(size_t i) const {
  if (!has(i)) return c10::nullopt;
  return scalar(i);
}

at::ScalarType toScalarType(int32_t code) {
  switch (code) {
    case 0: return at::kByte;
    case 3: return at::kInt;
    case 4: return at::kLong;
    case 5: return at::kHalf;
    case 6: return at::kFloat;
    case 7: return at::kDouble;
    case 11: return at::kBool;
    case 15: return at::kBFloat16;
    default: fail("INVALID_ARGUMENT", "unknown dtype code " + std::to_string(code));
  }
}

at::Device parseDevice(const std::string& s) {
  at::Device d(s);  // throws c10::Error on a malformed string
  if (d.is_cuda()) {
    if (!torch::cuda::is_available())
      fail("CUDA_UNAVAILABLE", "device '" + s + "' requested but CUDA is not available (this libtorch has no CUDA support or no GPU is visible)");
    if (d.has_index() && d.index() >= static_cast<int64_t>(torch::cuda::device_count()))
      fail("INVALID_ARGUMENT", "device '" + s + "' does not exist: " + std::to_string(torch::cuda::device_count()) + " CUDA device(s) visible");
  }
  return d;
}

at::TensorOptions Args::options(size_t dtypeIdx, size_t deviceIdx) const {
  at::TensorOptions o;
  if (has(dtypeIdx)) o = o.dtype(toScalarType(i32(dtypeIdx)));
  else o = o.dtype(at::kFloat);
  if (has(deviceIdx)) o = o.device(parseDevice(str(deviceIdx)));
  return o;
}

napi_value Args::ret(at::Tensor t) const {
  napi_value v;
  napi_create_int32(env, k->put(std::move(t)), &v);
  if (k->externalPending > (4 << 20) || k->externalPending < -(4 << 20)) k->flushExternal(env);
  return v;
}

napi_value Args::retList(const std::vector<at::Tensor>& ts) const {
  napi_value arr;
  napi_create_array_with_length(env, ts.size(), &arr);
  for (size_t j = 0; j < ts.size(); ++j) {
    napi_value v;
    napi_create_int32(env, ts[j].defined() ? k->put(ts[j]) : -1, &v);
    napi_set_element(env, arr, static_cast<uint32_t>(j), v);
  }
  k->flushExternal(env);
  return arr;
}

napi_value Args::retNum(double d) const {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

napi_value Args::retBool(bool b) const {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

napi_value Args::retStr(const std::string& s) const {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}

napi_value Args::undefined() const {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

void defineFn(napi_env env, napi_value exports, KilnEnv* k, const char* name, RawFn fn, void* op) {
  auto* data = new FnData{k, op};  // lives as long as the environment (freed with it below)
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, data, &f);
  napi_add_finalizer(env, f, data, [](napi_env, void* d, void*) { delete static_cast<FnData*>(d); }, nullptr, nullptr);
  napi_set_named_property(env, exports, name, f);
}

// ---------------------------------------------------------------- library-level

static napi_value setErrorClass(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  if (a.k->errorCtor) napi_delete_reference(env, a.k->errorCtor);
  napi_create_reference(env, a.argv[0], 1, &a.k->errorCtor);
  return a.undefined();
  KILN_CATCH(env)
}

/**
 * The CUDA devices as the driver describes them (name, compute capability, memory, SMs), read
 * through libcuda loaded at run time: libtorch's C++ API has no device names, and this needs
 * neither the CUDA headers nor a link-time dependency (and works whatever libtorch was built for).
 * cudaDevices() -> {devices, driverVersion}; no devices and version 0 where the driver cannot be loaded.
 */
static napi_value cudaDevices(napi_env env, napi_callback_info inf) {
  KILN_TRY
  Args a(env, inf);
  napi_value out, arr;
  napi_create_object(env, &out);
  napi_create_array(env, &arr);
  napi_set_named_property(env, out, "devices", arr);
  int driver = 0;
  auto done = [&]() {
    napi_set_named_property(env, out, "driverVersion", a.retNum(driver));
    return out;
  };
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return done();
  using Init = int (*)(unsigned);
  using Get = int (*)(int*, int);
  using Name = int (*)(char*, int, int);
  using Mem = int (*)(size_t*, int);
  using Attr = int (*)(int*, int, int);
  using Version = int (*)(int*);
  auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
  auto get = reinterpret_cast<Get>(dlsym(lib, "cuDeviceGet"));
  auto name = reinterpret_cast<Name>(dlsym(lib, "cuDeviceGetName"));
  auto mem = reinterpret_cast<Mem>(dlsym(lib, "cuDeviceTotalMem_v2"));
  auto attr = reinterpret_cast<Attr>(dlsym(lib, "cuDeviceGetAttribute"));
  auto version = reinterpret_cast<Version>(dlsym(lib, "cuDriverGetVersion"));
  using Count = int (*)(int*);
  auto deviceCount = reinterpret_cast<Count>(dlsym(lib, "cuDeviceGetCount"));
  int count = 0;
  // the library stays loaded: libtorch uses it too
  if (!init || !get || !name || !mem || !attr || !deviceCount || init(0) != 0 || deviceCount(&count) != 0) return done();
  if (version) version(&driver);
  // CUdevice_attribute: 16 multiprocessor count, 75/76 compute capability major/minor
  for (int i = 0; i < count; ++i) {
    int dev = 0, major = 0, minor = 0, sms = 0;
    char buf[256] = {0};
    size_t bytes = 0;
    if (get(&dev, i) != 0 || name(buf, sizeof buf - 1, dev) != 0) continue;
    mem(&bytes, dev);
    attr(&major, 75, dev);
    attr(&minor, 76, dev);
    attr(&sms, 16, dev);
    napi_value d;
    napi_create_object(env, &d);
    napi_set_named_property(env, d, "index", a.retNum(i));
    napi_set_named_property(env, d, "name", a.retStr(buf));
    napi_set_named_property(env, d, "capability", a.retStr(std::to_string(major) + "." + std::to_string(minor)));
    napi_set_named_property(env, d, "memoryBytes", a.retNum(static_cast<double>(bytes)));
    napi_set_named_property(env, d, "multiprocessors", a.retNum(sms));
    uint32_t n = 0;
    napi_get_array_length(env, arr, &n);
    napi_set_element(env, arr, n, d);
  }
  return done();
  KILN_CATCH(env)
}

static napi_value info(napi_env env, napi_callback_info inf) {
  KILN_TRY
  Args a(env, inf);
  napi_value o;
  napi_create_object(env, &o);
  auto setStr = [&](const char* key, const std::string& s) { napi_set_named_property(env, o, key, a.retStr(s)); };
  auto setNum = [&](const char* key, double d) { napi_set_named_property(env, o, key, a.retNum(d)); };
  setStr("torchVersion", TORCH_VERSION);
  bool cuda = torch::cuda::is_available();
  napi_set_named_property(env, o, "cudaAvailable", a.retBool(cuda));
  napi_set_named_property(env, o, "cudnnAvailable", a.retBool(cuda && torch::cuda::cudnn_is_available()));
  setNum("deviceCount", cuda ? static_cast<double>(torch::cuda::device_count()) : 0);
  setNum("numThreads", at::get_num_threads());
  setNum("numInteropThreads", at::get_num_interop_threads());
  setStr("config", at::show_config());
  setStr("parallelInfo", at::get_parallel_info());
  return o;
  KILN_CATCH(env)
}

static napi_value setNumThreads(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  at::set_num_threads(a.i32(0));
  return a.undefined();
  KILN_CATCH(env)
}

/**
 * tuneAllocator(mmapThreshold, trimThreshold) -> whether it applied (glibc only). glibc serves
 * blocks over 32 MiB with fresh mmap()s, so every large CPU tensor (a batch of 224² images, a
 * layer's activations) page-faults its memory in again on every step; keeping them on the heap
 * makes repeated allocations reuse warm pages (what PyTorch gets from jemalloc/tcmalloc).
 */
static napi_value tuneAllocator(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
#if defined(__GLIBC__)
  bool ok = mallopt(M_MMAP_THRESHOLD, a.i32(0)) == 1 && mallopt(M_TRIM_THRESHOLD, a.i32(1)) == 1;
  return a.retBool(ok);
#else
  return a.retBool(false);
#endif
  KILN_CATCH(env)
}

/** getRngState(device) -> handle of a uint8 tensor with the default generator's state */
static napi_value getRngState(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  at::Generator gen = at::globalContext().defaultGenerator(parseDevice(a.str(0)));
  std::lock_guard<std::mutex> lock(gen.mutex());
  return a.ret(gen.get_state());
  KILN_CATCH(env)
}

/** setRngState(device, stateId) */
static napi_value setRngState(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  at::Generator gen = at::globalContext().defaultGenerator(parseDevice(a.str(0)));
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(a.t(1));
  return a.undefined();
  KILN_CATCH(env)
}

static napi_value manualSeed(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  torch::manual_seed(static_cast<uint64_t>(a.i64(0)));
  return a.undefined();
  KILN_CATCH(env)
}

/** Returns [liveHandles, cpuBytes, cudaBytes] counting each storage once. */
static napi_value memory(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  std::vector<const void*> seen;
  double cpu = 0, cuda = 0;
  for (const auto& t : a.k->slots) {
    if (!t.defined() || !t.has_storage()) continue;
    const void* key = t.storage().unsafeGetStorageImpl();
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    double n = static_cast<double>(t.storage().nbytes());
    if (t.device().is_cpu()) cpu += n; else cuda += n;
  }
  a.k->flushExternal(env, true);
  napi_value arr;
  napi_create_array_with_length(env, 3, &arr);
  napi_set_element(env, arr, 0, a.retNum(static_cast<double>(a.k->live)));
  napi_set_element(env, arr, 1, a.retNum(cpu));
  napi_set_element(env, arr, 2, a.retNum(cuda));
  return arr;
  KILN_CATCH(env)
}

static napi_value freeTensor(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  a.k->release(a.i32(0));
  return nullptr;
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- creation

/** fromBuffer(typedArray, shape, srcDtype, dtype, device, requiresGrad) */
static napi_value fromBuffer(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  void* data = nullptr;
  size_t byteLength = 0;
  bool isTyped = false;
  napi_is_typedarray(env, a.argv[0], &isTyped);
  if (isTyped) {
    napi_typedarray_type tt;
    size_t length, offset;
    napi_value ab;
    napi_get_typedarray_info(env, a.argv[0], &tt, &length, &data, &ab, &offset);
    size_t es = 1;
    switch (tt) {
      case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: es = 1; break;
      case napi_int16_array: case napi_uint16_array: es = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: es = 4; break;
      default: es = 8;
    }
    byteLength = length * es;
  } else {
    fail("INVALID_ARGUMENT", "fromBuffer expects a TypedArray");
  }
  std::vector<int64_t> shape = a.ints(1);
  at::ScalarType src = toScalarType(a.i32(2));
  at::ScalarType dst = toScalarType(a.i32(3));
  int64_t numel = 1;
  for (auto s : shape) numel *= s;
  if (static_cast<size_t>(numel) * c10::elementSize(src) != byteLength)
    fail("INVALID_ARGUMENT", "data has " + std::to_string(byteLength / c10::elementSize(src)) +
                                 " elements but shape needs " + std::to_string(numel));
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(src));
  if (byteLength) std::memcpy(t.data_ptr(), data, byteLength);
  if (dst != src) t = t.to(dst);
  if (a.has(4)) {
    at::Device d = parseDevice(a.str(4));
    if (d != t.device()) t = t.to(d);
  }
  if (a.flag(5)) t.requires_grad_(true);
  return a.ret(t);
  KILN_CATCH(env)
}

// Factory functions: (shape, dtype, device, requiresGrad, ...extra)
#define KILN_FACTORY(NAME, EXPR)                                  \
  static napi_value NAME(napi_env env, napi_callback_info info) { \
    KILN_TRY Args a(env, info);                                   \
    at::TensorOptions o = a.options(1, 2);                        \
    at::Tensor t = (EXPR);                                        \
    if (a.flag(3)) t.requires_grad_(true);                        \
    return a.ret(t);                                              \
    KILN_CATCH(env)                                               \
  }

KILN_FACTORY(zeros, at::zeros(a.ints(0), o))
KILN_FACTORY(ones, at::ones(a.ints(0), o))
KILN_FACTORY(empty, at::empty(a.ints(0), o))
KILN_FACTORY(full, at::full(a.ints(0), a.scalar(4), o))
KILN_FACTORY(rand, at::rand(a.ints(0), o))
KILN_FACTORY(randn, at::randn(a.ints(0), o))
KILN_FACTORY(randint, at::randint(a.i64(4), a.i64(5), a.ints(0), o))
// For these the first argument is unused (pass []): arange(start,end,step) linspace(start,end,steps) eye(n,m) randperm(n)
KILN_FACTORY(arange, at::arange(a.scalar(4), a.scalar(5), a.scalar(6), o))
KILN_FACTORY(linspace, at::linspace(a.scalar(4), a.scalar(5), a.i64(6), o))
KILN_FACTORY(eye, at::eye(a.i64(4), a.i64(5), o))
KILN_FACTORY(randperm, at::randperm(a.i64(4), o))

// ---------------------------------------------------------------- metadata

static napi_value shape(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  const at::Tensor& t = a.t(0);
  napi_value arr;
  napi_create_array_with_length(env, t.dim(), &arr);
  for (int64_t i = 0; i < t.dim(); ++i) {
    napi_value v;
    napi_create_int64(env, t.size(i), &v);
    napi_set_element(env, arr, static_cast<uint32_t>(i), v);
  }
  return arr;
  KILN_CATCH(env)
}

static napi_value dtype(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  return a.retNum(static_cast<int>(a.t(0).scalar_type()));
  KILN_CATCH(env)
}

static napi_value device(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  return a.retStr(a.t(0).device().str());
  KILN_CATCH(env)
}

static napi_value requiresGrad(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  return a.retBool(a.t(0).requires_grad());
  KILN_CATCH(env)
}

static napi_value setRequiresGrad(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  const_cast<at::Tensor&>(a.t(0)).requires_grad_(a.flag(1));
  return a.undefined();
  KILN_CATCH(env)
}

static napi_value isContiguous(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  return a.retBool(a.t(0).is_contiguous());
  KILN_CATCH(env)
}

static napi_value isPinned(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  // is_pinned() asks the CUDA hooks; without CUDA nothing can be pinned
  return a.retBool(torch::cuda::is_available() && a.t(0).is_pinned());
  KILN_CATCH(env)
}

static napi_value isLeaf(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  return a.retBool(a.t(0).is_leaf());
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- readback

at::Tensor readable(const at::Tensor& t, bool raw) {
  at::Tensor r = t.detach();
  if (!raw && (r.scalar_type() == at::kHalf || r.scalar_type() == at::kBFloat16)) r = r.to(at::kFloat);
  if (!r.device().is_cpu()) r = r.to(at::kCPU);
  return r.contiguous();
}

/** Synchronous readback into a fresh ArrayBuffer: toBuffer(id, raw) (raw keeps half types' bytes). */
static napi_value toBuffer(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  at::Tensor r = readable(a.t(0), a.flag(1));
  size_t n = r.numel() * r.element_size();
  void* dst;
  napi_value ab;
  napi_create_arraybuffer(env, n, &dst, &ab);
  if (n) std::memcpy(dst, r.data_ptr(), n);
  return ab;
  KILN_CATCH(env)
}

static napi_value item(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  const at::Tensor& t = a.t(0);
  if (t.numel() != 1)
    fail("INVALID_ARGUMENT", "item() needs a tensor with one element, got " + std::to_string(t.numel()) + " elements");
  at::Scalar s = t.item();
  if (s.isBoolean()) return a.retBool(s.toBool());
  if (s.isIntegral(false)) return a.retNum(static_cast<double>(s.toLong()));
  return a.retNum(s.toDouble());
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- autograd

/**
 * Refuses a backward pass while a CUDA graph records and an autograd graph from before the recording still holds
 * parameters: their gradient accumulators belong to the stream that earlier work ran on, and a recorded backward
 * would make that stream wait on the capture, which invalidates it (libtorch then may leave its allocator in
 * capture mode). Refused here, the recording ends cleanly and can be made again once those tensors are disposed.
 */
static void checkRecordedBackward(const KilnEnv& k, const char* what) {
  if (k.staleLeaves > 0)
    fail("INVALID_ARGUMENT", std::string(what) + ": " + std::to_string(k.staleLeaves) +
                                 " parameter(s) (leaf tensors requiring grad) still belong to the autograd graph of work done before this "
                                 "CUDA graph recording (a loss or an output not yet disposed); a recorded backward pass would wait on the stream "
                                 "that work ran on and fail the capture. Dispose those tensors (run eager steps inside kiln.tidy) and record again");
}

/** liveGraphLeaves(device) -> how many leaf tensors requiring grad on the device a live autograd graph references. */
static napi_value liveGraphLeaves(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  at::Device d = parseDevice(a.str(0));
  if (d.is_cuda() && !d.has_index()) d = at::Device(at::kCUDA, 0);
  return a.retNum(static_cast<double>(a.k->liveGraphLeaves(d)));
  KILN_CATCH(env)
}

/**
 * dropHistory(id): a tensor an autograd graph produced becomes its detached self (same storage, same handle), so
 * that graph — and the gradient accumulators of the parameters it reached — is no longer kept alive through it.
 * What a CUDA graph recording returns is kept so: its autograd graph was recorded, not run, and holding it would
 * tie those parameters to the capture's stream. Leaves are left as they are.
 */
static napi_value dropHistory(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  const at::Tensor& t = a.t(0);
  if (t.grad_fn()) {
    at::Tensor d = t.detach();
    const_cast<at::Tensor&>(t) = std::move(d);
  }
  return a.undefined();
  KILN_CATCH(env)
}

/** backward(id, gradId|-1, retainGraph, createGraph) */
static napi_value backward(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  const at::Tensor& t = a.t(0);
  c10::optional<at::Tensor> g = a.optT(1);
  if (!t.requires_grad())
    fail("INVALID_ARGUMENT", "backward(): the tensor does not require grad and has no grad_fn (did you compute it under noGrad or from tensors without requiresGrad?)");
  if (!g && t.numel() != 1)
    fail("INVALID_ARGUMENT", "backward(): a gradient must be given for a non-scalar output of shape " + c10::str(t.sizes()));
  checkRecordedBackward(*a.k, "backward()");
  bool keep = a.flag(2), create = a.flag(3);
  t.backward(g ? *g : at::Tensor(), keep || create, create);
  return a.undefined();
  KILN_CATCH(env)
}

static napi_value grad(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  const at::Tensor& g = a.t(0).grad();
  if (!g.defined()) return a.retNum(-1);
  return a.ret(g);
  KILN_CATCH(env)
}

/** setGrad(id, gradId|-1): replace or clear .grad */
static napi_value setGrad(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  at::Tensor& t = const_cast<at::Tensor&>(a.t(0));
  c10::optional<at::Tensor> g = a.optT(1);
  t.mutable_grad() = g ? *g : at::Tensor();
  return a.undefined();
  KILN_CATCH(env)
}

/** autogradGrad(outputs[], inputs[], gradOutputs[]|null, retainGraph(-1 default|0|1), createGraph, allowUnused) */
static napi_value autogradGrad(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  std::vector<at::Tensor> outs = a.tensors(0), ins = a.tensors(1);
  std::vector<at::Tensor> gouts;
  if (a.has(2)) gouts = a.tensors(2);
  int32_t retain = a.i32(3);
  bool create = a.flag(4);
  c10::optional<bool> keep;
  if (retain >= 0) keep = retain == 1;
  for (size_t i = 0; i < ins.size(); ++i)
    if (!ins[i].requires_grad())
      fail("INVALID_ARGUMENT", "autograd.grad(): input " + std::to_string(i) + " does not require grad");
  checkRecordedBackward(*a.k, "autograd.grad()");
  auto res = torch::autograd::grad(outs, ins, gouts, keep, create, a.flag(5));
  return a.retList(res);
  KILN_CATCH(env)
}

/** setData(id, srcId): swaps the data under a tensor, keeping its identity (module.to()). */
static napi_value setData(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  at::Tensor& t = const_cast<at::Tensor&>(a.t(0));
  const at::Tensor& src = a.t(1);
  {
    at::NoGradGuard ng;
    t.set_data(src);
  }
  int64_t bytes = src.device().is_cpu() ? static_cast<int64_t>(src.numel() * src.element_size()) : 0;
  a.k->externalPending += bytes - a.k->slotBytes[a.i32(0)];
  a.k->slotBytes[a.i32(0)] = bytes;
  return a.undefined();
  KILN_CATCH(env)
}

/** retainGrad(id): keep .grad of a non-leaf tensor (Grad-CAM activations). */
static napi_value retainGrad(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  a.t(0).retain_grad();
  return a.undefined();
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- autocast (mixed precision)
// libtorch 2.4 replaced the per-backend setters with ones taking a device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define KILN_AUTOCAST_BY_DEVICE 1
#endif

static bool autocastEnabled(bool cuda) {
#ifdef KILN_AUTOCAST_BY_DEVICE
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

static at::ScalarType autocastDtype(bool cuda) {
#ifdef KILN_AUTOCAST_BY_DEVICE
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

static void setAutocastState(bool cuda, bool on, at::ScalarType dtype) {
#ifdef KILN_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(cuda ? at::kCUDA : at::kCPU, on);
  at::autocast::set_autocast_dtype(cuda ? at::kCUDA : at::kCPU, dtype);
#else
  if (cuda) {
    at::autocast::set_enabled(on);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(on);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

/** autocastEnter(isCuda, dtype) -> [prevEnabled, prevDtype]: turns autocast on for the calling thread. */
static napi_value autocastEnter(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  bool cuda = a.flag(0);
  at::ScalarType dt = toScalarType(a.i32(1));
  if (dt != at::kHalf && dt != at::kBFloat16) fail("INVALID_ARGUMENT", "autocast dtype must be float16 or bfloat16");
  bool prev = autocastEnabled(cuda);
  at::ScalarType prevDt = autocastDtype(cuda);
  setAutocastState(cuda, true, dt);
  at::autocast::increment_nesting();
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, a.retBool(prev));
  napi_set_element(env, arr, 1, a.retNum(static_cast<int>(prevDt)));
  return arr;
  KILN_CATCH(env)
}

/** autocastExit(isCuda, prevEnabled, prevDtype): restores the state autocastEnter returned. */
static napi_value autocastExit(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  setAutocastState(a.flag(0), a.flag(1), static_cast<at::ScalarType>(a.i32(2)));
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  return a.undefined();
  KILN_CATCH(env)
}

/** setCudnnBenchmark(on) -> previous */
static napi_value setCudnnBenchmark(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  bool prev = at::globalContext().benchmarkCuDNN();
  at::globalContext().setBenchmarkCuDNN(a.flag(0));
  return a.retBool(prev);
  KILN_CATCH(env)
}

/** backendFlags() -> [benchmarkCuDNN, deterministicCuDNN, allowTF32CuDNN, allowTF32CuBLAS, deterministicAlgorithms, deterministicAlgorithmsWarnOnly] */
static napi_value backendFlags(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  auto& c = at::globalContext();
  napi_value arr;
  napi_create_array_with_length(env, 6, &arr);
  bool v[6] = {c.benchmarkCuDNN(), c.deterministicCuDNN(), c.allowTF32CuDNN(), c.allowTF32CuBLAS(), c.deterministicAlgorithms(), c.deterministicAlgorithmsWarnOnly()};
  for (uint32_t i = 0; i < 6; ++i) {
    napi_value b;
    napi_get_boolean(env, v[i], &b);
    napi_set_element(env, arr, i, b);
  }
  return arr;
  KILN_CATCH(env)
}

/** setBackendFlag(index, on[, warnOnly]): the flag at backendFlags()' position `index` (5 is set with 4). */
static napi_value setBackendFlag(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  auto& c = at::globalContext();
  bool on = a.flag(1);
  switch (a.i32(0)) {
    case 0: c.setBenchmarkCuDNN(on); break;
    case 1: c.setDeterministicCuDNN(on); break;
    case 2: c.setAllowTF32CuDNN(on); break;
    case 3: c.setAllowTF32CuBLAS(on); break;
    case 4: c.setDeterministicAlgorithms(on, a.flag(2)); break;
    default: fail("INVALID_ARGUMENT", "setBackendFlag: unknown flag");
  }
  return a.undefined();
  KILN_CATCH(env)
}

static napi_value setGradEnabled(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(a.flag(0));
  return a.retBool(prev);
  KILN_CATCH(env)
}

static napi_value isGradEnabled(napi_env env, napi_callback_info info) {
  KILN_TRY
  Args a(env, info);
  return a.retBool(at::GradMode::is_enabled());
  KILN_CATCH(env)
}

void registerTensor(napi_env env, napi_value exports, KilnEnv* k) {
  struct { const char* name; RawFn fn; } fns[] = {
      {"setErrorClass", setErrorClass}, {"info", info}, {"cudaDevices", cudaDevices}, {"setNumThreads", setNumThreads}, {"tuneAllocator", tuneAllocator},
      {"manualSeed", manualSeed}, {"getRngState", getRngState}, {"setRngState", setRngState}, {"memory", memory}, {"free", freeTensor},
      {"fromBuffer", fromBuffer}, {"zeros", zeros}, {"ones", ones}, {"empty", empty}, {"full", full},
      {"rand", rand}, {"randn", randn}, {"randint", randint}, {"arange", arange},
      {"linspace", linspace}, {"eye", eye}, {"randperm", randperm},
      {"shape", shape}, {"dtype", dtype}, {"device", device}, {"requiresGrad", requiresGrad},
      {"setRequiresGrad", setRequiresGrad}, {"isContiguous", isContiguous}, {"isLeaf", isLeaf}, {"isPinned", isPinned},
      {"toBuffer", toBuffer}, {"item", item},
      {"backward", backward}, {"grad", grad}, {"setGrad", setGrad}, {"autogradGrad", autogradGrad}, {"liveGraphLeaves", liveGraphLeaves}, {"dropHistory", dropHistory},
      {"setGradEnabled", setGradEnabled}, {"setData", setData}, {"retainGrad", retainGrad},
      {"autocastEnter", autocastEnter}, {"autocastExit", autocastExit}, {"setCudnnBenchmark", setCudnnBenchmark}, {"backendFlags", backendFlags}, {"setBackendFlag", setBackendFlag}, {"isGradEnabled", isGradEnabled},
  };
  for (auto& f : fns) defineFn(env, exports, k, f.name, f.fn);
}

}  // namespace kiln
