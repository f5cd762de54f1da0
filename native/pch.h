// Precompiled header: libtorch and N-API are large; every translation unit starts from this.
#pragma once
#include <torch/torch.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <node_api.h>
#include <napi.h>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>
