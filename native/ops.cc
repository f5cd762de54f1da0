// Tensor operations: elementwise math, comparisons, reductions, shape and indexing ops.
// Simple ops share generic wrappers (the op is the callback's data pointer).
#include "tensor.h"

namespace kiln {

using Unary = at::Tensor (*)(const at::Tensor&);
using Binary = at::Tensor (*)(const at::Tensor&, const at::Tensor&);
using BinaryScalar = at::Tensor (*)(const at::Tensor&, const at::Scalar&);
using InplaceBinary = void (*)(at::Tensor&, const at::Tensor&);
using InplaceScalar = void (*)(at::Tensor&, const at::Scalar&);
using InplaceUnary = void (*)(at::Tensor&);

static napi_value unaryCb(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(reinterpret_cast<Unary>(a.op)(a.t(0)));
  KILN_CATCH(env)
}
static napi_value binaryCb(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(reinterpret_cast<Binary>(a.op)(a.t(0), a.t(1)));
  KILN_CATCH(env)
}
static napi_value scalarCb(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(reinterpret_cast<BinaryScalar>(a.op)(a.t(0), a.scalar(1)));
  KILN_CATCH(env)
}
static napi_value inplaceBinaryCb(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  reinterpret_cast<InplaceBinary>(a.op)(const_cast<at::Tensor&>(a.t(0)), a.t(1));
  return nullptr;
  KILN_CATCH(env)
}
static napi_value inplaceScalarCb(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  reinterpret_cast<InplaceScalar>(a.op)(const_cast<at::Tensor&>(a.t(0)), a.scalar(1));
  return nullptr;
  KILN_CATCH(env)
}
static napi_value inplaceUnaryCb(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  reinterpret_cast<InplaceUnary>(a.op)(const_cast<at::Tensor&>(a.t(0)));
  return nullptr;
  KILN_CATCH(env)
}

#define U(name, expr) {#name, reinterpret_cast<void*>(+[](const at::Tensor& x) -> at::Tensor { return expr; })}
#define B(name, expr) {#name, reinterpret_cast<void*>(+[](const at::Tensor& x, const at::Tensor& y) -> at::Tensor { return expr; })}
#define S(name, expr) {#name, reinterpret_cast<void*>(+[](const at::Tensor& x, const at::Scalar& s) -> at::Tensor { return expr; })}
#define IB(name, expr) {#name, reinterpret_cast<void*>(+[](at::Tensor& x, const at::Tensor& y) { expr; })}
#define IS(name, expr) {#name, reinterpret_cast<void*>(+[](at::Tensor& x, const at::Scalar& s) { expr; })}
#define IU(name, expr) {#name, reinterpret_cast<void*>(+[](at::Tensor& x) { expr; })}

struct Entry { const char* name; void* op; };

static const Entry kUnary[] = {
    U(neg, x.neg()), U(abs, x.abs()), U(exp, x.exp()), U(log, x.log()), U(log1p, x.log1p()),
    U(expm1, x.expm1()), U(sqrt, x.sqrt()), U(rsqrt, x.rsqrt()), U(sign, x.sign()),
    U(sigmoid, x.sigmoid()), U(tanh, x.tanh()), U(relu, x.relu()), U(gelu, at::gelu(x)),
    U(geluTanh, at::gelu(x, "tanh")), U(silu, at::silu(x)), U(hardswish, at::hardswish(x)),
    U(hardsigmoid, at::hardsigmoid(x)), U(floor, x.floor()), U(ceil, x.ceil()),
    U(round, x.round()), U(sin, x.sin()), U(cos, x.cos()), U(tan, x.tan()), U(reciprocal, x.reciprocal()),
    U(square, x.square()), U(logicalNot, x.logical_not()), U(contiguous, x.contiguous()),
    U(contiguousChannelsLast, x.contiguous(at::MemoryFormat::ChannelsLast)),
    U(clone, x.clone()), U(detach, x.detach()), U(isnan, x.isnan()), U(isinf, x.isinf()),
    U(isfinite, x.isfinite()), U(t, x.t()), U(sumAll, x.sum()), U(meanAll, x.mean()),
    U(maxAll, x.max()), U(minAll, x.min()), U(allAll, x.all()), U(anyAll, x.any()),
    U(argmaxAll, x.argmax()), U(argminAll, x.argmin()), U(nonzero, x.nonzero()),
    U(trunc, x.trunc()), U(frac, x.frac()), U(pinMemory, x.pin_memory()), U(poisson, at::poisson(x)),
};
static const Entry kBinary[] = {
    B(add, x.add(y)), B(sub, x.sub(y)), B(mul, x.mul(y)), B(div, x.div(y)), B(pow, x.pow(y)),
    B(maximum, at::maximum(x, y)), B(minimum, at::minimum(x, y)), B(eq, x.eq(y)), B(ne, x.ne(y)),
    B(lt, x.lt(y)), B(le, x.le(y)), B(gt, x.gt(y)), B(ge, x.ge(y)), B(matmul, x.matmul(y)),
    B(logicalAnd, x.logical_and(y)), B(logicalOr, x.logical_or(y)), B(fmod, x.fmod(y)),
    B(remainder, x.remainder(y)), B(atan2, x.atan2(y)), B(maskedSelect, x.masked_select(y)),
    B(index, x.index({y})), B(equal, at::scalar_tensor(x.equal(y), at::kBool)),
    B(floorDivide, at::div(x, y, "floor")),
};
static const Entry kScalar[] = {
    S(addScalar, x.add(s)), S(subScalar, x.sub(s)), S(mulScalar, x.mul(s)), S(divScalar, x.div(s)),
    S(powScalar, x.pow(s)), S(rsubScalar, at::rsub(x, s)), S(rdivScalar, x.reciprocal().mul(s)),
    S(rpowScalar, at::pow(s, x)), S(eqScalar, x.eq(s)), S(neScalar, x.ne(s)), S(ltScalar, x.lt(s)),
    S(leScalar, x.le(s)), S(gtScalar, x.gt(s)), S(geScalar, x.ge(s)), S(fmodScalar, x.fmod(s)),
    S(remainderScalar, x.remainder(s)), S(leakyRelu, at::leaky_relu(x, s)),
    S(elu, at::elu(x, s)), S(floorDivideScalar, at::div(x, at::scalar_tensor(s, x.options()), "floor")),
    S(fullLike, at::full_like(x, s)),
};
static const Entry kInplaceBinary[] = {
    IB(add_, x.add_(y)), IB(sub_, x.sub_(y)), IB(mul_, x.mul_(y)), IB(div_, x.div_(y)),
    IB(copy_, x.copy_(y)), IB(maximum_, x.copy_(at::maximum(x, y))),
};
static const Entry kInplaceScalar[] = {
    IS(addScalar_, x.add_(s)), IS(subScalar_, x.sub_(s)), IS(mulScalar_, x.mul_(s)),
    IS(divScalar_, x.div_(s)), IS(fill_, x.fill_(s)), IS(powScalar_, x.pow_(s)),
    IS(clampMin_, x.clamp_min_(s)), IS(clampMax_, x.clamp_max_(s)),
};
static const Entry kInplaceUnary[] = {
    IU(zero_, x.zero_()), IU(relu_, x.relu_()), IU(neg_, x.neg_()), IU(exp_, x.exp_()),
    IU(sigmoid_, x.sigmoid_()), IU(sqrt_, x.sqrt_()), IU(abs_, x.abs_()), IU(sign_, x.sign_()),
};

// ---------------------------------------------------------------- ops with more arguments

/** clamp(x, min?, max?) */
static napi_value clamp(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::clamp(a.t(0), a.optScalar(1), a.optScalar(2)));
  KILN_CATCH(env)
}
static napi_value clamp_(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  at::clamp_(const_cast<at::Tensor&>(a.t(0)), a.optScalar(1), a.optScalar(2));
  return nullptr;
  KILN_CATCH(env)
}
/** addScaled_(x, y, alpha): x += alpha * y */
static napi_value addScaled_(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const_cast<at::Tensor&>(a.t(0)).add_(a.t(1), a.scalar(2));
  return nullptr;
  KILN_CATCH(env)
}
/** lerp_(x, end, weight) */
static napi_value lerp_(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const_cast<at::Tensor&>(a.t(0)).lerp_(a.t(1), a.scalar(2));
  return nullptr;
  KILN_CATCH(env)
}
/** addScaled(x, y, alpha): x + alpha * y */
static napi_value addScaled(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).add(a.t(1), a.scalar(2)));
  KILN_CATCH(env)
}

