#!/usr/bin/env bash
# The C++ core on a CPU that is not x86: cross-compile the kernels and tests/cpp/kernel_check
# for aarch64 with Debian's cross toolchain (CMake's non-x86 path: the portable kernels
# only, no AVX sources), then run the check under qemu-user.
#
#   tools/check_aarch64.sh     needs g++-aarch64-linux-gnu and qemu-user (apt-get install)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/fastmlp-aarch64-check
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install g++-aarch64-linux-gnu qemu-user"; exit 1; }
done
rm -rf "$work"
python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q cmake 2>&1 | { grep -v "is ignored: it is neither" || true; } >&2
cmake=$work/tools/bin/cmake

"$cmake" -S "$src" -B "$work/build" -DCMAKE_TOOLCHAIN_FILE="$src/tools/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DFASTMLP_PYTHON=OFF -DFASTMLP_KERNEL_CHECK=ON > "$work/configure.log"
"$cmake" --build "$work/build" -j 2 --target kernel_check > "$work/build.log" 2>&1 \
  || { tail -50 "$work/build.log"; exit 1; }
grep -q "ARM aarch64" <(file -L "$work/build/kernel_check") \
  || { echo "kernel_check is not an aarch64 binary: $(file -L "$work/build/kernel_check")"; exit 1; }
objects=$(cd "$work/build/CMakeFiles/fastmlp_kernels.dir/csrc" && ls ./*.o kernels/*.o)
if grep -q avx <<< "$objects"; then echo "x86 (AVX) kernels were compiled for aarch64"; exit 1; fi
echo "compiled for aarch64:" $objects
qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/build/kernel_check"
echo "check_aarch64: OK"
