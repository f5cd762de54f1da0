// Optimizer steps: one native call updates every parameter of a group (PyTorch's
// single-tensor algorithms, same order of operations). State tensors (momentum, moments)
// live in the tensor table and are owned by the TS optimizer, so they save and load like
// any other tensor. Parameters without a gradient are skipped.
#include "tensor.h"

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

/** sgdStep(params[], bufs[], steps, lr, momentum, dampening, weightDecay, nesterov, maximize) */
napi_value sgdStep(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  auto params = a.tensors(0);
  auto bufs = a.tensors(1);
  double* steps = stepsOf(a, 2, params.size());
  double lr = a.num(3), momentum = a.num(4), dampening = a.num(5), wd = a.num(6);
  bool nesterov = a.flag(7), maximize = a.flag(8);
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = params[i];
    if (!p.grad().defined()) continue;
    at::Tensor d = maximize ? -p.grad() : p.grad();
    if (wd != 0) d = d.add(p, wd);
    if (momentum != 0) {
      at::Tensor& buf = bufs[i];
      if (steps[i] == 0) buf.copy_(d);
      else buf.mul_(momentum).add_(d, 1 - dampening);
      d = nesterov ? d.add(buf, momentum) : buf;
    }
    p.add_(d, -lr);
    steps[i] += 1;
  }
  return nullptr;
  KILN_CATCH(env)
}

/** adamStep(params[], expAvg[], expAvgSq[], maxExpAvgSq[] (or []), steps, lr, beta1, beta2, eps, weightDecay, decoupled, amsgrad, maximize) */
napi_value adamStep(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  auto params = a.tensors(0);
  auto m = a.tensors(1), v = a.tensors(2), vmax = a.tensors(3);
  double* steps = stepsOf(a, 4, params.size());
  double lr = a.num(5), b1 = a.num(6), b2 = a.num(7), eps = a.num(8), wd = a.num(9);
  bool decoupled = a.flag(10), amsgrad = a.flag(11), maximize = a.flag(12);
  if (amsgrad && vmax.size() != params.size()) fail("INVALID_ARGUMENT", "amsgrad needs one max_exp_avg_sq per parameter");
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = params[i];
    if (!p.grad().defined()) continue;
    at::Tensor g = maximize ? -p.grad() : p.grad();
    steps[i] += 1;
    double step = steps[i];
    if (wd != 0) {
      if (decoupled) p.mul_(1 - lr * wd);  // AdamW
      else g = g.add(p, wd);               // Adam's L2 penalty
    }
    m[i].mul_(b1).add_(g, 1 - b1);
    v[i].mul_(b2).addcmul_(g, g.conj(), 1 - b2);
    double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
    double stepSize = lr / bc1;
    double bc2Sqrt = std::sqrt(bc2);
    at::Tensor denom;
    if (amsgrad) {
      at::maximum_out(vmax[i], vmax[i], v[i]);
      denom = (vmax[i].sqrt() / bc2Sqrt).add_(eps);
    } else {
      denom = (v[i].sqrt() / bc2Sqrt).add_(eps);
    }
    p.addcdiv_(m[i], denom, -stepSize);
  }
  return nullptr;
  KILN_CATCH(env)
}

/** rmspropStep(params[], squareAvg[], momentumBuf[] (or []), gradAvg[] (or []), steps, lr, alpha, eps, weightDecay, momentum, centered, maximize) */
napi_value rmspropStep(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::NoGradGuard ng;
  auto params = a.tensors(0);
  auto sq = a.tensors(1), mb = a.tensors(2), ga = a.tensors(3);
  double* steps = stepsOf(a, 4, params.size());
  double lr = a.num(5), alpha = a.num(6), eps = a.num(7), wd = a.num(8), momentum = a.num(9);
  bool centered = a.flag(10), maximize = a.flag(11);
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = params[i];
    if (!p.grad().defined()) continue;
    at::Tensor g = maximize ? -p.grad() : p.grad();
    steps[i] += 1;
    if (wd != 0) g = g.add(p, wd);
    sq[i].mul_(alpha).addcmul_(g, g, 1 - alpha);
    at::Tensor avg;
    if (centered) {
      ga[i].mul_(alpha).add_(g, 1 - alpha);
      avg = sq[i].addcmul(ga[i], ga[i], -1).sqrt_().add_(eps);
    } else {
      avg = sq[i].sqrt().add_(eps);
    }
    if (momentum > 0) {
      mb[i].mul_(momentum).addcdiv_(g, avg);
      p.add_(mb[i], -lr);
    } else {
      p.addcdiv_(g, avg, -lr);
    }
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
  std::vector<at::Tensor> grads;
  for (auto& p : a.tensors(0))
    if (p.grad().defined()) grads.push_back(p.grad());
  double maxNorm = a.num(1), normType = a.num(2);
  if (grads.empty()) return a.ret(at::zeros({}));
  at::Tensor total;
  if (std::isinf(normType)) {
    std::vector<at::Tensor> norms;
    for (auto& g : grads) norms.push_back(g.detach().abs().max().to(grads[0].device()));
    total = norms.size() == 1 ? norms[0] : at::stack(norms).max();
  } else {
    std::vector<at::Tensor> norms;
    for (auto& g : grads) norms.push_back(at::norm(g.detach(), normType).to(grads[0].device()));
    total = at::norm(at::stack(norms), normType);
  }
  if (a.flag(3) && !total.isfinite().item<bool>())
    fail("INVALID_ARGUMENT", "clipGradNorm_: the total norm of the gradients is non-finite (NaN or Inf)");
  at::Tensor coef = (maxNorm / (total + 1e-6)).clamp_max(1.0);
  for (auto& g : grads) g.detach().mul_(coef.to(g.device()));
  return a.ret(total);
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
      {"sgdStep", sgdStep}, {"adamStep", adamStep}, {"rmspropStep", rmspropStep},
      {"zeroGrad", zeroGrad}, {"clipGradNorm", clipGradNorm}, {"clipGradValue", clipGradValue},
  };
  for (auto& f : fns) defineFn(env, exports, k, f.name, f.fn);
}

}  // namespace kiln
