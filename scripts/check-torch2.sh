#!/usr/bin/env bash
# Proves the native sources compile against libtorch 2.x APIs (not only Debian bookworm's 1.13), and the
# CUDA-only code against CUDA headers, without installing anything: Debian packages are downloaded into a
# cache folder and unpacked there, and every native/*.cc is compiled with -fsyntax-only.
#   1. Debian trixie's libtorch-dev (2.6), C++17: every source.
#   2. The same with CUDA 12.4's runtime headers (trixie's non-free nvidia-cuda-dev, headers only) and
#      KILN_WITH_CUDA_GRAPHS: the CUDA-graph code only a CUDA build compiles (KILN_CHECK_CUDA=0 skips it).
#   3. A pinned newer libtorch-dev from Debian sid (KILN_TORCH_NEW, default 2.14.1+dfsg-1), C++20 as its headers
#      require, every source with the CUDA-graph code on: the newest API. The CUDA headers of this pass are the
#      machine's own toolkit when it has one (CUDA_HOME, else /usr/local/cuda: CUDA 13 on these machines, as on
#      the GPU machine), else pass 2's. Sid keeps only its latest upload, so once it moves on this pass says it is
#      skipped until the pin is updated (KILN_TORCH_NEW=none skips it).
# Exit: 0 compiled, 1 a compile error, 2 trixie's headers could not be fetched (no Debian archive access).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KILN_TORCH2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/torch2-headers}
suite=${KILN_TORCH2_SUITE:-trixie}
newer=${KILN_TORCH_NEW:-2.14.1+dfsg-1}

