"""Every plot renders headless (Agg) to a real PNG of sensible size."""
import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from fastmlp import MLP, plots  # noqa: E402
from fastmlp.data import load_digits, make_blobs, make_xor  # noqa: E402
from fastmlp.training import History  # noqa: E402


def png_size(path):
    """(width, height) from the PNG signature and IHDR chunk; fails on anything else."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_png(path, fig, min_px=200, max_px=2500):
    width, height = png_size(path)
    assert min_px <= width <= max_px and min_px <= height <= max_px, (width, height)
    dpi = fig.get_dpi()
    assert (width, height) == (round(fig.get_figwidth() * dpi), round(fig.get_figheight() * dpi))
    assert path.stat().st_size < 300_000   # small enough for the README


def test_training_curves(tmp_path):
    X, y = load_digits()
    net = MLP([64, 30, 10], backend="numpy", seed=0)
    hist = net.fit(X[:300], y[:300], epochs=8, batch_size=10, lr=0.5,
                   validation_data=(X[1500:], y[1500:]), patience=2)
    fig = plots.training_curves(hist, path=tmp_path / "curves.png")
    check_png(tmp_path / "curves.png", fig)
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()][:2] == ["train", "validation"]
    # the best epoch is marked where the validation loss is lowest (epochs drawn from 1)
    best_line = [line for line in loss_ax.get_lines() if line.get_label().startswith("best")][0]
    assert best_line.get_xdata()[0] == np.argmin(hist.val_loss) + 1


def test_training_curves_without_validation(tmp_path):
    fig = plots.training_curves(History(loss=[1.0, 0.5], accuracy=[0.5, 0.8]),
                                path=tmp_path / "c.png")
    check_png(tmp_path / "c.png", fig)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train"]


def test_logistic_vs_mlp(tmp_path):
    cases = {"blobs": make_blobs(60, seed=0), "XOR": make_xor(60, seed=0)}
    fig = plots.logistic_vs_mlp(cases, hidden=(8,), epochs=60, path=tmp_path / "b.png")
    check_png(tmp_path / "b.png", fig)
    titles = [ax.get_title() for ax in fig.axes]   # row by row: logistic units, then MLPs
    assert len(titles) == 4 and "blobs: logistic unit" in titles[0]
    assert "XOR: MLP 2-8-1" in titles[3]
    # the point of the picture: one straight line cannot do XOR, a hidden layer can
    accuracy = [float(t.split("accuracy ")[1].rstrip("%")) for t in titles]
    assert accuracy[0] == 100 and accuracy[1] < 80 and accuracy[3] > 90


def test_weight_templates(tmp_path):
    net = MLP([64, 12, 10], backend="numpy", seed=0)
    fig = plots.weight_templates(net, path=tmp_path / "w.png", title="templates")
    check_png(tmp_path / "w.png", fig, min_px=100)
    assert sum(bool(ax.images) for ax in fig.axes) == 12
    with pytest.raises(ValueError, match="image_shape"):
        plots.weight_templates(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="image_shape"):
        plots.weight_templates(np.zeros((3, 10)), image_shape=(3, 3))


def test_universal_approximation(tmp_path):
    fig = plots.universal_approximation(path=tmp_path / "u.png")
    check_png(tmp_path / "u.png", fig)
    x = np.linspace(0, 1, 500)
    errors = [np.abs(plots.tower_forward(plots.tower_network(plots.wiggly, n), x)
                     - plots.wiggly(x)).max() for n in (5, 20, 60, 200)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.02


def test_tower_network_is_an_mlp():
    """The towers are a plain 1-2n-1 sigmoid/identity MLP: fastmlp computes the same curve."""
    params = plots.tower_network(np.cos, 4)
    net = MLP([1, 8, 1], activation="sigmoid", output="identity", backend="numpy",
              dtype="float64")
    net.weights, net.biases = [params[0], params[2]], [params[1], params[3]]
    x = np.linspace(0, 1, 50)
    np.testing.assert_allclose(net.forward(x[:, None])[:, 0], plots.tower_forward(params, x),
                               rtol=1e-12, atol=1e-12)


def test_gradient_norms_show_the_vanishing_gradient_and_relu_curing_it(tmp_path):
    X, y = load_digits()
    sizes = [64, 30, 30, 30, 30, 30, 10]
    sigmoid = MLP(sizes, activation="sigmoid", backend="numpy", seed=0)
    relu = MLP(sizes, activation="relu", backend="numpy", seed=0)
    before = [w.copy() for w in sigmoid.weights]
    norms, accuracy = plots.gradient_norm_history(sigmoid, X, y, epochs=3)
    assert norms.shape == (4, 6) and accuracy.shape == (4,)
    # the front layer's gradient is orders of magnitude below the last one's, all along
    assert (norms[:, 0] < norms[:, -1] / 100).all(), norms
    relu_norms, relu_accuracy = plots.gradient_norm_history(relu, X, y, epochs=3, lr=0.05)
    assert (relu_norms[1:, 0] > relu_norms[1:, -1] / 10).all(), relu_norms
    assert relu_accuracy[-1] > 0.8 > 0.2 > accuracy[-1]
    normalised = MLP(sizes, activation="sigmoid", backend="numpy", seed=0, batch_norm=True)
    bn_norms, bn_accuracy = plots.gradient_norm_history(normalised, X, y, epochs=3)
    assert (bn_norms[:, 0] > bn_norms[:, -1] / 10).all() and bn_accuracy[-1] > 0.8, bn_norms
    for w, b in zip(sigmoid.weights, before):   # a copy was trained
        np.testing.assert_array_equal(w, b)
    fig = plots.gradient_norms({"sigmoid": sigmoid, "relu": relu}, X, y, epochs=2,
                               lr={"sigmoid": 0.5, "relu": 0.05}, path=tmp_path / "g.png")
    check_png(tmp_path / "g.png", fig)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == [
        f"W({l})" for l in range(1, 7)]
    assert "sigmoid" in fig.axes[0].get_title() and "relu" in fig.axes[1].get_title()
