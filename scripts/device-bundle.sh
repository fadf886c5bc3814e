#!/usr/bin/env bash
# Builds .devbench/ (and .gl/) in the repo root: everything `flock bench` needs on a Linux x86-64 GPU machine that
# has no node, no npm and no network. scripts/device-bench.sh unpacks and runs it there. Contents, all compressed:
#   node.xz        this machine's node binary
#   bench.tar.xz   js/ (esbuild bundles of src/cli/main.ts, src/cli/bench-llama.ts, scripts/bench-model.ts) and a
#                  minimal node_modules/ for the externals: webgpu (linux-x64 dawn.node only), node-llama-cpp and its
#                  runtime dependencies, @node-llama-cpp/linux-x64 (CPU) and @node-llama-cpp/linux-x64-vulkan
# .gl/ holds Debian's libvulkan1 (the Vulkan loader) and the GL dispatch libraries NVIDIA's Vulkan driver loads (libglvnd0,
# libegl1, libgl1, libglx0, libopengl0, libgles2); device-bench.sh unpacks them onto /.
# @node-llama-cpp/linux-x64-cuda is left out: its libggml-cuda.so alone is ~118 MB after xz -9.
# Usage: bash scripts/device-bundle.sh        (from anywhere; needs node_modules installed, network for apt only once)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LIMIT_MIB=55

# the bundle folders travel as `carry` paths, never with git (.gitignore lists them)

STAGE=$(mktemp -d /tmp/devbench-stage.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
NM=$ROOT/node_modules

echo "== esbuild $("$NM/.bin/esbuild" --version)"
# Splitting keeps each dynamically imported command (host, signal, swarm...) in its own chunk, so their externals are
# imported only when that command runs; chunks sit beside the entries so bench.ts finds bench-llama.mjs beside itself.
"$NM/.bin/esbuild" src/cli/main.ts src/cli/bench-llama.ts scripts/bench-model.ts \
  --bundle --platform=node --format=esm --target=node20 --splitting \
  --outdir="$STAGE/js" --entry-names='[name]' --chunk-names='[name]-[hash]' --out-extension:.js=.mjs \
  --external:webgpu --external:node-llama-cpp --external:node-datachannel --external:'node-datachannel/*' \
  --external:peer --external:peerjs --external:ws --external:bufferutil --external:utf-8-validate \
  --banner:js="import { createRequire as __flockCreateRequire } from 'node:module'; const require = __flockCreateRequire(import.meta.url);" \
  --log-level=warning

# node_modules: copy the packages the externals need at run time (dependency closure, resolved the way node does)
node --input-type=module - "$NM" "$STAGE/node_modules" <<'EOF'
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
const [nm, dest] = process.argv.slice(2);
const root = dirname(nm);
// node-llama-cpp's optional dependencies are its per-platform binaries: only these two come along
const platformPkgs = new Set(['@node-llama-cpp/linux-x64', '@node-llama-cpp/linux-x64-vulkan']);
const seen = new Set();
function resolvePkg(name, fromDir) {
  for (let d = fromDir; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (d === root || d === dirname(d)) return null;
  }
}
function add(dir) {
  if (seen.has(dir)) return;
  seen.add(dir);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const deps = Object.keys(pkg.dependencies ?? {});
  for (const name of Object.keys(pkg.optionalDependencies ?? {})) {
    if (!name.startsWith('@node-llama-cpp/') || platformPkgs.has(name)) deps.push(name);
  }
  for (const name of deps) {
    const p = resolvePkg(name, dir);
    if (p) add(p);
    else if (!pkg.optionalDependencies?.[name]) throw new Error(`${name} (needed by ${pkg.name}) is not installed`);
  }
}
add(join(nm, 'node-llama-cpp'));
for (const dir of seen) {
  const rel = relative(nm, dir);
  // a nested package (a/node_modules/b) is copied with its parent's copy; skip the parent's own nested node_modules
  cpSync(dir, join(dest, rel), {
    recursive: true, dereference: true,
    filter: (src) => !relative(dir, src).split('/').includes('node_modules'),
  });
}
// webgpu: its loader, package.json and the linux-x64 dawn.node; nothing else is loaded (index.js imports no package)
for (const f of ['package.json', 'index.js', 'dist/linux-x64/dawn.node']) {
  cpSync(join(nm, 'webgpu', f), join(dest, 'webgpu', f));
}
process.stdout.write(`${seen.size} packages for node-llama-cpp, plus webgpu\n`);
EOF

# prune what nothing loads at run time: docs, types, source maps, the llama.cpp sources (build: 'never' is used)
D=$STAGE/node_modules
rm -rf "$D/node-llama-cpp/llama/gitRelease.bundle" "$D/node-llama-cpp/llama/addon" "$D/node-llama-cpp/llama/cmake" \
  "$D/node-llama-cpp/llama/toolchains" "$D/node-llama-cpp/llama/patches" "$D/node-llama-cpp/llama/xpack" \
  "$D/node-llama-cpp/llama/CMakeLists.txt"
find "$D" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' \
  -o -name '*.markdown' -o -name 'CHANGELOG*' -o -name '*.ts' -o -name '*.tsbuildinfo' \) -delete
find "$D" -depth -type d \( -name docs -o -name doc -o -name test -o -name tests -o -name __tests__ -o -name example -o -name examples \) \
  -not -path '*/dist/*' -exec rm -rf {} +
find "$D" -depth -type d -empty -delete
# the CPU and Vulkan builds share their ggml CPU libraries byte for byte: hard links, which tar stores once
CPU=$D/@node-llama-cpp/linux-x64/bins/linux-x64
VK=$D/@node-llama-cpp/linux-x64-vulkan/bins/linux-x64-vulkan
for f in "$VK"/*; do
  b=$CPU/$(basename "$f")
  if [ -f "$b" ] && cmp -s "$f" "$b"; then ln -f "$b" "$f"; fi
done

rm -rf .devbench
mkdir -p .devbench
echo "== compressing (xz -9; about two minutes)"
xz -9 -T1 -c /usr/bin/node >.devbench/node.xz &
XZ_NODE=$!
tar -C "$STAGE" --sort=name --owner=0 --group=0 -cf - js node_modules | xz -9 -T1 -c >.devbench/bench.tar.xz
wait $XZ_NODE
(cd "$STAGE" && find js node_modules -type f -printf '%s\t%p\n' | sort -k2) >.devbench/MANIFEST.txt
echo "node $(node --version), built $(date -u +%FT%TZ) from $(basename "$ROOT")" >.devbench/VERSION.txt

# the Vulkan loader, Debian's amd64 build (the device image may lack it)
mkdir -p .gl
if ! ls .gl/libvulkan1_*_amd64.deb .gl/libglvnd0_*_amd64.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

echo "== bundle"
ls -l .devbench .gl
echo "raw: $(du -sh "$STAGE/js" | cut -f1) js, $(du -sh "$STAGE/node_modules" | cut -f1) node_modules, $(du -sh /usr/bin/node | cut -f1) node"
total=$(cat .devbench/* .gl/* | wc -c)
echo "total: $total bytes ($(awk -v b="$total" 'BEGIN { printf "%.1f", b / 1048576 }') MiB; limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "device-bundle: over the $LIMIT_MIB MiB limit" >&2
  exit 1
fi
