"""Native GEMM and fused layer kernels vs NumPy, in the same run (pytest-benchmark).

    pytest benches/bench_gemm.py --benchmark-only

Each group holds the native kernel and its NumPy twin on the same inputs with the same
thread count (OpenBLAS limited through threadpoolctl); the run ends with the ratio table
of benches/conftest.py (matmul rates are FLOP/s).
Shapes: 1024³, and the products of the design's MLP cases (input 784, hidden H, batch B):
seed B=10 H=30, mid B=64 H=256, big B=256 H=1024.
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference
from fastmlp.bench import gemm_runner

threadpoolctl = pytest.importorskip("threadpoolctl")
native = fastmlp.get_backend("native")

CASES = {"seed": (10, 30), "mid": (64, 256), "big": (256, 1024)}
N_IN = 784
DTYPES = ("float32", "float64")
THREADS = (1, 2)


@pytest.fixture(params=THREADS, ids=lambda t: f"{t}t")
def threads(request):
    previous = fastmlp.get_num_threads()
    fastmlp.set_num_threads(request.param)
    with threadpoolctl.threadpool_limits(request.param, user_api="blas"):
        yield request.param
    fastmlp.set_num_threads(previous)


def _operands(product, dtype):
    """(a, b) for `product`, laid out as a training step sees them (views, no copies)."""
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    if product == "1024^3":
        return rand(1024, 1024), rand(1024, 1024)
    case, kind = product.split(" ")
    batch, hidden = CASES[case]
    if kind == "forward":      # X (B, 784) · Wᵀ, W (H, 784)
        return rand(batch, N_IN), rand(hidden, N_IN).T
    if kind == "dW":           # δᵀ X: δ (B, H), X (B, 784)
        return rand(batch, hidden).T, rand(batch, N_IN)
    if kind == "delta_prev":   # δ W of the hidden layer: δ (B, H), W (H, H)
        return rand(batch, hidden), rand(hidden, hidden)
    raise ValueError(product)


def _rounds(flops):
    """Enough rounds for a stable median of the microsecond-sized products."""
    return int(min(200, max(5, 2e9 / flops)))


PRODUCTS = ["1024^3"] + [f"{case} {kind}" for case in CASES for kind in ("forward", "dW", "delta_prev")]


@pytest.mark.parametrize("impl", ["native", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("product", PRODUCTS)
def test_matmul(record, threads, product, dtype, impl):
    a, b = _operands(product, dtype)
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    fn = native.matmul if impl == "native" else np.matmul
    record(f"matmul {product} {dtype} {threads}t", impl, lambda: fn(a, b), items=flops,
           rounds=_rounds(flops))


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_thread_scaling(record, dtype, n_threads):
    """Native 1024³ with 1 and with 2 threads, one group: the ratio is the scaling."""
    matmul, flops = gemm_runner(dtype)   # the yardstick of bench_training's speed table
    previous = fastmlp.get_num_threads()
    fastmlp.set_num_threads(n_threads)
    try:
        record(f"native matmul 1024^3 {dtype} scaling", f"{n_threads} thread(s)", matmul,
               items=flops, rounds=10, baseline="1 thread(s)")
    finally:
        fastmlp.set_num_threads(previous)


LAYERS = {"seed": "sigmoid", "mid": "relu"}  # batch <= 64: the fused kernel's target


@pytest.mark.parametrize("impl", ["native", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LAYERS)
def test_linear_forward(record, threads, case, dtype, impl):
    batch, hidden = CASES[case]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, N_IN)).astype(dtype)
    w = rng.standard_normal((hidden, N_IN)).astype(dtype)
    b = rng.standard_normal(hidden).astype(dtype)
    backend = native if impl == "native" else reference
    record(f"linear_forward {case} {dtype} {threads}t", impl,
           lambda: backend.linear_forward(x, w, b, LAYERS[case], 0.0), items=batch,
           rounds=_rounds(2 * batch * hidden * N_IN))


@pytest.mark.parametrize("impl", ["native", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LAYERS)
def test_linear_backward(record, threads, case, dtype, impl):
    batch, hidden = CASES[case]
    rng = np.random.default_rng(2)
    delta = rng.standard_normal((batch, hidden)).astype(dtype)
    x = rng.standard_normal((batch, hidden)).astype(dtype)  # the hidden layer: H -> H
    w = rng.standard_normal((hidden, hidden)).astype(dtype)
    z_prev = rng.standard_normal((batch, hidden)).astype(dtype)
    name = LAYERS[case]
    a_prev = reference.activation_forward(z_prev, name, 0.0)
    backend = native if impl == "native" else reference
    record(f"linear_backward {case} {dtype} {threads}t", impl,
           lambda: backend.linear_backward(delta, x, w, z_prev, a_prev, name, 0.0), items=batch,
           rounds=_rounds(4 * batch * hidden * hidden))
