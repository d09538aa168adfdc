"""The ops of fastmlp.autograd, each a Function: forward on ndarrays, backward by the chain rule.

Ops with a kernel in the backend table (matmul, activations, maxout, softmax and the
losses) call the kernel of the backend selected with ``autograd.backend(...)``; the rest
(+, −, ×, sums, reshapes) are NumPy one-liners.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..reference import ACTIVATIONS, DEFAULT_PARAM
from .function import Function, unbroadcast
from .tensor import Tensor


def _operands(a, b):
    """Python numbers take the dtype of the Tensor beside them (2 * float32 stays float32)."""
    def lift(x, other):
        if isinstance(x, (int, float)) and isinstance(other, Tensor):
            return np.asarray(x, dtype=other.dtype)
        return x
    return lift(a, b), lift(b, a)


def _data(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _matrix(x, what):
    """The array of x, which must be 2-D (n rows of K values)."""
    x = _data(x)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (n, K), got shape {x.shape}")
    return x


def _rows(x):
    """x as a C-contiguous 2-D array (n, everything else), the layout the kernels take."""
    if x.ndim < 2:
        return np.ascontiguousarray(x).reshape(1, x.size)
    return np.ascontiguousarray(x).reshape(x.shape[0], int(np.prod(x.shape[1:])))


# -- element-wise arithmetic ------------------------------------------------------------

class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = np.shape(a), np.shape(b)
        return np.add(a, b)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(g, ctx.shapes[1])


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = np.shape(a), np.shape(b)
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, g):
        return unbroadcast(g, ctx.shapes[0]), unbroadcast(-g, ctx.shapes[1])


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return unbroadcast(g * b, np.shape(a)), unbroadcast(g * a, np.shape(b))


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, g):
        return -g


class MatMul(Function):
    """C = A B for 2-D A (n, k), B (k, m): ∂L/∂A = G Bᵀ, ∂L/∂B = Aᵀ G."""

    @staticmethod
    def forward(ctx, a, b):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: expected 2-D operands (n, k) @ (k, m), got {a.shape} @ {b.shape}")
        dtype = np.result_type(a, b)
        a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
        ctx.save_for_backward(a, b)
        return ctx.kernel("matmul")(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        matmul = ctx.kernel("matmul")
        da = matmul(g, b.T) if ctx.needs_input_grad[0] else None
        db = matmul(a.T, g) if ctx.needs_input_grad[1] else None
        return da, db


# -- reductions and shapes --------------------------------------------------------------

def _expand_to_input(ctx, g):
    """Broadcast the gradient of a reduction back over the reduced axes."""
    if ctx.axis is not None and not ctx.keepdims:
        g = np.expand_dims(g, ctx.axis)
    return np.broadcast_to(g, ctx.shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = np.shape(a), axis, keepdims
        return np.sum(a, axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, g):
        return _expand_to_input(ctx, g)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.shape, ctx.axis, ctx.keepdims = np.shape(a), axis, keepdims
        out = np.mean(a, axis=axis, keepdims=keepdims)
        ctx.count = max(np.size(a) // max(np.size(out), 1), 1)
        return out

    @staticmethod
    def backward(ctx, g):
        return _expand_to_input(ctx, g / g.dtype.type(ctx.count))


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = np.shape(a)
        return np.reshape(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, axes=None):
        ctx.axes = axes
        return np.transpose(a, axes)

    @staticmethod
    def backward(ctx, g):
        return np.transpose(g, None if ctx.axes is None else np.argsort(ctx.axes))


# -- activations and outputs ------------------------------------------------------------

class Activation(Function):
    """a = f(z) element-wise; ∂L/∂z = ∂L/∂a ⊙ f'(z) (the kernels take f' from z and a)."""

    @staticmethod
    def forward(ctx, z, name, param):
        z2 = _rows(z)
        a = ctx.kernel("activation_forward")(z2, name, param)
        ctx.save_for_backward(z2, a)
        ctx.name, ctx.param = name, param
        return a.reshape(z.shape)

    @staticmethod
    def backward(ctx, g):
        z2, a = ctx.saved_tensors
        d = ctx.kernel("activation_derivative")(z2, a, ctx.name, ctx.param)
        return g * d.reshape(g.shape)


class Maxout(Function):
    """z (n, m·k) -> a (n, m), the max of each unit's k pieces; the gradient goes to the winner."""

    @staticmethod
    def forward(ctx, z, k):
        a, ctx.argmax = ctx.kernel("maxout_forward")(np.ascontiguousarray(z), k)
        ctx.k = k
        return a

    @staticmethod
    def backward(ctx, g):
        return ctx.kernel("maxout_backward")(np.ascontiguousarray(g), ctx.argmax, ctx.k)


