"""Argument checks shared by the model, the training loops and the estimators.

Each check returns the value converted (an int, a float, a C-contiguous array of the
model's dtype) or raises TypeError / ValueError naming the argument and what was expected.
"""
import math
import numbers

import numpy as np


class NonFiniteInputError(ValueError):
    """A row of X holds NaN or infinity: found by a native step or epoch as it read the row."""


def is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_real(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_int(value, name, minimum):
    """An integer >= minimum."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(value, name, minimum=None, strict=False):
    """A finite real number (any numbers.Real: Fraction, Decimal, NumPy scalars), > minimum
    when strict else >= minimum, as a float."""
    if not is_real(value):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:   # an int or Fraction beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if minimum is not None and (number <= minimum if strict else number < minimum):
        raise ValueError(f"{name}: expected a number {'>' if strict else '>='} {minimum}, "
                         f"got {value!r}")
    return number


SMALL_ARRAY = 4096   # elements: a few rows, as predict on one row sees them


def all_finite(a):
    """No NaN or infinity in the float array `a`. A finite sum proves it in one pass with
    no temporary (isfinite(a) would allocate a boolean copy of a whole training set per
    fit); NaN or infinity anywhere makes the sum non-finite, and an overflowing sum of
    finite numbers falls back to the element-wise test."""
    if a.size <= SMALL_ARRAY:   # a boolean copy costs less than the sum's errstate here
        return bool(np.isfinite(a).all())
    with np.errstate(over="ignore", invalid="ignore"):   # inf + -inf, or an overflowing sum
        return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())


def in_range(arrays):
    """No array has diverged: the sum of its squares is at most its dtype's largest number
    (so NaN or infinity anywhere fails too). The one definition of a diverged run, for
    both backends, steps and epochs; the native step applies it in C++ (csrc/mlp.cpp,
    in_range), summing in double, as the fallback here does.

    The sum in the array's own dtype answers almost always. einsum, not a BLAS dot:
    OpenBLAS threads long dots, and its idle thread then spins on the core that the
    native epoch's second thread needs. Only a sum that overflows the dtype is summed
    again in float64 (a copy of that array)."""
    with np.errstate(over="ignore", invalid="ignore"):   # once: it costs as much as a sum
        for p in arrays:
            flat = p.ravel()
            if math.isfinite(np.einsum("i,i->", flat, flat)):
                continue
            if not np.einsum("i,i->", flat, flat, dtype=np.float64) <= np.finfo(p.dtype).max:
                return False
    return True


# ---------------------------------------------------------------- a model's data

def nonfinite_X(net):
    return ValueError(f"X: contains NaN or infinity (or numbers beyond {net.dtype})")


def as_array(value, name):
    """np.asarray(value), a ragged nesting of lists (rows of different lengths) a
    ValueError naming the argument."""
    try:
        return np.asarray(value)
    except ValueError:   # NumPy: "setting an array element with a sequence..."
        raise ValueError(f"{name}: expected an array, or a list of rows of equal length; "
                         f"got rows of different lengths") from None


def is_sparse(X):
    """A scipy.sparse matrix or array (told without importing scipy)."""
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


def check_X(net, X, finite=True, sparse=False):
    """X as a C-contiguous (n, sizes[0]) array of the net's dtype; finite=False leaves the
    NaN and infinity check to the caller (the native step and epoch do it as they read X).
    sparse=True: a scipy.sparse X is kept sparse, as CSR of the net's dtype (rows are then
    read a batch at a time, dense_rows), its stored values checked here."""
    if is_sparse(X):
        if not sparse:
            raise TypeError("X: a scipy.sparse matrix is not accepted here; pass X.toarray(), "
                            "or train with fit(), which reads it a few batches at a time")
        if X.ndim != 2 or X.shape[1] != net.sizes[0]:
            raise ValueError(f"X: expected a 2-D array (n, {net.sizes[0]}), got shape {X.shape}")
        X = X.tocsr().astype(net.dtype, copy=False)   # no copy when it is that already
        if not all_finite(X.data):
            raise nonfinite_X(net)
        return X
    X = as_array(X, "X")
    if X.dtype.kind not in "biuf":
        raise TypeError(f"X: expected real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (n, {net.sizes[0]}), got shape {X.shape}")
    if X.shape[1] != net.sizes[0]:
        raise ValueError(f"X: expected {net.sizes[0]} features per row (sizes[0]), got "
                         f"{X.shape[1]}")
    if X.dtype != net.dtype or not X.flags.c_contiguous:
        with np.errstate(over="ignore"):   # a number too large for the dtype: reported below
            X = np.ascontiguousarray(X, dtype=net.dtype)
    if finite and not all_finite(X):
        raise nonfinite_X(net)
    return X


def check_Y(net, Y, n):
    """Y in the form the loss kernels take: int64 labels (n,) or an (n, K) matrix."""
    Y = as_array(Y, "Y")
    K = net.sizes[-1]
    if Y.dtype.kind in "USO" and Y.size and all(isinstance(y, (str, bytes)) for y in Y.flat):
        raise TypeError(f"Y: expected numbers, got strings ({Y.ravel()[:1].tolist()[0]!r}...); "
                        f"encode the labels as 0..{K - 1} (classes, Y = np.unique(Y, "
                        f"return_inverse=True)), or use fastmlp.sklearn.MLPClassifier, which "
                        f"takes them")
    if Y.dtype.kind not in "biuf":
        raise TypeError(f"Y: expected numbers, got dtype {Y.dtype}")
    if Y.ndim == 0 or len(Y) != n:
        raise ValueError(f"Y: expected {n} rows (one per row of X), got shape {Y.shape}")
    if net.output == "softmax" and Y.ndim == 1:
        if Y.dtype.kind == "f" and not np.array_equal(Y, np.round(Y)):
            raise ValueError("Y: class labels must be whole numbers")
        if n and (Y.min() < 0 or Y.max() >= K):
            raise ValueError(f"Y: class labels must be in 0..{K - 1}, got {Y.min()}..{Y.max()}")
        return Y.astype(np.int64)
    if Y.ndim == 1 and K == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[1] != K:
        expected = {"softmax": f"labels (n,) or one-hot (n, {K})"}.get(
            net.output, f"(n, {K})" + (" or (n,)" if K == 1 else ""))
        raise ValueError(f"Y: expected {expected}, got shape {Y.shape}")
    with np.errstate(over="ignore"):
        Y = np.ascontiguousarray(Y, dtype=net.dtype)
    if not all_finite(Y):
        raise ValueError(f"Y: contains NaN or infinity (or numbers beyond {net.dtype})")
    if net.output == "exp" and n and Y.min() < 0:
        raise ValueError(f"Y: Poisson targets (output 'exp') must be >= 0, got {Y.min()}")
    if net.output in ("softmax", "sigmoid") and n and (Y.min() < 0 or Y.max() > 1):
        raise ValueError(f"Y: {net.output} targets must be in [0, 1], got "
                         f"{Y.min()}..{Y.max()}")
    if net.output == "softmax" and not np.allclose(Y.sum(axis=1), 1, atol=1e-3):
        raise ValueError("Y: one-hot rows must sum to 1")
    return Y


def check_sample_weight(net, sample_weight, n):
    """None, or one finite weight >= 0 per row as a C-contiguous array of the net's dtype."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight: expected real numbers, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"sample_weight: expected one weight per row of X, shape ({n},), got "
                         f"shape {w.shape}")
    with np.errstate(over="ignore"):
        w = np.ascontiguousarray(w, dtype=net.dtype)
    if not all_finite(w) or (n and w.min() < 0):
        raise ValueError("sample_weight: expected finite weights >= 0")
    return w


def dense_rows(X, rows, dtype):
    """Rows `rows` (indices or a slice) of X, a dense or scipy.sparse matrix, as a
    C-contiguous array of `dtype`."""
    block = X[rows]
    block = block.toarray() if is_sparse(block) else block
    return np.ascontiguousarray(block, dtype=dtype)


def rows_per_chunk(X, batch_size, chunk_bytes=16 << 20):
    """How many rows of a sparse X to make dense at a time: whole batches (so the batches are
    those of a dense epoch), about chunk_bytes of them."""
    row_bytes = X.shape[1] * X.dtype.itemsize
    return max(1, chunk_bytes // max(row_bytes * batch_size, 1)) * batch_size


def check_batch_rows(net, n, name):
    """A batch-normalised net trains on batches of at least 2 rows (one row has no
    variance; torch.nn.BatchNorm1d refuses it too)."""
    if n < 2 and any(net.batch_norm):
        raise ValueError(f"{name}: batch normalization needs training batches of at least 2 "
                         f"rows, got {n}")
