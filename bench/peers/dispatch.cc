// Pure C++ libtorch peer of bench/dispatch.ts: median ns per `add` (result freed) over repeats.
#include <torch/torch.h>
#include <malloc.h>
#include <string>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
int main(int argc, char** argv) {
  int iters = argc > 1 ? std::atoi(argv[1]) : 100000, repeats = argc > 2 ? std::atoi(argv[2]) : 7;
  torch::Device device(argc > 3 ? argv[3] : "cpu");
  auto settle = [&] { if (device.is_cuda()) torch::cuda::synchronize(); };
  at::set_num_threads(1);
  // the allocator settings Kiln applies at load (lib/info.ts, KILN_MALLOC_TUNING), so the
  // comparison isolates the binding's cost
  if (!std::getenv("KILN_MALLOC_TUNING") || std::string(std::getenv("KILN_MALLOC_TUNING")) != "0") {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
  for (int64_t n : {1, 1000}) {
    auto a = torch::ones({n}, device), b = torch::ones({n}, device);
    for (int i = 0; i < iters / 10; ++i) { auto c = a.add(b); }
    settle();
    std::vector<double> t;
    for (int r = 0; r < repeats; ++r) {
      auto s = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) { auto c = a.add(b); }
      settle();
      t.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - s).count() / iters);
    }
    std::sort(t.begin(), t.end());
    std::printf("{\"numel\": %lld, \"ns\": %.1f}\n", (long long)n, t[t.size() / 2]);
  }
}
