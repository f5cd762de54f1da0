#!/usr/bin/env bash
# Proves the native sources compile against a libtorch 2.x API (not only Debian bookworm's 1.13):
# downloads Debian trixie's libtorch-dev headers (2.6) into a cache folder — without installing
# anything — and compiles every native/*.cc with -fsyntax-only against them.
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
fi
vh="$cache/root/usr/include/torch/csrc/api/include/torch/version.h"
version="$(grep -oP 'TORCH_VERSION_MAJOR \K\d+' "$vh" 2>/dev/null).$(grep -oP 'TORCH_VERSION_MINOR \K\d+' "$vh" 2>/dev/null)" 
inc=(-I"$cache/root/usr/include" -I"$cache/root/usr/include/torch/csrc/api/include"
     -I"$top/node_modules/node-api-headers/include" -I"$(node -p "require('node-addon-api').include_dir" 2>/dev/null || echo "$top/node_modules/node-addon-api")" -I"$top/native")
fail=0
for f in "$top"/native/*.cc; do
  if g++ -std=c++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -DNAPI_VERSION=8 -DNODE_GYP_MODULE_NAME=kiln -DNAPI_CPP_EXCEPTIONS \
       "${inc[@]}" -include "$top/native/pch.h" "$f" 2> "$cache/$(basename "$f").log"; then
    echo "check-torch2: ok   $(basename "$f") against libtorch $version"
  else
    echo "check-torch2: FAIL $(basename "$f") against libtorch $version"; head -30 "$cache/$(basename "$f").log"; fail=1
  fi
done
exit $fail
