"""fit(): History, shuffling, validation, early stopping, progress, argument checks."""
import sys

import numpy as np
import pytest

from fastmlp import MLP, History, data


def noisy_digits():
    """60 digits with 30% of the labels scrambled, and 400 clean ones to validate on:
    the network overfits, so validation loss falls, then rises."""
    X, y = data.load_digits()
    rng = np.random.default_rng(0)
    y_train = y[:60].copy()
    scrambled = rng.random(60) < 0.3
    y_train[scrambled] = rng.integers(0, 10, scrambled.sum())
    return (X[:60], y_train), (X[1000:1400], y[1000:1400])


def overfitting_net(backend="numpy"):
    return MLP([64, 64, 10], activation="relu", backend=backend, seed=0)


FIT = dict(batch_size=5, lr=0.1)


def test_history_has_one_entry_per_epoch():
    (X, y), val = noisy_digits()
    hist = overfitting_net().fit(X, y, epochs=4, validation_data=val, **FIT)
    assert isinstance(hist, History)
    for values in (hist.loss, hist.accuracy, hist.val_loss, hist.val_accuracy, hist.seconds):
        assert len(values) == 4 and all(isinstance(v, float) for v in values)
    assert hist.stopped_epoch is None
    assert hist.best_epoch == int(np.argmin(hist.val_loss))
    no_val = overfitting_net().fit(X, y, epochs=2, **FIT)
    assert no_val.val_loss == [] and no_val.val_accuracy == [] and no_val.best_epoch is None


def test_loss_and_accuracy_are_means_over_the_epochs_batches():
    (X, y), _ = noisy_digits()
    net, twin = overfitting_net(), overfitting_net()
    hist = net.fit(X, y, epochs=1, batch_size=25, lr=0.1, shuffle=False)
    losses = [twin.step(X[lo:lo + 25], y[lo:lo + 25], lr=0.1) for lo in (0, 25, 50)]
    assert hist.loss[0] == pytest.approx((25 * losses[0] + 25 * losses[1] + 10 * losses[2]) / 60)
    np.testing.assert_array_equal(net.weights[0], twin.weights[0])
    assert 0 <= hist.accuracy[0] <= 1


def test_validation_numbers_are_the_nets_loss_and_score():
    (X, y), (Xv, yv) = noisy_digits()
    net = overfitting_net()
    hist = net.fit(X, y, epochs=2, validation_data=(Xv, yv), weight_decay=1e-3, **FIT)
    assert hist.val_loss[-1] == pytest.approx(net.loss(Xv, yv, weight_decay=1e-3))
    assert hist.val_accuracy[-1] == net.score(Xv, yv)


def test_early_stopping_stops_after_patience_epochs_and_keeps_the_best_weights():
    (X, y), val = noisy_digits()
    net = overfitting_net()
    hist = net.fit(X, y, epochs=60, validation_data=val, patience=5, **FIT)
    best = hist.best_epoch
    assert 0 < best < 50, "the fixture should overfit after a few epochs"
    assert hist.stopped_epoch == best + 5
    assert len(hist.val_loss) == best + 6
    assert min(hist.val_loss[best + 1:]) >= hist.val_loss[best]
    assert min(hist.val_loss[:best]) > hist.val_loss[best]
    # the same net trained for best + 1 epochs (same seed: same shuffles) is what fit kept
    reference = overfitting_net()
    reference.fit(X, y, epochs=best + 1, **FIT)
    for kept, expected in zip(net.weights + net.biases, reference.weights + reference.biases):
        np.testing.assert_array_equal(kept, expected)
    assert net.loss(*val) == pytest.approx(hist.val_loss[best])


def test_without_patience_all_epochs_run_and_the_last_weights_stay():
    (X, y), val = noisy_digits()
    net = overfitting_net()
    hist = net.fit(X, y, epochs=25, validation_data=val, **FIT)
    assert len(hist.loss) == 25 and hist.stopped_epoch is None
    assert hist.best_epoch < 24
    assert net.loss(*val) == pytest.approx(hist.val_loss[-1])


