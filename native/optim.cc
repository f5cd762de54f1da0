// Optimizer steps: one native call updates every parameter of a group, as PyTorch's multi-tensor
// `foreach` algorithms (its default on CUDA: a few kernel launches per group, not several per
// parameter), with the arithmetic of its single-tensor ones in the same order. State tensors (momentum, moments)
// live in the tensor table and are owned by the TS optimizer, so they save and load like
// any other tensor. Parameters without a gradient are skipped.
//
// Capturable steps (PyTorch's `capturable=True`): the learning rate and the step counts are
// read from device tensors at run time instead of being passed as numbers, so a step recorded
// into a CUDA graph follows learning-rate schedules and Adam's bias correction on every replay.
#include "tensor.h"
#include <torch/version.h>
#include <algorithm>

// libtorch 2.1 added `_foreach` overloads taking a (0-d, device) tensor operand — the capturable lr, the clip coefficient
#define KILN_FOREACH_TENSOR_OPERAND (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1))
// PyTorch's fused Adam/AdamW kernels with a device (tensor) lr, as `torch.optim.Adam(fused=True)` calls them; compiled and
// checked from 2.6 on (scripts/check-torch2.sh)
#define KILN_FUSED_ADAM (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6))

namespace kiln {

namespace {

/** The steps array (Float64Array) the TS side owns; incremented here per updated param. */
double* stepsOf(const Args& a, size_t i, size_t n) {
  napi_typedarray_type tt;
  size_t length;
  void* data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(a.env, a.argv[i], &tt, &length, &data, &ab, &off) != napi_ok || tt != napi_float64_array || length != n)
    fail("INVALID_ARGUMENT", "optimizer step counters must be a Float64Array with one entry per parameter");
  return static_cast<double*>(data);
}

/** The capturable step's device scalars (args i, i+1: lr, 0-d; steps, one per parameter), or none. */
struct DeviceScalars {
  at::Tensor lr, steps;
  bool on() const { return lr.defined(); }
  DeviceScalars(const Args& a, size_t i, size_t n) {
    if (!a.has(i)) return;
    lr = a.t(i);
    steps = a.t(i + 1);
    if (lr.dim() != 0 || steps.dim() != 1 || steps.size(0) != static_cast<int64_t>(n))
      fail("INVALID_ARGUMENT", "a capturable optimizer step needs a 0-d lr tensor and one step count per parameter");
  }
  /** Counts a step of parameter i on the device (the host counter is kept too). */
  void count(size_t i) const {
    if (on()) steps.select(0, static_cast<int64_t>(i)).add_(1);
  }
};

/** p -= lr * d for every pair, with lr the number or the device scalar. */
void subScaled(std::vector<at::Tensor>& p, const std::vector<at::Tensor>& d, double lr, const DeviceScalars& ds) {
  if (!ds.on()) {
    at::_foreach_add_(p, d, -lr);
    return;
  }
#if KILN_FOREACH_TENSOR_OPERAND
  at::_foreach_add_(p, at::_foreach_mul(d, ds.lr), -1);
#else
  for (size_t k = 0; k < p.size(); ++k) p[k].addcmul_(d[k], ds.lr, -1);
#endif
}

/** The parameters of a group that have a gradient (the others are skipped), and their indices. */
struct WithGrad {
  std::vector<size_t> idx;
  std::vector<at::Tensor> params, grads;
  explicit WithGrad(const std::vector<at::Tensor>& all) {
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i].grad().defined()) {
        idx.push_back(i);
        params.push_back(all[i]);
        grads.push_back(all[i].grad());
      }
  }
};

/** The gradients the parameters have (the others are skipped), detached. */
std::vector<at::Tensor> definedGrads(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> grads;
  for (auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad().detach());
  return grads;
}

/** Adam's capturable bias corrections from a device step count: -lr / (1 - b1^t) and sqrt(1 - b2^t). */
std::pair<at::Tensor, at::Tensor> biasCorrections(const at::Tensor& lr, const at::Tensor& step, double b1, double b2) {
  return {lr.div(at::pow(b1, step).neg_().add_(1)).neg_(), at::pow(b2, step).neg_().add_(1).sqrt_()};
}