class BatchNorm(Function):
    """y = γ x̂ + β with x̂ the batch-normalised z (n, m) (batch_norm_forward); backward by
    batch_norm_backward. `stats`, a list, receives the batch's (mean, biased variance)."""

    @staticmethod
    def forward(ctx, z, gamma, beta, eps, stats):
        y, xhat, mean, var, inv_std = ctx.kernel("batch_norm_forward")(
            np.ascontiguousarray(z), np.ascontiguousarray(gamma), np.ascontiguousarray(beta), eps)
        ctx.save_for_backward(xhat, np.ascontiguousarray(gamma), inv_std)
        stats.append((mean, var))
        return y

    @staticmethod
    def backward(ctx, g):
        xhat, gamma, inv_std = ctx.saved_tensors
        return ctx.kernel("batch_norm_backward")(np.ascontiguousarray(g), xhat, gamma, inv_std)


class Dropout(Function):
    """x ⊙ mask, the mask of dropout_forward (1/(1 − p) kept, 0 dropped); backward g ⊙ mask."""

    @staticmethod
    def forward(ctx, x, key, p):
        out, ctx.mask = ctx.kernel("dropout_forward")(np.ascontiguousarray(x), key, 0, p)
        return out

    @staticmethod
    def backward(ctx, g):
        return g * ctx.mask


class Softmax(Function):
    """p = softmax(z) row by row; ∂L/∂z = p ⊙ (g − Σ_k g_k p_k)."""

    @staticmethod
    def forward(ctx, z):
        p = ctx.kernel("softmax")(np.ascontiguousarray(z))
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return p * (g - (g * p).sum(axis=1, keepdims=True))


class _KernelLoss(Function):
    """A loss kernel returns (J, ∂J/∂input); backward scales that by the upstream ∂L/∂J."""

    kernel_name = None

    @classmethod
    def forward(cls, ctx, x, y):
        loss, ctx.dx = ctx.kernel(cls.kernel_name)(np.ascontiguousarray(x), y)
        return np.asarray(loss, dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.dx, None     # labels are constants


class SoftmaxCrossEntropy(_KernelLoss):
    kernel_name = "softmax_cross_entropy"


class SigmoidBinaryCrossEntropy(_KernelLoss):
    kernel_name = "sigmoid_binary_cross_entropy"


class QuadraticLoss(_KernelLoss):
    kernel_name = "quadratic_loss"

    @staticmethod
    def backward(ctx, g):
        return g * ctx.dx, -g * ctx.dx     # J is symmetric in a and y


# -- convolution ------------------------------------------------------------------------

def _correlate(x, f, matmul):
    """Valid cross-correlation, what CNNs call convolution, as one matrix product (im2col).

    x (n, c, H, W), f (o, c, kh, kw) -> out (n, o, H−kh+1, W−kw+1),
    out[n, o, i, j] = Σ_c Σ_p Σ_q x[n, c, i+p, j+q] f[o, c, p, q].
    """
    n, c = x.shape[:2]
    o, _, kh, kw = f.shape
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))          # (n, c, H', W', kh, kw)
    ho, wo = windows.shape[2:4]
    patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    out = matmul(patches, np.ascontiguousarray(f.reshape(o, c * kh * kw).T))
    return np.ascontiguousarray(out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2))


