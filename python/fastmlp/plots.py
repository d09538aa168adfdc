"""Pictures of what an MLP learns (optional extra ``plot``: ``pip install 'fastmlp[plot]'``).

    fig = fastmlp.plots.training_curves(history, path="curves.png")

Every function returns a matplotlib Figure and, given ``path``, also writes it as a PNG.
Figures are built with ``matplotlib.figure.Figure``, not pyplot, so they render on a
headless machine (Agg) and never touch the caller's pyplot state; in a notebook, the
returned Figure displays itself.
"""
import numpy as np

from .reference.activation import sigmoid

DPI = 100


def _figure(width, height):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("fastmlp.plots needs matplotlib: pip install 'fastmlp[plot]'") from exc
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _finish(fig, path):
    """Save `fig` as a PNG at `path` (if given) with a 256-colour palette: plots need no
    more colours, and the files come out about three times smaller."""
    if path is not None:
        import io

        from PIL import Image   # a dependency of matplotlib
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        with Image.open(buffer) as image:
            image.convert("RGB").quantize(256).save(path, format="PNG", optimize=True)
    return fig


# ---------------------------------------------------------------------------------------
# training curves


def training_curves(history, path=None, title=None):
    """Train and validation loss and accuracy per epoch, with the best epoch marked.

    `history` is a fastmlp History, or anything with per-epoch lists ``loss``,
    ``accuracy``, ``val_loss``, ``val_accuracy`` and optional ``best_epoch`` and
    ``stopped_epoch`` (0-based indices, as fit() records them); epochs are drawn from 1.
    Where validation loss turns up while training loss keeps falling, the model overfits;
    the dashed line is the epoch early stopping keeps, the dotted one where it stopped.
    """
    fig = _figure(8, 3.2)
    best = getattr(history, "best_epoch", None)
    stopped = getattr(history, "stopped_epoch", None)
    for ax, key in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for prefix, name in (("", "train"), ("val_", "validation")):
            values = np.asarray(getattr(history, prefix + key, None) or [], dtype=float)
            if values.size:
                ax.plot(np.arange(1, values.size + 1), values, label=name)
        if key == "loss" and all(np.all(line.get_ydata() > 0) for line in ax.get_lines()):
            ax.set_yscale("log")   # late epochs, where train and validation part, stay visible
        if best is not None:
            ax.axvline(best + 1, color="k", linestyle="--", linewidth=1,
                       label=f"best epoch ({best + 1})")
        if stopped is not None:
            ax.axvline(stopped + 1, color="tab:red", linestyle=":", linewidth=1,
                       label=f"early stop ({stopped + 1})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------
# decision boundaries


def positive_probability(model, X):
    """P(class 1 | x) for a binary classifier: a fastmlp MLP or a scikit-learn estimator.

    Works for one sigmoid output (its only column) and for two softmax outputs (the
    second column) alike.
    """
    scores = model.predict_proba(X) if hasattr(model, "predict_proba") else model.forward(X)
    scores = np.asarray(scores)
    return scores.reshape(len(X), -1)[:, -1]


def decision_boundary(model, X, y, ax, resolution=150, title=None):
    """Draw P(class 1) of `model` over the plane of 2-D points X, with the 0.5 contour and
    the points coloured by label y, on the matplotlib Axes `ax`."""
    X = np.asarray(X)
    pad = 0.1 * (X.max(axis=0) - X.min(axis=0)) + 1e-9
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([g0.ravel(), g1.ravel()]).astype(X.dtype)
    p = positive_probability(model, grid).reshape(g0.shape)
    ax.contourf(g0, g1, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
    ax.contour(g0, g1, p, levels=[0.5], colors="k", linewidths=1)
    ax.scatter(X[:, 0], X[:, 1], c=np.asarray(y).ravel(), cmap="RdBu_r", s=8,
               edgecolors="k", linewidths=0.3)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize="small")


def logistic_vs_mlp(cases, hidden=(16, 16), activation="tanh", epochs=300, lr=0.5,
                    batch_size=16, backend="numpy", seed=0, path=None):
    """One column per 2-D case: a single logistic unit above a small MLP, each trained here.

    `cases` maps a name to (X, y) with X (n, 2) and 0/1 labels y (n,). The logistic unit
    is MLP([2, 1]) with a sigmoid output, a straight-line boundary; the MLP adds the
    `hidden` layers and can bend it (XOR, circles, moons). Titles give training accuracy.
    """
    from .model import MLP

    fig = _figure(2.2 * len(cases), 4.6)
    axes = fig.subplots(2, len(cases), squeeze=False)
    for col, (name, (X, y)) in enumerate(cases.items()):
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(y).reshape(-1, 1).astype(np.float64)
        for row, sizes in enumerate(([2, 1], [2, *hidden, 1])):
            net = MLP(sizes, activation=activation, output="sigmoid", backend=backend,
                      dtype="float64", seed=seed)
            net.fit(X, Y, epochs=epochs, batch_size=batch_size, lr=lr)
            accuracy = np.mean((positive_probability(net, X) > 0.5) == (Y[:, 0] > 0.5))
            kind = "logistic unit" if row == 0 else "MLP " + "-".join(map(str, sizes))
            decision_boundary(net, X, y, axes[row, col],
                              title=f"{name}: {kind}\ntrain accuracy {accuracy:.0%}")
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------
# first-layer weights as templates


def weight_templates(weights, image_shape=None, max_units=64, path=None, title=None):
    """Each row of the first weight matrix W(1) (s_2, s_1) drawn as an image.

    A hidden unit fires when its input matches its row of W(1) — its "template". `weights`
    is a fastmlp MLP (its ``weights[0]`` is used) or the matrix itself. `image_shape`
    defaults to a square side sqrt(s_1). Red is positive, blue negative, on one symmetric
    scale per template.
    """
    W = np.asarray(weights.weights[0] if hasattr(weights, "weights") else weights)
    if W.ndim != 2:
        raise ValueError(f"weights: expected a 2-D matrix W(1) (units, inputs), got shape {W.shape}")
    if image_shape is None:
        side = int(round(np.sqrt(W.shape[1])))
        if side * side != W.shape[1]:
            raise ValueError(f"image_shape: {W.shape[1]} inputs are not a square image; "
                             "pass image_shape=(rows, cols)")
        image_shape = (side, side)
    if int(np.prod(image_shape)) != W.shape[1]:
        raise ValueError(f"image_shape: {image_shape} does not hold {W.shape[1]} inputs")
    units = min(W.shape[0], max_units)
    cols = int(np.ceil(np.sqrt(units)))
    rows = int(np.ceil(units / cols))
    fig = _figure(0.9 * cols + 0.2, 0.9 * rows + (0.4 if title else 0.2))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for i in range(units):
        template = W[i].reshape(image_shape)
        scale = np.abs(template).max() or 1.0
        axes[i].imshow(template, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize="small")
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------
# universal approximation in 1-D


def wiggly(x):
    """The target curve of the universal-approximation picture."""
    return 0.2 + 0.4 * x ** 2 + 0.3 * x * np.sin(15 * x) + 0.05 * np.cos(50 * x)


def tower_network(target, n_towers, lo=0.0, hi=1.0, steepness=40.0):
    """A 1 → 2·n_towers → 1 network (sigmoid hidden, identity output) that approximates
    `target` on [lo, hi] by n_towers "towers".

    Tower i is the difference of two steep sigmoids stepping up at edge x_i and down at
    x_(i+1), scaled by the target's value at the middle of [x_i, x_(i+1)] — the lecture's
    triplet of neurons (two hidden, one output weight pair). Each sigmoid rises over about
    1/steepness of its tower's width. Returns (W1, b1, W2, b2) in the lecture's shapes:
    W1 (2n, 1), b1 (2n,), W2 (1, 2n), b2 (1,).
    """
    if n_towers < 1:
        raise ValueError(f"n_towers: expected >= 1, got {n_towers}")
    edges = np.linspace(lo, hi, n_towers + 1)
    heights = target((edges[:-1] + edges[1:]) / 2)
    # the outer steps sit half a tower outside [lo, hi], so the ends are not cut in half
    edges[[0, -1]] += np.array([-0.5, 0.5]) * (hi - lo) / n_towers
    s = steepness * n_towers / (hi - lo)          # slope of each hidden unit
    W1 = np.full((2 * n_towers, 1), s)
    b1 = -s * np.concatenate([edges[:-1], edges[1:]])  # step up at x_i, then down at x_(i+1)
    W2 = np.concatenate([heights, -heights])[None, :]
    return W1, b1, W2, np.zeros(1)


def tower_forward(params, x):
    """Output of tower_network's parameters at points x (1-D array)."""
    W1, b1, W2, b2 = params
    return (sigmoid(x[:, None] @ W1.T + b1) @ W2.T + b2)[:, 0]


def universal_approximation(target=wiggly, towers=(3, 8, 20, 60), lo=0.0, hi=1.0,
                            steepness=40.0, path=None):
    """The target curve (red) against tower-sum networks of growing width.

    The first panel takes the sum apart for the smallest width: each tower is a pair of
    steep sigmoids. Titles give the hidden units and the maximum error, which shrinks as
    units grow.
    """
    x = np.linspace(lo, hi, 1000)
    fx = target(x)
    fig = _figure(2.4 * len(towers), 2.6)
    axes = fig.subplots(1, len(towers), sharey=True)
    for ax, n in zip(np.atleast_1d(axes), towers):
        params = tower_network(target, n, lo, hi, steepness)
        approx = tower_forward(params, x)
        if n <= 8:  # few enough towers to show each one
            W1, b1, W2, _ = params
            hidden = sigmoid(x[:, None] @ W1.T + b1)
            for i in range(n):
                ax.fill_between(x, hidden[:, i] * W2[0, i] + hidden[:, n + i] * W2[0, n + i],
                                color=f"C{i % 10}", alpha=0.25, linewidth=0)
        ax.plot(x, fx, color="tab:red", linewidth=1.5, label="target")
        ax.plot(x, approx, color="tab:blue", linewidth=1.2, label="network")
        ax.set_title(f"{2 * n} hidden units\nmax error {np.abs(approx - fx).max():.3f}",
                     fontsize="small")
        ax.set_xlabel("x")
    np.atleast_1d(axes)[0].legend(fontsize="x-small", loc="upper left")
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------
# the vanishing gradient


def gradient_norm_history(net, X, Y, epochs=10, batch_size=10, lr=0.5, probe_rows=500):
    """Train a copy of `net` (the net itself is left as it is) and measure, before training
    and after each epoch, the norm ‖∂J/∂W(l)‖ of each layer's weight gradient on the first
    `probe_rows` rows of (X, Y) -> (norms (epochs + 1, layers), accuracy of each of those
    points on the same rows)."""
    import copy
    net = copy.deepcopy(net)
    X_probe, Y_probe = X[:probe_rows], Y[:probe_rows]
    norms, accuracy = [], []
    for epoch in range(epochs + 1):
        if epoch:
            net.fit(X, Y, epochs=1, batch_size=batch_size, lr=lr)
        dws = net.gradients(X_probe, Y_probe)[0]
        norms.append([float(np.linalg.norm(dw)) for dw in dws])
        accuracy.append(net.score(X_probe, Y_probe))
    return np.array(norms), np.array(accuracy)


def _viridis(x):
    from matplotlib import colormaps
    return colormaps["viridis"](x)


def gradient_norms(nets, X, Y, epochs=10, batch_size=10, lr=0.5, probe_rows=500, path=None):
    """The vanishing gradient: per network, ‖∂J/∂W(l)‖ of every layer (one line each, front
    layer darkest) before training and after each epoch of plain SGD, on a log scale shared
    by the panels.

    `nets` is an MLP or a dict {title: MLP}; each is trained as a copy by
    gradient_norm_history (`lr` a number, or a dict {title: lr}). In a deep sigmoid network
    the front layers' gradients are orders of magnitude smaller than the last layer's (each
    layer back multiplies δ by σ' <= 1/4 and a weight matrix), so they learn that much
    slower; ReLU (f' = 1 where active) or batch normalization keep them level. Titles give
    the accuracy on the probe rows after the last epoch.
    """
    if not isinstance(nets, dict):
        nets = {"network": nets}
    fig = _figure(3.2 * len(nets), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(nets), sharey=True))
    for ax, (title, net) in zip(axes, nets.items()):
        rate = lr[title] if isinstance(lr, dict) else lr
        norms, accuracy = gradient_norm_history(net, X, Y, epochs, batch_size, rate, probe_rows)
        layers = norms.shape[1]
        for l in range(layers):   # front layer dark, last light
            ax.plot(np.arange(epochs + 1), norms[:, l], marker=".", label=f"W({l + 1})",
                    color=_viridis(0.85 * l / max(layers - 1, 1)))
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{title}\naccuracy {accuracy[-1]:.0%} after {epochs} epochs",
                     fontsize="small")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("‖∂J/∂W(l)‖")
    axes[-1].legend(fontsize="x-small", loc="lower right")
    return _finish(fig, path)