/** Counts a step of the given parameters on the device (one launch when every parameter took part). */
void countOnDevice(const DeviceScalars& ds, const std::vector<size_t>& idx, size_t n) {
  if (!ds.on() || idx.empty()) return;
  if (idx.size() == n) ds.steps.add_(1);
  else
    for (size_t i : idx) ds.count(i);
}

/**
 * sgdStep(params[], bufs[], steps, lr, momentum, dampening, weightDecay, nesterov, maximize[, lrT, stepsT]):
 * PyTorch's multi-tensor SGD (its default on CUDA): each line is one `_foreach` op over the group, a handful of
 * launches instead of several per parameter; on the CPU the same ops loop over the tensors. Same arithmetic as
 * the single-tensor form, and the gradients are left as they are.
 */
napi_value sgdStep(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  auto all = a.tensors(0);
  auto bufs = a.tensors(1);
  double* steps = stepsOf(a, 2, all.size());
  double lr = a.num(3), momentum = a.num(4), dampening = a.num(5), wd = a.num(6);
  bool nesterov = a.flag(7), maximize = a.flag(8);
  DeviceScalars ds(a, 9, all.size());
  if (momentum != 0 && bufs.size() != all.size()) fail("INVALID_ARGUMENT", "SGD with momentum needs one momentum buffer per parameter");
  WithGrad w(all);
  if (w.idx.empty()) return nullptr;
  std::vector<at::Tensor> d = maximize ? at::_foreach_neg(w.grads) : w.grads;
  if (wd != 0) d = at::_foreach_add(d, w.params, wd);
  if (momentum != 0) {
    std::vector<at::Tensor> b, later, laterD;
    for (size_t k = 0; k < w.idx.size(); ++k) {
      at::Tensor& buf = bufs[w.idx[k]];
      b.push_back(buf);
      if (steps[w.idx[k]] == 0) buf.copy_(d[k]);  // the first step starts the buffer at the gradient
      else {
        later.push_back(buf);
        laterD.push_back(d[k]);
      }
    }
    if (!later.empty()) {
      at::_foreach_mul_(later, momentum);
      at::_foreach_add_(later, laterD, 1 - dampening);
    }
    d = nesterov ? at::_foreach_add(d, b, momentum) : b;
  }
  subScaled(w.params, d, lr, ds);
  for (size_t i : w.idx) steps[i] += 1;
  countOnDevice(ds, w.idx, all.size());
  return nullptr;
  KILN_CATCH(env)
}

/** fusedAdamBuilt() -> whether this build has PyTorch's fused Adam kernels with a device lr (Adam's `fused`). */
napi_value fusedAdamBuilt(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.retBool(KILN_FUSED_ADAM);
  KILN_CATCH(env)
}

/**
 * adamStep(params[], expAvg[], expAvgSq[], maxExpAvgSq[] (or []), steps, lr, beta1, beta2, eps, weightDecay, decoupled,
 * amsgrad, maximize, fused, uniform[, lrT, stepsT]): the moments and the update as multi-tensor `_foreach` ops over the group (a
 * per-parameter step size where step counts differ). The capturable form reads its bias corrections from the device
 * step counts: one count for the whole group while its parameters have stepped together (libtorch 2.1+), else per
 * parameter; amsgrad's running maximum stays per parameter. `fused`: PyTorch's fused kernel does it all in one
 * multi-tensor launch, reading the device lr (float32) and step counts (float32, counted here first, as PyTorch does).
 * `uniform`: every parameter of the group has taken every step so far (their counts are one number).
 */
