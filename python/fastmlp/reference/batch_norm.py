"""Batch normalization of a layer's pre-activations over the mini-batch (NumPy twins of the
native kernels in csrc/kernels/activation_impl.h), as torch.nn.BatchNorm1d computes it.

Per unit j over the n rows of the batch: μ = Σ z / n, σ² = Σ (z − μ)² / n (biased),
x̂ = (z − μ) / √(σ² + ε), y = γ x̂ + β. Backward, with g = ∂J/∂y:
∂J/∂β = Σ g, ∂J/∂γ = Σ g x̂, ∂J/∂z = γ/(n √(σ² + ε)) · (n g − ∂J/∂β − x̂ ∂J/∂γ).
"""
import numpy as np


def batch_norm_forward(z, gamma, beta, eps):
    """z (n, m), gamma, beta (m,) -> (y, x̂, μ, σ² (biased), 1/√(σ² + ε)), in z's dtype."""
    n = z.shape[0]
    t = z.dtype.type
    mean = z.sum(axis=0) / t(n)
    centered = z - mean
    var = (centered * centered).sum(axis=0) / t(n)
    inv_std = t(1) / np.sqrt(var + t(eps))
    xhat = centered * inv_std
    return gamma * xhat + beta, xhat, mean, var, inv_std


def batch_norm_backward(dy, xhat, gamma, inv_std):
    """dy = ∂J/∂y (n, m), forward's x̂ and 1/√(σ² + ε) -> (∂J/∂z, ∂J/∂γ, ∂J/∂β)."""
    n = dy.shape[0]
    t = dy.dtype.type
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    scale = gamma * inv_std / t(n)
    return scale * (t(n) * dy - dbeta - xhat * dgamma), dgamma, dbeta
