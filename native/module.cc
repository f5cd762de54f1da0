#include "module.h"
#include "workers.h"
#include <torch/script.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/constants.h>
#include <atomic>
#include <mutex>
#ifdef KILN_WITH_CUDA_GRAPHS
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace kiln {

namespace {

// ---------------------------------------------------------------- spec reading

/** A JS string value; `what` names it in the error otherwise. */
std::string napiString(napi_env env, napi_value v, const char* what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) fail("INVALID_ARGUMENT", std::string(what) + " must be a string");
  std::string s(len, '\0');
  napi_get_value_string_utf8(env, v, &s[0], len + 1, &len);
  return s;
}

struct Spec {
  napi_env env;
  napi_value obj;
  KilnEnv* k;
  napi_value prop(const char* name) const {
    napi_value v;
    napi_get_named_property(env, obj, name, &v);
    return v;
  }
  bool has(const char* name) const {
    napi_value v = prop(name);
    napi_valuetype t;
    napi_typeof(env, v, &t);
    return t != napi_undefined && t != napi_null;
  }
  std::string str(const char* name) const {
    return napiString(env, prop(name), (std::string("module spec: '") + name + "'").c_str());
  }
  double num(const char* name) const {
    double d;
    if (napi_get_value_double(env, prop(name), &d) != napi_ok) fail("INVALID_ARGUMENT", std::string("module spec: '") + name + "' must be a number");
    return d;
  }
  bool flag(const char* name) const {
    bool b = false;
    napi_get_value_bool(env, prop(name), &b);
    return b;
  }
  std::vector<int64_t> ints(const char* name) const {
    napi_value arr = prop(name);
    uint32_t n = 0;
    if (napi_get_array_length(env, arr, &n) != napi_ok) fail("INVALID_ARGUMENT", std::string("module spec: '") + name + "' must be an array");
    std::vector<int64_t> out(n);
    for (uint32_t i = 0; i < n; ++i) {
      napi_value e;
      napi_get_element(env, arr, i, &e);
      if (napi_get_value_int64(env, e, &out[i]) != napi_ok)
        fail("INVALID_ARGUMENT", std::string("module spec: '") + name + "' must be an array of integers (element " + std::to_string(i) + " is not a number)");
    }
    return out;
  }
  /** A tensor by handle (the program keeps its own reference), or undefined for -1/absent. */
  at::Tensor tensor(const char* name) const {
    if (!has(name)) return at::Tensor();
    int32_t id;
    napi_get_value_int32(env, prop(name), &id);
    return id < 0 ? at::Tensor() : k->get(id);
  }
  Spec child(const char* name) const { return Spec{env, prop(name), k}; }
};

std::shared_ptr<Node> build(const Spec& s);

template <typename F>
struct Fn : Node {
  F f;
  explicit Fn(F fn) : f(std::move(fn)) {}
  at::Tensor forward(const at::Tensor& x) const override { return f(x); }
};
template <typename F>
std::shared_ptr<Node> fn(F f) { return std::make_shared<Fn<F>>(std::move(f)); }

struct Sequence : Node {
  std::vector<std::shared_ptr<Node>> children;
  at::Tensor forward(const at::Tensor& x) const override {
    at::Tensor h = x;
    for (auto& c : children) h = c->forward(h);
    return h;
  }
};

/** `x * gate(x)`: squeeze-and-excitation's channel gating. */
struct Gate : Node {
  std::shared_ptr<Node> gate;
  at::Tensor forward(const at::Tensor& x) const override { return x.mul(gate->forward(x)); }
};

/** `cat([x, main(x)], 1)`: DenseNet's layer, its new features appended to its input's. */
struct DenseCat : Node {
  std::shared_ptr<Node> main;
  at::Tensor forward(const at::Tensor& x) const override { return at::cat({x, main->forward(x)}, 1); }
};

struct Residual : Node {
  std::shared_ptr<Node> main, shortcut, post;
  at::Tensor forward(const at::Tensor& x) const override {
    at::Tensor out = main->forward(x).add(shortcut ? shortcut->forward(x) : x);
    return post ? post->forward(out) : out;
  }
};

std::shared_ptr<Node> build(const Spec& s) {
  std::string op = s.str("op");
  if (op == "sequential") {
    auto seq = std::make_shared<Sequence>();
    napi_value arr = s.prop("children");
    uint32_t n = 0;
    napi_get_array_length(s.env, arr, &n);
    for (uint32_t i = 0; i < n; ++i) {
      napi_value e;
      napi_get_element(s.env, arr, i, &e);
      seq->children.push_back(build(Spec{s.env, e, s.k}));
    }
    return seq;
  }
  if (op == "residual") {
    auto r = std::make_shared<Residual>();
    r->main = build(s.child("main"));
    if (s.has("shortcut")) r->shortcut = build(s.child("shortcut"));
    if (s.has("post")) r->post = build(s.child("post"));
    return r;
  }
  if (op == "densecat") {
    auto d = std::make_shared<DenseCat>();
    d->main = build(s.child("main"));
    return d;
  }
  if (op == "gate") {
    auto g = std::make_shared<Gate>();
    g->gate = build(s.child("gate"));
    return g;
  }
  if (op == "conv2d") {
    at::Tensor w = s.tensor("weight"), b = s.tensor("bias");
    auto stride = s.ints("stride"), dil = s.ints("dilation");
    int64_t groups = static_cast<int64_t>(s.num("groups"));
    std::vector<int64_t> pre = s.has("pad") ? s.ints("pad") : std::vector<int64_t>();
    std::string padMode = s.has("padMode") ? s.str("padMode") : "constant";
    if (s.has("paddingStr")) {
      std::string p = s.str("paddingStr");
      return fn([=](const at::Tensor& x) { return at::conv2d(x, w, b, stride, p, dil, groups); });
    }
    auto padding = s.ints("padding");
    if (!pre.empty()) {
      namespace F = torch::nn::functional;
      auto po = F::PadFuncOptions(pre);
      if (padMode == "reflect") po = po.mode(torch::kReflect);
      else if (padMode == "replicate") po = po.mode(torch::kReplicate);
      else if (padMode == "circular") po = po.mode(torch::kCircular);
      return fn([=](const at::Tensor& x) { return at::conv2d(F::pad(x, po), w, b, stride, padding, dil, groups); });
    }
    return fn([=](const at::Tensor& x) { return at::conv2d(x, w, b, stride, padding, dil, groups); });
  }
  if (op == "batchnorm") {
    at::Tensor w = s.tensor("weight"), b = s.tensor("bias"), rm = s.tensor("runningMean"), rv = s.tensor("runningVar");
    double eps = s.num("eps");
    bool batchStats = !rm.defined();
    return fn([=](const at::Tensor& x) {
      return at::batch_norm(x, w, b, rm, rv, batchStats, 0.0, eps, at::globalContext().userEnabledCuDNN());
    });
  }
  if (op == "linear") {
    at::Tensor w = s.tensor("weight"), b = s.tensor("bias");
    return fn([=](const at::Tensor& x) { return at::linear(x, w, b); });
  }
  if (op == "maxpool2d") {
    auto k = s.ints("kernel"), st = s.ints("stride"), p = s.ints("padding"), d = s.ints("dilation");
    bool ceil = s.flag("ceilMode");
    return fn([=](const at::Tensor& x) { return at::max_pool2d(x, k, st, p, d, ceil); });
  }
  if (op == "avgpool2d") {
    auto k = s.ints("kernel"), st = s.ints("stride"), p = s.ints("padding");
    bool ceil = s.flag("ceilMode"), cip = s.flag("countIncludePad");
    return fn([=](const at::Tensor& x) { return at::avg_pool2d(x, k, st, p, ceil, cip); });
  }
  if (op == "adaptiveavgpool2d") {
    auto size = s.ints("size");
    return fn([=](const at::Tensor& x) { return at::adaptive_avg_pool2d(x, size); });
  }
  if (op == "adaptivemaxpool2d") {
    auto size = s.ints("size");
    return fn([=](const at::Tensor& x) { return std::get<0>(at::adaptive_max_pool2d(x, size)); });
  }
  if (op == "flatten") {
    int64_t a = static_cast<int64_t>(s.num("start")), e = static_cast<int64_t>(s.num("end"));
    return fn([=](const at::Tensor& x) { return x.flatten(a, e); });
  }
  if (op == "mul") {
    double m = s.num("scale");
    return fn([=](const at::Tensor& x) { return x.mul(m); });
  }
  if (op == "layernorm") {
    at::Tensor w = s.tensor("weight"), b = s.tensor("bias");
    auto shape = s.ints("shape");
    double eps = s.num("eps");
    return fn([=](const at::Tensor& x) { return at::layer_norm(x, shape, w, b, eps); });
  }
  if (op == "permute") {
    auto dims = s.ints("dims");
    return fn([=](const at::Tensor& x) { return x.permute(dims); });
  }
  if (op == "scale") {
    at::Tensor w = s.tensor("weight");
    return fn([=](const at::Tensor& x) { return x.mul(w); });
  }
  if (op == "leakyrelu") {
    double slope = s.num("slope");
    return fn([=](const at::Tensor& x) { return at::leaky_relu(x, slope); });
  }
  if (op == "softmax") {
    int64_t dim = static_cast<int64_t>(s.num("dim"));
    return fn([=](const at::Tensor& x) { return x.softmax(dim); });
  }
  if (op == "gelu") {
    bool tanhApprox = s.has("approximate") && s.str("approximate") == "tanh";
    return fn([=](const at::Tensor& x) { return tanhApprox ? at::gelu(x, "tanh") : at::gelu(x); });
  }
  if (op == "hardtanh") {
    double lo = s.num("min"), hi = s.num("max");
    return fn([=](const at::Tensor& x) { return at::hardtanh(x, lo, hi); });
  }
  if (op == "relu") return fn([](const at::Tensor& x) { return x.relu(); });
  if (op == "silu") return fn([](const at::Tensor& x) { return at::silu(x); });
  if (op == "hardswish") return fn([](const at::Tensor& x) { return at::hardswish(x); });
  if (op == "hardsigmoid") return fn([](const at::Tensor& x) { return at::hardsigmoid(x); });
  if (op == "tanh") return fn([](const at::Tensor& x) { return x.tanh(); });
  if (op == "sigmoid") return fn([](const at::Tensor& x) { return x.sigmoid(); });
  if (op == "identity") return fn([](const at::Tensor& x) { return x; });
  fail("INVALID_ARGUMENT", "module spec: unknown op '" + op + "'");
}

// ---------------------------------------------------------------- runnables

struct ProgramRunnable : Runnable {
  std::shared_ptr<Node> root;
  at::Tensor run(const at::Tensor& x) override { return root->forward(x); }
};

struct ScriptRunnable : Runnable {
  torch::jit::Module module;
  std::mutex mu;  // a scripted module's forward is not guaranteed re-entrant (it may change its attributes)
  bool reentrant = false;  // a frozen module has no attributes left: its graph executor runs calls side by side
  at::Tensor run(const at::Tensor& x) override {
    std::unique_lock<std::mutex> lock(mu, std::defer_lock);
    if (!reentrant) lock.lock();
    c10::IValue out = module.forward({x});
    if (out.isTensor()) return out.toTensor();
    if (out.isTuple() && !out.toTuple()->elements().empty() && out.toTuple()->elements()[0].isTensor())
      return out.toTuple()->elements()[0].toTensor();
    fail("INVALID_ARGUMENT", "TorchScript forward did not return a tensor");
  }
};

/** Per-environment table of runnables (programs and TorchScript modules). */
struct RunnableTable {
  std::vector<std::shared_ptr<Runnable>> slots;
  std::vector<int32_t> freeList;
  int32_t put(std::shared_ptr<Runnable> r) {
    if (!freeList.empty()) {
      int32_t id = freeList.back();
      freeList.pop_back();
      slots[id] = std::move(r);
      return id;
    }
    slots.push_back(std::move(r));
    return static_cast<int32_t>(slots.size() - 1);
  }
  std::shared_ptr<Runnable> get(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= slots.size() || !slots[id]) fail("DISPOSED", "module handle " + std::to_string(id) + " is not alive (it was disposed)");
    return slots[id];
  }
  /** The runnable as a T (a shared reference: a worker job keeps it alive), or an error naming the wrong kind. */
  template <typename T>
  std::shared_ptr<T> shared(int32_t id) const {
    auto p = std::dynamic_pointer_cast<T>(get(id));
    if (!p) fail("INVALID_ARGUMENT", "module handle " + std::to_string(id) + " has the wrong kind");
    return p;
  }
  template <typename T>
  T* as(int32_t id) const {
    return shared<T>(id).get();
  }
  void release(int32_t id) {
    if (id < 0 || static_cast<size_t>(id) >= slots.size() || !slots[id]) return;
    slots[id].reset();
    freeList.push_back(id);
  }
};

