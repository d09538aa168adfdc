"""Parity of every native kernel with its NumPy twin (fastmlp.KERNEL_NAMES), over shapes
including 0, 1, primes and 1024 columns, float32 and float64, and every ISA this CPU runs;
then the named edge cases and the argument checks."""
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import fastmlp
from fastmlp.reference import ACTIVATIONS, DEFAULT_PARAM
from fastmlp.reference.activation import activation_forward as ref_activation
from fastmlp.reference.activation import sigmoid as ref_sigmoid

from check import Bound, check_op, elementwise, exact, reduction

DTYPES = (np.float32, np.float64)
# (rows n, columns m): empty, 1, primes (not multiples of any vector width or lane count),
# and a wide layer.
SHAPES = ((0, 7), (1, 1), (3, 5), (7, 13), (17, 31), (5, 1024))
GEMM_OUT = 19        # the other dimension of the matrix products, prime too
MAXOUT_K = (1, 3)
ISA_ORDER = ("generic", "avx2", "avx512")


def runnable_isas():
    info = fastmlp.build_info()
    best = ISA_ORDER.index(info["cpu_isa"])
    return [isa for isa in ISA_ORDER[:best + 1] if isa in info["compiled_isas"]]


@pytest.fixture(params=runnable_isas())
def isa(request):
    """Run the test with the native kernels capped at one ISA; restore the cap after."""
    before = fastmlp.build_info()["isa"]
    assert fastmlp.set_isa(request.param) == request.param
    yield request.param
    fastmlp.set_isa(before)


def param_of(name):
    return DEFAULT_PARAM.get(name, 0.0)


def logits(rng, shape, dtype, scale=3.0):
    z = (rng.standard_normal(shape) * scale).astype(dtype)
    z.flat[::7] = 0          # exact zeros: the kink of relu / leaky_relu / elu
    return z


def eps_of(dtype):
    return float(np.finfo(dtype).eps)


# ---- one Case per op and variant: its inputs and the bound of each output --------------

@dataclass(frozen=True)
class Case:
    op: str
    variant: str
    make_inputs: Callable     # (rng, (n, m), dtype) -> args
    bounds: Callable          # (args, ref_outputs, dtype) -> [Bound or None per output]
    inplace: bool = False

    @property
    def id(self):
        return f"{self.op}-{self.variant}" if self.variant else self.op


TRANSCENDENTAL = {"sigmoid", "tanh", "elu"}


def activation_cases():
    for name in ACTIVATIONS:
        forward_bound = elementwise if name in TRANSCENDENTAL else (lambda dtype: exact())
        yield Case("activation_forward", name,
                   lambda rng, s, dt, name=name: (logits(rng, s, dt), name, param_of(name)),
                   lambda args, out, dt, fb=forward_bound: [fb(dt)])
        # f' from a = f(z): the same arithmetic in both, except elu's exp.
        deriv_bound = elementwise if name == "elu" else (lambda dtype: exact())
        yield Case("activation_derivative", name,
                   lambda rng, s, dt, name=name: _derivative_inputs(rng, s, dt, name),
                   lambda args, out, dt, db=deriv_bound: [db(dt)])


def _derivative_inputs(rng, shape, dtype, name):
    z = logits(rng, shape, dtype)
    return z, ref_activation(z, name, param_of(name)), name, param_of(name)


def maxout_cases():
    for k in MAXOUT_K:
        # Values on a grid of halves, so that pieces tie (ties go to the first piece).
        yield Case("maxout_forward", f"k{k}",
                   lambda rng, s, dt, k=k: (np.round(2 * logits(rng, (s[0], s[1] * k), dt)) / 2, k),
                   lambda args, out, dt: [exact(), exact()])
        yield Case("maxout_backward", f"k{k}",
                   lambda rng, s, dt, k=k: (logits(rng, s, dt), rng.integers(0, k, s), k),
                   lambda args, out, dt: [exact()])


def _labels(rng, shape, dtype):
    n, m = shape
    return logits(rng, shape, dtype, scale=5.0), rng.integers(0, m, n)


def _probabilities(rng, shape, dtype):
    n, m = shape
    return logits(rng, shape, dtype, scale=5.0), rng.dirichlet(np.ones(m), n).astype(dtype)


def _binary(rng, shape, dtype):
    return logits(rng, shape, dtype), (rng.random(shape) < 0.5).astype(dtype)


def _fractions(rng, shape, dtype):
    return logits(rng, shape, dtype), rng.random(shape).astype(dtype)


def _softmax_ce_bounds(args, out, dtype):
    """J: the row's log Σe carries the sum's rounding (k terms, relative ~sqrt(k)·eps) once
    per unit of target mass, plus eps·|J|. dz = (p − y)/n: every p of a row shares that sum,
    and the twin's exp(log p) is off by up to eps·p·|log p| <= eps/e: so 1/n is the scale."""
    z = args[0]
    n, k = z.shape
    loss, _ = out
    return [reduction(dtype, k, 1.0 + abs(loss)), reduction(dtype, k, 1.0 / max(n, 1))]


def _bce_bounds(args, out, dtype):
    """J sums k terms max(z,0) − y z + log1p(e^−|z|), each off by ~eps·(|z| + 1): the
    contract's 8·sqrt(k)·eps·Σ|term| with Σ|term| <= Σ(|z| + 1). dz = (σ − y)/n: σ is within
    a few ulps and σ − y cancels, so the bound is absolute: 4·eps·(1 + |y|)/n."""
    z, y = args
    n, k = z.shape
    scale = float(np.sum(np.abs(z.astype(np.float64)) + 1)) / max(n, 1)
    grad = Bound(rtol=4 * eps_of(dtype), atol=4 * eps_of(dtype) * (1 + np.abs(y)) / max(n, 1))
    return [reduction(dtype, k, scale), grad]