def test_patience_reached_on_the_last_epoch_is_not_a_stop():
    (X, y), val = noisy_digits()
    probe = overfitting_net().fit(X, y, epochs=60, validation_data=val, patience=5, **FIT)
    net = overfitting_net()
    hist = net.fit(X, y, epochs=probe.stopped_epoch + 1, validation_data=val, patience=5, **FIT)
    assert hist.stopped_epoch is None and hist.best_epoch == probe.best_epoch
    assert net.loss(*val) == pytest.approx(hist.val_loss[hist.best_epoch])


def test_same_seed_same_training_and_shuffles_differ_between_epochs():
    (X, y), _ = noisy_digits()
    a, b, c = overfitting_net(), overfitting_net(), MLP([64, 64, 10], "relu", backend="numpy", seed=1)
    ha, hb = a.fit(X, y, epochs=3, **FIT), b.fit(X, y, epochs=3, **FIT)
    assert ha.loss == hb.loss
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    c.fit(X, y, epochs=3, **FIT)
    assert not np.array_equal(a.weights[0], c.weights[0])
    unshuffled = overfitting_net()
    unshuffled.fit(X, y, epochs=3, shuffle=False, **FIT)
    assert not np.array_equal(a.weights[0], unshuffled.weights[0])


@pytest.mark.parametrize("batch_size", [1, 7, 60, 1000])
def test_any_batch_size(batch_size):
    (X, y), _ = noisy_digits()
    hist = overfitting_net().fit(X, y, epochs=1, batch_size=batch_size, lr=0.05)
    assert np.isfinite(hist.loss[0])


def test_zero_epochs_changes_nothing():
    (X, y), _ = noisy_digits()
    net = overfitting_net()
    before = net.weights[0].copy()
    hist = net.fit(X, y, epochs=0)
    assert hist.loss == [] and hist.best_epoch is None
    np.testing.assert_array_equal(net.weights[0], before)


def test_progress_prints_a_line_per_epoch_without_tqdm(capsys, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    (X, y), val = noisy_digits()
    overfitting_net().fit(X, y, epochs=3, validation_data=val, progress=True, **FIT)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch    1") and "val_loss" in lines[0]


def test_progress_bar_with_tqdm_on_a_terminal(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    (X, y), _ = noisy_digits()
    overfitting_net().fit(X, y, epochs=2, progress=True, **FIT)
    out = capsys.readouterr()
    assert "epoch    2" in out.out and "epoch 2/2" in out.err


def test_progress_off_a_terminal_prints_only_the_lines(capsys):
    pytest.importorskip("tqdm")
    (X, y), _ = noisy_digits()
    overfitting_net().fit(X, y, epochs=2, progress=True, **FIT)
    out = capsys.readouterr()
    assert out.err == "" and "\r" not in out.out
    assert [line[:10] for line in out.out.splitlines()] == ["epoch    1", "epoch    2"]


def test_progress_callable_sees_the_history_after_each_epoch():
    (X, y), _ = noisy_digits()
    seen = []
    overfitting_net().fit(X, y, epochs=3, progress=lambda h: seen.append(len(h.loss)), **FIT)
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(epochs=2.0), ValueError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=0), ValueError, "lr"),
    (dict(lr="fast"), TypeError, "lr"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(patience=3), ValueError, "validation_data"),
    (dict(patience=0, validation_data=(np.zeros((2, 64)), [0, 1])), ValueError, "patience"),
    (dict(validation_data=np.zeros((2, 64))), TypeError, "validation_data"),
    (dict(validation_data=(np.zeros((2, 63)), [0, 1])), ValueError, "64 features"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(progress="bar"), TypeError, "progress"),
])
def test_fit_rejects_bad_arguments(kwargs, error, match):
    (X, y), _ = noisy_digits()
    with pytest.raises(error, match=match):
        overfitting_net().fit(X, y, **kwargs)


def test_fit_needs_rows():
    with pytest.raises(ValueError, match="at least one row"):
        overfitting_net().fit(np.zeros((0, 64)), np.zeros(0, int))