napi_value adamStep(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  auto params = a.tensors(0);
  auto m = a.tensors(1), v = a.tensors(2), vmax = a.tensors(3);
  double* steps = stepsOf(a, 4, params.size());
  double lr = a.num(5), b1 = a.num(6), b2 = a.num(7), eps = a.num(8), wd = a.num(9);
  bool decoupled = a.flag(10), amsgrad = a.flag(11), maximize = a.flag(12), fused = a.flag(13), uniform = a.flag(14);
  if (m.size() != params.size() || v.size() != params.size()) fail("INVALID_ARGUMENT", "Adam needs two moment tensors per parameter");
  if (amsgrad && vmax.size() != params.size()) fail("INVALID_ARGUMENT", "amsgrad needs one max_exp_avg_sq per parameter");
  DeviceScalars ds(a, 15, params.size());
  if (fused && !ds.on()) fail("INVALID_ARGUMENT", "a fused Adam step needs the device lr and step counts");
  WithGrad w(params);
  if (w.idx.empty()) return nullptr;
  countOnDevice(ds, w.idx, params.size());  // the bias corrections below read the new counts
  std::vector<at::Tensor> M, V, second;
  for (size_t i : w.idx) {
    M.push_back(m[i]);
    V.push_back(v[i]);
    second.push_back(amsgrad ? vmax[i] : v[i]);
    steps[i] += 1;
  }
  if (fused) {
#if KILN_FUSED_ADAM
    std::vector<at::Tensor> S, MAX;
    for (size_t i : w.idx) {
      S.push_back(ds.steps.select(0, static_cast<int64_t>(i)));
      if (amsgrad) MAX.push_back(vmax[i]);
    }
    if (decoupled) at::_fused_adamw_(w.params, w.grads, M, V, MAX, S, ds.lr, b1, b2, wd, eps, amsgrad, maximize);
    else at::_fused_adam_(w.params, w.grads, M, V, MAX, S, ds.lr, b1, b2, wd, eps, amsgrad, maximize);
    return nullptr;
#else
    fail("INVALID_ARGUMENT", "this libtorch has no fused Adam kernels with a device lr (2.6 or later has them)");
#endif
  }
  std::vector<at::Tensor> g = maximize ? at::_foreach_neg(w.grads) : w.grads;
  if (wd != 0) {
    if (!decoupled) g = at::_foreach_add(g, w.params, wd);  // Adam's L2 penalty
    else if (ds.on()) {                                      // AdamW, the lr read on the device
      at::Tensor f = ds.lr.mul(-wd).add_(1);
#if KILN_FOREACH_TENSOR_OPERAND
      at::_foreach_mul_(w.params, f);  // one launch where f has the parameters' dtype (the lr tensor's, see optimizer.ts)
#else
      for (auto& p : w.params) p.mul_(f);
#endif
    } else {
      at::_foreach_mul_(w.params, 1 - lr * wd);
    }
  }
  at::_foreach_mul_(M, b1);
  at::_foreach_add_(M, g, 1 - b1);
  at::_foreach_mul_(V, b2);
  at::_foreach_addcmul_(V, g, g, 1 - b2);
  if (amsgrad)
    for (size_t k = 0; k < V.size(); ++k) at::maximum_out(second[k], second[k], V[k]);
#if KILN_FOREACH_TENSOR_OPERAND
  // every parameter has always stepped together (uniform, from the TS side's host counts) and has a gradient now: one
  // step count for all, so the bias corrections are two 0-d tensors in the parameters' dtype and the update a few
  // multi-tensor launches instead of several kernels per parameter
  bool together = ds.on() && uniform && w.idx.size() == params.size() && ds.lr.scalar_type() == params[0].scalar_type() &&
                  std::all_of(params.begin(), params.end(), [&](const at::Tensor& p) { return p.scalar_type() == params[0].scalar_type(); });
  if (together) {
    auto [negStep, bc2Sqrt] = biasCorrections(ds.lr, ds.steps.select(0, 0).to(ds.lr.scalar_type()), b1, b2);
    std::vector<at::Tensor> denom = at::_foreach_sqrt(second);
    at::_foreach_div_(denom, bc2Sqrt);
    at::_foreach_add_(denom, eps);
    std::vector<at::Tensor> upd = at::_foreach_div(M, denom);
    at::_foreach_mul_(upd, negStep);
    at::_foreach_add_(w.params, upd);
    return nullptr;
  }
#endif
  if (ds.on()) {
    for (size_t k = 0; k < w.idx.size(); ++k) {
      // PyTorch's capturable form: bias corrections from the device step count
      auto [stepSizeNeg, bc2Sqrt] = biasCorrections(ds.lr, ds.steps.select(0, static_cast<int64_t>(w.idx[k])), b1, b2);
      at::Tensor denom = second[k].sqrt().div_(bc2Sqrt.mul(stepSizeNeg)).add_(stepSizeNeg.reciprocal().mul_(eps));
      w.params[k].addcdiv_(M[k], denom);
    }
  } else {
    std::vector<at::Scalar> bc2Sqrt, negStepSize;
    for (size_t i : w.idx) {
      bc2Sqrt.emplace_back(std::sqrt(1 - std::pow(b2, steps[i])));
      negStepSize.emplace_back(-lr / (1 - std::pow(b1, steps[i])));
    }
    std::vector<at::Tensor> denom = at::_foreach_sqrt(second);
    at::_foreach_div_(denom, at::ArrayRef<at::Scalar>(bc2Sqrt));
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(w.params, M, denom, at::ArrayRef<at::Scalar>(negStepSize));
  }
  return nullptr;
  KILN_CATCH(env)
}