RunnableTable& table(KilnEnv* k) {
  if (!k->runnables) k->runnables = std::shared_ptr<void>(new RunnableTable(), [](void* p) { delete static_cast<RunnableTable*>(p); });
  return *static_cast<RunnableTable*>(k->runnables.get());
}

napi_value compileProgram(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto p = std::make_shared<ProgramRunnable>();
  p->root = build(Spec{env, a.argv[0], a.k});
  return a.retNum(table(a.k).put(p));
  KILN_CATCH(env)
}

napi_value freeRunnable(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  table(a.k).release(a.i32(0));
  return nullptr;
  KILN_CATCH(env)
}

/** runnableCount() -> live runnables (programs, TorchScript and optimised modules, CUDA graphs): for leak tests. */
napi_value runnableCount(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const RunnableTable& t = table(a.k);
  return a.retNum(static_cast<double>(t.slots.size() - t.freeList.size()));
  KILN_CATCH(env)
}

/** runSync(handle, x, grad): forward on the calling thread (TorchScript's sync forward). */
napi_value runSync(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto r = table(a.k).get(a.i32(0));
  at::Tensor x = a.t(1);
  if (a.flag(2)) return a.ret(r->run(x));
  at::NoGradGuard ng;
  return a.ret(r->run(x));
  KILN_CATCH(env)
}

