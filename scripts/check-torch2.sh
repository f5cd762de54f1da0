#!/usr/bin/env bash
# Proves the native sources compile against a libtorch 2.x API (not only Debian bookworm's 1.13):
# downloads Debian trixie's libtorch-dev headers (2.6) into a cache folder — without installing
# anything — and compiles every native/*.cc with -fsyntax-only against them.
# Then, where Debian's non-free CUDA headers can be fetched too (nvidia-cuda-dev, headers only, kept in
# the cache), compiles the sources again with KILN_WITH_CUDA_GRAPHS: the CUDA-graph code that only a
# CUDA build compiles (KILN_CHECK_CUDA=0 skips this pass).
# Exit: 0 compiled, 1 a compile error, 2 the headers could not be fetched (no Debian archive access).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KILN_TORCH2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/torch2-headers}
suite=${KILN_TORCH2_SUITE:-trixie}
if [ ! -f "$cache/root/usr/include/torch/csrc/api/include/torch/torch.h" ]; then
  mkdir -p "$cache/lists/partial" "$cache/debs" "$cache/root"
  echo "deb http://deb.debian.org/debian $suite main" > "$cache/sources.list"
  o=(-oDir::Etc::SourceList="$cache/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$cache/lists" -oAPT::Architecture=amd64 -oDebug::NoLocking=1)
  if ! apt-get "${o[@]}" update -q >/dev/null 2>&1 || ! (cd "$cache/debs" && apt-get "${o[@]}" download libtorch-dev >/dev/null 2>&1); then
    echo "check-torch2: could not fetch Debian $suite's libtorch-dev headers (no access to the Debian archive?)"
    exit 2
  fi
  for f in "$cache"/debs/*.deb; do dpkg -x "$f" "$cache/root"; done
  rm -f "$cache"/debs/*.deb
fi
vh="$cache/root/usr/include/torch/csrc/api/include/torch/version.h"
version="$(grep -oP 'TORCH_VERSION_MAJOR \K\d+' "$vh" 2>/dev/null).$(grep -oP 'TORCH_VERSION_MINOR \K\d+' "$vh" 2>/dev/null)" 
inc=(-I"$cache/root/usr/include" -I"$cache/root/usr/include/torch/csrc/api/include"
     -I"$top/node_modules/node-api-headers/include" -I"$(node -p "require('node-addon-api').include_dir" 2>/dev/null || echo "$top/node_modules/node-addon-api")" -I"$top/native")
# check LABEL FILES FLAGS... : compiles the native sources FILES (a space-separated list) with the extra flags
check() {
  local label=$1 files=$2; shift 2
  for f in $files; do
    if g++ -std=c++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -DNAPI_VERSION=8 -DNODE_GYP_MODULE_NAME=kiln -DNAPI_CPP_EXCEPTIONS \
         "$@" "${inc[@]}" -include "$top/native/pch.h" "$f" 2> "$cache/$(basename "$f").log"; then
      echo "check-torch2: ok   $(basename "$f") against libtorch $version$label"
    else
      echo "check-torch2: FAIL $(basename "$f") against libtorch $version$label"; head -30 "$cache/$(basename "$f").log"; fail=1
    fi
  done
}
fail=0
check "" "$(echo "$top"/native/*.cc)"
# the CUDA-graph pass: CUDA runtime headers from Debian's non-free nvidia-cuda-dev (a large download, once)
cuda="$cache/cuda"
if [ "${KILN_CHECK_CUDA:-1}" != 0 ] && [ ! -f "$cuda/usr/include/cuda_runtime_api.h" ]; then
  mkdir -p "$cache/cuda-lists/partial" "$cache/cuda-debs" "$cuda"
  echo "deb http://deb.debian.org/debian $suite non-free" > "$cache/cuda-sources.list"
  o=(-oDir::Etc::SourceList="$cache/cuda-sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$cache/cuda-lists" -oAPT::Architecture=amd64 -oDebug::NoLocking=1)
  if apt-get "${o[@]}" update -q >/dev/null 2>&1 && (cd "$cache/cuda-debs" && timeout 600 apt-get "${o[@]}" download nvidia-cuda-dev >/dev/null 2>&1); then
    for f in "$cache"/cuda-debs/*.deb; do dpkg-deb --fsys-tarfile "$f" | tar -x -C "$cuda" --wildcards './usr/include/*'; done
  fi
  rm -rf "$cache/cuda-debs"
fi
if [ "${KILN_CHECK_CUDA:-1}" = 0 ]; then
  echo "check-torch2: CUDA-graph pass skipped (KILN_CHECK_CUDA=0)"
elif [ -f "$cuda/usr/include/cuda_runtime_api.h" ]; then
  # a CPU-only libtorch-dev lacks the one header its CUDA build generates
  mkdir -p "$cache/cuda-overlay/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$cache/cuda-overlay/c10/cuda/impl/cuda_cmake_macros.h"
  cv=$(grep -oP '#define CUDART_VERSION\s+\K\d+' "$cuda/usr/include/cuda_runtime_api.h")
  # only the sources with CUDA-only code differ in this pass
  check " + CUDA $((cv / 1000)).$((cv % 1000 / 10)) headers, CUDA graphs on" "$(grep -l KILN_WITH_CUDA_GRAPHS "$top"/native/*.cc | tr '\n' ' ')" -DKILN_WITH_CUDA_GRAPHS=1 -I"$cache/cuda-overlay" -I"$cuda/usr/include"
else
  echo "check-torch2: CUDA-graph pass skipped (Debian $suite's non-free nvidia-cuda-dev could not be fetched)"
fi
exit $fail
