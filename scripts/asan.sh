#!/usr/bin/env bash
# Builds the addon with AddressSanitizer into build-asan/ (the normal build is untouched) and
# runs the test suite against it (KILN_ADDON, libasan preloaded into node). Slow: ~5 min to
# build on 2 cores, ~2 min to test. Expected: no AddressSanitizer report; the RSS-flatness test
# in 05.memory fails under ASan only because its quarantine keeps freed memory.
#   bash scripts/asan.sh [mocha options, e.g. --grep decode]
set -euo pipefail
cd "$(dirname "$0")/.."
torch_dir=$(node scripts/find-libtorch.js --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).torchDir))')
node node_modules/cmake-js/bin/cmake-js build --out build-asan -G Ninja --CDTorch_DIR="$torch_dir" \
  --CDCMAKE_BUILD_TYPE=RelWithDebInfo "--CDCMAKE_CXX_FLAGS=-fsanitize=address -fno-omit-frame-pointer" \
  "--CDCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address"
npx tsc -p .
LD_PRELOAD=$(g++ -print-file-name=libasan.so) \
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:allocator_may_return_null=1 \
KILN_ADDON="$PWD/build-asan/Release/kiln.node" npx mocha --timeout 300000 "$@"
