"""The Cython API (fastmlp/cython_kernels.pxd): a downstream extension, built here against
the installed package as a user would build it, calls the kernels nogil; its results are
held to the NumPy reference like the native backend's."""
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from check import _assert_close, exact, reduction

README = Path(__file__).resolve().parents[1] / "README.md"

# The downstream module under test: thin nogil wrappers that pass memoryviews' pointers
# and strides (in elements) to the kernels, like any user code would.
PROBE_PYX = textwrap.dedent("""
    # cython: language_level=3, boundscheck=False, wraparound=False
    from cython cimport floating
    from libc.stdint cimport int64_t
    from fastmlp.cython_kernels cimport (adam_update, gemm, momentum_update,
                                         softmax_cross_entropy_labels,
                                         softmax_cross_entropy_targets)

    def matmul(const floating[:, :] a, const floating[:, :] b, floating[:, ::1] c):
        cdef Py_ssize_t s = sizeof(floating)
        with nogil:
            gemm(&c[0, 0], c.shape[1], &a[0, 0], a.strides[0] // s, a.strides[1] // s,
                 &b[0, 0], b.strides[0] // s, b.strides[1] // s,
                 a.shape[0], b.shape[1], a.shape[1], False)

    def ce_labels(const floating[:, ::1] z, const int64_t[::1] labels, floating[:, ::1] dz):
        cdef double loss
        with nogil:
            loss = softmax_cross_entropy_labels(&dz[0, 0], &z[0, 0], &labels[0],
                                                z.shape[0], z.shape[1])
        return loss

    def ce_targets(const floating[:, ::1] z, const floating[:, ::1] y, floating[:, ::1] dz):
        cdef double loss
        with nogil:
            loss = softmax_cross_entropy_targets(&dz[0, 0], &z[0, 0], &y[0, 0],
                                                 z.shape[0], z.shape[1])
        return loss

    def momentum(floating[::1] w, const floating[::1] dw, floating[::1] velocity, double lr,
                 double momentum, bint nesterov, double weight_decay):
        with nogil:
            momentum_update(&w[0], &velocity[0], &dw[0], w.shape[0], lr, momentum, nesterov,
                            weight_decay)

    def adam(floating[::1] w, const floating[::1] dw, floating[::1] m, floating[::1] v,
             double lr, double beta1, double beta2, double eps, double weight_decay,
             bint decoupled, long long step):
        with nogil:
            adam_update(&w[0], &m[0], &v[0], &dw[0], w.shape[0], lr, beta1, beta2, eps,
                        weight_decay, decoupled, step)
""")

SETUP_PY = textwrap.dedent("""
    from setuptools import Extension, setup
    from Cython.Build import cythonize
    import fastmlp, numpy

    include = [fastmlp.get_include(), numpy.get_include()]
    setup(ext_modules=cythonize(
        [Extension(name, [name + ".pyx"], include_dirs=include)
         for name in ("probe", "train_loop")], quiet=True))
""")


def readme_cython_snippet():
    section = README.read_text().split("## Calling the kernels from Cython", 1)[1]
    return section.split("```cython\n", 1)[1].split("```", 1)[0]


def c_compiler():
    cc = sysconfig.get_config_var("CC") or "cc"
    return shutil.which(shlex.split(os.environ.get("CC", cc))[0])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The probe and the README's training loop, compiled once per session (a few seconds)."""
    if c_compiler() is None:
        pytest.skip("no C compiler to build a downstream Cython extension")
    pytest.importorskip("Cython", reason="Cython is needed to build a downstream extension")
    work = tmp_path_factory.mktemp("cython_downstream")
    (work / "probe.pyx").write_text(PROBE_PYX)
    (work / "train_loop.pyx").write_text(readme_cython_snippet())
    (work / "setup.py").write_text(SETUP_PY)
    # -O0: the generated C is large (fused memoryview wrappers); optimising it would take
    # most of the test time and these tests measure no speed (the kernels are in _core).
    env = {**os.environ, "CFLAGS": "-O0 -g0"}
    run = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-j", "2"],
                         cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"downstream build failed:\n{run.stdout}\n{run.stderr}"
    sys.path.insert(0, str(work))
    try:
        import probe
        import train_loop
    finally:
        sys.path.remove(str(work))
    return probe, train_loop


DTYPES = [np.float32, np.float64]


def test_get_include_holds_the_pxd():
    assert os.path.isfile(os.path.join(fastmlp.get_include(), "fastmlp", "cython_kernels.pxd"))


def layout(x, kind):
    if kind == "fortran":
        return np.asfortranarray(x)
    if kind == "strided":
        big = np.zeros((2 * x.shape[0], 3 * x.shape[1]), x.dtype)
        big[::2, ::3] = x
        return big[::2, ::3]
    if kind == "reversed":          # negative strides along both axes
        return np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["c", "fortran", "strided", "reversed"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 13, 5), (64, 100, 33)])