struct RunJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  std::shared_ptr<Runnable> runnable;  // the job's own references: dispose cannot free them
  at::Tensor input, output;
  std::string error, code;
};

void runExecute(napi_env, void* data) {
  auto* job = static_cast<RunJob*>(data);
  try {
    at::NoGradGuard ng;
    job->output = job->runnable->run(job->input);
  } catch (...) {
    captureCurrent(job->code, job->error);
  }
}

void runComplete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<RunJob> job(static_cast<RunJob*>(data));
  napi_delete_async_work(env, job->work);
  if (rejectFailed(env, status, *job, "forwardAsync cancelled")) return;
  KilnEnv* k = nullptr;
  napi_get_instance_data(env, reinterpret_cast<void**>(&k));
  napi_value id;
  napi_create_int32(env, k->put(std::move(job->output)), &id);
  k->flushExternal(env);
  napi_resolve_deferred(env, job->deferred, id);
}

/** runAsync(handle, x) -> Promise<handle>: no-grad forward on a libuv worker thread. */
napi_value runAsync(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto job = std::make_unique<RunJob>();
  job->runnable = table(a.k).get(a.i32(0));
  job->input = a.t(1);
  return queueJob(env, std::move(job), "kiln.forwardAsync", runExecute, runComplete);
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- CUDA graphs

#ifndef KILN_WITH_CUDA_GRAPHS
[[noreturn]] void noGraphs() {
  fail("CUDA_UNAVAILABLE", "this Kiln build has no CUDA graph support (it was built against a libtorch without CUDA, or with KILN_CUDA_GRAPHS=0)");
}
#endif

#ifdef KILN_WITH_CUDA_GRAPHS
/**
 * Another runnable's no-grad forward for one input shape, captured once as a CUDA graph and
 * replayed: one graph launch per call instead of one launch per kernel. The output lives in the
 * graph's memory pool, so each call returns a copy.
 */
struct GraphRunnable : Runnable {
  std::shared_ptr<Runnable> inner;
  std::vector<at::Tensor> weights;  // aliases of the weights' storage at capture: a later Module.to() cannot free what the graph reads
  at::cuda::CUDAGraph graph;
  at::Tensor staticIn, staticOut;
  std::mutex mu;  // one replay at a time: replays share the static input and output
  at::Tensor run(const at::Tensor& x) override {
    if (x.sizes() != staticIn.sizes() || x.scalar_type() != staticIn.scalar_type() || x.device() != staticIn.device())
      fail("INVALID_ARGUMENT", "this CUDA graph was captured for input " + c10::str(staticIn.sizes(), " ", staticIn.scalar_type(), " on ", staticIn.device()) +
                                   ", got " + c10::str(x.sizes(), " ", x.scalar_type(), " on ", x.device()) + " (capture one graph per input shape)");
    // Copy-in, replay and copy-out are enqueued under the lock on the caller's current stream;
    // every Kiln caller uses the device's default stream, so replays are ordered on the GPU too.
    std::lock_guard<std::mutex> lock(mu);
    at::NoGradGuard ng;
    c10::cuda::CUDAGuard dg(staticIn.device());
    staticIn.copy_(x);
    graph.replay();
    return staticOut.clone();
  }
};

// A capture that fails can leave libtorch's caching allocator in capture mode (before 2.12 the
// failed capture_end does not end the pool allocation), which is process-wide state: after one,
// further captures in this process are refused rather than risking an allocator assert.
std::atomic<bool> captureFailed{false};
#endif

/** graphCapture(handle, example, warmup, weights) -> handle of a runnable replaying a CUDA graph of handle's forward. */
napi_value graphCapture(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
#ifdef KILN_WITH_CUDA_GRAPHS
  auto inner = table(a.k).get(a.i32(0));
  const at::Tensor& example = a.t(1);
  int warmup = a.i32(2);
  if (!example.is_cuda()) fail("INVALID_ARGUMENT", "CUDA graphs capture work on a CUDA device; the example input is on " + c10::str(example.device()));
  if (captureFailed) fail("CUDA_UNAVAILABLE", "an earlier CUDA graph capture failed in this process; libtorch's allocator may still be in capture mode, so no further captures are made (restart the process)");
  auto g = std::make_shared<GraphRunnable>();
  g->inner = inner;
  for (const at::Tensor& w : a.tensors(3)) g->weights.push_back(w.detach());
  at::NoGradGuard ng;
  c10::cuda::CUDAGuard dg(example.device());
  g->staticIn = example.clone();
  torch::cuda::synchronize(example.device().index());
  {
    // warm up (cuDNN autotuning, allocator) and capture on a side stream, as torch.cuda.graph does
    c10::cuda::CUDAStreamGuard sg(c10::cuda::getStreamFromPool(false, example.device().index()));
    for (int i = 0; i < warmup; i++) inner->run(g->staticIn);
    torch::cuda::synchronize(example.device().index());
#if TORCH_VERSION_MAJOR >= 2
    g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
#else
    g->graph.capture_begin();
#endif
    try {
      g->staticOut = inner->run(g->staticIn);
    } catch (...) {
      captureFailed = true;
      try { g->graph.capture_end(); } catch (...) {}
      throw;
    }
    try {
      g->graph.capture_end();
    } catch (...) {
      captureFailed = true;
      throw;
    }
  }
  torch::cuda::synchronize(example.device().index());
  return a.retNum(table(a.k).put(g));
#else
  noGraphs();
#endif
  KILN_CATCH(env)
}

#ifdef KILN_WITH_CUDA_GRAPHS
/**
 * A recorded stretch of GPU work — typically a whole training step (forward, loss, backward,
 * optimizer update) — captured between graphBegin and graphEnd while JS issues the ops on this
 * thread, then replayed with one launch. The tensors it reads and writes belong to the JS side,
 * which keeps them alive; memory allocated during the capture stays in the graph's private pool.
 */
struct StepGraph : Runnable {
  at::cuda::CUDAGraph graph;
  at::Device device{at::kCUDA, 0};
  c10::optional<c10::cuda::CUDAStream> before;  // this thread's stream for the device before the capture
  bool autocastCache = true;                     // and its autocast cache setting (off while recording, as torch.cuda.graph needs)
  bool recording = false, recorded = false;
  at::Tensor run(const at::Tensor&) override { fail("INVALID_ARGUMENT", "a recorded CUDA graph takes no input: call replay()"); }
  void restoreStream() {
    if (before) {
      c10::cuda::setCurrentCUDAStream(*before);
      at::autocast::set_autocast_cache_enabled(autocastCache);
    }
    before.reset();
  }
  /**
   * Ends a recording that is given up (JS threw inside it, or an op failed) and restores the thread's state. When
   * the capture still ends cleanly (a JS-side error) the process may capture again; when it does not (a CUDA error
   * invalidated it), libtorch's allocator may be left in capture mode and further captures are refused.
   */
  void abort() {
    if (recording) {
      recording = false;
      try {
        graph.capture_end();
      } catch (...) {
        captureFailed = true;
      }
    }
    restoreStream();
  }
  ~StepGraph() override { abort(); }
};
#endif

/** graphBegin(device) -> handle of a graph now recording this thread's work on the device (on a side stream). */
napi_value graphBegin(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
#ifdef KILN_WITH_CUDA_GRAPHS
  at::Device d = parseDevice(a.str(0));
  if (!d.is_cuda()) fail("INVALID_ARGUMENT", "CUDA graphs record work on a CUDA device, not " + c10::str(d));
  if (captureFailed) fail("CUDA_UNAVAILABLE", "an earlier CUDA graph capture failed in this process; libtorch's allocator may still be in capture mode, so no further captures are made (restart the process)");
  auto g = std::make_shared<StepGraph>();
  g->device = d.has_index() ? d : at::Device(at::kCUDA, c10::cuda::current_device());
  c10::DeviceIndex idx = g->device.index();
  torch::cuda::synchronize(idx);
  g->before = c10::cuda::getCurrentCUDAStream(idx);
  g->autocastCache = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_cache_enabled(false);
  // ops issued from this thread (and the backward passes they start) now go to a side stream
  c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, idx));
  try {
    c10::cuda::CUDAGuard dg(g->device);
#if TORCH_VERSION_MAJOR >= 2
    g->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
#else
    g->graph.capture_begin();
#endif
  } catch (...) {
    g->restoreStream();
    throw;
  }
  g->recording = true;
  a.k->staleLeaves = a.k->liveGraphLeaves(g->device);
  return a.retNum(table(a.k).put(g));
