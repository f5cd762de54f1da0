// kiln.nn.functional: the NN ops CNNs are made of (convolution, pooling, normalisation, losses).
#include "tensor.h"

namespace kiln {

/** conv2d(x, w, b|-1, stride[], padding[] | 'same' | 'valid', dilation[], groups) */
static napi_value conv2d(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  napi_valuetype pt;
  napi_typeof(env, a.argv[4], &pt);
  if (pt == napi_string)
    return a.ret(at::conv2d(a.t(0), a.t(1), a.optT(2), a.ints(3), a.str(4), a.ints(5), a.i64(6)));
  return a.ret(at::conv2d(a.t(0), a.t(1), a.optT(2), a.ints(3), a.ints(4), a.ints(5), a.i64(6)));
  KILN_CATCH(env)
}
/** maxPool2d(x, kernel[], stride[], padding[], dilation[], ceilMode) */
static napi_value maxPool2d(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::max_pool2d(a.t(0), a.ints(1), a.ints(2), a.ints(3), a.ints(4), a.flag(5)));
  KILN_CATCH(env)
}
/** avgPool2d(x, kernel[], stride[], padding[], ceilMode, countIncludePad) */
static napi_value avgPool2d(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::avg_pool2d(a.t(0), a.ints(1), a.ints(2), a.ints(3), a.flag(4), a.flag(5)));
  KILN_CATCH(env)
}
/** adaptiveAvgPool2d(x, outputSize[]) / adaptiveMaxPool2d */
static napi_value adaptiveAvgPool2d(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::adaptive_avg_pool2d(a.t(0), a.ints(1)));
  KILN_CATCH(env)
}
static napi_value adaptiveMaxPool2d(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(std::get<0>(at::adaptive_max_pool2d(a.t(0), a.ints(1))));
  KILN_CATCH(env)
}
/** batchNorm(x, runningMean|-1, runningVar|-1, weight|-1, bias|-1, training, momentum, eps) */
static napi_value batchNorm(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::batch_norm(a.t(0), a.optT(3), a.optT(4), a.optT(1), a.optT(2), a.flag(5), a.num(6),
                              a.num(7), at::globalContext().userEnabledCuDNN()));
  KILN_CATCH(env)
}
/** layerNorm(x, normalizedShape[], weight|-1, bias|-1, eps) */
static napi_value layerNorm(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::layer_norm(a.t(0), a.ints(1), a.optT(2), a.optT(3), a.num(4)));
  KILN_CATCH(env)
}
/** dropout(x, p, training) / dropout2d (whole channels) */
static napi_value dropout(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::dropout(a.t(0), a.num(1), a.flag(2)));
  KILN_CATCH(env)
}
static napi_value dropout2d(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::feature_dropout(a.t(0), a.num(1), a.flag(2)));
  KILN_CATCH(env)
}
/** linear(x, w, b|-1) */
static napi_value linear(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::linear(a.t(0), a.t(1), a.optT(2)));
  KILN_CATCH(env)
}
/** crossEntropy(logits, target, weight|-1, reduction(0 none,1 mean,2 sum), ignoreIndex, labelSmoothing) */
static napi_value crossEntropy(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::cross_entropy_loss(a.t(0), a.t(1), a.optT(2), a.i64(3), a.i64(4), a.num(5)));
  KILN_CATCH(env)
}
/** nllLoss(logProbs, target, weight|-1, reduction, ignoreIndex) */
static napi_value nllLoss(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::nll_loss_nd(a.t(0), a.t(1), a.optT(2), a.i64(3), a.i64(4)));
  KILN_CATCH(env)
}
/** mseLoss(input, target, reduction) / l1Loss / smoothL1Loss(…, beta) */
static napi_value mseLoss(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::mse_loss(a.t(0), a.t(1), a.i64(2)));
  KILN_CATCH(env)
}
static napi_value l1Loss(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::l1_loss(a.t(0), a.t(1), a.i64(2)));
  KILN_CATCH(env)
}
/** klDiv(input(log-probs), target, reduction, logTarget) */
static napi_value klDiv(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::kl_div(a.t(0), a.t(1), a.i64(2), a.flag(3)));
  KILN_CATCH(env)
}
/** bceWithLogits(logits, target, weight|-1, reduction) */
static napi_value bceWithLogits(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::binary_cross_entropy_with_logits(a.t(0), a.t(1), a.optT(2), c10::nullopt, a.i64(3)));
  KILN_CATCH(env)
}
/** interpolate(x, size[]|null, scaleFactor[]|null, mode, alignCorners(-1 unset,0,1), antialias) */
static napi_value interpolate(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  namespace F = torch::nn::functional;
  auto o = F::InterpolateFuncOptions();
  if (a.has(1)) o = o.size(a.ints(1));
  if (a.has(2)) {
    std::vector<int64_t> raw = a.ints(2);  // scale factors scaled by 1e6 to stay integral
    std::vector<double> sf;
    for (auto v : raw) sf.push_back(static_cast<double>(v) / 1e6);
    o = o.scale_factor(sf);
  }
  std::string mode = a.str(3);
  if (mode == "nearest") o = o.mode(torch::kNearest);
  else if (mode == "bilinear") o = o.mode(torch::kBilinear);
  else if (mode == "bicubic") o = o.mode(torch::kBicubic);
  else if (mode == "area") o = o.mode(torch::kArea);
  else fail("INVALID_ARGUMENT", "interpolate: unknown mode '" + mode + "'");
  int32_t ac = a.i32(4);
  if (ac >= 0) o = o.align_corners(ac == 1);
  if (a.flag(5)) o = o.antialias(true);
  return a.ret(F::interpolate(a.t(0), o));
  KILN_CATCH(env)
}
/** gridSample(x, grid, mode(0 bilinear,1 nearest,2 bicubic), padding(0 zeros,1 border,2 reflection), alignCorners) */
static napi_value gridSample(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::grid_sampler(a.t(0), a.t(1), a.i64(2), a.i64(3), a.flag(4)));
  KILN_CATCH(env)
}
/** affineGrid(theta [N, 2, 3], size [N, C, H, W], alignCorners) */
static napi_value affineGrid(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(at::affine_grid_generator(a.t(0), a.ints(1), a.flag(2)));
  KILN_CATCH(env)
}
/** pad(x, pads[], mode, value) */
static napi_value pad(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  namespace F = torch::nn::functional;
  auto o = F::PadFuncOptions(a.ints(1));
  std::string mode = a.str(2);
  if (mode == "constant") o = o.mode(torch::kConstant).value(a.num(3));
  else if (mode == "reflect") o = o.mode(torch::kReflect);
  else if (mode == "replicate") o = o.mode(torch::kReplicate);
  else if (mode == "circular") o = o.mode(torch::kCircular);
  else fail("INVALID_ARGUMENT", "pad: unknown mode '" + mode + "'");
  return a.ret(F::pad(a.t(0), o));
  KILN_CATCH(env)
}

