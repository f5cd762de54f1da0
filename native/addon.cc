// Registers the native surface; nothing else lives here.
#include "tensor.h"

static napi_value Init(napi_env env, napi_value exports) {
  auto* k = new kiln::KilnEnv();
  napi_set_instance_data(
      env, k,
      [](napi_env env, void* data, void*) {
        auto* k = static_cast<kiln::KilnEnv*>(data);
        if (k->errorCtor) napi_delete_reference(env, k->errorCtor);
        delete k;
      },
      nullptr);
  kiln::registerTensor(env, exports, k);
  kiln::registerOps(env, exports, k);
  kiln::registerFunctional(env, exports, k);
  kiln::registerWorkers(env, exports, k);
  kiln::registerOptim(env, exports, k);
  kiln::registerModule(env, exports, k);
  kiln::registerDecode(env, exports, k);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
