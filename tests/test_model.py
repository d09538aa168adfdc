"""The MLP's API: the lecture's numbers, shapes, dtypes, argument checks, save/load."""
import numpy as np
import pytest

import fastmlp
from fastmlp import MLP


def test_lecture_mnist_network_has_24790_parameters():
    net = MLP([784, 30, 30, 10], backend="numpy")
    assert net.n_params == 24790
    assert [w.shape for w in net.weights] == [(30, 784), (30, 30), (10, 30)]
    assert [b.shape for b in net.biases] == [(30,), (30,), (10,)]


def test_maxout_layer_has_k_rows_per_unit():
    net = MLP([5, 4, 3], activation=("maxout", 3), backend="numpy")
    assert [w.shape for w in net.weights] == [(12, 5), (3, 4)]
    assert net.n_params == 12 * 5 + 12 + 3 * 4 + 3


def test_logistic_unit_predicts_one_exactly_where_x1_plus_x2_minus_3_is_nonnegative(mlp_backend):
    net = MLP([2, 1], output="sigmoid", backend=mlp_backend, dtype="float64")
    net.weights[0][:] = [[1.0, 1.0]]
    net.biases[0][:] = [-3.0]
    grid = np.stack(np.meshgrid(np.arange(-2, 5.01, 0.25), np.arange(-2, 5.01, 0.25)), -1)
    X = np.vstack([grid.reshape(-1, 2), np.random.default_rng(0).uniform(-5, 8, (500, 2))])
    expected = (X[:, 0] + X[:, 1] - 3 >= 0).astype(int)
    assert np.count_nonzero(X.sum(axis=1) == 3) > 10       # points on the boundary itself
    np.testing.assert_array_equal(net.predict(X), expected)
    np.testing.assert_array_equal(net.forward(X)[:, 0] >= 0.5, expected.astype(bool))


def test_initial_weights_are_normal_with_variance_one_over_fan_in():
    net = MLP([400, 300, 10], backend="numpy", dtype="float64", seed=5)
    w = net.weights[0]
    assert abs(w.mean()) < 0.01
    assert w.var() * 400 == pytest.approx(1.0, rel=0.02)
    assert all(not b.any() for b in net.biases)