/**
 * ReLU whose backward is Guided Backprop's (Springenberg et al.): grad_in = relu(grad_out)·1[x > 0],
 * or with `deconv` Deconvolution's (Zeiler & Fergus): grad_in = relu(grad_out). The forward is relu(x).
 * The rule is nonlinear in the incoming gradient, so it is a custom autograd function.
 */
template <bool deconv>
struct ModifiedRelu : public torch::autograd::Function<ModifiedRelu<deconv>> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    if (!deconv) ctx->save_for_backward({x});
    return at::relu(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor g = at::relu(grads[0]);
    if (!deconv) g = g.masked_fill(ctx->get_saved_variables()[0].le(0), 0);
    return {g};
  }
};
/** guidedRelu(x) / deconvRelu(x): relu(x) with Guided Backprop's / Deconvolution's gradient rule */
static napi_value guidedRelu(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(ModifiedRelu<false>::apply(a.t(0)));
  KILN_CATCH(env)
}
static napi_value deconvRelu(napi_env env, napi_callback_info info) {
  KILN_TRY Args a(env, info);
  return a.ret(ModifiedRelu<true>::apply(a.t(0)));
  KILN_CATCH(env)
}

void registerFunctional(napi_env env, napi_value exports, KilnEnv* k) {
  struct { const char* name; RawFn fn; } fns[] = {
      {"conv2d", conv2d}, {"maxPool2d", maxPool2d}, {"avgPool2d", avgPool2d},
      {"adaptiveAvgPool2d", adaptiveAvgPool2d}, {"adaptiveMaxPool2d", adaptiveMaxPool2d},
      {"batchNorm", batchNorm}, {"layerNorm", layerNorm}, {"dropout", dropout},
      {"dropout2d", dropout2d}, {"linear", linear}, {"crossEntropy", crossEntropy},
      {"nllLoss", nllLoss}, {"mseLoss", mseLoss}, {"l1Loss", l1Loss}, {"klDiv", klDiv},
      {"bceWithLogits", bceWithLogits}, {"interpolate", interpolate}, {"pad", pad},
      {"gridSample", gridSample}, {"affineGrid", affineGrid},
      {"guidedRelu", guidedRelu}, {"deconvRelu", deconvRelu},
  };
  for (auto& f : fns) defineFn(env, exports, k, f.name, f.fn);
}

}  // namespace kiln