def test_gemm_through_cython_matches_numpy(built, dtype, kind, m, k, n):
    probe, _ = built
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype)
    probe.matmul(layout(a, kind), layout(b.T.copy(), kind).T, c)
    want = fastmlp.get_backend("numpy").matmul(a, b)
    _assert_close(f"cython gemm {np.dtype(dtype).name} {kind}", c, want,
                  reduction(dtype, k, np.abs(a) @ np.abs(b)))


def softmax_ce_bounds(loss, n, k, dtype):
    """As tests/test_kernels.py: J carries the row sums' rounding per unit of target mass;
    dz = (p − y)/n, so 1/n is its scale."""
    return reduction(dtype, k, 1.0 + abs(loss)), reduction(dtype, k, 1.0 / n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
@pytest.mark.parametrize("n,k", [(1, 1), (9, 10), (65, 3)])
def test_softmax_cross_entropy_through_cython_matches_numpy(built, dtype, targets, n, k):
    probe, _ = built
    rng = np.random.default_rng(n * 100 + k)
    z = (4 * rng.standard_normal((n, k))).astype(dtype)
    if targets == "labels":
        y = rng.integers(0, k, n).astype(np.int64)
        wrapper = probe.ce_labels
    else:
        y = rng.dirichlet(np.ones(k), n).astype(dtype)
        wrapper = probe.ce_targets
    dz = np.full((n, k), np.nan, dtype)
    loss = wrapper(z, y, dz)
    want_loss, want_dz = fastmlp.get_backend("numpy").softmax_cross_entropy(z, y)
    loss_bound, dz_bound = softmax_ce_bounds(want_loss, n, k, dtype)
    _assert_close(f"cython J ({targets})", loss, want_loss, loss_bound)
    _assert_close(f"cython dz ({targets})", dz, want_dz, dz_bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("flag", [False, True], ids=["plain", "nesterov_or_decoupled"])
@pytest.mark.parametrize("size", [1, 33, 1000])
def test_optimizer_updates_through_cython_match_numpy_bitwise(built, dtype, flag, size):
    """Four steps of each optimizer from zero state, state carried: bitwise the twin's."""
    probe, _ = built
    rng = np.random.default_rng(size)
    twin = fastmlp.get_backend("numpy")
    w0 = rng.standard_normal(size).astype(dtype)
    for name, n_state, hyper in (
            ("momentum", 1, lambda k: (0.05, 0.9, flag, 1e-3)),
            ("adam", 2, lambda k: (1e-2, 0.9, 0.999, 1e-8, 1e-2, flag, k))):
        got = [w0.copy()] + [np.zeros(size, dtype) for _ in range(n_state)]
        want = [a.copy() for a in got]
        for k in range(1, 5):
            dw = rng.standard_normal(size).astype(dtype)
            getattr(probe, name)(got[0], dw, *got[1:], *hyper(k))
            getattr(twin, f"{name}_update")(want[0], dw, *want[1:], *hyper(k))
            for j, (g, e) in enumerate(zip(got, want)):
                _assert_close(f"cython {name} step {k} output {j}", g, e, exact())


def test_cython_runs_the_native_kernels_under_every_isa(built):
    """The same function pointers as _core: bitwise the native backend's result, whatever
    the ISA cap (a second copy of the kernels would ignore fastmlp.set_isa)."""
    probe, _ = built
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((33, 70)), rng.standard_normal((70, 17))
    native = fastmlp.get_backend("native")
    before = fastmlp.build_info()["isa"]
    try:
        for isa in ("generic", "avx2", "avx512"):
            fastmlp.set_isa(isa)
            c = np.empty((33, 17))
            probe.matmul(a, b, c)
            assert np.array_equal(c, native.matmul(a, b)), isa
    finally:
        fastmlp.set_isa(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_readme_training_loop_matches_the_numpy_model(built, dtype):
    _, train_loop = built
    X, y = fastmlp.data.load_digits()
    X, y = X[:200].astype(dtype), y[:200].astype(np.int64)
    net = fastmlp.MLP([64, 20, 10], activation="relu", output="softmax", backend="numpy",
                      dtype=np.dtype(dtype).name, seed=0)
    W1, W2 = (w.copy() for w in net.weights)
    b1, b2 = (b.copy() for b in net.biases)
    lr, batch = 0.1, 32                  # 200 rows: a short last batch too
    for epoch in range(2):
        loss = train_loop.sgd_epoch(X, y, W1, b1, W2, b2, dtype(lr), batch)
        want = np.mean([net.step(X[s:s + batch], y[s:s + batch], lr) for s in range(0, 200, batch)])
        assert loss == pytest.approx(want, rel=1e-4 if dtype == np.float32 else 1e-10), epoch
    tol = dict(rtol=1e-3, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    for got, want in zip((W1, W2, b1, b2), (*net.weights, *net.biases)):
        np.testing.assert_allclose(got, want, **tol)