# fetch DIR SOURCES_LINE PACKAGE [TAR_FILTER]: downloads PACKAGE (name or name=version) from that archive into
# DIR/root once (only the paths matching TAR_FILTER when given); returns non-zero when it cannot
fetch() {
  local dir=$1 line=$2 pkg=$3 filter=${4:-}
  mkdir -p "$dir/lists/partial" "$dir/debs" "$dir/root"
  echo "$line" > "$dir/sources.list"
  local o=(-oDir::Etc::SourceList="$dir/sources.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$dir/lists" -oAPT::Architecture=amd64 -oDebug::NoLocking=1)
  if ! apt-get "${o[@]}" update -q >/dev/null 2>&1 || ! (cd "$dir/debs" && timeout 600 apt-get "${o[@]}" download "$pkg" >/dev/null 2>&1); then
    rm -rf "$dir/debs"
    return 1
  fi
  for f in "$dir"/debs/*.deb; do
    if [ -n "$filter" ]; then dpkg-deb --fsys-tarfile "$f" | tar -x -C "$dir/root" --wildcards "$filter"; else dpkg -x "$f" "$dir/root"; fi
  done
  rm -rf "$dir/debs"
}

versionOf() { # the libtorch version of the headers under $1
  local vh
  for vh in "$1/torch/headeronly/version.h" "$1/torch/csrc/api/include/torch/version.h"; do
    if grep -q 'TORCH_VERSION_MINOR [0-9]' "$vh" 2>/dev/null; then
      echo "$(grep -oP 'TORCH_VERSION_MAJOR \K\d+' "$vh").$(grep -oP 'TORCH_VERSION_MINOR \K\d+' "$vh")"
      return
    fi
  done
  echo '?'
}

addon=(-I"$top/node_modules/node-api-headers/include" -I"$(node -p "require('node-addon-api').include_dir" 2>/dev/null || echo "$top/node_modules/node-addon-api")" -I"$top/native")
# check ROOT STD LABEL FILES FLAGS... : compiles the native sources FILES (space-separated) against the headers under ROOT
check() {
  local root=$1 std=$2 label=$3 files=$4; shift 4
  local version
  version=$(versionOf "$root/usr/include")
  for f in $files; do
    if g++ -std="$std" -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -DNAPI_VERSION=8 -DNODE_GYP_MODULE_NAME=kiln -DNAPI_CPP_EXCEPTIONS \
         "$@" -I"$root/usr/include" -I"$root/usr/include/torch/csrc/api/include" "${addon[@]}" -include "$top/native/pch.h" "$f" 2> "$cache/$(basename "$f").log"; then
      echo "check-torch2: ok   $(basename "$f") against libtorch $version ($std)$label"
    else
      echo "check-torch2: FAIL $(basename "$f") against libtorch $version ($std)$label"; head -30 "$cache/$(basename "$f").log"; fail=1
    fi
  done
}
fail=0
all=$(echo "$top"/native/*.cc)

# 1. trixie's libtorch 2.6
if [ ! -f "$cache/root/usr/include/torch/csrc/api/include/torch/torch.h" ] && ! fetch "$cache" "deb http://deb.debian.org/debian $suite main" libtorch-dev; then
  echo "check-torch2: could not fetch Debian $suite's libtorch-dev headers (no access to the Debian archive?)"
  exit 2
fi
check "$cache/root" c++17 "" "$all"

# 2. with CUDA runtime headers and the CUDA-graph code on
cuda="$cache/cuda"
[ -d "$cuda/usr" ] && mkdir -p "$cuda/root" && mv "$cuda/usr" "$cuda/root/" # the first layout of this cache
cudainc="$cuda/root/usr/include"
cudaflags=()
# a CPU-only libtorch-dev lacks the one header its CUDA build generates
mkdir -p "$cache/cuda-overlay/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$cache/cuda-overlay/c10/cuda/impl/cuda_cmake_macros.h"
cudaVersion() { # "13.0" for the CUDA runtime headers under $1
  local cv
  cv=$(grep -oP '#define CUDART_VERSION\s+\K\d+' "$1/cuda_runtime_api.h")
  echo "$((cv / 1000)).$((cv % 1000 / 10))"
}
if [ "${KILN_CHECK_CUDA:-1}" = 0 ]; then
  echo "check-torch2: CUDA-graph passes skipped (KILN_CHECK_CUDA=0)"
elif [ -f "$cudainc/cuda_runtime_api.h" ] || fetch "$cuda" "deb http://deb.debian.org/debian $suite non-free" nvidia-cuda-dev './usr/include/*'; then
  cudaflags=(-DKILN_WITH_CUDA_GRAPHS=1 -I"$cache/cuda-overlay" -I"$cudainc")
  cudalabel=" + CUDA $(cudaVersion "$cudainc") headers, CUDA graphs on"
  # only the sources with CUDA-only code differ in this pass
  check "$cache/root" c++17 "$cudalabel" "$(grep -l KILN_WITH_CUDA_GRAPHS "$top"/native/*.cc | tr '\n' ' ')" "${cudaflags[@]}"
else
  echo "check-torch2: CUDA-graph passes skipped (Debian $suite's non-free nvidia-cuda-dev could not be fetched)"
fi

# 3. the pinned newer libtorch from sid, C++20, CUDA-graph code on where the CUDA headers are there
if [ "$newer" = none ]; then
  echo "check-torch2: newer-libtorch pass skipped (KILN_TORCH_NEW=none)"
else
  newdir="$cache/sid-$newer"
  if [ -f "$newdir/root/usr/include/torch/csrc/api/include/torch/torch.h" ] || fetch "$newdir" "deb http://deb.debian.org/debian sid main" "libtorch-dev=$newer"; then
    newflags=("${cudaflags[@]}") newlabel=${cudalabel:-}
    for d in "${CUDA_HOME:-}" /usr/local/cuda; do # the machine's own CUDA toolkit, the GPU machine's major version
      if [ "${KILN_CHECK_CUDA:-1}" != 0 ] && [ -n "$d" ] && [ -f "$d/include/cuda_runtime_api.h" ]; then
        newflags=(-DKILN_WITH_CUDA_GRAPHS=1 -I"$cache/cuda-overlay" -I"$d/include") newlabel=" + CUDA $(cudaVersion "$d/include") headers ($d), CUDA graphs on"
        break
      fi
    done
    check "$newdir/root" c++20 "$newlabel" "$all" "${newflags[@]}"
  else
    echo "check-torch2: newer-libtorch pass skipped (Debian sid no longer has libtorch-dev $newer; set KILN_TORCH_NEW to its current version)"
  fi
fi
exit $fail
