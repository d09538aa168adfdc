"""The lecture's cases: a logistic unit learns a straight boundary and no more; one hidden
layer learns XOR and the half-moons."""
import numpy as np
import pytest

from fastmlp import MLP, data


def logistic_unit(backend):
    return MLP([2, 1], output="sigmoid", backend=backend, dtype="float64", seed=0)


def test_logistic_unit_separates_linearly_separable_blobs(mlp_backend):
    X, y = data.make_blobs(200, seed=0)
    net = logistic_unit(mlp_backend)
    net.fit(X, y, epochs=20, batch_size=10, lr=0.5)
    assert net.score(X, y) == 1.0


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_one_hidden_layer_learns_xor(output, mlp_backend):
    X, y = data.make_xor(200, seed=0)
    net = MLP([2, 4, 2 if output == "softmax" else 1], activation="tanh", output=output,
              backend=mlp_backend, dtype="float64", seed=0)
    net.fit(X, y, epochs=100, batch_size=10, lr=0.5)
    assert net.score(X, y) == 1.0


def test_logistic_unit_cannot_learn_xor(mlp_backend):
    X, y = data.make_xor(200, seed=0)
    net = logistic_unit(mlp_backend)
    net.fit(X, y, epochs=100, batch_size=10, lr=0.5)
    assert net.score(X, y) < 0.8


def test_one_hidden_layer_learns_the_half_moons_where_a_logistic_unit_cannot(mlp_backend):
    X, y = data.make_moons(600, noise=0.15, seed=1)
    (X_train, y_train), _, (X_test, y_test) = data.train_val_test_split(X, y, 0, 0.5, seed=1)
    net = MLP([2, 16, 2], activation="tanh", backend=mlp_backend, dtype="float64", seed=0)
    net.fit(X_train, y_train, epochs=100, batch_size=10, lr=0.2)
    assert net.score(X_test, y_test) >= 0.97
    unit = logistic_unit(mlp_backend)
    unit.fit(X_train, y_train, epochs=200, batch_size=10, lr=0.5)
    assert unit.score(X_train, y_train) < 0.9
    assert unit.score(X_test, y_test) < 0.9


def test_circles_need_a_hidden_layer(mlp_backend):
    X, y = data.make_circles(200, seed=0)
    net = MLP([2, 8, 1], activation="tanh", output="sigmoid", backend=mlp_backend,
              dtype="float64", seed=0)
    net.fit(X, y, epochs=100, batch_size=10, lr=0.5)
    assert net.score(X, y) == 1.0


def test_regression_fits_a_smooth_curve(mlp_backend):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (200, 1))
    y = np.sin(2 * X[:, 0])
    net = MLP([1, 16, 1], activation="tanh", output="identity", backend=mlp_backend,
              dtype="float64", seed=0)
    net.fit(X, y, epochs=200, batch_size=10, lr=0.05)
    assert net.score(X, y) > 0.95


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", ("maxout", 3), "sigmoid"])
def test_every_activation_learns_the_digits(activation, mlp_backend):
    X, y = data.load_digits()
    (X_train, y_train), _, (X_test, y_test) = data.train_val_test_split(X, y, 0, 0.25, seed=0)
    net = MLP([64, 32, 10], activation=activation, backend=mlp_backend, seed=0)
    lr = 0.5 if activation == "sigmoid" else 0.1
    net.fit(X_train, y_train, epochs=10, batch_size=10, lr=lr)
    assert net.score(X_test, y_test) > 0.9


def test_multilabel_sigmoid_learns_two_independent_labels(mlp_backend):
    X, y = data.make_xor(400, seed=1)
    Y = np.column_stack([y, X[:, 0] > 0.5])       # "xor" and "x1 is high", not exclusive
    net = MLP([2, 8, 2], activation="tanh", output="sigmoid", backend=mlp_backend,
              dtype="float64", seed=0)
    net.fit(X, Y, epochs=100, batch_size=10, lr=0.5)
    assert net.score(X, Y) == 1.0
