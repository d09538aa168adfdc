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

from check import Bound, _assert_close, _in_place, check_op, elementwise, exact, reduction

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
        yield Case("activation_backward", name,
                   lambda rng, s, dt, name=name: (logits(rng, s, dt),
                                                  *_derivative_inputs(rng, s, dt, name)),
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


def _counts(rng, shape, dtype):
    """Logits of a Poisson rate and counts drawn near it (zeros included)."""
    z = logits(rng, shape, dtype, scale=1.0)
    return z, rng.poisson(np.exp(z.astype(np.float64))).astype(dtype)


def _poisson_bounds(args, out, dtype):
    """J sums k terms xlogy(y, y) − y z − y + e^z, each off by ~eps·(|terms|). dz = (e^z −
    y)/n: two libms' e^z within a few ulps, then the difference cancels: absolute
    4·eps·(e^z + y)/n."""
    z, y = (a.astype(np.float64) for a in args[:2])
    n, k = z.shape
    ylogy = y * np.log(np.where(y > 0, y, 1))
    scale = float(np.sum(np.abs(ylogy) + np.abs(y * z) + y + np.exp(z))) / max(n, 1)
    grad = Bound(rtol=4 * eps_of(dtype), atol=4 * eps_of(dtype) * (np.exp(z) + y) / max(n, 1))
    return [reduction(dtype, k, scale), grad]


def _sample_weights(make_inputs):
    """The inputs of an unweighted loss case and one sample weight per row: in [0, 3), a
    quarter of them 0 (rows that do not count)."""
    def make(rng, shape, dtype):
        w = rng.random(shape[0]) * 3 * (rng.random(shape[0]) >= 0.25)
        return (*make_inputs(rng, shape, dtype), w.astype(dtype))
    return make


def _weighted(bounds):
    """The unweighted bounds, with every row's factor up to max(w)/mean(w) times 1/n (a
    batch that has no weight: J and dz are exactly 0)."""
    def weighted(args, out, dtype):
        w = args[-1].astype(np.float64)
        if w.sum() == 0:
            return [exact(), exact()]
        ratio = max(1.0, float(w.max() / w.mean()))
        return [Bound(b.rtol, np.asarray(b.atol) * ratio) for b in bounds(args[:-1], out, dtype)]
    return weighted


def _quadratic_inputs(rng, shape, dtype):
    return ref_sigmoid(logits(rng, shape, dtype)), rng.random(shape).astype(dtype)


def _quadratic_bounds(args, out, dtype):
    """J sums k non-negative squares (in float64 here, in the dtype in NumPy); da is exact,
    and with weights one rounding of the factor off: 2 eps relative."""
    return [reduction(dtype, args[0].shape[1], abs(out[0])), Bound(rtol=2 * eps_of(dtype))]


def loss_cases():
    yield Case("softmax", "", lambda rng, s, dt: (logits(rng, s, dt, scale=5.0),),
               # every p of a row is divided by the row's sum of k terms
               lambda args, out, dt: [reduction(dt, args[0].shape[1], out[0])])
    losses = [("softmax_cross_entropy", "labels", _labels, _softmax_ce_bounds),
              ("softmax_cross_entropy", "probabilities", _probabilities, _softmax_ce_bounds),
              ("sigmoid_binary_cross_entropy", "binary", _binary, _bce_bounds),
              ("sigmoid_binary_cross_entropy", "fractions", _fractions, _bce_bounds),
              ("quadratic_loss", "", _quadratic_inputs, _quadratic_bounds),
              ("poisson_loss", "counts", _counts, _poisson_bounds)]
    for op, variant, make_inputs, bounds in losses:
        yield Case(op, variant, make_inputs, bounds)
        yield Case(op, f"{variant}_weighted", _sample_weights(make_inputs), _weighted(bounds))


def _momentum_inputs(rng, shape, dtype, nesterov, weight_decay):
    return (logits(rng, shape, dtype), logits(rng, shape, dtype), logits(rng, shape, dtype),
            0.37, 0.9, nesterov, weight_decay)


def _adam_inputs(rng, shape, dtype, decoupled, weight_decay, step):
    """m and v as after a few steps: v >= 0 (exact zeros too, where sqrt(v) · inv_bc2_sqrt + eps is eps)."""
    m = logits(rng, shape, dtype)
    return (logits(rng, shape, dtype), logits(rng, shape, dtype), m, np.abs(logits(rng, shape, dtype)),
            1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled, step)


# The optimizers' variants: (nesterov or decoupled, weight_decay).
OPTIMIZER_VARIANTS = ((False, 0.0), (False, 1e-2), (True, 0.0), (True, 1e-2))


def update_cases():
    # Every update does the twin's operations in its order, one rounding each: bitwise.
    for weight_decay in (0.0, 1e-3):
        yield Case("sgd_update", f"wd{weight_decay:g}",
                   lambda rng, s, dt, wd=weight_decay: (logits(rng, s, dt), logits(rng, s, dt), 0.37, wd),
                   lambda args, out, dt: [exact()], inplace=True)
    for nesterov, weight_decay in OPTIMIZER_VARIANTS:
        yield Case("momentum_update", f"{'nesterov' if nesterov else 'plain'}-wd{weight_decay:g}",
                   lambda rng, s, dt, n=nesterov, wd=weight_decay: _momentum_inputs(rng, s, dt, n, wd),
                   lambda args, out, dt: [exact(), exact()], inplace=(0, 2))
    for decoupled, weight_decay in OPTIMIZER_VARIANTS:
        for step in (1, 7):
            yield Case("adam_update", f"{'adamw' if decoupled else 'adam'}-wd{weight_decay:g}-step{step}",
                       lambda rng, s, dt, d=decoupled, wd=weight_decay, k=step: _adam_inputs(rng, s, dt, d, wd, k),
                       lambda args, out, dt: [exact(), exact(), exact()], inplace=(0, 2, 3))


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


def dropout_cases():
    # the masks are integer arithmetic and one product per element: bit for bit the twin's
    for p in (0.0, 0.2, 0.5, 0.9):
        yield Case("dropout_forward", f"p{p}",
                   lambda rng, s, dt, p=p: (logits(rng, s, dt), int(rng.integers(2**32)),
                                            int(rng.integers(1000)), p),
                   lambda args, out, dt: [exact(), exact()])


def _batch_norm_inputs(rng, shape, dtype):
    """z of at least 2 rows (the statistics of fewer mean nothing), γ and β."""
    n, m = max(shape[0], 2), shape[1]
    return (logits(rng, (n, m), dtype) + np.dtype(dtype).type(1), logits(rng, (m,), dtype),
            logits(rng, (m,), dtype), 1e-5)


def _batch_norm_backward_inputs(rng, shape, dtype):
    z, gamma, beta, eps = _batch_norm_inputs(rng, shape, dtype)
    _, xhat, _, _, inv_std = fastmlp.get_backend("numpy").batch_norm_forward(z, gamma, beta, eps)
    return logits(rng, z.shape, dtype), xhat, gamma, inv_std


def _sums_over_rows(dtype, n, outputs):
    """Each output is built from sums over the n rows, summed in another order (rows in
    order vs NumPy's pairwise), then normalised: reduction bounds scaled by the largest
    value of each output, with room for the normalisation's few operations."""
    return [reduction(dtype, n, np.abs(out.astype(np.float64)).max(), ulps=64) for out in outputs]


def batch_norm_cases():
    yield Case("batch_norm_forward", "", _batch_norm_inputs,
               lambda args, out, dt: _sums_over_rows(dt, len(args[0]), out))
    yield Case("batch_norm_backward", "", _batch_norm_backward_inputs,
               lambda args, out, dt: _sums_over_rows(dt, len(args[0]), out))


CASES = [*activation_cases(), *maxout_cases(), *loss_cases(), *update_cases(), *gemm_cases(),
         *dropout_cases(), *batch_norm_cases()]


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


# ---- named edge cases ------------------------------------------------------------------

@pytest.fixture
def native():
    return fastmlp.get_backend("native")


@pytest.fixture
def numpy_twin():
    return fastmlp.get_backend("numpy")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_relu_family_at_exactly_zero(native, numpy_twin, dtype, isa):
    z = np.array([[-0.0, 0.0, -1.0, 1.0]], dtype=dtype)
    for name in ("relu", "leaky_relu", "elu"):
        p = param_of(name)
        for op, args in (("activation_forward", (z, name, p)),
                         ("activation_derivative", (z, numpy_twin.activation_forward(z, name, p), name, p))):
            got, want = getattr(native, op)(*args), getattr(numpy_twin, op)(*args)
            np.testing.assert_array_equal(got[0, :2], want[0, :2], err_msg=f"{op} {name} at ±0")
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want),
                                          err_msg=f"{op} {name}: signs, -0 included")
            np.testing.assert_allclose(got, want, rtol=4 * eps_of(dtype), err_msg=f"{op} {name}")
    assert not np.signbit(native.activation_forward(z, "relu", 0.0)).any()   # relu(-0) = +0, as in NumPy
    np.testing.assert_array_equal(native.activation_derivative(z, z, "relu", 0.0)[0, :2], [0, 0])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tanh_and_elu_across_every_magnitude(native, numpy_twin, dtype, isa):
    # Their own vectorised expm1 and tanh (csrc/kernels/vec_math.h): a Taylor series near 0,
    # e^x − 1 farther out, and the switch between them at |x| = 1, |2x| = 1 for tanh.
    finfo = np.finfo(dtype)
    magnitudes = np.concatenate([np.geomspace(finfo.smallest_subnormal, 50, 4000),
                                 np.linspace(0.45, 0.55, 401), np.linspace(0.95, 1.05, 401),
                                 [finfo.tiny, 39.99, 40.0, 40.01, 1e4, finfo.max]]).astype(dtype)
    z = np.concatenate([magnitudes, -magnitudes, [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(dtype)[None, :]
    bound = elementwise(dtype)
    for name in ("tanh", "elu"):
        got = native.activation_forward(z, name, param_of(name))
        want = numpy_twin.activation_forward(z, name, param_of(name))
        np.testing.assert_allclose(got, want, rtol=bound.rtol, atol=bound.atol, err_msg=name)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=f"{name}: signs, -0 included")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("big", (300.0, 1e4))
def test_huge_logits_give_finite_losses_and_gradients(native, numpy_twin, dtype, big, isa):
    z = np.array([[big, -big, 0.0], [-big, -big, big], [big, big, -big], [-big, 0.0, -big]], dtype=dtype)
    labels = np.array([1, 2, 0, 0])
    targets = np.eye(3, dtype=dtype)[labels]
    for op, y in (("softmax_cross_entropy", labels), ("softmax_cross_entropy", targets),
                  ("sigmoid_binary_cross_entropy", targets)):
        loss, grad = getattr(native, op)(z, y)
        want_loss, want_grad = getattr(numpy_twin, op)(z, y)
        assert np.isfinite(loss) and np.isfinite(grad).all(), op
        assert loss == pytest.approx(want_loss, rel=8 * eps_of(dtype)), op
        np.testing.assert_allclose(grad, want_grad, rtol=8 * eps_of(dtype), atol=eps_of(dtype), err_msg=op)
    for name in ("sigmoid", "tanh", "elu"):
        a = native.activation_forward(z, name, 1.0)
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(a, numpy_twin.activation_forward(z, name, 1.0), rtol=4 * eps_of(dtype))
    p = native.softmax(z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, numpy_twin.softmax(z), rtol=8 * eps_of(dtype), atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_empty_batch(native, dtype):
    z = np.zeros((0, 5), dtype=dtype)
    for op, y in (("softmax_cross_entropy", np.zeros(0, dtype=np.int64)),
                  ("softmax_cross_entropy", z), ("sigmoid_binary_cross_entropy", z),
                  ("quadratic_loss", z)):
        loss, grad = getattr(native, op)(z, y)
        assert loss == 0.0 and type(loss) is float, op
        assert grad.shape == (0, 5) and grad.dtype == dtype, op
    assert native.softmax(z).shape == (0, 5)
    assert native.softmax(np.zeros((0, 0), dtype=dtype)).shape == (0, 0)
    w = np.zeros((0, 3), dtype=dtype)
    assert native.sgd_update(w, w.copy(), 0.1, 0.0) is None
    assert native.momentum_update(w, w.copy(), w.copy(), 0.1, 0.9, True, 0.0) is None
    assert native.adam_update(w, w.copy(), w.copy(), w.copy(), 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1) is None


def test_non_finite_values_propagate_like_numpy(native, numpy_twin):
    z = np.array([[np.nan, 1.0, np.inf, -np.inf, 0.0, np.nan]])
    for name in ACTIVATIONS:
        p = param_of(name)
        np.testing.assert_array_equal(native.activation_forward(z, name, p),
                                      numpy_twin.activation_forward(z, name, p), err_msg=name)
    for k in (2, 3):
        got, want = native.maxout_forward(z, k), numpy_twin.maxout_forward(z, k)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("case", [c for c in CASES if c.op not in ("matmul", "linear_forward", "linear_backward")],
                         ids=lambda c: c.id)
def test_isas_agree_bitwise(case):
    """The element-wise kernels add in a fixed lane order, so every ISA gives the same bits."""
    isas = runnable_isas()
    before = fastmlp.build_info()["isa"]
    native_op = getattr(fastmlp.get_backend("native"), case.op)
    results = []
    try:
        for isa_name in isas:
            fastmlp.set_isa(isa_name)
            args = case.make_inputs(np.random.default_rng(1), (9, 1024), np.dtype(np.float32))
            out = native_op(*args)
            results.append(tuple(args[i] for i in _in_place(case.inplace)) if case.inplace
                           else out if isinstance(out, tuple) else (out,))
    finally:
        fastmlp.set_isa(before)
    for isa_name, outs in zip(isas[1:], results[1:]):
        for a, b in zip(results[0], outs):
            np.testing.assert_array_equal(a, b, err_msg=f"{case.id}: {isa_name} vs {isas[0]}")


def test_sgd_update_with_overlapping_dw_reads_the_old_values(native, numpy_twin):
    buf = np.arange(10.0)
    ref = buf.copy()
    native.sgd_update(buf[1:], buf[:-1], 0.5, 0.0)
    numpy_twin.sgd_update(ref[1:], ref[:-1], 0.5, 0.0)
    np.testing.assert_array_equal(buf, ref)


@pytest.mark.parametrize("weight_decay", (0.0, 1e-3))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_sgd_update_of_non_finite_weights_matches_numpy(native, numpy_twin, dtype, weight_decay):
    """A decay of 0 adds no term on either backend, as torch.optim.SGD: an infinite weight
    stays infinite (not NaN through 0 · inf); with a decay, inf − inf is NaN on both."""
    w = np.array([np.inf, -np.inf, np.nan, 1.0, -0.0, 0.0, 2.0], dtype)
    dw = np.array([1.0, -2.0, 1.0, np.inf, -0.0, -0.0, np.nan], dtype)
    got, want = w.copy(), w.copy()
    native.sgd_update(got, dw, 0.1, weight_decay)
    with np.errstate(invalid="ignore"):
        numpy_twin.sgd_update(want, dw, 0.1, weight_decay)
    np.testing.assert_array_equal(got, want)
    finite = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[finite]), np.signbit(want[finite]))


@pytest.mark.parametrize("weight_decay", (0.0, 1e-3))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_sgd_update_of_a_large_w_is_bitwise_native(native, numpy_twin, dtype, weight_decay):
    """The twin updates a W larger than its block (reference.update.BLOCK_BYTES) block by
    block: every element as the native kernel computes it, the last partial block too, and
    an overlapping dw still read before w changes."""
    from fastmlp.reference.update import BLOCK_BYTES
    rng = np.random.default_rng(5)
    shape = (3 * BLOCK_BYTES // (np.dtype(dtype).itemsize * 300) + 7, 300)
    w, dw = logits(rng, shape, dtype), logits(rng, shape, dtype)
    got, want = w.copy(), w.copy()
    numpy_twin.sgd_update(got, dw, 0.37, weight_decay)
    native.sgd_update(want, dw, 0.37, weight_decay)
    np.testing.assert_array_equal(got, want)
    bufs = [logits(rng, shape[0] * shape[1] + 1, dtype) for _ in range(2)]
    bufs[1][...] = bufs[0]
    for table, buf in zip((numpy_twin, native), bufs):
        table.sgd_update(buf[1:], buf[:-1], 0.37, weight_decay)
    np.testing.assert_array_equal(bufs[0], bufs[1])


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("op, hyper", [
    ("momentum_update", (0.37, 0.9, False, 1e-3)), ("momentum_update", (0.37, 0.9, True, 0.0)),
    ("adam_update", (1e-3, 0.9, 0.999, 1e-8, 1e-2, False, 3)),
    ("adam_update", (1e-3, 0.9, 0.999, 1e-8, 1e-2, True, 3))], ids=lambda v: str(v))
def test_optimizer_twins_of_a_large_w_in_blocks_equal_one_pass(numpy_twin, monkeypatch, dtype, op, hyper):
    """momentum_update and adam_update work through a W of several blocks (BLOCK_BYTES) as
    sgd_update does: the same numbers as one pass over the whole arrays, bit for bit, the
    last partial block and an overlapping dw included."""
    from fastmlp.reference import update
    rng = np.random.default_rng(6)
    shape = (3 * update.BLOCK_BYTES // (np.dtype(dtype).itemsize * 300) + 7, 300)
    n_state = 1 if op == "momentum_update" else 2
    w, dw = logits(rng, shape, dtype), logits(rng, shape, dtype)
    state = [np.abs(logits(rng, shape, dtype)) for _ in range(n_state)]
    size = shape[0] * shape[1]
    buf = logits(rng, size + 1, dtype)

    def run():
        ws, sts = w.copy(), [s.copy() for s in state]
        getattr(numpy_twin, op)(ws, dw, *sts, *hyper)
        b, b_sts = buf.copy(), [s.reshape(-1)[:size].copy() for s in state]
        getattr(numpy_twin, op)(b[1:], b[:-1], *b_sts, *hyper)   # dw one element behind w
        return [ws, *sts, b, *b_sts]

    assert len(update.row_blocks(w)) == 4
    blocked = run()
    monkeypatch.setattr(update, "BLOCK_BYTES", 1 << 40)
    assert update.row_blocks(w) == (...,)
    for got, want in zip(blocked, run(), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("decoupled", (False, True))
@pytest.mark.parametrize("dw_at", ("shifted", "same"))
def test_optimizers_with_dw_sharing_memory_with_w_read_the_old_values(native, numpy_twin, decoupled, dw_at):
    """dw overlapping w (one element further on, or w itself) is read before w changes."""
    dw_of = (lambda buf: buf[:-1]) if dw_at == "shifted" else (lambda buf: buf[1:])
    for op, state, hyper in (("momentum_update", 1, (0.5, 0.9, decoupled, 0.1)),
                             ("adam_update", 2, (0.5, 0.9, 0.999, 1e-8, 0.1, decoupled, 3))):
        bufs = [np.arange(10.0) - 4.5, np.arange(10.0) - 4.5]
        states = [[np.linspace(0.5, 1.0, 9) for _ in range(state)] for _ in bufs]
        for table, buf, st in zip((native, numpy_twin), bufs, states):
            getattr(table, op)(buf[1:], dw_of(buf), *st, *hyper)
        np.testing.assert_array_equal(bufs[0], bufs[1], err_msg=op)
        for got, want in zip(*states):
            np.testing.assert_array_equal(got, want, err_msg=op)


# Sizes of the optimizers' multi-step tests: empty, one, and no multiple of a vector width.
STEP_SIZES = (0, 1, 7, 33, 1000)


def _optimizer_run(op, flag, weight_decay):
    """(initial state for w of size n, hyperparameters of step k) for `op`."""
    if op == "momentum_update":
        return 1, lambda k: (0.05, 0.9, flag, weight_decay)
    return 2, lambda k: (1e-2, 0.9, 0.999, 1e-8, weight_decay, flag, k)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("size", STEP_SIZES)
@pytest.mark.parametrize("flag, weight_decay", OPTIMIZER_VARIANTS, ids=lambda v: str(v))
@pytest.mark.parametrize("op", ("momentum_update", "adam_update"))
def test_optimizer_steps_carry_state_bitwise(op, flag, weight_decay, size, dtype, isa):
    """Six steps in a row from zero state (nesterov / decoupled = flag): the native w and state,
    carried from step to step on each side, equal the twin's bit for bit after every step."""
    rng = np.random.default_rng(size)
    n_state, hyper = _optimizer_run(op, flag, weight_decay)
    w = logits(rng, (size,), dtype)
    sides = {name: [w.copy()] + [np.zeros(size, dtype) for _ in range(n_state)]
             for name in ("native", "numpy")}
    for k in range(1, 7):
        dw = logits(rng, (size,), dtype)
        for name, (w_k, *state) in sides.items():
            assert getattr(fastmlp.get_backend(name), op)(w_k, dw, *state, *hyper(k)) is None
        for j, (got, want) in enumerate(zip(sides["native"], sides["numpy"])):
            assert got.dtype == want.dtype == dtype and got.shape == want.shape == (size,)
            _assert_close(f"{op} step {k} output {j} ({np.dtype(dtype).name}, size {size})", got, want, exact())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_first_optimizer_steps_from_zero_state(native, dtype):
    """From zero state, as torch.optim: the first momentum step leaves velocity = g and moves w
    by lr·g; Adam's first step moves each weight by lr·g/(|g| + eps), about lr·sign(g)."""
    rng = np.random.default_rng(3)
    w0, dw = logits(rng, (1000,), dtype), logits(rng, (1000,), dtype)
    w, velocity = w0.copy(), np.zeros_like(w0)
    native.momentum_update(w, dw, velocity, 0.5, 0.9, False, 0.0)
    np.testing.assert_array_equal(velocity, dw)
    np.testing.assert_array_equal(w, w0 - dtype(0.5) * dw)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    native.adam_update(w, dw, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, 1)
    moved, g = (w0.astype(np.float64) - w) / 1e-3, dw.astype(np.float64)
    # w's rounding is eps·|w| against a move of lr = 1e-3: 1e-3 relative in float32
    np.testing.assert_allclose(moved, g / (np.abs(g) + 1e-8), rtol=1e-3 if dtype == np.float32 else 1e-9)


# ---- argument checks: a clear TypeError / ValueError naming the argument ----------------

F32, F64 = np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float64)
LABELS = np.array([0, 2])


def valid_calls(z):
    """Every native op with valid arguments built around z (2, 3), as name -> args."""
    return {
        "activation_forward": (z, "relu", 0.0),
        "activation_derivative": (z, z, "relu", 0.0),
        "activation_backward": (z, z, z, "relu", 0.0),
        "maxout_forward": (z, 3),
        "maxout_backward": (z, np.zeros(z.shape, np.int64), 2),
        "softmax": (z,),
        "softmax_cross_entropy": (z, LABELS),
        "sigmoid_binary_cross_entropy": (z, z),
        "quadratic_loss": (z, z),
        "sgd_update": (z.copy(), z, 0.1, 0.0),
        "momentum_update": (z.copy(), z, np.zeros_like(z), 0.1, 0.9, True, 0.0),
        "adam_update": (z.copy(), z, np.zeros_like(z), np.zeros_like(z), 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 1),
        "dropout_forward": (z, 7, 0, 0.5),
        "batch_norm_forward": (z, z[0], z[0], 1e-5),
        "batch_norm_backward": (z, z, z[0], z[0]),
    }


def with_arg(op, index, value):
    args = list(valid_calls(F64)[op])
    args[index] = value
    return args


ARG_NAMES = {"activation_forward": ("z",), "activation_derivative": ("z", "a"),
             "activation_backward": ("delta", "z", "a"), "maxout_forward": ("z",),
             "maxout_backward": ("da",), "softmax": ("z",), "softmax_cross_entropy": ("z",),
             "sigmoid_binary_cross_entropy": ("z", "y"), "quadratic_loss": ("a", "y"),
             "sgd_update": ("w", "dw"), "momentum_update": ("w", "dw", "velocity"),
             "adam_update": ("w", "dw", "m", "v"), "dropout_forward": ("a",),
             "batch_norm_forward": ("z", "gamma", "beta"),
             "batch_norm_backward": ("dy", "xhat", "gamma", "inv_std")}
BAD_DTYPES = (np.int64, np.int32, np.bool_, np.float16, np.complex128, object)


def test_valid_calls_run(native):
    for dtype in DTYPES:
        for op, args in valid_calls(np.zeros((2, 3), dtype)).items():
            getattr(native, op)(*args)


@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", sorted(ARG_NAMES))
def test_wrong_dtype_is_a_type_error_naming_the_argument(native, op, bad):
    for index, name in enumerate(ARG_NAMES[op]):
        with pytest.raises(TypeError, match=rf"^{name}: expected a float32 or float64 array, got dtype"):
            getattr(native, op)(*with_arg(op, index, F64.astype(bad)))


@pytest.mark.parametrize("op", [op for op, names in ARG_NAMES.items() if len(names) == 2])
def test_mixed_float_dtypes_are_refused(native, op):
    second = ARG_NAMES[op][1]
    with pytest.raises(TypeError, match=rf"^{second}: expected the dtype of {ARG_NAMES[op][0]} \(float64\), got float32"):
        getattr(native, op)(*with_arg(op, 1, F32))


def test_mixed_dtypes_for_float_targets_are_refused(native):
    with pytest.raises(TypeError, match=r"^y: expected the dtype of z"):
        native.softmax_cross_entropy(F64, F32)


@pytest.mark.parametrize("op", sorted(ARG_NAMES))
def test_non_arrays_are_refused(native, op):
    with pytest.raises(TypeError, match=rf"^{ARG_NAMES[op][0]}: expected a numpy.ndarray, got list"):
        getattr(native, op)(*with_arg(op, 0, F64.tolist()))


@pytest.mark.parametrize("labels", ([0, 3], [-1, 0], [0, 2**63 + 5]), ids=("K", "negative", "huge_uint64"))
def test_labels_out_of_range(native, labels):
    dtype = np.uint64 if labels[1] > 2**62 else np.int64
    with pytest.raises(ValueError, match=r"^y: expected values in \[0, 3\)"):
        native.softmax_cross_entropy(F64, np.array(labels, dtype=dtype))


@pytest.mark.parametrize("call, error, message", [
    (lambda nat: nat.softmax_cross_entropy(F64, np.array([0, 1, 2])), ValueError, r"^y: expected integer labels of shape \(2,\)"),
    (lambda nat: nat.softmax_cross_entropy(F64, LABELS.astype(bool)), TypeError, r"^y: expected integer labels"),
    (lambda nat: nat.softmax_cross_entropy(F64, np.zeros(2)), ValueError, r"^y: expected the shape of z \(2, 3\), got \(2,\)"),
    (lambda nat: nat.softmax_cross_entropy(F64[0], LABELS), ValueError, r"^z: expected a 2-D array"),
    (lambda nat: nat.softmax(np.zeros((2, 0))), ValueError, r"^z: expected at least one column"),
    (lambda nat: nat.sigmoid_binary_cross_entropy(F64, F64.T), ValueError, r"^y: expected the shape of z"),
    (lambda nat: nat.quadratic_loss(F64, F64[:, :2]), ValueError, r"^y: expected the shape of a"),
    (lambda nat: nat.activation_forward(F64, "softplus", 0.0), ValueError, r"^name: unknown activation 'softplus'"),
    (lambda nat: nat.activation_derivative(F64, F64, "maxout", 0.0), ValueError, r"^name: unknown activation"),
    (lambda nat: nat.activation_derivative(F64, F64[:1], "relu", 0.0), ValueError, r"^a: expected the shape of z"),
    (lambda nat: nat.activation_forward(F64, "elu", float("nan")), ValueError, r"^param: expected a finite number"),
    (lambda nat: nat.activation_forward(F32, "elu", 1e300), ValueError, r"^param: expected a finite number"),
    (lambda nat: nat.maxout_forward(F64, 2), ValueError, r"^k: expected a divisor of z's column count 3, got 2"),
    (lambda nat: nat.maxout_forward(F64, 0), ValueError, r"^k: expected an integer >= 1, got 0"),
    (lambda nat: nat.maxout_forward(F64[0], 1), ValueError, r"^z: expected a 2-D array"),
    (lambda nat: nat.maxout_backward(F64, np.full((2, 3), 2), 2), ValueError, r"^argmax: expected values in \[0, 2\)"),
    (lambda nat: nat.dropout_forward(F64, 7, 0, 1.0), ValueError, r"^p: expected a rate in \[0, 1\)"),
    (lambda nat: nat.dropout_forward(F64, 7, 0, -0.1), ValueError, r"^p: expected a rate in \[0, 1\)"),
    (lambda nat: nat.dropout_forward(F64, 2**32, 0, 0.5), ValueError, r"^key: expected an integer < 2\*\*32"),
    (lambda nat: nat.dropout_forward(F64, 7, -1, 0.5), ValueError, r"^row_offset: expected an integer >= 0"),
    (lambda nat: nat.dropout_forward(F64, 7.0, 0, 0.5), TypeError, r"^key: expected an integer"),
    (lambda nat: nat.maxout_backward(F64, np.full((2, 3), -1), 2), ValueError, r"^argmax: expected values in \[0, 2\)"),
    (lambda nat: nat.maxout_backward(F64, np.zeros((2, 3)), 2), TypeError, r"^argmax: expected an integer array"),
    (lambda nat: nat.maxout_backward(F64, np.zeros((3, 2), np.int64), 2), ValueError, r"^argmax: expected the shape of da"),
    (lambda nat: nat.maxout_backward(F64, np.zeros((2, 3), np.int64), -1), ValueError, r"^k: expected an integer >= 1"),
    (lambda nat: nat.sgd_update(F64.copy(), F64, float("inf"), 0.0), ValueError, r"^lr: expected a finite number"),
    (lambda nat: nat.sgd_update(F64.copy(), F64, 0.1, float("nan")), ValueError, r"^weight_decay: expected a finite number"),
    (lambda nat: nat.sgd_update(F64.copy(), F64[:1], 0.1, 0.0), ValueError, r"^dw: expected the shape of w"),
    (lambda nat: nat.sgd_update(np.asfortranarray(np.zeros((3, 2))), np.zeros((3, 2)), 0.1, 0.0), ValueError, r"^w: expected a C-contiguous"),
    (lambda nat: nat.sgd_update(np.zeros((3, 4))[:, ::2], np.zeros((3, 2)), 0.1, 0.0), ValueError, r"^w: expected a C-contiguous"),
    (lambda nat: nat.sgd_update(np.zeros(3, dtype=">f8"), np.zeros(3), 0.1, 0.0), TypeError, r"^w: expected this machine's byte order, got dtype >f8"),
    (lambda nat: nat.sgd_update(to_readonly(F64), F64, 0.1, 0.0), ValueError, r"^w: expected a writable array"),
    (lambda nat: nat.momentum_update(*with_arg("momentum_update", 2, F64[:1])), ValueError, r"^velocity: expected the shape of w"),
    (lambda nat: nat.momentum_update(*with_arg("momentum_update", 2, to_readonly(F64))), ValueError, r"^velocity: expected a writable array"),
    (lambda nat: nat.momentum_update(*with_arg("momentum_update", 2, np.asfortranarray(np.zeros((2, 3))))), ValueError, r"^velocity: expected a C-contiguous"),
    (lambda nat: nat.momentum_update(*with_arg("momentum_update", 4, 1.0)), ValueError, r"^momentum: expected a number in \[0, 1\), got 1.0"),
    (lambda nat: nat.momentum_update(*with_arg("momentum_update", 3, -0.1)), ValueError, r"^lr: expected a number >= 0, got -0.1"),
    (lambda nat: nat.momentum_update(*with_arg("momentum_update", 5, 1)), TypeError, r"^nesterov: expected True or False, got int"),
    (lambda nat: nat.momentum_update(*with_arg("momentum_update", 6, float("inf"))), ValueError, r"^weight_decay: expected a finite number"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 3, F32)), TypeError, r"^v: expected the dtype of w \(float64\), got float32"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 5, -0.5)), ValueError, r"^beta1: expected a number in \[0, 1\), got -0.5"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 6, 1.0)), ValueError, r"^beta2: expected a number in \[0, 1\), got 1.0"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 7, 0.0)), ValueError, r"^eps: expected a number > 0, got 0.0"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 8, -1e-2)), ValueError, r"^weight_decay: expected a number >= 0"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 9, None)), TypeError, r"^decoupled: expected True or False, got NoneType"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 10, 0)), ValueError, r"^step: expected an integer >= 1, got 0"),
    (lambda nat: nat.adam_update(*with_arg("adam_update", 10, 1.0)), TypeError, r"^step: expected an integer, got float"),
])
def test_bad_arguments_raise_clear_errors(native, call, error, message):
    with pytest.raises(error, match=message):
        call(native)