def test_same_seed_same_weights_in_both_dtypes():
    a = MLP([6, 5, 3], backend="numpy", dtype="float64", seed=7)
    b = MLP([6, 5, 3], backend="numpy", dtype="float32", seed=7)
    c = MLP([6, 5, 3], backend="numpy", dtype="float64", seed=8)
    for wa, wb in zip(a.weights, b.weights):
        assert wb.dtype == np.float32
        np.testing.assert_array_equal(wa.astype(np.float32), wb)
    assert not np.array_equal(a.weights[0], c.weights[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output,k", [("softmax", 3), ("sigmoid", 2), ("identity", 2)])
def test_shapes_and_dtypes(output, k, dtype, mlp_backend):
    net = MLP([4, 6, k], activation="relu", output=output, backend=mlp_backend, dtype=dtype)
    X = np.random.default_rng(0).standard_normal((5, 4))     # float64 in, converted
    out = net.forward(X)
    assert out.shape == (5, k) and out.dtype == np.dtype(dtype)
    if output == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)
        assert net.predict(X).shape == (5,)
    elif output == "sigmoid":
        assert ((out > 0) & (out < 1)).all()
        assert set(np.unique(net.predict(X))) <= {0, 1}
    Y = {"softmax": [0, 1, 2, 0, 1], "sigmoid": np.eye(2)[[0, 1, 1, 0, 0]],
         "identity": np.ones((5, 2))}[output]
    dws, dbs = net.gradients(X, Y)
    assert [d.shape for d in dws] == [w.shape for w in net.weights]
    assert [d.shape for d in dbs] == [b.shape for b in net.biases]
    assert all(d.dtype == np.dtype(dtype) for d in dws + dbs)
    assert isinstance(net.loss(X, Y), float)


def test_float32_and_float64_agree():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    nets = [MLP([4, 8, 3], "tanh", backend="numpy", dtype=d, seed=2) for d in ("float32", "float64")]
    np.testing.assert_allclose(nets[0].forward(X), nets[1].forward(X), rtol=1e-5, atol=1e-6)
    for net in nets:
        net.fit(X, y, epochs=3, batch_size=5, lr=0.1)
    np.testing.assert_allclose(nets[0].weights[0], nets[1].weights[0], rtol=1e-4, atol=1e-5)


def test_loss_is_the_lecture_formula_plus_weight_decay():
    rng = np.random.default_rng(2)
    net = MLP([3, 4, 2], output="sigmoid", loss="quadratic", backend="numpy", dtype="float64")
    X, Y = rng.standard_normal((6, 3)), rng.integers(0, 2, (6, 2))
    a = net.forward(X)
    quadratic = 0.5 * np.sum((a - Y) ** 2) / 6
    penalty = 0.3 / 2 * sum(np.sum(w ** 2) for w in net.weights)
    assert net.loss(X, Y) == pytest.approx(quadratic, rel=1e-12)
    assert net.loss(X, Y, weight_decay=0.3) == pytest.approx(quadratic + penalty, rel=1e-12)


def test_cross_entropy_with_labels_equals_with_one_hot():
    rng = np.random.default_rng(3)
    net = MLP([3, 4, 3], backend="numpy", dtype="float64")
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    p = net.forward(X)
    assert net.loss(X, y) == pytest.approx(-np.mean(np.log(p[np.arange(6), y])), rel=1e-12)
    assert net.loss(X, np.eye(3)[y]) == pytest.approx(net.loss(X, y), rel=1e-12)
    assert net.score(X, np.eye(3)[y]) == net.score(X, y)


def test_step_returns_the_loss_before_the_update_and_follows_the_gradient():
    rng = np.random.default_rng(4)
    net = MLP([3, 5, 2], "tanh", backend="numpy", dtype="float64")
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 2, 8)
    before = net.loss(X, y, 0.01)
    dws, dbs = net.gradients(X, y, 0.01)
    expected = [w - 0.1 * dw for w, dw in zip(net.weights, dws)]
    assert net.step(X, y, lr=0.1, weight_decay=0.01) == pytest.approx(before, rel=1e-12)
    for w, e in zip(net.weights, expected):
        np.testing.assert_allclose(w, e, rtol=1e-12)
    assert net.loss(X, y, 0.01) < before


def test_logits_of_1e4_stay_finite():
    net = MLP([1, 2], backend="numpy", dtype="float32")
    net.weights[0][:] = [[1e4], [-1e4]]
    X, y = np.array([[1.0], [-1.0]]), np.array([1, 0])
    assert np.isfinite(net.loss(X, y)) and net.loss(X, y) > 1e3
    assert all(np.isfinite(d).all() for d in net.gradients(X, y)[0])
    sig = MLP([1, 1], output="sigmoid", backend="numpy", dtype="float32")
    sig.weights[0][:] = [[1e4]]
    assert np.isfinite(sig.loss(X, [0, 1])) and np.isfinite(sig.forward(X)).all()


def test_score_is_r2_for_an_identity_output():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 2))
    net = MLP([2, 1], output="identity", backend="numpy", dtype="float64")
    net.weights[0][:] = [[2.0, -1.0]]
    y = X @ [2.0, -1.0]
    assert net.score(X, y) == 1.0
    noisy = y + rng.standard_normal(50)
    expected = 1 - np.sum((noisy - y) ** 2) / np.sum((noisy - noisy.mean()) ** 2)
    assert net.score(X, noisy) == pytest.approx(expected, rel=1e-12)
    assert net.predict(X).shape == (50,)


def test_multilabel_sigmoid_score_counts_whole_rows():
    net = MLP([2, 2], output="sigmoid", backend="numpy", dtype="float64")
    net.weights[0][:] = np.eye(2)
    X = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    np.testing.assert_array_equal(net.predict(X), [[1, 1], [1, 0], [0, 0]])
    assert net.score(X, [[1, 1], [1, 1], [0, 0]]) == pytest.approx(2 / 3)


