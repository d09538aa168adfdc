"""fastmlp.autograd: the lecture's example, finite-difference checks of every op on both
backends, conv2d against a direct loop, the engine's bookkeeping, and bad input."""
import doctest
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import autograd
from fastmlp.autograd import Function, Tensor, nn
from fastmlp.reference.dropout import dropout_forward as reference_dropout

BACKENDS = ["numpy", "native"]
FORWARD_TOL = dict(rtol=1e-12, atol=1e-12)
GRAD_TOL = dict(rtol=1e-6, atol=1e-8)
STEP = 1e-6


def use_backend(name, kernels):
    """Select backend `name` for the test, skipping (with the reason) if it lacks a kernel."""
    if name == "native":
        try:
            table = fastmlp.get_backend("native")
        except RuntimeError as exc:
            pytest.skip(str(exc))
        missing = [k for k in kernels if k not in table.kernels]
        if missing:
            pytest.skip(f"native backend lacks kernels {missing} (not on this branch yet)")
    return autograd.backend(name)


def numeric_grad(loss, arrays, i):
    """Central differences of the scalar loss(*arrays) in arrays[i], element by element."""
    grad = np.zeros_like(arrays[i])
    for idx in np.ndindex(arrays[i].shape):
        shifted = [a.copy() for a in arrays]
        shifted[i][idx] += STEP
        up = loss(*shifted)
        shifted[i][idx] -= 2 * STEP
        grad[idx] = (up - loss(*shifted)) / (2 * STEP)
    return grad


def check_op(fn, arrays, expected=None, backend="numpy", kernels=()):
    """Forward against `expected` (a NumPy function), then every input's gradient against
    central differences of L = Σ fn(...) ⊙ seed, for a random seed gradient."""
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    with use_backend(backend, kernels):
        tensors = [Tensor(a, requires_grad=True) for a in arrays]
        out = fn(*tensors)
        if expected is not None:
            want = np.asarray(expected(*arrays))
            assert out.shape == want.shape and out.dtype == np.float64
            np.testing.assert_allclose(out.data, want, **FORWARD_TOL)
        seed = np.random.default_rng(1).standard_normal(out.shape)
        out.backward(seed)

        def loss(*values):
            with autograd.no_grad():
                return float((fn(*(Tensor(v) for v in values)).data * seed).sum())

        for i, t in enumerate(tensors):
            assert t.grad is not None and t.grad.shape == t.shape and t.grad.dtype == np.float64
            np.testing.assert_allclose(t.grad, numeric_grad(loss, arrays, i), **GRAD_TOL,
                                       err_msg=f"gradient of input {i}")


rng = np.random.default_rng(0)


def normal(*shape):
    return rng.standard_normal(shape)


def away_from_zero(*shape):
    """Values with |z| >= 0.1, so finite differences never straddle a kink at 0."""
    z = normal(*shape)
    return np.sign(z) * (0.1 + np.abs(z))


def spread(*shape):
    """Distinct values at least 0.05 apart (maxout pieces never tie within a step)."""
    return rng.permutation(np.arange(np.prod(shape)) * 0.05 - 1).reshape(shape)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def log_softmax(z):
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


LABELS = np.array([2, 0, 1, 2, 1])
PROBS = np.abs(normal(5, 3)); PROBS /= PROBS.sum(axis=1, keepdims=True)  # noqa: E702
BINARY = (normal(5, 3) > 0).astype(float)
ACT = ("activation_forward", "activation_derivative")