def to_readonly(x):
    y = x.copy()
    y.flags.writeable = False
    return y


def test_errors_leave_sgd_update_target_untouched(native):
    w = np.ones(4)
    with pytest.raises(ValueError):
        native.sgd_update(w, np.ones(4), float("nan"), 0.0)
    np.testing.assert_array_equal(w, np.ones(4))


def test_errors_leave_optimizer_targets_and_state_untouched(native):
    arrays = [np.ones(4) for _ in range(4)]
    with pytest.raises(ValueError, match="^step"):   # the last argument checked
        native.adam_update(*arrays, 1e-3, 0.9, 0.999, 1e-8, 0.0, True, 0)
    with pytest.raises(ValueError, match="^weight_decay"):
        native.momentum_update(*arrays[:3], 0.1, 0.9, True, -1.0)
    for a in arrays:
        np.testing.assert_array_equal(a, np.ones(4))


@pytest.mark.parametrize("op, names", [("momentum_update", ("w", "velocity")),
                                       ("adam_update", ("w", "m", "v"))])
def test_optimizer_state_sharing_memory_is_refused(native, op, names):
    """w and the state are all written: two of them over the same memory have no meaning."""
    args = list(valid_calls(np.zeros((2, 3)))[op])
    positions = [0] + list(range(2, 2 + len(names) - 1))
    for i, a in zip(positions[1:], names[1:]):
        for j, b in zip(positions[:positions.index(i)], names):
            bad = list(args)
            bad[i] = bad[j]
            with pytest.raises(ValueError, match=rf"^{a}: expected an array that shares no memory with {b}"):
                getattr(native, op)(*bad)
    buf = np.zeros(7)
    bad = list(args)
    bad[0], bad[2] = buf[1:].reshape(2, 3), buf[:-1].reshape(2, 3)
    with pytest.raises(ValueError, match=rf"^{names[1]}: expected an array that shares no memory with w"):
        getattr(native, op)(*bad)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_optimizer_updates_of_many_blocks_are_bitwise_the_twins_on_1_and_2_threads(
        isa, dtype, native, numpy_twin):
    """Arrays past one block (16384 elements) are updated by several threads: each element
    gets the same operations however the range is split."""
    before = fastmlp.get_num_threads()
    rng = np.random.default_rng(11)
    n = 3 * 16384 + 7
    w, dw, s1, s2 = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    s2 = np.abs(s2)
    calls = {"momentum_update": lambda k, a: k.momentum_update(a[0], dw, a[1], 0.1, 0.9, True, 0.01),
             "adam_update": lambda k, a: k.adam_update(a[0], dw, a[1], a[2], 0.01, 0.9, 0.999,
                                                       1e-8, 0.01, False, 3)}
    try:
        for op, call in calls.items():
            want = [w.copy(), s1.copy(), s2.copy()]
            call(numpy_twin, want)
            for threads in (1, 2):
                fastmlp.set_num_threads(threads)
                got = [w.copy(), s1.copy(), s2.copy()]
                call(native, got)
                for g, x in zip(got, want):
                    np.testing.assert_array_equal(g, x, err_msg=f"{op}, {threads} threads")
    finally:
        fastmlp.set_num_threads(before)
