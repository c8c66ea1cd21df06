#!/usr/bin/env bash
# Packs what a GPU machine without Node or a registry needs to build and run the addon (issue 16)
# into .device/ (git-ignored; the device tool carries it): this node binary (xz), the N-API
# headers, the production node_modules, the compiled JS (dist/lib, dist/bench) and Debian's gloo
# headers (used there only if that libtorch ships none). bench/gpu/node-build.sh unpacks it.
#   bash scripts/device-bundle.sh        (after npm ci and a tsc build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
B=.device
# Everything but prebuilt/ (an addon an earlier GPU run built and returned) is packed afresh.
mkdir -p "$B"
find "$B" -mindepth 1 -maxdepth 1 ! -name prebuilt -exec rm -rf {} +
mkdir -p "$B/node-include" "$B/node_modules" "$B/dist"

node_bin="$(command -v node)"
if ldd "$node_bin" | grep -q 'libnode'; then
  echo "device-bundle: $node_bin links libnode.so (a distribution build); carry a self-contained node instead" >&2
  exit 1
fi
xz -T0 -6 -c "$node_bin" >"$B/node.xz"
node -p process.version >"$B/node.version"

inc="$(dirname "$node_bin")/../include/node"
[[ -f "$inc/node_api.h" ]] || inc="$HOME/.cache/node-gyp/$(node -p 'process.versions.node')/include/node"
[[ -f "$inc/node_api.h" ]] || { echo "device-bundle: no node_api.h next to $node_bin or in node-gyp's cache" >&2; exit 1; }
cp "$inc"/{node_api.h,node_api_types.h,js_native_api.h,js_native_api_types.h} "$B/node-include/"

# The production dependency tree (node-addon-api included: its headers build the addon there).
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | while read -r dir; do
  rel="${dir#"$ROOT"/node_modules/}"
  mkdir -p "$B/node_modules/$(dirname "$rel")"
  cp -r "$dir" "$B/node_modules/$rel"
done

npx tsc -p tsconfig.json
cp -r dist/lib dist/bench "$B/dist/"

[[ -d /usr/include/gloo ]] && mkdir -p "$B/gloo-include" && cp -r /usr/include/gloo "$B/gloo-include/"
du -sh "$B"
