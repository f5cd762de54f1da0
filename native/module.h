// Native modules: a compiled inference program built from a TS module tree's spec (layers
// referencing parameter tensors by handle), run on a worker thread by forwardAsync; and
// TorchScript modules loaded from files saved by Python's torch.jit.save.
#pragma once
#include "tensor.h"

namespace kiln {

/** One node of a compiled program; forward runs in inference (no-grad) mode. */
struct Node {
  virtual ~Node() = default;
  virtual at::Tensor forward(const at::Tensor& x) const = 0;
};

/** Something forwardAsync can run on a worker thread. */
struct Runnable {
  virtual ~Runnable() = default;
  virtual at::Tensor run(const at::Tensor& x) = 0;
};

}  // namespace kiln
