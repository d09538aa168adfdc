"""Sample weights, the per-sample weight decay (scikit-learn's alpha), the exp output with the
Poisson loss, and the weight initialisers: what the scikit-learn estimators build on, held to
their definitions on both backends."""
import numpy as np
import pytest

import fastmlp
from fastmlp import optim, training

from conftest import MLP_BACKENDS, native_skip_reason

# output -> (loss, targets for X of n rows and K outputs)
RNG = np.random.default_rng(0)
X = RNG.standard_normal((23, 5))
OUTPUTS = {
    "softmax": RNG.integers(0, 3, 23),
    "sigmoid": (RNG.random((23, 3)) < 0.5).astype(float),
    "identity": RNG.standard_normal((23, 3)),
    "exp": RNG.poisson(2.0, (23, 3)).astype(float),
}
WEIGHTS = RNG.integers(0, 4, 23)   # whole numbers, zeros among them


def new_net(output, backend, dtype="float64", seed=0):
    return fastmlp.MLP([5, 7, 3], activation="tanh", output=output, backend=backend,
                       dtype=dtype, seed=seed)


@pytest.mark.parametrize("backend", MLP_BACKENDS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_whole_number_weights_repeat_rows(output, backend):
    """A weight of w counts a row as w copies of it (0: as if it were not there): the loss and
    its gradients of the weighted batch equal those of the batch with rows repeated."""
    net, Y = new_net(output, backend), OUTPUTS[output]
    repeat = np.repeat(np.arange(len(X)), WEIGHTS)
    loss = net.loss(X, Y, 1e-3, sample_weight=WEIGHTS)
    np.testing.assert_allclose(loss, net.loss(X[repeat], Y[repeat], 1e-3), rtol=1e-12)
    weighted = net.gradients(X, Y, 1e-3, sample_weight=WEIGHTS)
    repeated = net.gradients(X[repeat], Y[repeat], 1e-3)
    for g, r in zip(weighted[0] + weighted[1], repeated[0] + repeated[1]):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_all_zero_weights_give_nothing_to_learn(backend):
    net = new_net("softmax", backend)
    zeros = np.zeros(len(X))
    assert net.loss(X, OUTPUTS["softmax"], sample_weight=zeros) == 0.0
    dws, dbs = net.gradients(X, OUTPUTS["softmax"], sample_weight=zeros)
    assert not any(g.any() for g in dws + dbs)


def sklearn_rule(name):
    """An optimizer with scikit-learn's alpha = 0.01: per-sample weight decay."""
    if name == "sgd":
        return optim.SGD(0.05, weight_decay=0.01, decay_per_sample=True)
    if name == "momentum":
        return optim.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
                         decay_per_sample=True)
    return optim.Adam(0.01, weight_decay=0.01, decay_per_sample=True)


@pytest.mark.skipif(native_skip_reason() is not None, reason=str(native_skip_reason()))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_native_epochs_equal_the_twin(output, rule, weighted):
    """Shuffled epochs with a last, smaller batch: the C++ trainer and numpy_training gather
    the same weights, size each batch's decay the same way, and end with the same model."""
    Y, sw = OUTPUTS[output], WEIGHTS.astype(float) if weighted else None
    nets = [new_net(output, b) for b in ("numpy", "native")]
    histories = [net.fit(X, Y, epochs=4, batch_size=5, optimizer=sklearn_rule(rule),
                         sample_weight=sw) for net in nets]
    np.testing.assert_allclose(histories[1].loss, histories[0].loss, rtol=1e-10)
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", MLP_BACKENDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_per_sample_decay_divides_by_the_batch_weight(backend, weighted):
    """One step with decay_per_sample is the step with weight_decay / Σ w of the batch (its
    rows without weights), J's penalty too."""
    Y = OUTPUTS["identity"]
    sw = WEIGHTS.astype(float) if weighted else None
    batch_weight = WEIGHTS.sum() if weighted else len(X)
    per_sample, plain = new_net("identity", backend), new_net("identity", backend)
    j1 = per_sample.step(X, Y, optimizer=optim.SGD(0.1, weight_decay=0.3, decay_per_sample=True),
                         sample_weight=sw)
    j2 = plain.step(X, Y, optimizer=optim.SGD(0.1, weight_decay=0.3 / batch_weight),
                    sample_weight=sw)
    assert j1 == pytest.approx(j2, rel=1e-12)
    for a, b in zip(per_sample.weights, plain.weights):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_exp_output_is_poisson_regression(backend):
    net, Y = new_net("exp", backend), OUTPUTS["exp"]
    assert net.loss_name == "poisson"
    hidden = np.tanh(X @ net.weights[0].T + net.biases[0])
    mean = np.exp(hidden @ net.weights[1].T + net.biases[1])
    np.testing.assert_allclose(net.forward(X), mean, rtol=1e-12)
    np.testing.assert_allclose(net.predict(X), mean, rtol=1e-12)
    xlogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1)), 0)
    deviance = (xlogy - Y * np.log(mean) - Y + mean).sum(axis=1).mean()
    assert net.loss(X, Y) == pytest.approx(deviance, rel=1e-12)
    assert fastmlp.gradcheck(net, X, Y) < 1e-6
    with pytest.raises(ValueError, match="Y: Poisson targets"):
        net.loss(X, -Y - 1)
    hist = net.fit(X, Y, epochs=50, batch_size=8, optimizer="adam", lr=0.01)
    assert hist.loss[-1] < hist.loss[0] / 2