class Conv2d(Function):
    """O = conv(X, F): X (n, c_in, H, W), F (c_out, c_in, kh, kw), valid, stride 1.

    Backward as the lecture states it (convolution meaning cross-correlation, as in forward):
        ∂L/∂F = conv(X, ∂L/∂O)                          per input channel, summed over the batch
        ∂L/∂X = full conv(180°-rotated F, ∂L/∂O)        ∂L/∂O zero-padded by (kh−1, kw−1)
    """

    @staticmethod
    def forward(ctx, x, f):
        x, f = np.asarray(x), np.asarray(f)
        if x.ndim != 4 or f.ndim != 4 or x.shape[1] != f.shape[1]:
            raise ValueError(f"conv2d: expected x (n, c_in, H, W) and filters (c_out, c_in, kh, kw) "
                             f"with the same c_in, got {x.shape} and {f.shape}")
        if f.shape[2] > x.shape[2] or f.shape[3] > x.shape[3] or 0 in f.shape[2:]:
            raise ValueError(f"conv2d: filter {f.shape[2:]} must be non-empty and fit in the "
                             f"image {x.shape[2:]} (valid convolution)")
        dtype = np.result_type(x, f)
        x, f = x.astype(dtype, copy=False), f.astype(dtype, copy=False)
        ctx.save_for_backward(x, f)
        return _correlate(x, f, ctx.kernel("matmul"))

    @staticmethod
    def backward(ctx, g):
        x, f = ctx.saved_tensors
        matmul = ctx.kernel("matmul")
        dx = df = None
        if ctx.needs_input_grad[0]:
            kh, kw = f.shape[2:]
            g_full = np.pad(g, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
            rotated = f[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)     # (c_in, c_out, kh, kw)
            dx = _correlate(g_full, rotated, matmul)
        if ctx.needs_input_grad[1]:
            # Channels play the batch role: dF[o, c] = Σ_n conv(X[n, c], G[n, o]).
            df = _correlate(x.transpose(1, 0, 2, 3), g.transpose(1, 0, 2, 3), matmul)
            df = df.transpose(1, 0, 2, 3)
        return dx, df


# -- the functions users call -----------------------------------------------------------

def add(a, b):
    return Add.apply(*_operands(a, b))


def sub(a, b):
    return Sub.apply(*_operands(a, b))


def mul(a, b):
    return Mul.apply(*_operands(a, b))


def neg(a):
    return Neg.apply(a)


def matmul(a, b):
    return MatMul.apply(a, b)


def sum(a, axis=None, keepdims=False):  # noqa: A001 - numpy's name, on purpose
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    return Mean.apply(a, axis=axis, keepdims=keepdims)


def reshape(a, shape):
    return Reshape.apply(a, shape=shape)


def transpose(a, axes=None):
    return Transpose.apply(a, axes=axes)


def activation_param(name, param=None):
    """Check an activation name; its param, or the default (leaky-ReLU slope 0.1, ELU alpha 1.0)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"name: expected one of {ACTIVATIONS} (maxout is autograd.maxout), got {name!r}")
    return DEFAULT_PARAM.get(name, 0.0) if param is None else float(param)


def activation(z, name, param=None):
    """f(z) for an activation of the design: sigmoid, tanh, relu, leaky_relu, elu, identity."""
    return Activation.apply(z, name=name, param=activation_param(name, param))


def sigmoid(z):
    return activation(z, "sigmoid")


def tanh(z):
    return activation(z, "tanh")


def relu(z):
    return activation(z, "relu")


def leaky_relu(z, slope=0.1):
    return activation(z, "leaky_relu", slope)


def elu(z, alpha=1.0):
    return activation(z, "elu", alpha)


def identity(z):
    return activation(z, "identity")


def maxout(z, k):
    """Maxout with k pieces per unit: z (n, m·k) -> (n, m)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a number of pieces >= 1, got {k!r}")
    if _matrix(z, "z").shape[1] % k:
        raise ValueError(f"z: expected (n, m·k) columns with k={k}, got shape {_data(z).shape}")
    return Maxout.apply(z, k=int(k))


def batch_norm(z, gamma, beta, eps=1e-5, stats=None):
    """Batch normalization of z (n, m) over its n >= 2 rows, scaled by γ and shifted by β
    (m,) (torch.nn.BatchNorm1d in training mode); the list `stats` (if given) receives the
    batch's (mean, biased variance)."""
    n, m = _matrix(z, "z").shape
    if n < 2:
        raise ValueError(f"z: batch normalization needs at least 2 rows, got {n}")
    for name, v in (("gamma", gamma), ("beta", beta)):
        if _data(v).shape != (m,):
            raise ValueError(f"{name}: expected shape ({m},), got {_data(v).shape}")
    return BatchNorm.apply(z, gamma, beta, eps=float(eps), stats=[] if stats is None else stats)


def dropout(x, p, key):
    """Inverted dropout of x (n, m): each unit kept with probability 1 − p and scaled by
    1/(1 − p), by the masks of the 32-bit `key` (fastmlp.reference.dropout)."""
    _matrix(x, "x")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p < 1:
        raise ValueError(f"p: expected a rate in [0, 1), got {p!r}")
    return Dropout.apply(x, key=int(key), p=float(p))


def softmax(z):
    """Row-wise softmax of z (n, K)."""
    _matrix(z, "z")
    return Softmax.apply(z)


def _targets(y, x):
    """Targets as the loss kernels take them: the shape and dtype of the array x."""
    y = _data(y)
    if y.shape != x.shape:
        raise ValueError(f"y: expected targets of shape {x.shape}, got {y.shape}")
    return np.ascontiguousarray(y, dtype=x.dtype)


def softmax_cross_entropy(z, y):
    """J = −(1/n) Σ_i Σ_k y_ik log softmax(z)_ik from logits z (n, K).

    y: integer labels (n,) or one-hot / probability rows (n, K).
    """
    z_data, y_data = _matrix(z, "z"), _data(y)
    if y_data.ndim == 1:
        if y_data.dtype.kind not in "iu" or len(y_data) != len(z_data):
            raise ValueError(f"y: expected {len(z_data)} integer labels, got {y_data.dtype} {y_data.shape}")
        if len(y_data) and (y_data.min() < 0 or y_data.max() >= z_data.shape[1]):
            raise ValueError(f"y: labels must lie in [0, {z_data.shape[1]})")
        y_data = y_data.astype(np.int64, copy=False)
    else:
        y_data = _targets(y_data, z_data)
    return SoftmaxCrossEntropy.apply(z, y_data)


def sigmoid_binary_cross_entropy(z, y):
    """J = −(1/n) Σ [y log σ(z) + (1 − y) log(1 − σ(z))] from logits z (n, K), y in [0, 1]."""
    return SigmoidBinaryCrossEntropy.apply(z, _targets(y, _matrix(z, "z")))


def quadratic_loss(a, y):
    """J = (1/2n) Σ (a − y)² for a (n, K); y may be a Tensor that requires grad."""
    targets = _targets(y, _matrix(a, "a"))
    return QuadraticLoss.apply(a, y if isinstance(y, Tensor) else targets)


def conv2d(x, f, b=None):
    """Valid, stride-1 convolution: x (n, c_in, H, W), f (c_out, c_in, kh, kw), b (c_out,)."""
    out = Conv2d.apply(x, f)
    return out if b is None else out + reshape(b, (1, -1, 1, 1))