#else
  noGraphs();
#endif
  KILN_CATCH(env)
}

/** graphEnd(handle): finishes the recording; the graph can then be replayed. */
napi_value graphEnd(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
#ifdef KILN_WITH_CUDA_GRAPHS
  auto* g = table(a.k).as<StepGraph>(a.i32(0));
  if (!g->recording) fail("INVALID_ARGUMENT", "this CUDA graph is not recording");
  g->recording = false;
  a.k->staleLeaves = 0;
  try {
    c10::cuda::CUDAGuard dg(g->device);
    g->graph.capture_end();
  } catch (...) {
    captureFailed = true;
    g->restoreStream();
    throw;
  }
  g->restoreStream();
  g->recorded = true;
  torch::cuda::synchronize(g->device.index());
  return nullptr;
#else
  noGraphs();
#endif
  KILN_CATCH(env)
}

/** graphAbort(handle): ends a recording that is given up (see StepGraph::abort). */
napi_value graphAbort(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
#ifdef KILN_WITH_CUDA_GRAPHS
  table(a.k).as<StepGraph>(a.i32(0))->abort();
#endif
  a.k->staleLeaves = 0;
  return nullptr;
  KILN_CATCH(env)
}

/** graphReplay(handle): launches the recorded work on the device's current stream. */
napi_value graphReplay(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
#ifdef KILN_WITH_CUDA_GRAPHS
  auto* g = table(a.k).as<StepGraph>(a.i32(0));
  if (!g->recorded) fail("INVALID_ARGUMENT", g->recording ? "this CUDA graph is still recording" : "this CUDA graph was not recorded (its recording failed)");
  c10::cuda::CUDAGuard dg(g->device);
  g->graph.replay();
  return nullptr;
#else
  noGraphs();
#endif
  KILN_CATCH(env)
}

