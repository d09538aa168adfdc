"""Native GEMM and fused layer kernels vs their NumPy twins (fastmlp.reference.gemm).

Products over K terms must agree within atol + 8·sqrt(K)·eps·(|A||B|); element-wise
epilogues within a few ulps. Every ISA this CPU can run is exercised, and results must be
bitwise identical for any thread count and any batch composition.
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference

from conftest import ISAS, run_in_threads

core = pytest.importorskip("fastmlp._core")
native = fastmlp.get_backend("native")

DTYPES = (np.float32, np.float64)
ACTIVATIONS = reference.ACTIVATIONS
ULPS = 4  # element-wise ops: a few ulps


@pytest.fixture
def restore_threads():
    previous = fastmlp.get_num_threads()
    yield
    fastmlp.set_num_threads(previous)


def param_of(name):
    return reference.DEFAULT_PARAM.get(name, 0.0)


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def exact_product(a, b):
    """A B with (much) smaller error than the product under test: float64 for float32
    inputs; for float64 inputs NumPy's own product, as the design's C_ref."""
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def product_bound(a, b, atol=0.0):
    """atol + 8·sqrt(K)·eps·(|A||B|), elementwise."""
    k = a.shape[1]
    eps = np.finfo(a.dtype).eps
    return atol + 8 * np.sqrt(max(k, 1)) * eps * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))


def assert_product(c, a, b, atol=0.0):
    assert c.shape == (a.shape[0], b.shape[1])
    assert c.dtype == a.dtype
    assert c.flags.c_contiguous
    err = np.abs(c.astype(np.float64) - exact_product(a, b))
    bound = product_bound(a, b, atol)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert np.all(err <= bound), f"error {err[worst]} > bound {bound[worst]} at {worst}"


def assert_ulps(actual, expected, ulps=ULPS):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    eps = np.finfo(actual.dtype).eps
    tiny = np.finfo(actual.dtype).tiny
    np.testing.assert_allclose(actual, expected, rtol=ulps * eps, atol=ulps * tiny)


def operands(rng, m, k, n, dtype, layout):
    """A (m, k) row-major and B (k, n) row-major ("nn") or B = Wᵀ with W (n, k) row-major
    ("nt", the forward X Wᵀ, which small W takes through the unpacked dot kernel)."""
    a = random(rng, (m, k), dtype)
    b = random(rng, (k, n), dtype) if layout == "nn" else random(rng, (n, k), dtype).T
    return a, b


# Shapes (m, k, n): empty, one, primes, sizes that are not multiples of any tile
# (AVX-512 14x32 / 14x16 and dot 4x6, AVX2 6x16 / 6x8 and dot 3x4, generic 4x8), k not a
# multiple of the vector width, and k beyond one KC block (256 to 384).
SHAPES = [
    (0, 5, 3), (4, 0, 3), (3, 5, 0), (0, 0, 0), (1, 1, 1), (1, 7, 1), (2, 3, 5),
    (7, 13, 17), (13, 1, 31), (14, 256, 32), (15, 257, 33), (31, 97, 61), (10, 784, 30),
    (64, 300, 100), (97, 600, 5), (3, 1031, 70), (150, 40, 129),
]


@pytest.mark.parametrize("layout", ["nn", "nt"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_matches_numpy(isa, dtype, m, k, n, layout):
    a, b = operands(np.random.default_rng(m * 10007 + k * 101 + n), m, k, n, dtype, layout)
    assert_product(native.matmul(a, b), a, b)


@pytest.mark.parametrize("layout", ["nn", "nt"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_simd_kernels_agree_with_the_portable_one(dtype, layout):
    rng = np.random.default_rng(12)
    a, b = operands(rng, 45, 300, 77, dtype, layout)
    previous = fastmlp.build_info()["isa"]
    try:
        fastmlp.set_isa("generic")
        portable = native.matmul(a, b)
        for isa in ISAS[1:]:
            fastmlp.set_isa(isa)
            err = np.abs(native.matmul(a, b).astype(np.float64) - portable)
            assert np.all(err <= 2 * product_bound(a, b)), isa
    finally:
        fastmlp.set_isa(previous)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_1024(dtype):
    rng = np.random.default_rng(1024)
    a, b = random(rng, (1024, 1024), dtype), random(rng, (1024, 1024), dtype)
    assert_product(native.matmul(a, b), a, b)


def layouts(rng, shape, dtype):
    """The same logical matrix `shape` stored in many ways, as (name, array)."""
    m, n = shape
    base = random(rng, shape, dtype)
    big = random(rng, (3 * m + 2, 4 * n + 3), dtype)
    read_only = base.copy()
    read_only.flags.writeable = False
    raw = np.zeros(base.nbytes + 1, np.uint8)  # misaligned: byte offset 1
    misaligned = raw[1:].view(dtype).reshape(shape)
    misaligned[...] = base
    return [
        ("c_order", base),
        ("fortran", np.asfortranarray(base)),
        ("transposed", np.ascontiguousarray(base.T).T),
        ("strided", big[1::3, 2::4][:m, :n]),
        ("negative_strides", big[::-3, ::-4][:m, :n]),
        ("read_only", read_only),
        ("broadcast_row", np.broadcast_to(base[:1], shape)),
        ("misaligned", misaligned),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", [(37, 45, 53), (5, 300, 2)])
def test_matmul_any_layout(isa, dtype, m, k, n):
    rng = np.random.default_rng(7)
    for (name_a, a), (name_b, b) in zip(layouts(rng, (m, k), dtype), layouts(rng, (k, n), dtype)[::-1]):
        assert a.shape == (m, k) and b.shape == (k, n), (name_a, name_b)
        assert_product(native.matmul(a, b), a, b)


# Big enough that 2 threads really split the work, k over several KC blocks; one shape
# splits along rows, the other (few rows, many columns) along columns; the third takes
# the dot kernel in "nt" layout.
@pytest.mark.parametrize("layout", ["nn", "nt"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", [(300, 517, 300), (5, 700, 1500), (300, 784, 30)])
def test_matmul_bitwise_same_for_1_and_2_threads(isa, restore_threads, dtype, m, k, n, layout):
    a, b = operands(np.random.default_rng(3), m, k, n, dtype, layout)
    fastmlp.set_num_threads(1)
    one = native.matmul(a, b)
    fastmlp.set_num_threads(2)
    two = native.matmul(a, b)
    np.testing.assert_array_equal(one, two)


# A C-order A is read in place by the micro-kernel (up to 16 tiles of C per row block;
# rows not a multiple of 4 KiB apart), a Fortran-order one is packed first: the same
# chains of multiply-adds either way. Shapes: edge tiles, several KC blocks, wide C.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", [(13, 97, 33), (64, 784, 256), (29, 600, 70), (100, 300, 700)])
def test_matmul_same_bits_whether_a_is_read_in_place_or_packed(isa, restore_threads, dtype, m, k, n):
    rng = np.random.default_rng(5)
    a, b = random(rng, (m, k), dtype), random(rng, (k, n), dtype)
    for threads in (1, 2):
        fastmlp.set_num_threads(threads)
        np.testing.assert_array_equal(native.matmul(a, b), native.matmul(np.asfortranarray(a), b))


@pytest.mark.parametrize("layout", ["nn", "nt"])
@pytest.mark.parametrize("dtype", DTYPES)
# "nt" with (1100, 600): W over 2 MiB in either dtype, so packed; the others unpacked.
@pytest.mark.parametrize("k,n", [(517, 300), (784, 30), (1100, 600)])
# 1200 rows on two threads: the unpacked path splits them between the threads (300: W's rows)
@pytest.mark.parametrize("m", [300, 1200])
def test_matmul_row_does_not_depend_on_batch(isa, restore_threads, dtype, layout, k, n, m):
    fastmlp.set_num_threads(2)
    a, b = operands(np.random.default_rng(4), m, k, n, dtype, layout)
    full = native.matmul(a, b)
    np.testing.assert_array_equal(native.matmul(a[:5], b), full[:5])
    rows = [7, 150, 299]
    np.testing.assert_array_equal(native.matmul(a[rows], b), full[rows])
    np.testing.assert_array_equal(native.matmul(a[123:124], b), full[123:124])


# ---- fused layer kernels ----

LAYER_SHAPES = [(0, 5, 3), (4, 0, 3), (1, 1, 1), (10, 784, 30), (17, 33, 65), (64, 300, 37)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("n,k,m", LAYER_SHAPES)
def test_linear_forward_matches_reference(isa, dtype, name, n, k, m):
    rng = np.random.default_rng(n + 3 * k + 7 * m)
    x, w, b = random(rng, (n, k), dtype), random(rng, (m, k), dtype), random(rng, (m,), dtype)
    z, a = native.linear_forward(x, w, b, name, param_of(name))
    z_ref, _ = reference.linear_forward(x, w, b, name, param_of(name))
    assert z.shape == a.shape == (n, m) and z.dtype == a.dtype == dtype
    # Z = [X 1] [W b]ᵀ: a product over k + 1 terms.
    x1 = np.hstack([x, np.ones((n, 1), dtype)])
    wb = np.hstack([w, b[:, None]])
    err = np.abs(z.astype(np.float64) - z_ref.astype(np.float64))
    assert np.all(err <= 2 * product_bound(x1, wb.T))
    assert_ulps(a, reference.activation_forward(z, name, param_of(name)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_forward_any_layout(dtype):
    rng = np.random.default_rng(8)
    n, k, m = 21, 40, 19
    for (_, x), (_, w), (_, wide) in zip(layouts(rng, (n, k), dtype), layouts(rng, (m, k), dtype),
                                         layouts(rng, (3, m), dtype)):
        b = wide[1]  # 1-D, possibly strided or negative-strided
        z, a = native.linear_forward(x, w, b, "tanh", 0.0)
        x1 = np.hstack([x, np.ones((n, 1), dtype)])
        wb = np.hstack([w, b[:, None]])
        assert_product(z, x1, wb.T)
        assert_ulps(a, reference.activation_forward(z, "tanh", 0.0))


@pytest.mark.parametrize("kernels", [native, reference], ids=["native", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_linear_forward_without_z_gives_the_same_a(kernels, dtype, name):
    """keep_z=False (evaluation) computes A over Z in place: the same A, and no Z."""
    rng = np.random.default_rng(12)
    x, w, b = random(rng, (700, 300), dtype), random(rng, (37, 300), dtype), random(rng, (37,), dtype)
    _, a = kernels.linear_forward(x, w, b, name, param_of(name))
    z_none, a_alone = kernels.linear_forward(x, w, b, name, param_of(name), keep_z=False)
    assert z_none is None
    np.testing.assert_array_equal(a_alone, a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS + (None,))
@pytest.mark.parametrize("n,k,m", LAYER_SHAPES)
def test_linear_backward_matches_reference(isa, dtype, name, n, k, m):
    rng = np.random.default_rng(5 * n + k + 11 * m)
    delta, x, w = random(rng, (n, m), dtype), random(rng, (n, k), dtype), random(rng, (m, k), dtype)
    z_prev = random(rng, (n, k), dtype)
    z_prev[:, :1] = 0  # relu at exactly 0 has f'(0) = 0
    param = param_of(name) if name else 0.0
    a_prev = reference.activation_forward(z_prev, name, param) if name else z_prev
    dw, db, dp = native.linear_backward(delta, x, w, z_prev, a_prev, name, param)
    dw_ref, db_ref, dp_ref = reference.linear_backward(delta, x, w, z_prev, a_prev, name, param)

    assert dw.shape == (m, k) and dw.dtype == dtype
    assert np.all(np.abs(dw.astype(np.float64) - dw_ref) <= 2 * product_bound(delta.T, x))
    assert db.shape == (m,) and db.dtype == dtype
    ones = np.ones((1, n), dtype)
    assert np.all(np.abs(db.astype(np.float64) - db_ref) <= 2 * product_bound(ones, delta)[0])
    if name is None:
        assert dp is None and dp_ref is None
        return
    assert dp.shape == (n, k) and dp.dtype == dtype
    deriv = np.abs(reference.activation_derivative(z_prev, a_prev, name, param)).astype(np.float64)
    bound = 2 * product_bound(delta, w) * deriv + ULPS * np.finfo(dtype).eps * np.abs(dp_ref)
    assert np.all(np.abs(dp.astype(np.float64) - dp_ref) <= bound)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_kernels_bitwise_same_for_1_and_2_threads_and_any_batch(restore_threads, dtype):
    rng = np.random.default_rng(6)
    n, k, m = 256, 300, 270
    x, w, b = random(rng, (n, k), dtype), random(rng, (m, k), dtype), random(rng, (m,), dtype)
    delta, z_prev = random(rng, (n, m), dtype), random(rng, (n, k), dtype)
    a_prev = reference.activation_forward(z_prev, "sigmoid", 0.0)
    results = []
    for threads in (1, 2):
        fastmlp.set_num_threads(threads)
        results.append(native.linear_forward(x, w, b, "elu", 1.0)
                       + native.linear_backward(delta, x, w, z_prev, a_prev, "sigmoid", 0.0))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
    z, a = results[0][:2]
    z5, a5 = native.linear_forward(x[:5], w, b, "elu", 1.0)
    np.testing.assert_array_equal(z5, z[:5])
    np.testing.assert_array_equal(a5, a[:5])


def test_linear_backward_identity_ignores_z_prev_and_a_prev():
    rng = np.random.default_rng(9)
    delta, x, w = random(rng, (4, 3), np.float64), random(rng, (4, 5), np.float64), random(rng, (3, 5), np.float64)
    maxout_pieces = random(rng, (4, 15), np.float64)  # what a maxout layer passes there
    for z_prev, a_prev in [(None, None), (maxout_pieces, maxout_pieces)]:
        _, _, dp = native.linear_backward(delta, x, w, z_prev, a_prev, "identity", 0.0)
        np.testing.assert_allclose(dp, delta @ w, rtol=1e-13)


# ---- bad input: a clear error naming the argument ----

def _arrays(dtype=np.float64):
    return np.ones((4, 3), dtype), np.ones((3, 5), dtype)


@pytest.mark.parametrize("args,error,match", [
    (([[1.0]], np.ones((1, 1))), TypeError, "a: expected a numpy.ndarray"),
    ((np.ones(3), np.ones((3, 1))), ValueError, "a: expected a 2-D array"),
    ((np.ones((2, 3)), np.ones((3, 1, 1))), ValueError, "b: expected a 2-D array"),
    ((np.ones((2, 3), np.int64), np.ones((3, 1))), TypeError, "a: expected a float32 or float64 array, got dtype int64"),
    ((np.ones((2, 3), np.float32), np.ones((3, 1))), TypeError, r"b: expected the dtype of a \(float32\), got float64"),
    ((np.ones((2, 3)), np.ones((4, 1))), ValueError, r"b: shape \(4, 1\)"),
])
def test_matmul_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        native.matmul(*args)


def test_linear_forward_bad_input():
    x, w, b = np.ones((4, 3)), np.ones((5, 3)), np.ones(5)
    cases = [
        ((x, w, b, "softplus", 0.0), ValueError, "name: unknown activation 'softplus'"),
        ((x, w, b, "maxout", 0.0), ValueError, "name: unknown activation 'maxout'"),
        ((x, w, b, 3, 0.0), TypeError, "name: expected an activation name"),
        ((x, w, b, "elu", float("nan")), ValueError, "param: expected a finite number"),
        ((x, w, b, "leaky_relu", None), TypeError, "param: expected a number"),
        ((x, w, np.ones(4), "relu", 0.0), ValueError, r"b: shape \(4,\)"),
        ((x, w, np.ones((5, 1)), "relu", 0.0), ValueError, "b: expected a 1-D array"),
        ((x, np.ones((5, 4)), b, "relu", 0.0), ValueError, r"w: shape \(5, 4\)"),
        ((x, w, b.astype(np.float32), "relu", 0.0), TypeError, r"b: expected the dtype of x \(float64\), got float32"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            native.linear_forward(*args)
    # Activations that ignore the parameter accept None, like the reference.
    native.linear_forward(x, w, b, "relu", None)


def test_linear_backward_bad_input():
    d, x, w = np.ones((4, 5)), np.ones((4, 3)), np.ones((5, 3))
    z = np.ones((4, 3))
    cases = [
        ((d, np.ones((3, 3)), w, z, z, "relu", 0.0), ValueError, r"x: shape \(3, 3\)"),
        ((d, x, np.ones((6, 3)), z, z, "relu", 0.0), ValueError, r"w: shape \(6, 3\)"),
        ((d, x, w, np.ones((4, 2)), z, "relu", 0.0), ValueError, r"z_prev: expected the shape of x \(4, 3\), got \(4, 2\)"),
        ((d, x, w, z, None, "sigmoid", 0.0), TypeError, "a_prev: expected a numpy.ndarray"),
        ((d, x, w, z, z.astype(np.float32), "tanh", 0.0), TypeError, r"a_prev: expected the dtype of delta \(float64\), got float32"),
        ((d, x, w, z, z, "nope", 0.0), ValueError, "name_prev: unknown activation"),
        ((d, x, w, z, z, "elu", float("inf")), ValueError, "param_prev: expected a finite"),
        ((d.astype(np.float32), x, w, z, z, "relu", 0.0), TypeError, r"x: expected the dtype of delta \(float32\), got float64"),
    ]
    for args, error, match in cases:
        with pytest.raises(error, match=match):
            native.linear_backward(*args)


# ---- the thread pool (csrc/kernels/parallel.h) ----

def pool_product(dtype=np.float64, seed=0):
    """A product big enough to be cut into blocks for several threads."""
    rng = np.random.default_rng(seed)
    return random(rng, (512, 300), dtype), random(rng, (300, 400), dtype)


@pytest.mark.parametrize("threads", [2, 3, 8])   # more threads than this machine's cores too
def test_any_pool_size_gives_the_one_thread_result(restore_threads, threads):
    a, b = pool_product()
    fastmlp.set_num_threads(1)
    expected = native.matmul(a, b)
    fastmlp.set_num_threads(threads)
    for _ in range(20):   # jobs in a row: the workers go from one generation to the next
        np.testing.assert_array_equal(native.matmul(a, b), expected)


def test_products_from_several_python_threads_at_once(restore_threads):
    # one caller's blocks go to the pool, the others' run in their own thread meanwhile
    fastmlp.set_num_threads(2)
    inputs = [pool_product(seed=s) for s in range(4)]
    expected = [a @ b for a, b in inputs]
    results = {}

    def work(i):
        a, b = inputs[i]
        results[i] = [native.matmul(a, b) for _ in range(10)]
    errors = run_in_threads(work, 4)
    assert not errors and len(results) == 4
    for i, runs in results.items():
        for c in runs:
            np.testing.assert_allclose(c, expected[i], rtol=1e-12, atol=1e-12)
        assert all(np.array_equal(c, runs[0]) for c in runs)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_computes_with_its_own_pool(restore_threads):
    # the parent's workers do not exist in a child: it must neither hang nor crash
    import os
    fastmlp.set_num_threads(2)
    a, b = pool_product()
    expected = native.matmul(a, b)   # the parent's pool has its worker now
    pid = os.fork()
    if pid == 0:   # child: exit code 0 only for the right answer
        ok = all(np.array_equal(native.matmul(a, b), expected) for _ in range(5))
        os._exit(0 if ok else 1)
    for _ in range(600):   # wait up to 60 s, then fail instead of hanging the suite
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        __import__("time").sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("the forked child hung")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
