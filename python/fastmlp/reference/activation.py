"""Element-wise activations f and their derivatives f', as the lecture writes them.

Every function here is the NumPy twin of a native kernel with the same name and
signature (csrc/kernels/activation.*). `param` is the leaky-ReLU slope or the ELU alpha
and is ignored by the other activations.
"""
import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "identity")
DEFAULT_PARAM = {"leaky_relu": 0.1, "elu": 1.0}


def sigmoid(z):
    """σ(z) = 1 / (1 + e^(−z)), evaluated so that e^x never overflows: with e = e^(−|z|),
    1 / (1 + e) for z >= 0, else e / (1 + e) (the numerator chosen, then one division)."""
    # the numerator as e^min(z, 0): 1 for z >= 0, and for z < 0 the very e (−|z| = z);
    # faster than choosing it with np.where. (out= buffers keep a 0-d z's result an array;
    # Python scalars are rounded to z's dtype, as z.dtype.type(...) would be, but faster.)
    numerator, e = np.empty_like(z), np.empty_like(z)
    np.exp(np.minimum(z, 0.0, out=numerator), out=numerator)
    np.exp(np.copysign(z, -1.0, out=e), out=e)   # −|z|, NaN included, in one pass
    e += 1.0
    numerator /= e
    return numerator


def activation_forward(z, name, param):
    """a = f(z)."""
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        # z > 0 ? z : 0 in two fast passes (np.where takes 2.4x as long): fmax(z, 0) maps
        # NaN to 0, and adding +0 turns its −0 into +0
        a = np.fmax(z, 0.0, out=np.empty_like(z))
        a += 0.0
        return a
    if name == "leaky_relu":
        return np.where(z > 0, z, z.dtype.type(param) * z)
    if name == "elu":
        return np.where(z > 0, z, z.dtype.type(param) * np.expm1(np.minimum(z, 0)))
    if name == "identity":
        return z.copy()
    raise ValueError(f"activation: unknown name {name!r}; expected one of {ACTIVATIONS}")


def activation_derivative(z, a, name, param):
    """f'(z), given z and a = f(z) (sigmoid and tanh are cheaper from a)."""
    # (Python floats take a's dtype; np.where below needs the dtype's own scalars)
    if name == "sigmoid":
        return a * (1.0 - a)
    if name == "tanh":
        return 1.0 - a * a
    one, zero = z.dtype.type(1), z.dtype.type(0)
    if name == "relu":                       # f'(0) = 0
        return np.where(z > 0, one, zero)
    if name == "leaky_relu":
        return np.where(z > 0, one, z.dtype.type(param))
    if name == "elu":
        return np.where(z > 0, one, z.dtype.type(param) * np.exp(np.minimum(z, 0)))
    if name == "identity":
        return np.ones_like(z)
    raise ValueError(f"activation: unknown name {name!r}; expected one of {ACTIVATIONS}")


def activation_backward(delta, z, a, name, param):
    """δ ⊙ f'(z), given z and a = f(z): the backward epilogue of a layer (δ unchanged for
    identity)."""
    if name == "identity":
        return delta
    if name == "relu":   # δ ⊙ f'(z) with f'(z) as the mask z > 0: one pass fewer
        return delta * (z > 0)
    return delta * activation_derivative(z, a, name, param)


def maxout_forward(z, k):
    """Maxout over groups of k linear pieces: z (n, m·k) -> a (n, m), argmax (n, m).

    Unit j's pieces are columns j·k … j·k+k−1; ties go to the first piece.
    """
    n, mk = z.shape
    pieces = z.reshape(n, mk // k, k)
    argmax = pieces.argmax(axis=2)
    a = np.take_along_axis(pieces, argmax[..., None], axis=2)[..., 0]
    return a, argmax.astype(np.int64)


def maxout_backward(da, argmax, k):
    """Route da (n, m) to the winning piece of each unit: -> dz (n, m·k)."""
    n, m = da.shape
    dz = np.zeros((n, m, k), dtype=da.dtype)
    np.put_along_axis(dz, argmax[..., None], da[..., None], axis=2)
    return dz.reshape(n, m * k)