# id: (fn, input arrays, expected forward in NumPy, kernels used)
CASES = {
    "add": (lambda a, b: a + b, [normal(3, 4), normal(3, 4)], np.add, ()),
    "add_broadcast_row": (lambda a, b: a + b, [normal(3, 4), normal(4)], np.add, ()),
    "add_broadcast_outer": (lambda a, b: a + b, [normal(3, 1), normal(1, 4)], np.add, ()),
    "add_scalar_tensor": (lambda a, b: a + b, [normal(), normal(2, 3)], np.add, ()),
    "add_constants_both_sides": (lambda a: 2 + a + np.ones(4) + 0.5,
                                 [normal(3, 4)], lambda a: a + 3.5, ()),
    "sub_broadcast": (lambda a, b: a - b, [normal(3, 4), normal(3, 1)], np.subtract, ()),
    "rsub_constant": (lambda a: 1 - a, [normal(3)], lambda a: 1 - a, ()),
    "mul": (lambda a, b: a * b, [normal(3, 4), normal(3, 4)], np.multiply, ()),
    "mul_broadcast": (lambda a, b: a * b, [normal(2, 3, 4), normal(3, 1)], np.multiply, ()),
    "rmul_array": (lambda a: np.arange(4.0) * a, [normal(3, 4)], lambda a: np.arange(4.0) * a, ()),
    "neg": (lambda a: -a, [normal(3, 4)], np.negative, ()),
    "matmul": (lambda a, b: a @ b, [normal(3, 4), normal(4, 5)], np.matmul, ("matmul",)),
    "matmul_1x1": (lambda a, b: a @ b, [normal(1, 1), normal(1, 1)], np.matmul, ("matmul",)),
    "matmul_empty_batch": (lambda a, b: a @ b, [normal(0, 4), normal(4, 2)], np.matmul, ("matmul",)),
    "matmul_transposed": (lambda a, b: a @ b.T, [normal(3, 4), normal(5, 4)],
                          lambda a, b: a @ b.T, ("matmul",)),
    "rmatmul_array": (lambda b: np.eye(3)[:2] @ b, [normal(3, 2)], lambda b: b[:2], ("matmul",)),
    "sum": (lambda a: a.sum(), [normal(3, 4)], np.sum, ()),
    "sum_axis0": (lambda a: a.sum(axis=0), [normal(3, 4)], lambda a: a.sum(axis=0), ()),
    "sum_axes_keepdims": (lambda a: a.sum(axis=(0, 2), keepdims=True), [normal(2, 3, 4)],
                          lambda a: a.sum(axis=(0, 2), keepdims=True), ()),
    "sum_negative_axis": (lambda a: a.sum(axis=-1), [normal(2, 3, 4)], lambda a: a.sum(axis=-1), ()),
    "mean": (lambda a: a.mean(), [normal(3, 4)], np.mean, ()),
    "mean_axis1_keepdims": (lambda a: a.mean(axis=1, keepdims=True), [normal(3, 4)],
                            lambda a: a.mean(axis=1, keepdims=True), ()),
    "reshape": (lambda a: a.reshape(4, -1) * np.arange(3.0), [normal(2, 6)],
                lambda a: a.reshape(4, 3) * np.arange(3.0), ()),
    "transpose_axes": (lambda a: a.transpose(1, 2, 0), [normal(2, 3, 4)],
                       lambda a: a.transpose(1, 2, 0), ()),
    "T": (lambda a: a.T, [normal(3, 4)], lambda a: a.T, ()),
    "sigmoid": (autograd.sigmoid, [normal(4, 5)], sigmoid, ACT),
    "sigmoid_0d": (autograd.sigmoid, [normal()], sigmoid, ACT),
    "tanh": (autograd.tanh, [normal(2, 3, 4)], np.tanh, ACT),
    "relu": (autograd.relu, [away_from_zero(4, 5)], lambda z: np.maximum(z, 0), ACT),
    "leaky_relu": (autograd.leaky_relu, [away_from_zero(4, 5)],
                   lambda z: np.where(z > 0, z, 0.1 * z), ACT),
    "leaky_relu_slope": (lambda z: autograd.leaky_relu(z, 0.3), [away_from_zero(4, 5)],
                         lambda z: np.where(z > 0, z, 0.3 * z), ACT),
    "elu": (autograd.elu, [away_from_zero(4, 5)], lambda z: np.where(z > 0, z, np.expm1(z)), ACT),
    "elu_alpha": (lambda z: autograd.elu(z, 0.5), [away_from_zero(4, 5)],
                  lambda z: np.where(z > 0, z, 0.5 * np.expm1(z)), ACT),
    "identity": (autograd.identity, [normal(4, 5)], lambda z: z, ACT),
    "maxout": (lambda z: autograd.maxout(z, 3), [spread(4, 6)],
               lambda z: z.reshape(4, 2, 3).max(axis=2), ("maxout_forward", "maxout_backward")),
    "softmax": (autograd.softmax, [normal(4, 5)], lambda z: np.exp(log_softmax(z)), ("softmax",)),
    "softmax_cross_entropy_labels": (
        lambda z: autograd.softmax_cross_entropy(z, LABELS), [normal(5, 3)],
        lambda z: -log_softmax(z)[np.arange(5), LABELS].mean(), ("softmax_cross_entropy",)),
    "softmax_cross_entropy_probs": (
        lambda z: autograd.softmax_cross_entropy(z, PROBS), [normal(5, 3)],
        lambda z: -(PROBS * log_softmax(z)).sum() / 5, ("softmax_cross_entropy",)),
    "sigmoid_binary_cross_entropy": (
        lambda z: autograd.sigmoid_binary_cross_entropy(z, BINARY), [normal(5, 3)],
        lambda z: -(BINARY * np.log(sigmoid(z)) + (1 - BINARY) * np.log(1 - sigmoid(z))).sum() / 5,
        ("sigmoid_binary_cross_entropy",)),
    "quadratic_loss": (autograd.quadratic_loss, [normal(5, 3), normal(5, 3)],
                       lambda a, y: ((a - y) ** 2).sum() / 10, ("quadratic_loss",)),
    "conv2d": (autograd.conv2d, [normal(2, 3, 6, 5), normal(4, 3, 3, 2)], None, ("matmul",)),
    "conv2d_bias": (autograd.conv2d, [normal(2, 3, 5, 5), normal(2, 3, 2, 3), normal(2)], None,
                    ("matmul",)),
    "conv2d_1x1": (autograd.conv2d, [normal(1, 2, 3, 3), normal(3, 2, 1, 1)], None, ("matmul",)),
    "conv2d_filter_fills_image": (autograd.conv2d, [normal(2, 1, 3, 4), normal(2, 1, 3, 4)], None,
                                  ("matmul",)),
    "batch_norm": (lambda z, g, b: autograd.batch_norm(z, g, b), [normal(5, 3), normal(3), normal(3)],
                   lambda z, g, b: (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * g + b,
                   ("batch_norm_forward", "batch_norm_backward")),
    "dropout": (lambda x: autograd.dropout(x, 0.5, 7), [normal(4, 6)],
                lambda x: reference_dropout(x, 7, 0, 0.5)[0], ("dropout_forward",)),
    "reuse_x_times_x_plus_x": (lambda x: x * x + x, [normal(3, 4)], lambda x: x * x + x, ()),
    "reuse_in_two_branches": (lambda x, w: autograd.tanh(x @ w) @ w.T + x,
                              [normal(3, 4), normal(4, 4)],
                              lambda x, w: np.tanh(x @ w) @ w.T + x, ("matmul",) + ACT),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_op_gradients_match_finite_differences(case, backend):
    fn, arrays, expected, kernels = CASES[case]
    check_op(fn, arrays, expected, backend, kernels)


def test_lecture_example():
    # The lecture's graph q = x + y, f = q·z. (Its "z = 4" lost a minus sign: its own
    # ∂f/∂q = z = −4 and f = −12 need z = −4.)
    x, y, z = (Tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    q = (x + y).retain_grad()
    f = q * z
    f.backward()
    assert f.item() == -12.0
    assert (q.grad, x.grad, y.grad, z.grad) == (-4.0, -4.0, -4.0, 3.0)


def test_docs_examples_run():
    result = doctest.testfile(str(Path(__file__).parents[1] / "docs" / "autograd.md"),
                              module_relative=False)
    assert result.attempted > 40 and result.failed == 0


# -- conv2d against the definition --------------------------------------------------------

def loop_conv2d(x, f):
    """O[n, o, i, j] = Σ_c Σ_p Σ_q X[n, c, i+p, j+q] F[o, c, p, q], written out."""
    n, c, h, w = x.shape
    o, _, kh, kw = f.shape
    out = np.zeros((n, o, h - kh + 1, w - kw + 1))
    for b, oc, i, j in np.ndindex(out.shape):
        out[b, oc, i, j] = sum(x[b, ci, i + p, j + q] * f[oc, ci, p, q]
                               for ci in range(c) for p in range(kh) for q in range(kw))
    return out


def loop_conv2d_grads(x, f, g):
    """Every O[n, o, i, j] adds X[n, c, i+p, j+q]·F[o, c, p, q]: its upstream gradient
    G[n, o, i, j] flows to F[o, c, p, q] times X and to X[n, c, i+p, j+q] times F."""
    dx, df = np.zeros_like(x), np.zeros_like(f)
    _, c, _, _ = x.shape
    _, _, kh, kw = f.shape
    for b, oc, i, j in np.ndindex(g.shape):
        for ci, p, q in np.ndindex(c, kh, kw):
            df[oc, ci, p, q] += g[b, oc, i, j] * x[b, ci, i + p, j + q]
            dx[b, ci, i + p, j + q] += g[b, oc, i, j] * f[oc, ci, p, q]
    return dx, df


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("xs,fs", [((2, 3, 6, 5), (4, 3, 3, 2)), ((1, 1, 4, 4), (1, 1, 4, 4)),
                                   ((3, 2, 5, 7), (2, 2, 1, 3))])
def test_conv2d_matches_direct_loops(xs, fs, backend):
    x, f = normal(*xs), normal(*fs)
    with use_backend(backend, ("matmul",)):
        xt, ft = Tensor(x, requires_grad=True), Tensor(f, requires_grad=True)
        out = autograd.conv2d(xt, ft)
        want = loop_conv2d(x, f)
        assert out.shape == want.shape
        np.testing.assert_allclose(out.data, want, rtol=1e-12, atol=1e-12)
        g = normal(*out.shape)
        out.backward(g)
    dx, df = loop_conv2d_grads(x, f, g)
    np.testing.assert_allclose(xt.grad, dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ft.grad, df, rtol=1e-12, atol=1e-12)


# -- dtypes and backends -------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_stays_float32(backend):
    with use_backend(backend, ("matmul",) + ACT + ("softmax_cross_entropy",)):
        x = Tensor(normal(4, 3), dtype=np.float32)
        w = Tensor(normal(2, 3), requires_grad=True, dtype=np.float32)
        loss = autograd.softmax_cross_entropy(autograd.tanh(2 * x @ w.T - 1.0), [0, 1, 1, 0])
        loss.backward()
    assert loss.dtype == np.float32 and w.grad.dtype == np.float32


def test_backend_context_selects_and_restores():
    assert autograd.get_backend_name() == "numpy"
    with pytest.raises(ValueError, match="backend"):
        with autograd.backend("cuda"):
            pass
    assert autograd.get_backend_name() == "numpy"
    with use_backend("native", ()):
        assert autograd.get_backend_name() == "native"
        node = Tensor(1.0, requires_grad=True) * 2
        assert node._ctx.backend.name == "native"
    assert autograd.get_backend_name() == "numpy"


def test_ops_call_the_selected_backends_kernels(monkeypatch):
    calls = []
    table = fastmlp.get_backend("numpy")
    real = table.kernels["matmul"]
    monkeypatch.setitem(table.kernels, "matmul", lambda a, b: calls.append(1) or real(a, b))
    a = Tensor(normal(2, 3), requires_grad=True)
    (a @ a.T).sum().backward()
    assert len(calls) == 3      # forward, then ∂/∂A and ∂/∂Aᵀ


def test_missing_kernel_says_which():
    table = fastmlp.get_backend("numpy")
    node = Tensor(normal(2, 2), requires_grad=True)
    saved = table.kernels.pop("softmax")
    try:
        with pytest.raises(NotImplementedError, match="'softmax' kernel"):
            autograd.softmax(node)
    finally:
        table.kernels["softmax"] = saved


# -- the engine ---------------------------------------------------------------------------

def test_gradients_accumulate_over_backward_calls():
    x = Tensor(3.0, requires_grad=True)
    (x * x).backward()
    (x * x).backward()
    assert x.grad == 12.0


def test_deep_graph_does_not_recurse():
    x = Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad == 1.0


def test_no_grad_records_nothing():
    x = Tensor(normal(3), requires_grad=True)
    with autograd.no_grad():
        y = autograd.sigmoid(x * 2)
    assert not y.requires_grad and y.is_leaf and autograd.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_constants_get_no_gradient_and_intermediates_keep_none():
    x, c = Tensor(normal(3), requires_grad=True), Tensor(normal(3))
    h = x * c
    h.sum().backward()
    assert c.grad is None and h.grad is None
    np.testing.assert_array_equal(x.grad, c.data)


def test_leaf_gradients_do_not_alias():
    x, y = Tensor(1.0, requires_grad=True), Tensor(2.0, requires_grad=True)
    (x + y).backward()
    x.grad += 1
    assert y.grad == 1.0


def test_non_scalar_backward_needs_a_seed():
    x = Tensor(normal(3), requires_grad=True)
    with pytest.raises(ValueError, match="seed gradient"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(4))
    (x * 2).backward(np.arange(3.0))
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, 4.0])


def test_tensor_converts_and_copies():
    a = np.arange(3)
    t = Tensor(a, requires_grad=True)
    a[0] = 7
    assert t.dtype == np.float64 and t.data[0] == 0
    with pytest.raises(TypeError, match="real numbers"):
        Tensor(np.ones(2, dtype=complex))


# -- user-defined Functions -----------------------------------------------------------------

class Cube(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


def test_user_defined_function_joins_the_graph():
    check_op(lambda x: Cube.apply(x) * 2, [normal(2, 3)], lambda x: 2 * x ** 3)


class WrongShape(Function):
    @staticmethod
    def forward(ctx, x):
        return x.sum()

    @staticmethod
    def backward(ctx, g):
        return g


def test_engine_rejects_a_gradient_of_the_wrong_shape():
    with pytest.raises(RuntimeError, match="WrongShape.backward returned a gradient of shape"):
        WrongShape.apply(Tensor(normal(3), requires_grad=True)).backward()


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: Tensor(normal(2, 3)) @ Tensor(normal(2, 3)), "matmul: expected 2-D"),
    (lambda: Tensor(normal(3)) @ Tensor(normal(3)), "matmul: expected 2-D"),
    (lambda: autograd.activation(Tensor(1.0), "swish"), "name: expected one of"),
    (lambda: autograd.maxout(Tensor(normal(2, 5)), 3), "z: expected"),
    (lambda: autograd.softmax(Tensor(normal(5))), "z: expected a 2-D array"),
    (lambda: nn.Activation("softplus"), "name: expected one of"),
    (lambda: autograd.maxout(Tensor(normal(2, 6)), 0), "k: expected"),
    (lambda: autograd.softmax_cross_entropy(Tensor(normal(3, 2)), [0, 1]), "y: expected 3"),
    (lambda: autograd.softmax_cross_entropy(Tensor(normal(2, 2)), [0, 2]), r"y: labels must lie"),
    (lambda: autograd.softmax_cross_entropy(Tensor(normal(2, 2)), [0.0, 1.0]), "integer labels"),
    (lambda: autograd.sigmoid_binary_cross_entropy(Tensor(normal(2, 2)), np.ones(2)), "y: expected"),
    (lambda: autograd.quadratic_loss(Tensor(normal(2, 2)), np.ones((2, 3))), "y: expected"),
    (lambda: autograd.conv2d(Tensor(normal(1, 2, 4, 4)), Tensor(normal(1, 3, 2, 2))), "same c_in"),
    (lambda: autograd.conv2d(Tensor(normal(1, 1, 2, 4)), Tensor(normal(1, 1, 3, 2))), "fit in"),
    (lambda: autograd.conv2d(Tensor(normal(1, 4, 4)), Tensor(normal(1, 1, 3, 2))), "conv2d: expected"),
])
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sgd_rejects_non_parameters():
    with pytest.raises(TypeError, match="parameters"):
        nn.SGD([Tensor(1.0)], lr=0.1)


