"""An MLP written as a computational graph agrees with fastmlp.MLP's hand-derived backprop,
and the nn layers + SGD actually train an MLP and a small conv net."""
import numpy as np
import pytest

import fastmlp
from fastmlp import autograd
from fastmlp.autograd import Tensor, nn
from test_autograd import use_backend

MLP = getattr(fastmlp, "MLP", None)

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", ("leaky_relu", 0.25), "elu", ("elu", 0.5),
          "identity", ("maxout", 3)]
# output, loss, the graph's loss on the last pre-activation z
OUTPUTS = {
    "softmax+cross_entropy": ("softmax", None, autograd.softmax_cross_entropy),
    "sigmoid+binary_cross_entropy": ("sigmoid", None, autograd.sigmoid_binary_cross_entropy),
    "sigmoid+quadratic": ("sigmoid", "quadratic",
                          lambda z, y: autograd.quadratic_loss(autograd.sigmoid(z), y)),
    "identity+quadratic": ("identity", None, autograd.quadratic_loss),
}


def targets(output, n, k, rng):
    if output == "softmax":
        return rng.integers(0, k, n)
    if output == "sigmoid":
        return (rng.random((n, k)) > 0.5).astype(np.float64)
    return rng.standard_normal((n, k))


def hidden_layer(spec):
    name, param = (spec, None) if isinstance(spec, str) else spec
    return nn.Maxout(param) if name == "maxout" else nn.Activation(name, param)


def graph_of(net, activation):
    """nn.Sequential holding copies of net's weights: Linear, f, Linear, f, …, Linear."""
    layers = []
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        linear = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
        linear.weight.data[...] = w
        linear.bias.data[...] = b
        layers.append(linear)
        if l < len(net.weights) - 1:
            layers.append(hidden_layer(activation))
    return nn.Sequential(*layers)


