// Async work on native worker threads, returning Promises (readback now; forward and
// save/load later). Each job holds its own at::Tensor references, so dispose() during a job
// cannot free memory still in use.
#pragma once
#include "tensor.h"
