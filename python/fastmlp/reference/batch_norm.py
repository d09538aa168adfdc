"""Batch normalization of a layer's pre-activations over the mini-batch (NumPy twins of the
native kernels in csrc/kernels/activation_impl.h), as torch.nn.BatchNorm1d computes it.

Per unit j over the n rows of the batch: μ = Σ z / n, σ² = Σ (z − μ)² / n (biased),
x̂ = (z − μ) / √(σ² + ε), y = γ x̂ + β. Backward, with g = ∂J/∂y:
∂J/∂β = Σ g, ∂J/∂γ = Σ g x̂, ∂J/∂z = γ/(n √(σ² + ε)) · (n g − ∂J/∂β − x̂ ∂J/∂γ).
"""
import numpy as np


def _own(sums):
    return sums


def normalise(z, gamma, beta, eps, rows=None, total=_own):
    """batch_norm_forward of z, a batch of `rows` rows (default: z's) of which z may be a
    part: total(per-unit sums of z's rows) gives the whole batch's (data-parallel
    training sums them over the ranks)."""
    t = z.dtype.type
    n = t(len(z) if rows is None else rows)
    mean = total(z.sum(axis=0)) / n
    centered = z - mean
    var = total((centered * centered).sum(axis=0)) / n
    inv_std = t(1) / np.sqrt(var + t(eps))
    xhat = centered * inv_std
    return gamma * xhat + beta, xhat, mean, var, inv_std


def normalise_backward(dy, xhat, gamma, inv_std, rows=None, total=_own):
    """batch_norm_backward as `normalise` takes its batch: ∂J/∂z from the whole batch's
    sums, and ∂J/∂γ, ∂J/∂β of z's own rows."""
    t = dy.dtype.type
    n = t(len(dy) if rows is None else rows)
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    scale = gamma * inv_std / n
    return scale * (n * dy - total(dbeta) - xhat * total(dgamma)), dgamma, dbeta


def batch_norm_forward(z, gamma, beta, eps):
    """z (n, m), gamma, beta (m,) -> (y, x̂, μ, σ² (biased), 1/√(σ² + ε)), in z's dtype."""
    return normalise(z, gamma, beta, eps)


def batch_norm_backward(dy, xhat, gamma, inv_std):
    """dy = ∂J/∂y (n, m), forward's x̂ and 1/√(σ² + ε) -> (∂J/∂z, ∂J/∂γ, ∂J/∂β)."""
    return normalise_backward(dy, xhat, gamma, inv_std)