def test_empty_batch():
    net = MLP([3, 4, 2], backend="numpy")
    X = np.zeros((0, 3))
    assert net.forward(X).shape == (0, 2)
    assert net.loss(X, np.zeros(0, int)) == 0.0


def test_backend_can_be_switched_keeping_the_weights():
    net = MLP([3, 4, 2], backend="numpy")
    weights = net.weights
    with pytest.raises(ValueError) as err:
        net.backend = "cuda"
    assert "backend" in str(err.value)
    try:
        net.backend = "native"
    except RuntimeError as exc:     # fastmlp._core is not built
        assert "native" in str(exc)
        assert net.backend == "numpy"
    assert net.weights is weights


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(6)
    net = MLP([3, 5, 4, 4, 2], activation=[("leaky_relu", 0.2), ("maxout", 3), "tanh"],
              output="sigmoid", loss="quadratic", backend="numpy", dtype=dtype, seed=9)
    X, Y = rng.standard_normal((10, 3)), rng.integers(0, 2, (10, 2))
    net.fit(X, Y, epochs=2, batch_size=3, lr=0.1)
    net.save(tmp_path / "model.npz")
    again = MLP.load(tmp_path / "model.npz")
    assert repr(again) == repr(net)
    for a, b in zip(net.weights + net.biases, again.weights + again.biases):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.forward(X), again.forward(X))
    # the generator state travels too: both continue training identically
    net.fit(X, Y, epochs=1, batch_size=3, lr=0.1)
    again.fit(X, Y, epochs=1, batch_size=3, lr=0.1)
    np.testing.assert_array_equal(net.weights[0], again.weights[0])


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastmlp model"):
        MLP.load(tmp_path / "other.npz")
    net = MLP([2, 2], backend="numpy")
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    arrays["format_version"] = np.int64(99)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="format 99"):
        MLP.load(tmp_path / "future.npz")


def test_weights_can_be_assigned_with_checks():
    net = MLP([3, 2], backend="numpy", dtype="float32")
    net.weights = [np.ones((2, 3))]
    assert net.weights[0].dtype == np.float32 and net.weights[0].sum() == 6
    with pytest.raises(ValueError, match=r"weights\[0\]: expected shape \(2, 3\)"):
        net.weights = [np.ones((3, 2))]
    with pytest.raises(ValueError, match="biases: expected 1 arrays"):
        net.biases = []


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(sizes=[3]), ValueError, "sizes"),
    (dict(sizes=[3, 0, 2]), ValueError, "sizes"),
    (dict(sizes=[3, 2.5, 2]), ValueError, "sizes"),
    (dict(sizes="32"), ValueError, "sizes"),
    (dict(activation="swish"), ValueError, "unknown activation 'swish'"),
    (dict(activation=["relu", "tanh"]), ValueError, "one per hidden layer"),
    (dict(activation=("maxout", 0)), ValueError, "maxout pieces"),
    (dict(activation=("maxout", 2.5)), ValueError, "maxout pieces"),
    (dict(activation=("relu", 0.3)), ValueError, "takes no parameter"),
    (dict(activation=("elu", float("nan"))), ValueError, "elu parameter"),
    (dict(activation=3), TypeError, "activation"),
    (dict(output="tanh"), ValueError, "output"),
    (dict(output="softmax", loss="quadratic"), ValueError, "not supported"),
    (dict(output="identity", loss="binary_cross_entropy"), ValueError, "not supported"),
    (dict(sizes=[3, 4, 1], output="softmax"), ValueError, "at least 2 units"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(dtype="int32"), ValueError, "dtype"),
    (dict(backend="torch"), ValueError, "backend"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=1.5), ValueError, "seed"),
])
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    kwargs = {"sizes": [3, 4, 2], "backend": "numpy", **kwargs}
    with pytest.raises(error, match=match):
        MLP(**kwargs)


def test_activation_specs():
    net = MLP([2, 3, 3, 3, 3, 2], activation=["relu", ("leaky_relu", 0.3), "elu", "maxout"],
              backend="numpy")
    assert net.activations == [("relu", 0.0), ("leaky_relu", 0.3), ("elu", 1.0), ("maxout", 2)]
    assert MLP([2, 3, 2], "leaky_relu", backend="numpy").activations == [("leaky_relu", 0.1)]
    assert MLP([2, 3, 3, 2], ("maxout", 4), backend="numpy").activations == [("maxout", 4)] * 2