def loss_cases():
    yield Case("softmax", "", lambda rng, s, dt: (logits(rng, s, dt, scale=5.0),),
               # every p of a row is divided by the row's sum of k terms
               lambda args, out, dt: [reduction(dt, args[0].shape[1], out[0])])
    yield Case("softmax_cross_entropy", "labels", _labels, _softmax_ce_bounds)
    yield Case("softmax_cross_entropy", "probabilities", _probabilities, _softmax_ce_bounds)
    yield Case("sigmoid_binary_cross_entropy", "binary", _binary, _bce_bounds)
    yield Case("sigmoid_binary_cross_entropy", "fractions", _fractions, _bce_bounds)
    # J sums k non-negative squares (in float64 here, in the dtype in NumPy); da is exact.
    yield Case("quadratic_loss", "",
               lambda rng, s, dt: (ref_sigmoid(logits(rng, s, dt)), rng.random(s).astype(dt)),
               lambda args, out, dt: [reduction(dt, args[0].shape[1], abs(out[0])), exact()])


def update_cases():
    for weight_decay in (0.0, 1e-3):
        yield Case("sgd_update", f"wd{weight_decay:g}",
                   lambda rng, s, dt, wd=weight_decay: (logits(rng, s, dt), logits(rng, s, dt), 0.37, wd),
                   lambda args, out, dt: [exact()], inplace=True)


def _abs64(x):
    return np.abs(x.astype(np.float64))


def _lipschitz(name, param):
    """|f(u) − f(v)| <= L |u − v| for every activation: carries Z's bound over to A = f(Z)."""
    return max(1.0, abs(param)) if name in ("leaky_relu", "elu") else 1.0


def _linear_forward_bounds(args, out, dtype):
    x, w, b, name, param = args
    z_bound = reduction(dtype, x.shape[1], _abs64(x) @ _abs64(w).T + _abs64(b))
    a_bound = Bound(rtol=4 * eps_of(dtype),
                    atol=_lipschitz(name, param) * z_bound.atol + float(np.finfo(dtype).tiny))
    return [z_bound, a_bound]


def _linear_backward_inputs(rng, shape, dtype, name):
    """A hidden layer's input is x = f(z_prev); the first layer's (name None) is the data."""
    n, m = shape
    delta, w = logits(rng, (n, GEMM_OUT), dtype), logits(rng, (GEMM_OUT, m), dtype)
    if name is None:
        return delta, logits(rng, (n, m), dtype), w, None, None, None, 0.0
    z_prev = logits(rng, (n, m), dtype)
    x = ref_activation(z_prev, name, param_of(name))
    return delta, x, w, z_prev, x, name, param_of(name)


def _linear_backward_bounds(args, out, dtype):
    delta, x, w, z_prev, a_prev, name, param = args
    n = delta.shape[0]
    bounds = [reduction(dtype, n, _abs64(delta).T @ _abs64(x)),
              reduction(dtype, n, _abs64(delta).sum(axis=0))]
    if name is None:
        return bounds + [None]
    fprime = np.abs(fastmlp.get_backend("numpy").activation_derivative(z_prev, a_prev, name, param))
    # δW over GEMM_OUT terms, times f'(z_prev), itself within a few ulps (elu's exp).
    return bounds + [reduction(dtype, GEMM_OUT, (_abs64(delta) @ _abs64(w)) * fprime, ulps=8)]


def gemm_cases():
    yield Case("matmul", "",
               lambda rng, s, dt: (logits(rng, s, dt), logits(rng, (s[1], GEMM_OUT), dt)),
               lambda args, out, dt: [reduction(dt, args[0].shape[1], _abs64(args[0]) @ _abs64(args[1]))])
    for name in ACTIVATIONS:
        yield Case("linear_forward", name,
                   lambda rng, s, dt, name=name: (logits(rng, s, dt), logits(rng, (GEMM_OUT, s[1]), dt),
                                                  logits(rng, (GEMM_OUT,), dt), name, param_of(name)),
                   _linear_forward_bounds)
    for name in (*ACTIVATIONS, None):
        yield Case("linear_backward", name or "first_layer",
                   lambda rng, s, dt, name=name: _linear_backward_inputs(rng, s, dt, name),
                   _linear_backward_bounds)


CASES = [*activation_cases(), *maxout_cases(), *loss_cases(), *update_cases(), *gemm_cases()]


def run_case(case, shape, dtype, layout="c"):
    return check_op(case.op, case.make_inputs, shape, dtype,
                    lambda args, out: case.bounds(args, out, np.dtype(dtype)),
                    layout=layout, inplace=case.inplace)


def test_every_op_has_a_case():
    assert {case.op for case in CASES} == set(fastmlp.KERNEL_NAMES)


def test_native_table_has_every_op():
    assert set(fastmlp.get_backend("native").kernels) == set(fastmlp.KERNEL_NAMES)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_parity(case, shape, dtype, isa):
    run_case(case, shape, dtype)


@pytest.mark.parametrize("layout", ("fortran", "strided", "readonly"))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_parity_any_layout(case, layout):
    """Fortran-order, strided (non-contiguous) and read-only inputs give the same results."""
    run_case(case, (7, 13), np.float64, layout=layout)