/**
 * rmspropStep(params[], squareAvg[], momentumBuf[] (or []), gradAvg[] (or []), steps, lr, alpha, eps, weightDecay,
 * momentum, centered, maximize[, lrT, stepsT]): multi-tensor `_foreach` ops over the group, as SGD and Adam.
 */
napi_value rmspropStep(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  auto params = a.tensors(0);
  auto sq = a.tensors(1), mb = a.tensors(2), ga = a.tensors(3);
  double* steps = stepsOf(a, 4, params.size());
  double lr = a.num(5), alpha = a.num(6), eps = a.num(7), wd = a.num(8), momentum = a.num(9);
  bool centered = a.flag(10), maximize = a.flag(11);
  if (sq.size() != params.size() || (momentum > 0 && mb.size() != params.size()) || (centered && ga.size() != params.size()))
    fail("INVALID_ARGUMENT", "RMSprop needs its state tensors (square average, and momentum buffer / gradient average when on) per parameter");
  DeviceScalars ds(a, 12, params.size());
  WithGrad w(params);
  if (w.idx.empty()) return nullptr;
  countOnDevice(ds, w.idx, params.size());
  std::vector<at::Tensor> SQ, MB, GA;
  for (size_t i : w.idx) {
    SQ.push_back(sq[i]);
    if (momentum > 0) MB.push_back(mb[i]);
    if (centered) GA.push_back(ga[i]);
    steps[i] += 1;
  }
  std::vector<at::Tensor> g = maximize ? at::_foreach_neg(w.grads) : w.grads;
  if (wd != 0) g = at::_foreach_add(g, w.params, wd);
  at::_foreach_mul_(SQ, alpha);
  at::_foreach_addcmul_(SQ, g, g, 1 - alpha);
  std::vector<at::Tensor> avg;
  if (centered) {
    at::_foreach_mul_(GA, alpha);
    at::_foreach_add_(GA, g, 1 - alpha);
    avg = at::_foreach_addcmul(SQ, GA, GA, -1);
    at::_foreach_sqrt_(avg);
  } else {
    avg = at::_foreach_sqrt(SQ);
  }
  at::_foreach_add_(avg, eps);
  if (momentum > 0) {
    at::_foreach_mul_(MB, momentum);
    at::_foreach_addcdiv_(MB, g, avg);
    subScaled(w.params, MB, lr, ds);
  } else if (ds.on()) {
#if KILN_FOREACH_TENSOR_OPERAND
    at::_foreach_addcdiv_(w.params, at::_foreach_mul(g, ds.lr), avg, -1);
#else
    for (size_t k = 0; k < w.params.size(); ++k) w.params[k].addcdiv_(g[k].mul(ds.lr), avg[k], -1);
#endif
  } else {
    at::_foreach_addcdiv_(w.params, g, avg, -lr);
  }
  return nullptr;
  KILN_CATCH(env)
}

/** zeroGrad(params[], setToNone) */
napi_value zeroGrad(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  bool none = a.flag(1);
  for (auto& p : a.tensors(0)) {
    at::Tensor& g = p.mutable_grad();
    if (!g.defined()) continue;
    if (none) g = at::Tensor();
    else {
      if (g.grad_fn()) g = g.detach();
      else g.requires_grad_(false);
      g.zero_();
    }
  }
  return nullptr;
  KILN_CATCH(env)
}