@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_bad_sample_weights_are_refused(backend):
    net, Y = new_net("softmax", backend), OUTPUTS["softmax"]
    before = [w.copy() for w in net.weights]
    for bad, match in [(-WEIGHTS - 1, "finite weights >= 0"), (np.full(23, np.nan), "finite"),
                       (WEIGHTS[:5], r"shape \(23,\)"), (np.array(["a"] * 23), "real numbers")]:
        for call in (lambda: net.fit(X, Y, epochs=1, lr=0.1, sample_weight=bad),
                     lambda: net.step(X, Y, lr=0.1, sample_weight=bad),
                     lambda: net.loss(X, Y, sample_weight=bad)):
            with pytest.raises((ValueError, TypeError), match="sample_weight: .*" + match):
                call()
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="decay_per_sample"):
        optim.SGD(0.1, decay_per_sample="yes")


@pytest.mark.parametrize("init, check", [
    ("glorot_uniform", lambda w, fan_in, fan_out: np.abs(w).max() <= np.sqrt(6 / (fan_in + fan_out))
     and w.std() == pytest.approx(np.sqrt(2 / (fan_in + fan_out)), rel=0.05)),
    ("glorot_normal", lambda w, fan_in, fan_out:
     w.std() == pytest.approx(np.sqrt(2 / (fan_in + fan_out)), rel=0.05)),
    ("he_normal", lambda w, fan_in, fan_out: w.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.05)),
    ("he_uniform", lambda w, fan_in, fan_out: np.abs(w).max() <= np.sqrt(6 / fan_in)
     and w.std() == pytest.approx(np.sqrt(2 / fan_in), rel=0.05)),
    ("lecun_normal", lambda w, fan_in, fan_out: w.std() == pytest.approx(np.sqrt(1 / fan_in), rel=0.05)),
])
def test_initialisers_draw_their_distributions(init, check):
    net = fastmlp.MLP([300, 200, 10], init=init, backend="numpy", dtype="float64", seed=1)
    for w in net.weights:
        assert check(w, w.shape[1], w.shape[0]), (init, w.shape)
    assert not any(b.any() for b in net.biases)
    default = fastmlp.MLP([300, 200, 10], backend="numpy", seed=1)
    same = fastmlp.MLP([300, 200, 10], init="lecun_normal", backend="numpy", seed=1)
    for a, b in zip(default.weights, same.weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="init: expected one of"):
        fastmlp.MLP([3, 2], init="xavier")


@pytest.mark.skipif(native_skip_reason() is not None, reason=str(native_skip_reason()))
@pytest.mark.parametrize("regularizer", [dict(dropout=0.3), dict(batch_norm=True),
                                         dict(dropout=0.2, batch_norm=[True])],
                         ids=["dropout", "batch_norm", "both"])
def test_weighted_epochs_with_dropout_and_batch_norm_equal_the_twin(regularizer):
    """Sample weights and the per-sample decay alongside dropout's masks and batch norm's
    statistics (the weights do not enter the statistics: as torch, they normalise over
    the batch's rows)."""
    Y, sw = OUTPUTS["softmax"], WEIGHTS.astype(float) + 0.5
    nets = [fastmlp.MLP([5, 7, 3], activation="tanh", backend=b, dtype="float64", seed=0,
                        **regularizer) for b in ("numpy", "native")]
    histories = [net.fit(X, Y, epochs=3, batch_size=6, optimizer=sklearn_rule("adam"),
                         sample_weight=sw) for net in nets]
    np.testing.assert_allclose(histories[1].loss, histories[0].loss, rtol=1e-10)
    # atol: the bias before a batch norm has no gradient in exact arithmetic; its updates
    # are rounding, ~1e-11, that the backends round differently
    for a, b in zip(training.model_state(nets[0]), training.model_state(nets[1])):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)
