"""Output layers and losses (NumPy twins of csrc/kernels/loss.*).

Losses are means over the n rows of the batch, summed over the K outputs. Each loss
kernel returns (J as a Python float, ∂J/∂(its input)); J of an empty batch is 0.

With sample_weight (n finite weights >= 0), J is the weighted mean Σ w_i loss_i / Σ w and
row i's gradient is scaled by w_i / Σ w (in float64, then rounded to the dtype) instead of
divided by n; a batch whose weights sum to 0 has J = 0 and a zero gradient.
"""
import numpy as np

from .activation import sigmoid


def _batch_mean(rows, grad, sample_weight):
    """(J, ∂J/∂input) from the rows' losses (n,) and their gradients before the mean (n, K),
    a fresh array this may divide in place: (1/n) Σ rows (accumulated in float64) and
    grad / n, or the weighted mean."""
    n = grad.shape[0]
    if sample_weight is None:
        loss = float(np.add.reduce(rows, dtype=np.float64)) / n if n else 0.0
        grad /= grad.dtype.type(max(n, 1))
        return loss, grad
    w = _checked_weights(sample_weight, n)
    total = sum(w.tolist())   # in row order, as the C++ kernels add them
    if total == 0:
        return 0.0, np.zeros_like(grad)
    factor = (w / total).astype(grad.dtype)
    return float(np.dot(w, rows.astype(np.float64)) / total), grad * factor[:, None]


def _checked_weights(sample_weight, n):
    w = np.asarray(sample_weight)
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected one weight per row, shape ({n},), got "
                         f"shape {w.shape}")
    w = w.astype(np.float64)
    bad = ~(np.isfinite(w) & (w >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"sample_weight: expected finite weights >= 0, got {w[i]} at row {i}")
    return w


def log_softmax(z):
    """log p with p = softmax(z): subtract the row max first, so e^x never overflows."""
    # (ufunc reductions rather than the methods: the same sums without a Python wrapper,
    # which costs more than the work on a batch of 10 rows)
    s = z - np.maximum.reduce(z, axis=1, keepdims=True)
    s -= np.log(np.add.reduce(np.exp(s), axis=1, keepdims=True))
    return s


def softmax(z):
    """p_ik = e^(z_ik) / Σ_j e^(z_ij), row by row, stable for logits of any size."""
    s = np.exp(z - z.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    return s


def softmax_cross_entropy(z, y, sample_weight=None):
    """J = −(1/n) Σ_i Σ_k y_ik log softmax(z)_ik and ∂J/∂Z = (p − y)/n.

    y is integer labels (n,) or a one-hot / probability matrix (n, K).
    """
    logp = log_softmax(z)
    p = np.exp(logp)
    if y.ndim == 2:
        p -= y
        return _batch_mean(-(y * logp).sum(axis=1), p, sample_weight)
    # labels: y_ik is 1 at k = y_i and 0 elsewhere, so the sum is −log p_(i, y_i) and
    # p − y subtracts 1 at the label (the same numbers as the one-hot matrix gives)
    rows = np.arange(len(y))
    p[rows, y] -= 1
    return _batch_mean(-logp[rows, y], p, sample_weight)


def sigmoid_binary_cross_entropy(z, y, sample_weight=None):
    """J = −(1/n) Σ [y log σ(z) + (1 − y) log(1 − σ(z))] and ∂J/∂Z = (σ(z) − y)/n.

    Written as log(1 + e^z) − y z = max(z, 0) − y z + log1p(e^(−|z|)), which never overflows.
    """
    rows = (np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
    return _batch_mean(rows, sigmoid(z) - y, sample_weight)


def quadratic_loss(a, y, sample_weight=None):
    """J = (1/2n) Σ (a − y)² and ∂J/∂A = (a − y)/n."""
    diff = a - y
    return _batch_mean(0.5 * (diff * diff).sum(axis=1), diff, sample_weight)


def poisson_loss(z, y, sample_weight=None):
    """The half Poisson deviance of the prediction e^z (scikit-learn's):
    J = (1/n) Σ [y log(y / e^z) − y + e^z] = (1/n) Σ [xlogy(y, y) − y z − y + e^z] and
    ∂J/∂Z = (e^z − y)/n. y >= 0."""
    e = np.exp(z)
    ylogy = y * np.log(np.where(y > 0, y, 1))
    rows = (ylogy - y * z - y + e).sum(axis=1)
    return _batch_mean(rows, e - y, sample_weight)