// Reductions over dims: (x, dims[], keepdim)
#define KILN_REDUCE(NAME, EXPR)                                   \
  static napi_value NAME(napi_env env, napi_callback_info info) { \
    KILN_TRY Args a(env, info);                                   \
    const at::Tensor& x = a.t(0);                                 \
    std::vector<int64_t> dims = a.ints(1);                        \
    bool keep = a.flag(2);                                        \
    return a.ret(EXPR);                                           \
    KILN_CATCH(env)                                               \
  }
KILN_REDUCE(sum, x.sum(dims, keep))
KILN_REDUCE(mean, x.mean(dims, keep))
KILN_REDUCE(logsumexp, x.logsumexp(dims, keep))
KILN_REDUCE(amax, x.amax(dims, keep))
KILN_REDUCE(amin, x.amin(dims, keep))
// std/var: (x, dims[], keepdim, unbiased)
KILN_REDUCE(std, x.std(at::IntArrayRef(dims), a.flag(3), keep))
KILN_REDUCE(var, x.var(at::IntArrayRef(dims), a.flag(3), keep))
// norm: (x, dims[], keepdim, p)
KILN_REDUCE(norm, dims.empty() ? at::norm(x, a.scalar(3)) : at::norm(x, a.scalar(3), dims, keep))

