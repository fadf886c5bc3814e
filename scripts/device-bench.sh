#!/usr/bin/env bash
# Runs the GPU checks and benchmarks on a GPU machine that has no node, npm or network, from the bundle that
# scripts/device-bundle.sh built (.devbench/ and .gl/ in the repo root). Run it from the repo root; it writes
# device-bench.log and JSON to $OUT (default docs/bench-gpu/, where the results are committed):
#   greedy-stages{1,5}.json  stories260K's 255 greedy ids from BOS, 1 and 5 Stages, checked against llama.cpp's
#                            reference continuation (tests/fixtures/stories260K.greedy.json) before anything is timed
#   bench-1b.json            Llama-3.2-1B's shapes in Q4_K_M (scripts/bench-model.ts 1b): decode after 128 and 4,096
#                            tokens of context against llama.cpp's Vulkan and CPU builds, GPU profile per kernel,
#                            achieved bandwidth against the GPU's peak
#   bench-8b.json            Llama-3.1-8B's shapes, the same (llama.cpp CPU left out: minutes per run)
#   bench-stories260k.json, bench-q4km.json   the earlier models, when time is left
# Every step has a time limit and a failing step does not stop the next: the whole script ends within
# DEVBENCH_BUDGET_S (default 540 s, under the device tool's 600 s per command).
# Local testing: DEVBENCH_SKIP_DPKG=1 leaves / alone (no .deb unpacking); DEVBENCH_DIR picks the unpack folder.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/bench-gpu}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device-bench.log") 2>&1
DIR=${DEVBENCH_DIR:-/tmp/devbench}
MODELS=${DEVBENCH_MODELS:-/tmp/devbench-models}
DEADLINE=$((SECONDS + ${DEVBENCH_BUDGET_S:-540}))

# step NAME SECONDS CMD...: runs CMD under `timeout` (its whole process group), capped by the time left overall
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - SECONDS - 5))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 0 ]; then
    echo "== $name: skipped, no time left"
    return 124
  fi
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS rc
  timeout -k 5 "$limit" "$@"
  rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0))s$([ $rc -eq 124 ] && echo ' (timed out)')"
  return $rc
}

echo "== device-bench $(date -u +%FT%TZ) on $(uname -srm), $(nproc) cores"
cat .devbench/VERSION.txt 2>/dev/null

if [ -z "${DEVBENCH_SKIP_DPKG:-}" ]; then
  for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
  ldconfig
fi
ldconfig -p | grep -E 'libvulkan\.so|libGLX_nvidia|libnvidia-glcore' | sed 's/^/  /'
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  export VK_ICD_FILENAMES=$VK_DRIVER_FILES # older loaders read only this name; it also keeps dawn.ts off SwiftShader
fi
# the NVIDIA ICD names libGLX_nvidia.so.0 bare: make sure the loader can find it
if ! ldconfig -p | grep -q libGLX_nvidia.so.0; then
  for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -e "$d/libGLX_nvidia.so.0" ] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  done
fi
echo "$(ldd --version | head -1); LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-} /dev/nvidia0: $([ -e /dev/nvidia0 ] && echo yes || echo no)"

rm -rf "$DIR"
mkdir -p "$DIR"
if ! { xz -dc .devbench/node.xz >"$DIR/node" && chmod +x "$DIR/node" && tar -C "$DIR" -xJf .devbench/bench.tar.xz; }; then
  echo "device-bench: could not unpack .devbench into $DIR" >&2
  exit 1
fi
NODE=$DIR/node
echo "node $("$NODE" --version) in $DIR"

command -v nvidia-smi >/dev/null && step nvidia-smi 20 nvidia-smi -L
command -v vulkaninfo >/dev/null && step vulkaninfo 20 vulkaninfo --summary

status=0
# correctness on this GPU: greedy ids from BOS against the reference continuation (llama.cpp's, in tests/fixtures),
# in one Stage and in five chained Stages, decoding 4 and 16 steps per submission (ids chosen on the GPU)
for stages in 1 5; do
  ahead=$([ "$stages" = 1 ] && echo 4 || echo 16)
  step "greedy ids, $stages stage(s)" 60 sh -c 'out=$1; shift; exec "$@" >"$out"' sh "$OUT/greedy-stages$stages.json" \
    "$NODE" "$DIR/js/main.mjs" generate --model public/models/stories260K.gguf --temperature 0 --max-tokens 255 --stages "$stages" \
    --decode-ahead "$ahead" --json || status=1
  python3 - "$OUT/greedy-stages$stages.json" tests/fixtures/stories260K.greedy.json <<'PY' || status=1