/** graphsBuilt() -> whether this build can capture CUDA graphs. */
napi_value graphsBuilt(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
#ifdef KILN_WITH_CUDA_GRAPHS
  return a.retBool(true);
#else
  return a.retBool(false);
#endif
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- TorchScript

/** A TorchScript archive's bytes, owned (libtorch may keep its reader past the load). */
struct BytesReader : caffe2::serialize::ReadAdapterInterface {
  std::vector<uint8_t> bytes;
  explicit BytesReader(std::vector<uint8_t> b) : bytes(std::move(b)) {}
  size_t size() const override { return bytes.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char*) const override {
    if (pos >= bytes.size()) return 0;
    size_t m = std::min<uint64_t>(n, bytes.size() - pos);
    std::memcpy(buf, bytes.data() + pos, m);
    return m;
  }
};

/** jitLoad(bytes: Uint8Array, device|undefined, name) -> handle (the archive read from memory: TS has read and checked the file) */
napi_value jitLoad(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  bool typed = false;
  napi_is_typedarray(env, a.argv[0], &typed);
  napi_typedarray_type tt = napi_int8_array;
  size_t len = 0;
  void* ptr = nullptr;
  if (typed) napi_get_typedarray_info(env, a.argv[0], &tt, &len, &ptr, nullptr, nullptr);
  if (!typed || tt != napi_uint8_array) fail("INVALID_ARGUMENT", "jitLoad: bytes must be a Uint8Array");
  std::string name = a.str(2);
  auto s = std::make_shared<ScriptRunnable>();
  c10::optional<at::Device> device;
  if (a.has(1)) device = parseDevice(a.str(1));
  const auto* p = static_cast<const uint8_t*>(ptr);
  try {
    s->module = torch::jit::load(std::make_shared<BytesReader>(std::vector<uint8_t>(p, p + len)), device);
  } catch (const c10::Error& e) {
    fail("IO", "cannot load TorchScript file " + name + ": " + torchMessage(e));
  } catch (const std::exception& e) {
    fail("IO", "cannot load TorchScript file " + name + ": " + e.what());
  }
  s->module.eval();
  return a.retNum(table(a.k).put(s));
  KILN_CATCH(env)
}

/** jitTrain(handle, on) */
napi_value jitTrain(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  table(a.k).as<ScriptRunnable>(a.i32(0))->module.train(a.flag(1));
  return nullptr;
  KILN_CATCH(env)
}

/** jitTo(handle, device, dtype|-1) */
napi_value jitTo(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto* s = table(a.k).as<ScriptRunnable>(a.i32(0));
  at::Device d = parseDevice(a.str(1));
  int32_t dt = a.i32(2);
  if (dt >= 0) s->module.to(d, toScalarType(dt));
  else s->module.to(d);
  return nullptr;
  KILN_CATCH(env)
}

/** jitNamedParameters(handle) -> [[name, handle], ...] (parameters and buffers) */
napi_value jitState(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto* s = table(a.k).as<ScriptRunnable>(a.i32(0));
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t i = 0;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    napi_value pair;
    napi_create_array_with_length(env, 2, &pair);
    napi_set_element(env, pair, 0, a.retStr(name));
    napi_value id;
    napi_create_int32(env, a.k->put(t), &id);
    napi_set_element(env, pair, 1, id);
    napi_set_element(env, arr, i++, pair);
  };
  for (const auto& p : s->module.named_parameters(true)) add(p.name, p.value);
  for (const auto& b : s->module.named_buffers(true)) add(b.name, b.value);
  return arr;
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- TorchScript export

/** The elements of a JS array; `what` names it in the error otherwise. */
std::vector<napi_value> elements(napi_env env, napi_value arr, const char* what) {
  uint32_t n = 0;
  if (napi_get_array_length(env, arr, &n) != napi_ok) fail("INVALID_ARGUMENT", std::string(what) + " must be an array");
  std::vector<napi_value> out(n);
  for (uint32_t i = 0; i < n; ++i) napi_get_element(env, arr, i, &out[i]);
  return out;
}

/** "a.b.c" -> ("a.b", "c"); "c" -> ("", "c"). */
std::pair<std::string, std::string> splitLast(const std::string& key) {
  size_t dot = key.rfind('.');
  if (dot == std::string::npos) return {"", key};
  return {key.substr(0, dot), key.substr(dot + 1)};
}

/**
 * The Kiln module tree as a torch::jit::Module (args 0–3 of jitExport/jitOptimize: spec, modules, state, example):
 * a module tree mirroring the Kiln one (modules: [[dotted path, class name], ...] in pre-order, the root first;
 * state: [[key, handle, isBuffer], ...]) with every parameter and buffer registered as an attribute under its
 * PyTorch key, and as `forward` the native program's forward traced on `example` with the module as `self` (as
 * Python's torch.jit.trace does: the graph reaches weights through prim::GetAttr, no tensor is baked in as a constant).
 */
torch::jit::Module tracedModule(napi_env env, Args& a) {
  std::shared_ptr<Node> program = build(Spec{env, a.argv[0], a.k});
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  std::map<std::string, torch::jit::Module> mods;
  for (napi_value e : elements(env, a.argv[1], "modules")) {
    auto pair = elements(env, e, "modules[i]");
    if (pair.size() != 2) fail("INVALID_ARGUMENT", "modules[i] must be [path, className]");
    std::string path = napiString(env, pair[0], "module path"), cls = napiString(env, pair[1], "module class name");
    torch::jit::Module m(c10::QualifiedName("__torch__.kiln." + cls), cu, /*shouldMangle=*/true);
    m.register_attribute("training", c10::BoolType::get(), false);
    if (path.empty()) {
      if (!mods.empty()) fail("INVALID_ARGUMENT", "modules: the root ('') must come first, once");
    } else {
      auto [parent, name] = splitLast(path);
      auto it = mods.find(parent);
      if (it == mods.end()) fail("INVALID_ARGUMENT", "modules: '" + path + "' comes before its parent");
      it->second.register_module(name, m);
    }
    mods.emplace(path, m);
  }
  if (mods.find("") == mods.end()) fail("INVALID_ARGUMENT", "modules: no root module");
  for (napi_value e : elements(env, a.argv[2], "state")) {
    auto entry = elements(env, e, "state[i]");
    if (entry.size() != 3) fail("INVALID_ARGUMENT", "state[i] must be [key, handle, isBuffer]");
    std::string key = napiString(env, entry[0], "state key");
    int32_t id = -1;
    bool isBuffer = false;
    napi_get_value_int32(env, entry[1], &id);
    napi_get_value_bool(env, entry[2], &isBuffer);
    auto [owner, name] = splitLast(key);
    auto it = mods.find(owner);
    if (it == mods.end()) fail("INVALID_ARGUMENT", "state: no module '" + owner + "' for '" + key + "'");
    const at::Tensor& t = a.k->get(id);
    if (isBuffer) it->second.register_buffer(name, t);
    else it->second.register_parameter(name, t, /*is_buffer=*/false);
  }
  torch::jit::Module root = mods.at("");
  at::Tensor example = a.t(3);
  std::shared_ptr<torch::jit::Graph> graph;
  try {
    at::NoGradGuard ng;
    auto traced = torch::jit::tracer::trace(
        {example}, [&](torch::jit::Stack in) -> torch::jit::Stack { return {program->forward(in.at(0).toTensor())}; },
        [](const torch::autograd::Variable&) { return std::string(); }, /*strict=*/true, /*force_outplace=*/false, &root, {"input"});
    graph = traced.first->graph;
  } catch (const c10::Error& e) {
    fail("TORCH", "tracing the model's forward on the example " + c10::str(example.sizes()) + " failed: " + torchMessage(e));
  }
  for (torch::jit::Node* n : graph->nodes())
    if (n->kind() == c10::prim::Constant && n->output()->type()->isSubtypeOf(*c10::TensorType::get()))
      fail("INVALID_ARGUMENT", "the traced forward uses a tensor that is not one of the model's parameters or buffers (it would be baked in as a constant)");
  auto fn = root._ivalue()->compilation_unit()->create_function(c10::QualifiedName(*root.type()->name(), "forward"), graph);
  root.type()->addMethod(fn);
  return root;
}

/** jitExport(spec, modules, state, example, file): saves tracedModule's module as a TorchScript file. */
napi_value jitExport(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  torch::jit::Module root = tracedModule(env, a);
  std::string file = a.str(4);
  try {
    root.save(file);
  } catch (const c10::Error& e) {
    fail("IO", "cannot write TorchScript file " + file + ": " + torchMessage(e));
  } catch (const std::exception& e) {
    fail("IO", "cannot write TorchScript file " + file + ": " + e.what());
  }
  return nullptr;
  KILN_CATCH(env)
}

/**
 * oneDNN's adaptive average pooling refuses output sizes that do not divide the input's (VGG's 7×7 from 2×2,
 * simple-cnn at 28²), and libtorch's inference optimisation moves every adaptive_avg_pool2d into oneDNN whatever
 * the size. Those with another output size than 1×1 become `_adaptive_avg_pool2d` — the kernel adaptive_avg_pool2d
 * runs for such sizes anyway — which the optimisation leaves on dense tensors.
 */
void keepAdaptivePoolingDense(torch::jit::Graph& g) {
  static const c10::Symbol pool = c10::Symbol::fromQualString("aten::adaptive_avg_pool2d");
  static const c10::Symbol dense = c10::Symbol::fromQualString("aten::_adaptive_avg_pool2d");
  std::vector<torch::jit::Node*> found;
  for (torch::jit::Node* n : g.nodes())
    if (n->kind() == pool && n->inputs().size() == 2) {
      c10::optional<c10::IValue> size = torch::jit::toIValue(n->input(1));
      if (size && size->isIntList() && size->toIntVector() == std::vector<int64_t>{1, 1}) continue;
      found.push_back(n);
    }
  for (torch::jit::Node* n : found) {
    n->replaceWithNewSymbol(dense);
    n->destroy();
  }
}

/**
 * A frozen, inference-optimised copy of `m` (torch.jit.optimize_for_inference; `lock`, when given, is held while `m`
 * is copied): weights become constants (a
 * deep copy first, so the result is a snapshot that later training of the source does not reach), batch norm
 * is folded into the convolutions before it, and on the CPU in float32 convolutions run on oneDNN with prepacked
 * weights and activations kept in its blocked layout between them (on CUDA, conv + add + ReLU fuse in cuDNN).
 */
std::shared_ptr<ScriptRunnable> optimizedRunnable(const torch::jit::Module& m, std::mutex* lock = nullptr) {
  auto s = std::make_shared<ScriptRunnable>();
  s->reentrant = true;
  try {
    at::NoGradGuard ng;
    torch::jit::Module copy;
    {
      std::unique_lock<std::mutex> held;
      if (lock) held = std::unique_lock<std::mutex>(*lock);  // the source's lock, for the copy only
      copy = m.clone();
    }
    copy.eval();
    torch::jit::Module frozen = torch::jit::freeze(copy);
    keepAdaptivePoolingDense(*frozen.get_method("forward").graph());
    s->module = torch::jit::optimize_for_inference(frozen);  // frozen already: the oneDNN and fusion passes only
  } catch (const c10::Error& e) {
    fail("TORCH", "optimizing the model for inference failed: " + torchMessage(e));
  }
  return s;
}

/** A job of jitOptimizeAsync / jitOptimizeScriptAsync: the clone, freeze and optimisation on a libuv worker thread. */
struct OptimizeJob {
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  torch::jit::Module module;                // a traced Kiln model (tensors of its own over the model's memory), or
  std::shared_ptr<ScriptRunnable> source;   // a loaded TorchScript module (kept alive; its lock held while cloned)
  std::shared_ptr<ScriptRunnable> out;
  std::string error, code;
};

void optimizeExecute(napi_env, void* data) {
  auto* job = static_cast<OptimizeJob*>(data);
  try {
    if (job->source) {
      job->out = optimizedRunnable(job->source->module, &job->source->mu);
    } else {
      job->out = optimizedRunnable(job->module);
    }
  } catch (...) {
    captureCurrent(job->code, job->error);
  }
}

void optimizeComplete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<OptimizeJob> job(static_cast<OptimizeJob*>(data));
  napi_delete_async_work(env, job->work);
  if (rejectFailed(env, status, *job, "kiln.jit.optimizeForInferenceAsync cancelled")) return;
  KilnEnv* k = nullptr;
  napi_get_instance_data(env, reinterpret_cast<void**>(&k));
  napi_value id;
  napi_create_int32(env, table(k).put(job->out), &id);
  napi_resolve_deferred(env, job->deferred, id);
}

