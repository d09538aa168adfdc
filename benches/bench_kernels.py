"""Element-wise and loss kernels, native vs the NumPy reference in the same run:
fused softmax cross-entropy (loss and gradient in one pass per row) against the reference
composite, and the sigmoid / relu forward.

    python -m pytest benches/bench_kernels.py --benchmark-only

Target: fused softmax cross-entropy >= 3x its NumPy composite. Read the ratio table
printed at the end (benches/conftest.py); absolute times on a shared machine are noise.
"""
import numpy as np
import pytest

import fastmlp

DTYPES = ("float32", "float64")
CE_SHAPES = ((10, 10), (64, 10), (256, 10), (256, 1000))
ACTIVATION_SHAPES = ((64, 256), (256, 1024))
BACKENDS = ("numpy", "native")


def rounds_for(n_elements):
    """Enough calls that a few-microsecond kernel is timed over milliseconds in total."""
    return max(20, min(2000, 200_000 // max(n_elements, 1)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", CE_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy(record, backend, shape, dtype):
    rng = np.random.default_rng(0)
    z = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    op = fastmlp.get_backend(backend).softmax_cross_entropy
    record(f"softmax_cross_entropy {dtype} {shape[0]}x{shape[1]}", backend,
           lambda: op(z, labels), items=shape[0], rounds=rounds_for(z.size), warmup_rounds=5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ("sigmoid", "relu"))
@pytest.mark.parametrize("shape", ACTIVATION_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_forward(record, backend, name, shape, dtype):
    z = (3 * np.random.default_rng(0).standard_normal(shape)).astype(dtype)
    op = fastmlp.get_backend(backend).activation_forward
    record(f"activation_forward {name} {dtype} {shape[0]}x{shape[1]}", backend,
           lambda: op(z, name, 0.0), items=z.size, rounds=rounds_for(z.size), warmup_rounds=5)
