"""Dropout: inverted dropout of hidden units while training, with masks from a counter-based
generator (fastmlp.reference.dropout) that both backends compute bit for bit."""
import json

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, data, gradcheck, native_training, numpy_training, optim
from fastmlp.checks import check_Y
from fastmlp.reference.dropout import dropout_forward, dropout_key

from conftest import MLP_BACKENDS, native_skip_reason

needs_native = pytest.mark.skipif(native_skip_reason() is not None,
                                  reason=str(native_skip_reason()))
HIDDEN = ["sigmoid", "relu", ("elu", 0.5), "identity", ("maxout", 3)]


def digits(dtype="float64"):
    return data.load_digits(dtype)


def params_of(net):
    return net.weights + net.biases


def assert_bitwise(a_list, b_list):
    for a, b in zip(a_list, b_list, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- the generator

def test_keep_fraction_is_one_minus_p_and_units_rows_and_steps_are_independent():
    """200k units per rate: the kept fraction's standard error is about 0.001, so 0.005 is
    five of them; neighbouring units, rows, layers and steps each agree as often as two
    independent draws would ((1-p)^2 + p^2), which a generator that ignored any of its
    inputs would fail."""
    ones = np.ones((400, 500))
    for p in (0.1, 0.5, 0.8):
        _, mask = dropout_forward(ones, dropout_key(7, 3, 0), 0, p)
        kept = mask > 0
        assert abs(kept.mean() - (1 - p)) < 0.005, (p, kept.mean())
        np.testing.assert_array_equal(mask[kept], 1 / (1 - p))
        same = (1 - p) ** 2 + p ** 2
        others = {"unit": kept[:, 1:] == kept[:, :-1], "row": kept[1:] == kept[:-1],
                  "step": dropout_forward(ones, dropout_key(7, 4, 0), 0, p)[1] > 0,
                  "layer": dropout_forward(ones, dropout_key(7, 3, 1), 0, p)[1] > 0,
                  "seed": dropout_forward(ones, dropout_key(8, 3, 0), 0, p)[1] > 0}
        for what, other in others.items():
            agree = other.mean() if what in ("unit", "row") else (other == kept).mean()
            assert abs(agree - same) < 0.006, (p, what, agree, same)


def test_a_row_offset_gives_the_rows_of_the_whole_batch():
    a = np.random.default_rng(0).standard_normal((10, 6))
    whole = dropout_forward(a, 99, 0, 0.4)
    for lo, hi in ((0, 3), (3, 10), (7, 8)):
        part = dropout_forward(a[lo:hi], 99, lo, 0.4)
        for got, want in zip(part, whole):
            np.testing.assert_array_equal(got, want[lo:hi])


# ---------------------------------------------------------------- the model's option

@pytest.mark.parametrize("dropout,error,match", [
    (1.0, ValueError, r"^dropout: expected a rate in \[0, 1\)"),
    (-0.1, ValueError, r"^dropout: expected a rate in \[0, 1\)"),
    (float("nan"), ValueError, r"^dropout: expected a rate in \[0, 1\)"),
    ("0.2", TypeError, r"^dropout: expected a rate in \[0, 1\), got '0.2'"),
    (True, TypeError, r"^dropout: expected a rate"),
    (None, TypeError, r"^dropout: expected a rate"),
    ([0.2], ValueError, r"^dropout: expected one rate per hidden layer \(2\), got 1"),
    ([0.2, 1.5], ValueError, r"^dropout\[1\]: expected a rate in \[0, 1\)"),
])
def test_bad_rates_are_refused_with_the_argument_named(dropout, error, match):
    with pytest.raises(error, match=match):
        MLP([4, 5, 5, 2], dropout=dropout)


def test_rates_per_layer_and_repr():
    net = MLP([4, 5, 6, 2], dropout=[0.5, 0])
    assert net.dropout == [0.5, 0.0]
    assert "dropout=[0.5, 0.0]" in repr(net)
    assert MLP([4, 5, 6, 2], dropout=0.25).dropout == [0.25, 0.25]
    assert "dropout" not in repr(MLP([4, 5, 2]))


def test_evaluation_uses_every_unit_unscaled(mlp_backend):
    X, y = digits()
    net = MLP([64, 30, 20, 10], activation="relu", backend=mlp_backend, dtype="float64",
              dropout=0.5)
    net.fit(X[:300], y[:300], epochs=1, batch_size=20, lr=0.1)
    plain = MLP([64, 30, 20, 10], activation="relu", backend=mlp_backend, dtype="float64")
    plain.weights, plain.biases = net.weights, net.biases
    np.testing.assert_array_equal(net.forward(X), plain.forward(X))
    np.testing.assert_array_equal(net.predict(X), plain.predict(X))
    assert net.loss(X, y) == plain.loss(X, y) and net.score(X, y) == plain.score(X, y)
    assert net.loss(X, y, dropout_step=1) != net.loss(X, y)


def test_rate_zero_trains_exactly_as_no_dropout(mlp_backend):
    X, y = digits()
    nets = [MLP([64, 20, 10], activation="relu", backend=mlp_backend, **kw)
            for kw in ({}, {"dropout": 0.0})]
    for net in nets:
        net.fit(X, y, epochs=2, batch_size=32, optimizer=optim.Adam(0.01))
    assert_bitwise(params_of(nets[0]), params_of(nets[1]))


def test_training_applies_the_masks_of_the_update_number(mlp_backend):
    """A plain SGD step moves the weights by lr times the gradients with the masks of update
    number optimizer.state["step"] + 1, which net.gradients(dropout_step=...) gives."""
    X, y = digits()
    X, y = X[:50], y[:50]
    net = MLP([64, 20, 15, 10], activation="tanh", backend=mlp_backend, dtype="float64",
              dropout=[0.3, 0.6])
    sgd = optim.SGD(0.5)
    net.step(X, y, optimizer=sgd)   # update 1
    before = [p.copy() for p in params_of(net)]
    dws, dbs = net.gradients(X, y, dropout_step=2)
    other_w, _ = net.gradients(X, y, dropout_step=3)
    net.step(X, y, optimizer=sgd)   # update 2
    for old, g, new in zip(before, dws + dbs, params_of(net)):
        np.testing.assert_allclose(new, old - 0.5 * g, rtol=1e-12, atol=1e-15)
    assert not np.allclose(other_w[0], dws[0])   # other masks, other gradients


@pytest.mark.parametrize("activation", HIDDEN, ids=str)
def test_gradients_with_a_fixed_mask_pass_the_gradient_check(activation, mlp_backend):
    rng = np.random.default_rng(1)
    net = MLP([3, 6, 5, 3], activation=activation, backend=mlp_backend, dtype="float64",
              seed=2, dropout=[0.3, 0.5])
    for b in net.biases:
        b[:] = 0.5 * rng.standard_normal(b.shape)
    X, Y = rng.standard_normal((8, 3)), rng.integers(0, 3, 8)
    assert gradcheck(net, X, Y, weight_decay=0.01, eps=1e-5, dropout_step=4) < 1e-5
    # without the fixed mask, the gradients are of another function
    assert gradcheck(net, X, Y, eps=1e-5) < 1e-5
    with_mask = net.gradients(X, Y, dropout_step=4)[0][0]
    assert not np.allclose(with_mask, net.gradients(X, Y)[0][0])


def test_a_bad_dropout_step_is_refused():
    net = MLP([3, 4, 2], dropout=0.5)
    with pytest.raises(ValueError, match=r"^dropout_step: expected an integer >= 0"):
        net.gradients(np.zeros((2, 3)), [0, 1], dropout_step=-1)
    with pytest.raises(ValueError, match=r"^dropout_step: expected an integer >= 0"):
        net.loss(np.zeros((2, 3)), [0, 1], dropout_step=1.5)


# ---------------------------------------------------------------- both backends, bitwise masks

@needs_native
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("activation", HIDDEN, ids=str)
def test_float64_fits_match_the_reference(activation, rule):
    X, y = digits()
    make = {"sgd": lambda: optim.SGD(0.1, weight_decay=1e-3),
            "momentum": lambda: optim.SGD(0.05, momentum=0.9, nesterov=True),
            "adam": lambda: optim.Adam(0.003)}[rule]
    nets = [MLP([64, 24, 16, 10], activation=activation, backend=b, dtype="float64", seed=3,
                dropout=[0.2, 0.5]) for b in ("numpy", "native")]
    hists = [net.fit(X, y, epochs=2, batch_size=16, optimizer=make()) for net in nets]
    np.testing.assert_allclose(hists[1].loss, hists[0].loss, rtol=1e-9)
    for got, want in zip(params_of(nets[1]), params_of(nets[0])):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@needs_native
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", HIDDEN, ids=str)
def test_a_cpp_step_is_bitwise_the_python_loop_over_the_native_kernels(activation, dtype):
    """The C++ step fuses the masks into the layer's epilogues; the Python loop applies
    the native kernel dropout_forward and multiplies δ by the mask: the same numbers."""
    X, y = digits(dtype)
    cpp, py = (MLP([64, 12, 9, 10], activation=activation, dtype=dtype, seed=1,
                   dropout=[0.3, 0.5]) for _ in range(2))
    Y = check_Y(py, y[:40], 40)
    opts = [optim.SGD(0.3, weight_decay=0.01) for _ in range(2)]
    for _ in range(3):
        got = native_training.step(cpp, X[:40], Y, opts[0], 0.3)
        want = numpy_training.step(py, X[:40], Y, opts[1], 0.3)
        assert got[0] == pytest.approx(want[0], rel=1e-6) and got[1] == want[1]
    assert_bitwise(params_of(cpp), params_of(py))


@needs_native
def test_a_cpp_epoch_is_bitwise_one_cpp_step_per_batch():
    X, y = digits()
    epoch_net, step_net = (MLP([64, 30, 10], activation="relu", seed=2, dropout=0.4,
                               dtype="float64")
                           for _ in range(2))
    order = np.random.default_rng(0).permutation(len(X))
    opts = [optim.SGD(0.1) for _ in range(2)]
    native_training.epoch(epoch_net, X, y, order, 16, opts[0], 0.1, None)
    for lo in range(0, len(X), 16):
        rows = order[lo:lo + 16]
        native_training.step(step_net, X[rows], y[rows], opts[1], 0.1)
    assert_bitwise(params_of(epoch_net), params_of(step_net))


@needs_native
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_and_two_threads_train_bitwise_identical_weights(dtype):
    X, y = digits(dtype)
    results = []
    before = fastmlp.build_info()["num_threads"]
    try:
        for threads in (1, 2):
            fastmlp.set_num_threads(threads)
            net = MLP([64, 384, 256, 10], activation="relu", dtype=dtype, seed=0, dropout=0.3)
            net.fit(X, y, epochs=1, batch_size=200, lr=0.05)
            results.append(params_of(net))
    finally:
        fastmlp.set_num_threads(before)
    assert_bitwise(*results)


# ---------------------------------------------------------------- state: resume, save, undo

@pytest.mark.parametrize("backend", MLP_BACKENDS)
def test_fit_2_save_load_fit_2_equals_fit_4(backend, tmp_path):
    X, y = digits()
    X, y = X[:400], y[:400]

    def make():
        return MLP([64, 20, 10], activation="relu", backend=backend, seed=None, dropout=0.3)
    whole = make()
    half = make()
    half.weights, half.biases = whole.weights, whole.biases
    half.mask_seed, half._rng = whole.mask_seed, np.random.default_rng(4)
    whole._rng = np.random.default_rng(4)
    whole.fit(X, y, epochs=4, batch_size=25, optimizer=optim.SGD(0.1, momentum=0.9))
    half.fit(X, y, epochs=2, batch_size=25, optimizer=optim.SGD(0.1, momentum=0.9))
    half.save(tmp_path / "half.npz")
    again = MLP.load(tmp_path / "half.npz")
    assert again.dropout == [0.3] and again.mask_seed == whole.mask_seed
    again.fit(X, y, epochs=2, batch_size=25, optimizer=again.optimizer)
    assert_bitwise(params_of(whole), params_of(again))


def test_a_file_written_before_dropout_loads_without_it(tmp_path):
    net = MLP([4, 5, 3], seed=9)
    net.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    config = json.loads(str(arrays["config"]))
    del config["dropout"], config["mask_seed"]
    arrays["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "old.npz", **arrays)
    old = MLP.load(tmp_path / "old.npz")
    assert old.dropout == [0.0] and old.mask_seed == 9


def test_a_file_with_a_bad_rate_is_refused(tmp_path):
    MLP([4, 5, 3]).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    config = json.loads(str(arrays["config"]))
    config["dropout"] = [1.5]
    arrays["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad.npz'\): .*dropout\[0\]: expected a rate in \[0, 1\)"):
        MLP.load(tmp_path / "bad.npz")


def test_a_failed_epoch_is_undone_counter_included_and_training_continues_the_same(
        mlp_backend):
    """The masks' counter is the optimizer's step count, which the rollback restores: after
    a failed epoch, the next one uses the masks it would have used."""
    X, y = digits()
    X, y = X[:300], y[:300]
    bad_X = X.copy()
    bad_X[-1, 0] = np.nan   # the native epoch finds it in its last batch, after 9 updates

    def make():
        return MLP([64, 20, 10], activation="relu", backend=mlp_backend, seed=5, dropout=0.5)
    clean, broken = make(), make()
    fit = dict(batch_size=30, lr=0.1, shuffle=False)
    clean.fit(X, y, epochs=2, **fit)
    broken.fit(X, y, epochs=1, **fit)
    before = [p.copy() for p in params_of(broken)]
    with pytest.raises(ValueError, match="NaN"):
        broken.fit(bad_X, y, epochs=1, **fit)
    assert broken.optimizer.state["step"] == 10
    assert_bitwise(before, params_of(broken))
    broken.fit(X, y, epochs=1, **fit)
    assert_bitwise(params_of(clean), params_of(broken))
