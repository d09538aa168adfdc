#!/usr/bin/env bash
# Build the sdist, install fastmlp from it (a build from source) into a fresh venv, and
# run the suite that the sdist itself carries, with its python/ removed so only the
# installed package can be imported.
#
#   tools/check_sdist.sh            (from anywhere; uses /tmp/fastmlp-sdist-*)
#
# FASTMLP_TEST_EXTRA picks the extra installed for the tests (default: test, everything;
# test-core on a machine where torch would come as a CUDA build of several GB).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/tools/dist_common.sh"
work=/tmp/fastmlp-sdist-check
rm -rf "$work" && mkdir -p "$work"

echo "== build the sdist"
fresh_venv "$work/tools"
quiet_pip "$work/tools" build
"$work/tools/bin/python" -m build --sdist --outdir "$work/dist" "$src" > "$work/build.log" 2>&1 \
  || { tail -50 "$work/build.log"; exit 1; }
sdist=$(ls "$work"/dist/fastmlp-*.tar.gz)
echo "built $(basename "$sdist")"
tar -xzf "$sdist" -C "$work"
unpacked=$(ls -d "$work"/fastmlp-*/)
test -f "$unpacked/LICENSE" || { echo "no LICENSE in the sdist"; exit 1; }
rm -rf "$unpacked/python"

echo "== install from the sdist into a fresh venv and run its suite"
fresh_venv "$work/venv"
quiet_pip "$work/venv" "$sdist[${FASTMLP_TEST_EXTRA:-test}]"
run_suite_installed "$work/venv" "$unpacked"
echo "check_sdist: OK ($(basename "$sdist"))"