/** maxDim/minDim(x, dim, keepdim) -> [values, indices] */
static napi_value maxDim(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto r = a.t(0).max(a.i64(1), a.flag(2));
  return a.retList({std::get<0>(r), std::get<1>(r)});
  KILN_CATCH(env)
}
static napi_value minDim(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto r = a.t(0).min(a.i64(1), a.flag(2));
  return a.retList({std::get<0>(r), std::get<1>(r)});
  KILN_CATCH(env)
}
static napi_value argmax(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).argmax(a.i64(1), a.flag(2)));
  KILN_CATCH(env)
}
/** allDim/anyDim(x, dim, keepdim) */
static napi_value allDim(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).all(a.i64(1), a.flag(2)));
  KILN_CATCH(env)
}
static napi_value anyDim(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).any(a.i64(1), a.flag(2)));
  KILN_CATCH(env)
}
static napi_value argmin(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).argmin(a.i64(1), a.flag(2)));
  KILN_CATCH(env)
}
/** topk(x, k, dim, largest, sorted) -> [values, indices] */
static napi_value topk(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto r = a.t(0).topk(a.i64(1), a.i64(2), a.flag(3), a.flag(4));
  return a.retList({std::get<0>(r), std::get<1>(r)});
  KILN_CATCH(env)
}
/** sort(x, dim, descending) -> [values, indices] */
static napi_value sort(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  auto r = a.t(0).sort(a.i64(1), a.flag(2));
  return a.retList({std::get<0>(r), std::get<1>(r)});
  KILN_CATCH(env)
}
static napi_value softmax(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).softmax(a.i64(1)));
  KILN_CATCH(env)
}
static napi_value logSoftmax(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).log_softmax(a.i64(1)));
  KILN_CATCH(env)
}
static napi_value cumsum(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).cumsum(a.i64(1)));
  KILN_CATCH(env)
}

// ---------------------------------------------------------------- shape

