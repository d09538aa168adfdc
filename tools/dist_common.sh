# Shared by tools/check_wheel.sh and tools/check_sdist.sh (sourced, not run).

# quiet_pip VENV ARGS...: pip install -q, without the warnings this machine's pip config
# prints for index directories that do not exist; pip's exit status is kept.
quiet_pip() {
  local venv=$1
  shift
  { "$venv/bin/python" -m pip install -q "$@" 2>&1 1>&3 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; } 3>&1
}

# fresh_venv DIR: a new venv at DIR with an up-to-date pip.
fresh_venv() {
  python3 -m venv --clear "$1"
  quiet_pip "$1" --upgrade pip
}

# run_suite_installed VENV SRC: the test suite of the source tree SRC against the fastmlp
# installed in VENV, from a scratch copy of the tests and the files they read (README,
# docs, .ci, pyproject's pytest settings) that has no python/ directory, so only the
# installed package can be imported.
run_suite_installed() {
  local venv=$1 src=$2 scratch
  scratch=$(mktemp -d /tmp/fastmlp-suite.XXXXXX)
  cp -r "$src/tests" "$src/docs" "$src/.ci" "$src/README.md" "$src/pyproject.toml" "$scratch/"
  (
    cd "$scratch"
    "$venv/bin/python" - "$venv" <<'PY'
import os, sys
import fastmlp, fastmlp._core
venv = os.path.realpath(sys.argv[1])
for module in (fastmlp, fastmlp._core):
    path = os.path.realpath(module.__file__)
    assert path.startswith(venv + os.sep), f"{module.__name__} imported from {path}, not {venv}"
print(f"fastmlp {fastmlp.__version__} from {os.path.dirname(fastmlp.__file__)}; "
      f"kernels: {fastmlp.build_info()['cpu_isa']}")
PY
    "$venv/bin/python" -m pytest -q -x -p no:cacheprovider
  )
  rm -rf "$scratch"
}
