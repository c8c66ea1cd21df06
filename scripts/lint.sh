#!/usr/bin/env bash
# The formatter and linter, as CI runs them (.ci/run): Biome for the TypeScript/JavaScript
# (biome.json), clang-format for the C++/CUDA (.clang-format), and tsc over the tests too
# (tsconfig.test.json: tap's loader runs them without type checks). `bash scripts/lint.sh --fix`
# rewrites the files instead of checking them.
set -euo pipefail
cd "$(dirname "$0")/.."
fix=${1:-}
if [ "$fix" = --fix ]; then npx biome check --write .; else npx biome check .; fi
command -v clang-format >/dev/null || { echo "lint: clang-format not found (Debian/Ubuntu: apt-get install clang-format)" >&2; exit 1; }
mapfile -t cxx < <(git ls-files 'csrc/*.cc' 'csrc/*.h' 'csrc/*.cu' 'bench/gpu/*.cc' 'bench/gpu/*.cu' 'bench/gpu/*.h')
if [ "$fix" = --fix ]; then clang-format -i "${cxx[@]}"; else clang-format --dry-run -Werror "${cxx[@]}"; fi
npx tsc -p tsconfig.test.json
echo "lint: biome, clang-format and the tests' types clean (${#cxx[@]} C++/CUDA files)"