static napi_value reshape(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).reshape(a.ints(1)));
  KILN_CATCH(env)
}
static napi_value view(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).view(a.ints(1)));
  KILN_CATCH(env)
}
static napi_value permute(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).permute(a.ints(1)));
  KILN_CATCH(env)
}
static napi_value expand(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).expand(a.ints(1)));
  KILN_CATCH(env)
}
static napi_value repeat(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).repeat(a.ints(1)));
  KILN_CATCH(env)
}
static napi_value flip(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).flip(a.ints(1)));
  KILN_CATCH(env)
}
static napi_value roll(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).roll(a.ints(1), a.ints(2)));
  KILN_CATCH(env)
}
static napi_value transpose(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).transpose(a.i64(1), a.i64(2)));
  KILN_CATCH(env)
}
/** squeeze(x, dim|undefined) */
static napi_value squeeze(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.has(1) ? a.t(0).squeeze(a.i64(1)) : a.t(0).squeeze());
  KILN_CATCH(env)
}
static napi_value unsqueeze(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).unsqueeze(a.i64(1)));
  KILN_CATCH(env)
}
static napi_value flatten(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).flatten(a.i64(1), a.i64(2)));
  KILN_CATCH(env)
}
/** cat(ids[], dim) / stack(ids[], dim) */
static napi_value cat(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::cat(a.tensors(0), a.i64(1)));
  KILN_CATCH(env)
}
static napi_value stack(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::stack(a.tensors(0), a.i64(1)));
  KILN_CATCH(env)
}
/** split(x, sizes[], dim): one size = equal chunks of that size, several = those sizes */
static napi_value split(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  std::vector<int64_t> sizes = a.ints(1);
  int64_t dim = a.i64(2);
  if (sizes.size() == 1) return a.retList(a.t(0).split(sizes[0], dim));
  return a.retList(a.t(0).split_with_sizes(sizes, dim));
  KILN_CATCH(env)
}
static napi_value chunk(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.retList(a.t(0).chunk(a.i64(1), a.i64(2)));
  KILN_CATCH(env)
}
static napi_value unbind(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.retList(a.t(0).unbind(a.i64(1)));
  KILN_CATCH(env)
}
/** narrow(x, dim, start, length) */
static napi_value narrow(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).narrow(a.i64(1), a.i64(2), a.i64(3)));
  KILN_CATCH(env)
}
/** slice(x, dim, start, end, step) */
static napi_value slice(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).slice(a.i64(1), a.i64(2), a.i64(3), a.i64(4)));
  KILN_CATCH(env)
}
static napi_value select(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).select(a.i64(1), a.i64(2)));
  KILN_CATCH(env)
}
/** indexSelect(x, dim, index) / gather(x, dim, index) */
static napi_value indexSelect(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).index_select(a.i64(1), a.t(2)));
  KILN_CATCH(env)
}
static napi_value gather(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).gather(a.i64(1), a.t(2)));
  KILN_CATCH(env)
}
/** scatter(x, dim, index, src) / scatterScalar(x, dim, index, value) / scatterAdd(x, dim, index, src) */
static napi_value scatter(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).scatter(a.i64(1), a.t(2), a.t(3)));
  KILN_CATCH(env)
}
static napi_value scatterScalar(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).scatter(a.i64(1), a.t(2), a.scalar(3)));
  KILN_CATCH(env)
}
static napi_value scatterAdd(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).scatter_add(a.i64(1), a.t(2), a.t(3)));
  KILN_CATCH(env)
}
/** indexPut_(x, index, values): x[index] = values (index: bool mask or int64 indices) */
static napi_value indexPut_(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const_cast<at::Tensor&>(a.t(0)).index_put_({a.t(1)}, a.t(2));
  return nullptr;
  KILN_CATCH(env)
}
/** maskedFill(x, mask, value) / maskedFill_ */
static napi_value maskedFill(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(a.t(0).masked_fill(a.t(1), a.scalar(2)));
  KILN_CATCH(env)
}
static napi_value maskedFill_(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const_cast<at::Tensor&>(a.t(0)).masked_fill_(a.t(1), a.scalar(2));
  return nullptr;
  KILN_CATCH(env)
}
/** where(cond, a, b) */
static napi_value where(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::where(a.t(0), a.t(1), a.t(2)));
  KILN_CATCH(env)
}
/** to(x, dtype|-1, device|undefined, nonBlocking, copy) */
static napi_value to(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const at::Tensor& x = a.t(0);
  int32_t dt = a.i32(1);
  at::ScalarType st = dt < 0 ? x.scalar_type() : toScalarType(dt);
  at::Device dev = a.has(2) ? parseDevice(a.str(2)) : x.device();
  return a.ret(x.to(dev, st, a.flag(3), a.flag(4)));
  KILN_CATCH(env)
}
static napi_value oneHot(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::one_hot(a.t(0), a.i64(1)));
  KILN_CATCH(env)
}
/** uniform_(x, lo, hi) / normal_(x, mean, std) / bernoulli(x) */
static napi_value uniform_(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const_cast<at::Tensor&>(a.t(0)).uniform_(a.num(1), a.num(2));
  return nullptr;
  KILN_CATCH(env)
}
static napi_value normal_(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  const_cast<at::Tensor&>(a.t(0)).normal_(a.num(1), a.num(2));
  return nullptr;
  KILN_CATCH(env)
}
static napi_value bernoulli(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::bernoulli(a.t(0)));
  KILN_CATCH(env)
}

