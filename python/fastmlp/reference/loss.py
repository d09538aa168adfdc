"""Output layers and losses (NumPy twins of csrc/kernels/loss.*).

Losses are means over the n rows of the batch, summed over the K outputs. Each loss
kernel returns (J as a Python float, ∂J/∂(its input)); J of an empty batch is 0.
"""
import numpy as np

from .activation import sigmoid


def _batch_mean(rows, n):
    """(1/n) Σ of per-row losses, accumulated in float64."""
    return float(np.sum(rows, dtype=np.float64) / n) if n else 0.0


def _one_hot(y, k, dtype):
    """Integer labels (n,) -> one-hot (n, k); a 2-D Y is returned as is."""
    if y.ndim == 2:
        return y
    t = np.zeros((y.shape[0], k), dtype=dtype)
    t[np.arange(y.shape[0]), y] = 1
    return t


def log_softmax(z):
    """log p with p = softmax(z): subtract the row max first, so e^x never overflows."""
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def softmax(z):
    """p_ik = e^(z_ik) / Σ_j e^(z_ij), row by row, stable for logits of any size."""
    s = np.exp(z - z.max(axis=1, keepdims=True))
    return s / s.sum(axis=1, keepdims=True)


def softmax_cross_entropy(z, y):
    """J = −(1/n) Σ_i Σ_k y_ik log softmax(z)_ik and ∂J/∂Z = (p − y)/n.

    y is integer labels (n,) or a one-hot / probability matrix (n, K).
    """
    n, k = z.shape
    t = _one_hot(y, k, z.dtype)
    logp = log_softmax(z)
    loss = _batch_mean(-(t * logp).sum(axis=1), n)
    return loss, (np.exp(logp) - t) / z.dtype.type(max(n, 1))


def sigmoid_binary_cross_entropy(z, y):
    """J = −(1/n) Σ [y log σ(z) + (1 − y) log(1 − σ(z))] and ∂J/∂Z = (σ(z) − y)/n.

    Written as log(1 + e^z) − y z = max(z, 0) − y z + log1p(e^(−|z|)), which never overflows.
    """
    n = z.shape[0]
    rows = (np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
    return _batch_mean(rows, n), (sigmoid(z) - y) / z.dtype.type(max(n, 1))


def quadratic_loss(a, y):
    """J = (1/2n) Σ (a − y)² and ∂J/∂A = (a − y)/n."""
    n = a.shape[0]
    diff = a - y
    return _batch_mean(0.5 * (diff * diff).sum(axis=1), n), diff / a.dtype.type(max(n, 1))