/** clipGradNorm(params[], maxNorm, normType, errorIfNonfinite) -> handle of the total norm (before clipping) */
napi_value clipGradNorm(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  std::vector<at::Tensor> grads = definedGrads(a.tensors(0));
  double maxNorm = a.num(1), normType = a.num(2);
  if (grads.empty()) return a.ret(at::zeros({}));
  at::Tensor total;
  if (std::isinf(normType)) {
    std::vector<at::Tensor> norms;
    for (auto& g : grads) norms.push_back(g.detach().abs().max().to(grads[0].device()));
    total = norms.size() == 1 ? norms[0] : at::stack(norms).max();
  } else {
    // one multi-tensor launch for the per-gradient norms (as torch.nn.utils.clip_grad_norm_ on CUDA)
    std::vector<at::Tensor> norms = at::_foreach_norm(grads, normType);
    for (auto& n : norms) n = n.to(grads[0].device());
    total = at::norm(at::stack(norms), normType);
  }
  if (a.flag(3) && !total.isfinite().item<bool>())
    fail("INVALID_ARGUMENT", "clipGradNorm_: the total norm of the gradients is non-finite (NaN or Inf)");
  at::Tensor coef = (maxNorm / (total + 1e-6)).clamp_max(1.0);
#if KILN_FOREACH_TENSOR_OPERAND
  bool oneDevice = std::all_of(grads.begin(), grads.end(), [&](const at::Tensor& g) { return g.device() == coef.device(); });
  if (oneDevice) {
    at::_foreach_mul_(grads, coef);  // one launch
    return a.ret(total);
  }
#endif
  for (auto& g : grads) g.detach().mul_(coef.to(g.device()));
  return a.ret(total);
  KILN_CATCH(env)
}

/**
 * ampUnscale(params[], invScale) -> whether any gradient holds an inf or NaN, after multiplying every gradient by
 * invScale (GradScaler.unscale_): on one CUDA device PyTorch's multi-tensor kernel (one launch, as
 * torch.cuda.amp.GradScaler); elsewhere a loop here, one readback either way.
 */
napi_value ampUnscale(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  double inv = a.num(1);
  std::vector<at::Tensor> grads = definedGrads(a.tensors(0));
  if (grads.empty()) return a.retBool(false);
  at::Device d = grads[0].device();
  bool oneCuda = d.is_cuda() && std::all_of(grads.begin(), grads.end(), [&](const at::Tensor& g) { return g.device() == d; });
  if (oneCuda) {
    auto o = at::TensorOptions().dtype(at::kFloat).device(d);
    at::Tensor found = at::zeros({1}, o);
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found, at::full({1}, inv, o));
    return a.retBool(found.item<float>() != 0);
  }
  std::vector<at::Tensor> bad;
  for (auto& g : grads) {
    g.mul_(inv);
    bad.push_back(g.isfinite().all().logical_not().to(at::kCPU));
  }
  return a.retBool(at::stack(bad).any().item<bool>());
  KILN_CATCH(env)
}

/** clipGradValue(params[], clipValue) */
napi_value clipGradValue(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  double c = a.num(1);
  for (auto& p : a.tensors(0))
    if (p.grad().defined()) p.grad().detach().clamp_(-c, c);
  return nullptr;
  KILN_CATCH(env)
}

}  // namespace

void registerOptim(napi_env env, napi_value exports, KilnEnv* k) {
  struct { const char* name; RawFn fn; } fns[] = {
      {"fusedAdamBuilt", fusedAdamBuilt}, {"sgdStep", sgdStep}, {"ampUnscale", ampUnscale}, {"adamStep", adamStep}, {"rmspropStep", rmspropStep},
      {"zeroGrad", zeroGrad}, {"clipGradNorm", clipGradNorm}, {"clipGradValue", clipGradValue},
  };
  for (auto& f : fns) defineFn(env, exports, k, f.name, f.fn);
}

}  // namespace kiln