void registerOps(napi_env env, napi_value exports, KilnEnv* k) {
  for (auto& e : kUnary) defineFn(env, exports, k, e.name, unaryCb, e.op);
  for (auto& e : kBinary) defineFn(env, exports, k, e.name, binaryCb, e.op);
  for (auto& e : kScalar) defineFn(env, exports, k, e.name, scalarCb, e.op);
  for (auto& e : kInplaceBinary) defineFn(env, exports, k, e.name, inplaceBinaryCb, e.op);
  for (auto& e : kInplaceScalar) defineFn(env, exports, k, e.name, inplaceScalarCb, e.op);
  for (auto& e : kInplaceUnary) defineFn(env, exports, k, e.name, inplaceUnaryCb, e.op);
  struct { const char* name; RawFn fn; } fns[] = {
      {"clamp", clamp}, {"clamp_", clamp_}, {"addScaled_", addScaled_}, {"addScaled", addScaled},
      {"lerp_", lerp_}, {"sum", sum}, {"mean", mean}, {"logsumexp", logsumexp}, {"amax", amax},
      {"amin", amin}, {"std", std}, {"var", var}, {"norm", norm}, {"maxDim", maxDim},
      {"minDim", minDim}, {"argmax", argmax}, {"argmin", argmin}, {"allDim", allDim}, {"anyDim", anyDim}, {"topk", topk}, {"sort", sort},
      {"softmax", softmax}, {"logSoftmax", logSoftmax}, {"cumsum", cumsum},
      {"reshape", reshape}, {"view", view}, {"permute", permute}, {"expand", expand},
      {"repeat", repeat}, {"flip", flip}, {"roll", roll}, {"transpose", transpose},
      {"squeeze", squeeze}, {"unsqueeze", unsqueeze}, {"flatten", flatten}, {"cat", cat},
      {"stack", stack}, {"split", split}, {"chunk", chunk}, {"unbind", unbind},
      {"narrow", narrow}, {"slice", slice}, {"select", select}, {"indexSelect", indexSelect},
      {"gather", gather}, {"scatter", scatter}, {"scatterScalar", scatterScalar},
      {"scatterAdd", scatterAdd}, {"indexPut_", indexPut_}, {"maskedFill", maskedFill},
      {"maskedFill_", maskedFill_}, {"where", where}, {"to", to}, {"oneHot", oneHot},
      {"uniform_", uniform_}, {"normal_", normal_}, {"bernoulli", bernoulli},
  };
  for (auto& f : fns) defineFn(env, exports, k, f.name, f.fn);
}

}  // namespace kiln