/** jitOptimizeAsync(spec, modules, state, example) -> Promise<handle>: jitOptimize with the trace here, the rest on a worker. */
napi_value jitOptimizeAsync(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto job = std::make_unique<OptimizeJob>();
  job->module = tracedModule(env, a);
  // the trace matched the model's own tensor objects; the worker gets its own over the same memory, so that the
  // model's later to() (which swaps a tensor's storage) or dispose cannot reach what it copies
  for (torch::jit::Module m : job->module.modules()) {
    std::vector<std::pair<std::string, at::Tensor>> slots;
    for (const auto& p : m.named_parameters(false)) slots.emplace_back(p.name, p.value.detach());
    for (const auto& b : m.named_buffers(false)) slots.emplace_back(b.name, b.value.detach());
    for (auto& [name, t] : slots) m._ivalue()->setAttr(name, t);
  }
  return queueJob(env, std::move(job), "kiln.jit.optimizeForInferenceAsync", optimizeExecute, optimizeComplete);
  KILN_CATCH(env)
}

/** jitOptimizeScriptAsync(handle) -> Promise<handle>: jitOptimizeScript on a worker. */
napi_value jitOptimizeScriptAsync(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto job = std::make_unique<OptimizeJob>();
  job->source = table(a.k).shared<ScriptRunnable>(a.i32(0));
  return queueJob(env, std::move(job), "kiln.jit.optimizeForInferenceAsync", optimizeExecute, optimizeComplete);
  KILN_CATCH(env)
}