def test_sgd_step_decays_weights_not_biases():
    layer = nn.Linear(3, 2, rng=0)
    w0, b0 = layer.weight.data.copy(), layer.bias.data.copy()
    x = normal(4, 3)
    layer(Tensor(x)).sum().backward()
    opt = nn.SGD(layer.parameters(), lr=0.5, weight_decay=0.1)
    opt.step()
    np.testing.assert_allclose(layer.weight.data, w0 - 0.5 * (x.sum(axis=0) + 0.1 * w0), rtol=1e-14)
    np.testing.assert_allclose(layer.bias.data, b0 - 0.5 * 4, rtol=1e-14)
    opt.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_parameters_are_found_once_in_order():
    shared = nn.Linear(2, 2, rng=0)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Conv2d(1, 1, 2, bias=False, rng=0))
    assert model.parameters() == [shared.weight, shared.bias, model[3].weight]


# -- named edge cases --------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_relu_gradient_at_exactly_zero_is_zero(backend):
    with use_backend(backend, ACT):
        z = Tensor([-1.0, 0.0, 2.0], requires_grad=True)
        autograd.relu(z).sum().backward()
    np.testing.assert_array_equal(z.grad, [0.0, 0.0, 1.0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss,kernel,y", [
    (autograd.softmax_cross_entropy, "softmax_cross_entropy", np.array([0, 1])),
    (autograd.sigmoid_binary_cross_entropy, "sigmoid_binary_cross_entropy", np.eye(2)),
])
def test_losses_of_huge_logits_stay_finite(loss, kernel, y, backend):
    with use_backend(backend, (kernel,)):
        z = Tensor([[300.0, -300.0], [300.0, -300.0]], requires_grad=True)
        J = loss(z, y)
        J.backward()
    assert np.isfinite(J.item()) and J.item() > 100 and np.isfinite(z.grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch_gives_zero_loss_and_zero_gradients(backend):
    with use_backend(backend, ("matmul",) + ACT + ("softmax_cross_entropy",)):
        model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Sigmoid(), nn.Linear(4, 2, rng=1))
        J = autograd.softmax_cross_entropy(model(Tensor(np.zeros((0, 3)))), np.zeros(0, int))
        J.backward()
    assert J.item() == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["fortran", "strided", "read_only"])
def test_any_input_layout_gives_the_same_results(layout, backend):
    x = normal(6, 8)
    odd = {"fortran": np.asfortranarray(x), "strided": np.repeat(x, 2, axis=1)[:, ::2],
           "read_only": x.copy()}[layout]
    odd.flags.writeable = layout != "read_only"

    def run(inputs):
        model = nn.Sequential(nn.Linear(8, 5, rng=0), nn.Tanh(), nn.Linear(5, 3, rng=1))
        conv = nn.Conv2d(1, 2, 3, rng=2)
        J = autograd.softmax_cross_entropy(model(inputs), [0, 1, 2, 0, 1, 2])
        J = J + conv(inputs.reshape(1, 1, 6, 8)).sum() + (inputs.T @ inputs).sum()
        J.backward()
        return J.item(), [p.grad for p in model.parameters() + conv.parameters()]

    with use_backend(backend, ("matmul",) + ACT + ("softmax_cross_entropy",)):
        want, want_grads = run(Tensor(x))
        got, got_grads = run(Tensor(odd))
        got_plain, _ = run(odd)            # an ndarray straight into the graph, no copy
    np.testing.assert_allclose([got, got_plain], [want, want], rtol=1e-13)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