@pytest.mark.parametrize("X,error,match", [
    (np.zeros((4, 2)), ValueError, "3 features"),
    (np.zeros(3), ValueError, "2-D"),
    (np.array([["a", "b", "c"]]), TypeError, "real numbers"),
    (np.array([[1.0, np.nan, 0.0]]), ValueError, "NaN"),
])
def test_bad_X(X, error, match):
    net = MLP([3, 2], backend="numpy")
    with pytest.raises(error, match=match):
        net.forward(X)


@pytest.mark.parametrize("output,k,Y,match", [
    ("softmax", 3, [0, 1, 3], r"labels must be in 0\.\.2"),
    ("softmax", 3, [0, -1, 2], r"labels must be in 0\.\.2"),
    ("softmax", 3, [0.5, 1, 2], "whole numbers"),
    ("softmax", 3, [0, 1], "3 rows"),
    ("softmax", 3, np.ones((3, 3)), "sum to 1"),
    ("softmax", 3, np.eye(2)[[0, 1, 1]], "one-hot"),
    ("sigmoid", 2, [0, 1, 1], r"\(n, 2\)"),
    ("sigmoid", 2, np.full((3, 2), 2.0), r"in \[0, 1\]"),
    ("identity", 2, np.full((3, 2), np.inf), "NaN or infinity"),
])
def test_bad_Y(output, k, Y, match):
    net = MLP([2, k], output=output, backend="numpy")
    with pytest.raises(ValueError, match=match):
        net.loss(np.zeros((3, 2)), Y)


def test_bad_step_arguments():
    net = MLP([2, 2], backend="numpy")
    X, y = np.zeros((3, 2)), [0, 1, 1]
    for lr in (0, -0.1):
        with pytest.raises(ValueError, match="lr"):
            net.step(X, y, lr=lr)
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        net.step(X, y, lr=float("inf"))
    with pytest.raises(TypeError, match="lr: expected a real number"):
        net.step(X, y, lr="0.1")
    with pytest.raises(ValueError, match="weight_decay"):
        net.step(X, y, lr=0.1, weight_decay=-1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output,activation,batch_norm", [
    ("softmax", "relu", False), ("sigmoid", ("maxout", 3), False), ("identity", "tanh", True)])
def test_evaluation_in_chunks_of_rows_equals_the_whole_forward_pass(
        monkeypatch, mlp_backend, dtype, output, activation, batch_norm):
    """forward, predict, score and loss (evaluation) take the rows a chunk at a time on
    the native backend (equations.output_layer), whose kernels treat rows independently:
    the chunks change no bit. The NumPy backend takes them whole (its BLAS does not)."""
    from fastmlp import equations
    net = MLP([13, 40, 20, 3], activation=activation, output=output, batch_norm=batch_norm,
              backend=mlp_backend, dtype=dtype, seed=4)
    rng = np.random.default_rng(4)
    for mean, var in zip(net.running_means, net.running_vars):
        mean[:], var[:] = rng.normal(size=mean.shape), rng.uniform(0.5, 2, var.shape)
    X = rng.normal(size=(103, 13)).astype(dtype)
    _, z, out, _ = equations.forward(net._kernels, net, X)[-1]   # all 103 rows at once
    # 40 units x 8 bytes: 7 (float32: 15) rows a chunk, the last chunk short
    monkeypatch.setattr(equations, "EVAL_CHUNK_BYTES", 40 * 8 * 7)
    z_chunked, out_chunked = equations.output_layer(net._kernels, net, X)
    np.testing.assert_array_equal(z_chunked, z)
    np.testing.assert_array_equal(out_chunked, out)
    expected = net.forward(X)
    monkeypatch.setattr(equations, "EVAL_CHUNK_BYTES", 1 << 20)   # one chunk
    np.testing.assert_array_equal(net.forward(X), expected)