/** jitOptimize(spec, modules, state, example) -> handle of a runnable: tracedModule's module frozen and optimised. */
napi_value jitOptimize(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.retNum(table(a.k).put(optimizedRunnable(tracedModule(env, a))));
  KILN_CATCH(env)
}

/** jitGraph(handle) -> the forward graph of a TorchScript or optimised module, as text (what Python's `.graph` prints). */
napi_value jitGraph(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto* s = table(a.k).as<ScriptRunnable>(a.i32(0));
  return a.retStr(s->module.get_method("forward").graph()->toString());
  KILN_CATCH(env)
}

/** jitOptimizeScript(handle) -> handle of a runnable: a loaded TorchScript module frozen and optimised. */
napi_value jitOptimizeScript(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto* s = table(a.k).as<ScriptRunnable>(a.i32(0));
  return a.retNum(table(a.k).put(optimizedRunnable(s->module, &s->mu)));
  KILN_CATCH(env)
}

}  // namespace

void registerModule(napi_env env, napi_value exports, KilnEnv* k) {
  struct { const char* name; RawFn fn; } fns[] = {
      {"compileProgram", compileProgram}, {"freeRunnable", freeRunnable}, {"runnableCount", runnableCount}, {"runSync", runSync},
      {"runAsync", runAsync}, {"jitLoad", jitLoad}, {"jitTrain", jitTrain}, {"jitTo", jitTo},
      {"jitState", jitState}, {"jitExport", jitExport}, {"jitOptimize", jitOptimize}, {"jitOptimizeScript", jitOptimizeScript}, {"jitGraph", jitGraph}, {"jitOptimizeAsync", jitOptimizeAsync}, {"jitOptimizeScriptAsync", jitOptimizeScriptAsync}, {"graphCapture", graphCapture}, {"graphsBuilt", graphsBuilt},
      {"graphBegin", graphBegin}, {"graphEnd", graphEnd}, {"graphAbort", graphAbort}, {"graphReplay", graphReplay},
  };
  for (auto& f : fns) defineFn(env, exports, k, f.name, f.fn);
}

}  // namespace kiln