import json, sys
got = json.load(open(sys.argv[1]))['output_ids']
want = json.load(open(sys.argv[2]))['output_ids']
n = min(len(got), len(want))
first = next((i for i in range(n) if got[i] != want[i]), None)
print(f"greedy ids: {n} compared, " + ("all equal to the reference" if first is None and n == len(want) else f"first difference at {first}"))
sys.exit(0 if first is None and n == len(want) else 1)
PY
done

# peak memory bandwidth of the GPU, GB/s (vendor figures), for the share of it decode reaches
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case "$GPU_NAME" in
  *H200*) PEAK=4800 ;;
  *H100*NVL*) PEAK=3900 ;;
  *H100*PCIe*) PEAK=2000 ;;
  *H100*) PEAK=3350 ;;
  *A100*80GB*) PEAK=2039 ;;
  *A100*) PEAK=1555 ;;
  *) PEAK= ;;
esac
echo "GPU: ${GPU_NAME:-unknown}, peak ${PEAK:-unknown} GB/s"
PEAK_ARG=${PEAK:+--peak-gbps $PEAK}
THREADS=$(nproc)

mkdir -p "$MODELS"
# the Llama-3.2-1B-shaped model: decode at 128 and 4,096 tokens of context, llama.cpp CPU (all cores) at 128 only
M1B=$MODELS/bench-llama-3.2-1b-q4_k_m.gguf
step 'write 1B model' 60 "$NODE" "$DIR/js/bench-model.mjs" 1b "$M1B" || { status=1; rm -f "$M1B"; }
if [ -f "$M1B" ]; then
  # shellcheck disable=SC2086
  step 'bench 1B' 170 "$NODE" "$DIR/js/main.mjs" bench --model "$M1B" --contexts 128,4096 --tokens 64 --vulkan-tokens 64 \
    --decode-ahead 0,4 --runs 3 --profile --cpu-threads "$THREADS" --cpu-max-context 128 $PEAK_ARG --out "$OUT/bench-1b.json" || status=1
fi
rm -f "$M1B"

# the Llama-3.1-8B-shaped model (~4.9 GB): one run per context, no CPU build
M8B=$MODELS/bench-llama-3.1-8b-q4_k_m.gguf
step 'write 8B model' 90 "$NODE" "$DIR/js/bench-model.mjs" 8b "$M8B" || { status=1; rm -f "$M8B"; }
if [ -f "$M8B" ]; then
  # shellcheck disable=SC2086
  step 'bench 8B' 200 "$NODE" "$DIR/js/main.mjs" bench --model "$M8B" --contexts 128,4096 --tokens 32 --vulkan-tokens 32 \
    --runs 1 --profile --cpu-max-context 0 $PEAK_ARG --out "$OUT/bench-8b.json" || status=1
fi
rm -f "$M8B"

# the earlier models, for comparison with docs/bench-h100, while time is left
step 'bench stories260K' 60 "$NODE" "$DIR/js/main.mjs" bench --model public/models/stories260K.gguf --profile \
  --out "$OUT/bench-stories260k.json" || status=1
Q4KM=$MODELS/bench-llama-q4_k_m-190m.gguf
step 'write 190M Q4_K_M model' 60 "$NODE" "$DIR/js/bench-model.mjs" 190m "$Q4KM" || { status=1; rm -f "$Q4KM"; }
if [ -f "$Q4KM" ]; then
  step 'bench 190M Q4_K_M' 60 "$NODE" "$DIR/js/main.mjs" bench --model "$Q4KM" --prompt 32 --tokens 64 --runs 3 --profile \
    --out "$OUT/bench-q4km.json" || status=1
fi

for f in "$OUT"/bench-*.json; do
  [ -f "$f" ] || continue
  dev=$(grep -m1 '"device"' "$f")
  echo "$(basename "$f"): $dev"
  echo "$dev" | grep -qi swiftshader && echo "device-bench: WARNING: Dawn ran on SwiftShader, not the GPU"
done
echo "== device-bench done in ${SECONDS}s, status $status"
exit $status
