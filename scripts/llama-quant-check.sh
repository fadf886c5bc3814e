#!/usr/bin/env bash
# Checks Flock's block formats and the tensor-type mixes its fixtures use against llama.cpp's own code, in the build
# node-llama-cpp ships (pinned 3.21.1): every CPU dequantizer (src/model/quant*.ts) against dequantize_row_* on random
# blocks, bit for bit, and tests/helpers/llama-mix.ts against llama_model_quantize on F32 files of the catalog's
# shapes. Not part of `npm test`: it compiles a small C program (needs gcc), against llama.h from the llama.cpp
# source bundle inside node_modules/node-llama-cpp. Run it after upgrading node-llama-cpp.
# Usage: bash scripts/llama-quant-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/llama-quant-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
BINS=$(ls -d node_modules/@node-llama-cpp/linux-x64/bins/*/ | head -1)
git -c advice.detachedHead=false clone -q node_modules/node-llama-cpp/llama/gitRelease.bundle "$WORK/llama.cpp"
gcc -O1 scripts/llama-quant-check.c -o "$WORK/llama-quant-check" \
  -I "$WORK/llama.cpp/include" -I "$WORK/llama.cpp/ggml/include" \
  -L "$BINS" -l:libllama.v0.4.0.so -l:libggml.v0.4.0.so -l:libggml-base.so -Wl,-rpath,"$PWD/$BINS"
node --import tsx scripts/llama-quant-check.ts "$WORK/llama-quant-check" "$WORK"
