"""Backpropagation agrees with central finite differences for every activation × output/loss."""
import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, gradcheck

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", ("leaky_relu", 0.2), "elu",
               ("elu", 0.5), "maxout", ("maxout", 3), "identity"]
OUTPUTS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
           ("sigmoid", "quadratic"), ("identity", "quadratic")]
TOL = 1e-5      # float64 with eps = 1e-5; a wrong derivative gives errors of order 1
EPS = 1e-5


def targets(output, n, k, rng):
    if output == "softmax":
        return rng.integers(0, k, n)
    if output == "sigmoid":
        return rng.integers(0, 2, (n, k)).astype(float)
    return rng.standard_normal((n, k))


def random_net(sizes, activation, output, loss, backend, rng):
    net = MLP(sizes, activation=activation, output=output, loss=loss, backend=backend,
              dtype="float64", seed=3)
    for b in net.biases:        # nonzero biases so their gradients are exercised too
        b[:] = 0.5 * rng.standard_normal(b.shape)
    return net


@pytest.mark.parametrize("output,loss", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_backprop_matches_finite_differences(activation, output, loss, weight_decay,
                                             mlp_backend):
    rng = np.random.default_rng(0)
    net = random_net([3, 5, 4, 3], activation, output, loss, mlp_backend, rng)
    X = rng.standard_normal((7, 3))
    Y = targets(output, 7, 3, rng)
    assert gradcheck(net, X, Y, weight_decay, eps=EPS) < TOL


@pytest.mark.parametrize("output,loss", OUTPUTS)
def test_deep_net_with_mixed_activations(output, loss, mlp_backend):
    rng = np.random.default_rng(1)
    net = random_net([4, 6, 5, 4, 3, 2], ["relu", ("maxout", 3), "tanh", ("elu", 0.7)],
                     output, loss, mlp_backend, rng)
    X = rng.standard_normal((9, 4))
    assert gradcheck(net, X, targets(output, 9, 2, rng), 0.05, eps=EPS) < TOL


def test_one_hot_labels_and_a_single_sigmoid_output(mlp_backend):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 3))
    softmax = random_net([3, 4, 3], "tanh", "softmax", None, mlp_backend, rng)
    assert gradcheck(softmax, X, np.eye(3)[rng.integers(0, 3, 6)], eps=EPS) < TOL
    logistic = random_net([3, 4, 1], "tanh", "sigmoid", None, mlp_backend, rng)
    assert gradcheck(logistic, X, rng.integers(0, 2, 6), eps=EPS) < TOL


def test_gradcheck_catches_a_wrong_gradient():
    class OffByOneBias(MLP):
        def gradients(self, X, Y, weight_decay=0.0):
            dws, dbs = super().gradients(X, Y, weight_decay)
            dbs[0][1] = -dbs[0][1]
            return dws, dbs

    rng = np.random.default_rng(3)
    net = OffByOneBias([3, 4, 2], "sigmoid", backend="numpy", dtype="float64")
    X = rng.standard_normal((5, 3))
    assert gradcheck(net, X, rng.integers(0, 2, 5)) > 0.5


def test_gradcheck_leaves_the_weights_unchanged():
    rng = np.random.default_rng(4)
    net = MLP([3, 4, 2], "relu", backend="numpy", dtype="float64")
    before = [w.copy() for w in net.weights + net.biases]
    gradcheck(net, rng.standard_normal((5, 3)), rng.integers(0, 2, 5))
    for old, new in zip(before, net.weights + net.biases):
        np.testing.assert_array_equal(old, new)


def test_gradcheck_rejects_a_bad_eps():
    net = MLP([2, 2], backend="numpy", dtype="float64")
    with pytest.raises(ValueError, match="eps"):
        fastmlp.gradcheck(net, np.zeros((1, 2)), [0], eps=0)