@pytest.mark.skipif(MLP is None, reason="fastmlp.MLP has not landed on this branch yet")
@pytest.mark.parametrize("backend", ["numpy", "native"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", HIDDEN, ids=str)
def test_graph_matches_hand_derived_backprop(activation, output, backend):
    out_name, loss_name, graph_loss = OUTPUTS[output]
    weight_decay = 0.03
    rng = np.random.default_rng(5)
    X = rng.standard_normal((7, 5))
    Y = targets(out_name, 7, 3, rng)
    selected = use_backend(backend, fastmlp.KERNEL_NAMES)   # MLP(backend=...) needs them all
    net = MLP([5, 4, 4, 3], activation=activation, output=out_name, loss=loss_name,
              backend=backend, dtype="float64", seed=3)
    with selected:
        model = graph_of(net, activation)
        J = graph_loss(model(Tensor(X)), Y)
        weights = [layer.weight for layer in model if isinstance(layer, nn.Linear)]
        J = J + (weight_decay / 2) * sum((w * w).sum() for w in weights)
        J.backward()

    np.testing.assert_allclose(J.item(), net.loss(X, Y, weight_decay), rtol=1e-12)
    dws, dbs = net.gradients(X, Y, weight_decay)
    biases = [layer.bias for layer in model if isinstance(layer, nn.Linear)]
    for l, (w, b, dw, db) in enumerate(zip(weights, biases, dws, dbs)):
        assert w.grad.shape == dw.shape and b.grad.shape == db.shape
        np.testing.assert_allclose(w.grad, dw, rtol=1e-9, atol=1e-12, err_msg=f"dW({l})")
        np.testing.assert_allclose(b.grad, db, rtol=1e-9, atol=1e-12, err_msg=f"db({l})")


# -- training demos --------------------------------------------------------------------

def spirals(n_per_class, classes, rng):
    """Interleaved 2-D spirals, one per class: not linearly separable."""
    r = np.tile(np.linspace(0.1, 1, n_per_class), classes)
    label = np.repeat(np.arange(classes), n_per_class)
    angle = 4 * r + label * 2 * np.pi / classes + 0.15 * rng.standard_normal(r.size)
    return np.column_stack([r * np.sin(angle), r * np.cos(angle)]), label


def train(model, X, y, steps, lr, weight_decay=0.0, batch=None, seed=0):
    """Mini-batch SGD on softmax cross-entropy; returns (first loss, last full-batch loss)."""
    opt = nn.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    with autograd.no_grad():
        first = autograd.softmax_cross_entropy(model(Tensor(X)), y).item()
    for _ in range(steps):
        rows = rng.choice(len(X), batch, replace=False) if batch else slice(None)
        loss = autograd.softmax_cross_entropy(model(Tensor(X[rows])), y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with autograd.no_grad():
        logits = model(Tensor(X)).data
        last = autograd.softmax_cross_entropy(Tensor(logits), y).item()
    return first, last, (logits.argmax(axis=1) == y).mean()


def test_mlp_learns_spirals():
    X, y = spirals(60, 3, np.random.default_rng(0))
    model = nn.Sequential(nn.Linear(2, 32, rng=1), nn.Tanh(), nn.Linear(32, 32, rng=2),
                          nn.Tanh(), nn.Linear(32, 3, rng=3))
    first, last, accuracy = train(model, X, y, steps=1500, lr=0.3, weight_decay=1e-4, batch=30)
    assert first > 1.0 and last < 0.25 * first and accuracy > 0.9


def bars(n, rng):
    """8×8 noisy images of one horizontal (label 0) or vertical (label 1) bar.

    No linear classifier separates them (the weights' row sums would all have to be
    positive and their column sums all negative), so the convolution + ReLU must learn.
    """
    images = 0.3 * rng.standard_normal((n, 1, 8, 8))
    label = rng.integers(0, 2, n)
    where = rng.integers(0, 8, n)
    for i in range(n):
        if label[i]:
            images[i, 0, :, where[i]] += 1.0
        else:
            images[i, 0, where[i], :] += 1.0
    return images, label


def test_conv_net_learns_bars():
    X, y = bars(80, np.random.default_rng(0))
    model = nn.Sequential(nn.Conv2d(1, 4, 3, rng=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 2, rng=2))
    first, last, accuracy = train(model, X, y, steps=150, lr=0.1, batch=20)
    assert last < 0.2 * first and accuracy > 0.95


# ---------------------------------------------------------------- Dropout and BatchNorm1d

@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_batchnorm1d_matches_torch_over_steps_and_in_eval(backend):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    ours = nn.BatchNorm1d(5)
    theirs = torch.nn.BatchNorm1d(5, dtype=torch.float64)
    with use_backend(backend, ("batch_norm_forward", "batch_norm_backward")):
        for step in range(5):
            x = rng.standard_normal((7 + step, 5)) * 3 + 1
            g = rng.standard_normal((7 + step, 5))
            xt = Tensor(x, requires_grad=True)
            y = ours(xt)
            (y * g).sum().backward()
            x_torch = torch.tensor(x, requires_grad=True)
            y_torch = theirs(x_torch)
            (y_torch * torch.tensor(g)).sum().backward()
            np.testing.assert_allclose(y.data, y_torch.detach().numpy(), atol=1e-12)
            np.testing.assert_allclose(xt.grad, x_torch.grad.numpy(), atol=1e-12)
            for p, q in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
                np.testing.assert_allclose(p.grad, q.grad.numpy(), atol=1e-12)
                p.grad, q.grad = None, None
        np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), atol=1e-12)
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), atol=1e-12)
        x = rng.standard_normal((3, 5))
        net = nn.Sequential(nn.Linear(5, 5, rng=0), ours).eval()
        assert not ours.training
        theirs.eval()
        with torch.no_grad():
            want = theirs(torch.tensor(x @ net[0].weight.data.T)).numpy()
        np.testing.assert_allclose(net(Tensor(x)).data, want, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_dropout_masks_while_training_and_passes_through_in_eval(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 50)) + 3   # no zeros of its own
    layer = nn.Dropout(0.3, seed=4)
    with use_backend(backend, ("dropout_forward",)):
        xt = Tensor(x, requires_grad=True)
        y = layer(xt)
        kept = y.data != 0
        assert abs(kept.mean() - 0.7) < 0.02
        np.testing.assert_allclose(y.data[kept], x[kept] / 0.7)
        y.sum().backward()
        np.testing.assert_array_equal(xt.grad, kept / 0.7)
        assert not np.array_equal(layer(Tensor(x)).data != 0, kept)   # the next call: new masks
        layer.eval()
        np.testing.assert_array_equal(layer(Tensor(x)).data, x)
    with pytest.raises(ValueError, match=r"^p: expected a rate in \[0, 1\)"):
        nn.Dropout(1.0)
