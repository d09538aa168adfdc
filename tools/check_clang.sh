#!/usr/bin/env bash
# Build fastmlp with clang (and LLVM's OpenMP, libomp) instead of GCC, install it into a
# fresh venv and run the test suite there, outside the source tree.
#
#   tools/check_clang.sh        needs clang and libomp-dev (apt-get install)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/tools/dist_common.sh"
work=/tmp/fastmlp-clang-check
command -v clang++ >/dev/null || { echo "clang++ not found: apt-get install clang libomp-dev"; exit 1; }
rm -rf "$work" && mkdir -p "$work"

fresh_venv "$work/venv"
echo "== build with $(clang++ --version | head -1)"
CC=clang CXX=clang++ quiet_pip "$work/venv" -Cbuild-dir="$work/build" \
  -Ccmake.define.CMAKE_CXX_COMPILER=clang++ "$src[test]"
grep -q "CMAKE_CXX_COMPILER_ID:.*=Clang\|CMAKE_CXX_COMPILER:.*clang++" "$work/build/CMakeCache.txt" \
  || { echo "the build did not use clang++"; exit 1; }
# the extension loads LLVM's OpenMP runtime, not GCC's
"$work/venv/bin/python" - <<'PY'
import fastmlp._core
maps = open("/proc/self/maps").read()
omp = {line.split()[-1] for line in maps.splitlines() if "libomp" in line or "libgomp" in line}
assert omp and not any("libgomp" in path for path in omp), omp
print("OpenMP runtime:", *omp)
PY
run_suite_installed "$work/venv" "$src"
echo "check_clang: OK"
