"""Matrix products of a layer, in the lecture's notation (NumPy twins of csrc/kernels/gemm.*).

With a mini-batch of n rows, layer l computes Z = A Wᵀ + b and a(l+1) = f(Z); backprop
gives ∂J/∂W = δᵀ A, ∂J/∂b = Σ_rows δ and δ(l) = (δ(l+1) W) ⊙ f'(z(l)).
"""
import numpy as np

from .activation import activation_backward, activation_forward


def matmul(a, b):
    """C = A B for 2-D arrays, numpy.matmul's meaning."""
    return np.matmul(a, b)


def linear_forward(x, w, b, name, param, keep_z=True):
    """X (n, s_l), W (s_(l+1), s_l), b (s_(l+1),) -> Z = X Wᵀ + b and A = f(Z), both
    (n, s_(l+1)); keep_z=False: (None, A), for evaluation, which has no use for Z."""
    z = x @ w.T
    z += b   # in place: one temporary fewer, the same sums
    return z if keep_z else None, activation_forward(z, name, param)


def linear_backward(delta, x, w, z_prev, a_prev, name_prev, param_prev):
    """Backprop through one layer.

    delta (n, s_(l+1)) = ∂J/∂Z, X (n, s_l) the layer's input, W (s_(l+1), s_l)
    -> dW = δᵀ X (s_(l+1), s_l), db = Σ_rows δ (s_(l+1),), and
       δ_prev = (δ W) ⊙ f'(z_prev) (n, s_l), or None when name_prev is None
       (the first layer needs no δ for its input).
    """
    dw = delta.T @ x
    db = np.add.reduce(delta, axis=0)   # delta.sum(axis=0) without its Python wrapper
    if name_prev is None:
        return dw, db, None
    return dw, db, activation_backward(delta @ w, z_prev, a_prev, name_prev, param_prev)
