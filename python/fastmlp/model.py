"""The multilayer perceptron, written once over a kernel table.

Every piece of math goes through `fastmlp.get_backend(backend)`: with backend="numpy" the
model is the textbook reference (fastmlp.reference), with backend="native" the same code
runs on the C++ kernels. In the lecture's notation, for layers l = 1 … L−1:

    z(l+1) = W(l) a(l) + b(l),   a(l+1) = f(z(l+1))          (linear_forward)
    δ(L)   = ∂J/∂z(L)                                       (the loss kernels)
    δ(l)   = (W(l))ᵀ δ(l+1) ⊙ f'(z(l))                       (linear_backward)
    ∂J/∂W(l) = δ(l+1) a(l)ᵀ,   ∂J/∂b(l) = Σ_rows δ(l+1)      (linear_backward)

A maxout hidden layer with s units of k pieces has W of shape (s·k, s_prev): its z holds
the pieces and a(l+1) their maxima (maxout_forward / maxout_backward).
"""
import contextlib
import json
import math
import numbers
import os
import tempfile
import threading
import zipfile

import numpy as np

from . import native_training
from .backend import get_backend
from .reference import ACTIVATIONS, DEFAULT_PARAM

HIDDEN_ACTIVATIONS = ACTIVATIONS + ("maxout",)
DEFAULT_MAXOUT_PIECES = 2
# output -> its losses, the natural one first
OUTPUT_LOSSES = {
    "softmax": ("cross_entropy",),
    "sigmoid": ("binary_cross_entropy", "quadratic"),
    "identity": ("quadratic",),
}
# the element-wise activation linear_forward applies in the output layer; softmax is
# applied by its own kernel (its loss kernel takes the logits z)
OUTPUT_ACTIVATION = {"softmax": "identity", "sigmoid": "sigmoid", "identity": "identity"}
DTYPES = ("float32", "float64")
# every kernel the model calls; a backend must provide all of them
MODEL_OPS = ("linear_forward", "linear_backward", "activation_backward", "maxout_forward",
             "maxout_backward", "softmax", "softmax_cross_entropy",
             "sigmoid_binary_cross_entropy", "quadratic_loss", "sgd_update")
FORMAT_VERSION = 1
# More parameters than this is a mistake in `sizes` (16 GiB of float32), not a model.
MAX_PARAMS = 2**32


# ---------------------------------------------------------------- argument checks

def _is_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_real(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_positive_int(value, name, minimum=1):
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _all_finite(a):
    """No NaN or infinity in the float array `a`. A finite sum proves it in one pass with
    no temporary (isfinite(a) would allocate a boolean copy of a whole training set per
    fit); NaN or infinity anywhere makes the sum non-finite, and an overflowing sum of
    finite numbers falls back to the element-wise test."""
    with np.errstate(over="ignore", invalid="ignore"):   # inf + -inf, or an overflowing sum
        return bool(np.isfinite(a.sum())) or bool(np.isfinite(a).all())


def check_real(value, name, minimum=None, strict=False):
    """A finite real number, > minimum when strict else >= minimum."""
    if not _is_real(value):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name}: expected a number {'>' if strict else '>='} {minimum}, "
                         f"got {value!r}")
    return float(value)


def _is_spec(spec):
    """'relu' or ('leaky_relu', 0.2): one activation, as opposed to a list of them."""
    return isinstance(spec, str) or (
        isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)
        and _is_real(spec[1]))


def parse_activation(spec, name="activation"):
    """An activation spec -> (name, param): param is the leaky slope, the ELU alpha or the
    maxout piece count k, with the defaults filled in (0.0 for the others)."""
    if not _is_spec(spec):
        raise TypeError(f"{name}: expected a name or (name, param), got {spec!r}")
    act, param = (spec, None) if isinstance(spec, str) else spec
    if act not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"{name}: unknown activation {act!r}; expected one of "
                         f"{HIDDEN_ACTIVATIONS}")
    if act == "maxout":
        return act, check_positive_int(DEFAULT_MAXOUT_PIECES if param is None else param,
                                       f"{name} (maxout pieces)")
    if act in DEFAULT_PARAM:
        return act, check_real(DEFAULT_PARAM[act] if param is None else param,
                               f"{name} ({act} parameter)")
    if param is not None:
        raise ValueError(f"{name}: {act!r} takes no parameter, got {param!r}")
    return act, 0.0


def activation_spec(name, param):
    """(name, param) -> the shortest spec that parses back to it: 'relu' or ('elu', 0.5)."""
    return (name, param) if name == "maxout" or name in DEFAULT_PARAM else name


def parse_activations(activation, n_hidden):
    """One spec for every hidden layer, or a list with one spec per hidden layer."""
    if _is_spec(activation):
        return [parse_activation(activation)] * n_hidden
    if not isinstance(activation, (list, tuple)):
        raise TypeError(f"activation: expected a name, (name, param) or a list of them, "
                        f"got {activation!r}")
    if len(activation) != n_hidden:
        raise ValueError(f"activation: expected one per hidden layer ({n_hidden}), got "
                         f"{len(activation)}")
    return [parse_activation(spec, f"activation[{i}]") for i, spec in enumerate(activation)]


def _check_sizes(sizes):
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__") or len(sizes) < 2 \
            or not all(_is_int(s) and s >= 1 for s in sizes):
        raise ValueError(f"sizes: expected a list of at least two layer widths >= 1 "
                         f"(inputs, hidden..., outputs), got {sizes!r}")
    return [int(s) for s in sizes]


def _check_output(output, loss, n_outputs):
    if output not in OUTPUT_LOSSES:
        raise ValueError(f"output: expected one of {tuple(OUTPUT_LOSSES)}, got {output!r}")
    if loss is None:
        loss = OUTPUT_LOSSES[output][0]
    elif loss not in OUTPUT_LOSSES[output]:
        raise ValueError(f"loss: {loss!r} is not supported with output={output!r}; "
                         f"expected one of {OUTPUT_LOSSES[output]}")
    if output == "softmax" and n_outputs < 2:
        raise ValueError(f"sizes: a softmax output needs at least 2 units, got {n_outputs}; "
                         f"use output='sigmoid' for one binary output")
    return output, loss


def _check_dtype(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    return name


def weight_shapes(sizes, activations):
    """(rows, fan_in) of each W(l); a maxout layer has k rows per unit."""
    pieces = [k if act == "maxout" else 1 for act, k in activations] + [1]
    return [(s * k, fan_in) for s, k, fan_in in zip(sizes[1:], pieces, sizes[:-1])]


def missing_ops(backend):
    """The kernels the MLP needs that `backend` does not have (raises if it cannot load)."""
    return [op for op in MODEL_OPS if op not in get_backend(backend).kernels]


def r2(ss_res, ss_tot):
    """R² = 1 − SS_res / SS_tot (scikit-learn's convention when the targets are constant)."""
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


# ---------------------------------------------------------------- the model

class MLP:
    """A multilayer perceptron trained by mini-batch SGD with backpropagation.

    sizes       layer widths [s_1 (inputs), hidden …, s_L (outputs)]
    activation  one spec for every hidden layer or a list, one per hidden layer; a spec is
                a name from HIDDEN_ACTIVATIONS or (name, param): ("leaky_relu", 0.2),
                ("elu", 1.0), ("maxout", 3) (k pieces per unit; default 0.1, 1.0, 2)
    output      "softmax", "sigmoid" or "identity"
    loss        None picks the output's natural loss (cross_entropy, binary_cross_entropy,
                quadratic); "quadratic" is also allowed with a sigmoid output
    backend     "native" (the C++ kernels, the default) or "numpy" (the reference); it can be
                reassigned later (net.backend = "numpy"), the weights stay
    dtype       "float32" or "float64"; inputs are converted to it
    seed        seeds the one Generator that draws the initial weights (N(0, 1/fan_in) in
                float64, then cast) and every shuffle of fit()
    """

    def __init__(self, sizes, activation="sigmoid", output="softmax", loss=None,
                 backend="native", dtype="float32", seed=0):
        self.sizes = _check_sizes(sizes)
        self.activations = parse_activations(activation, len(self.sizes) - 2)
        self.output, self.loss_name = _check_output(output, loss, self.sizes[-1])
        self.dtype = _check_dtype(dtype)
        if seed is not None and (not _is_int(seed) or seed < 0):
            raise ValueError(f"seed: expected an integer >= 0 or None, got {seed!r}")
        self.seed = seed
        self.backend = backend
        n_params = sum(rows * fan_in + rows for rows, fan_in in self._weight_shapes())
        if n_params > MAX_PARAMS:
            raise ValueError(f"sizes: {self.sizes} need {n_params} parameters; expected at most "
                             f"{MAX_PARAMS}")
        self._training, self._trainer = threading.Lock(), None
        self._rng = np.random.default_rng(seed)
        self._weights, self._biases = [], []
        for rows, fan_in in self._weight_shapes():
            w = self._rng.standard_normal((rows, fan_in)) / np.sqrt(fan_in)
            self._weights.append(w.astype(self.dtype))
            self._biases.append(np.zeros(rows, dtype=self.dtype))

    # ------------------------------------------------------------ attributes

    def _weight_shapes(self):
        return weight_shapes(self.sizes, self.activations)

    @property
    def backend(self):
        """The kernel table's name; assign "numpy" or "native" to switch, keeping the weights."""
        return self._kernels.name

    @backend.setter
    def backend(self, name):
        missing = missing_ops(name)
        if missing:
            raise NotImplementedError(
                f"backend: {name!r} lacks the kernels {', '.join(missing)} (not built yet); "
                f"use backend='numpy'")
        self._kernels = get_backend(name)

    @property
    def weights(self):
        """W(l) for each layer, shaped (s_(l+1), s_l); edit them in place or assign a list."""
        return self._weights

    @weights.setter
    def weights(self, values):
        self._assign_params("_weights", values, "weights")

    @property
    def biases(self):
        """b(l) for each layer, shaped (s_(l+1),)."""
        return self._biases

    @biases.setter
    def biases(self, values):
        self._assign_params("_biases", values, "biases")

    def _checked_params(self, values, name, shapes):
        values = list(values)
        if len(values) != len(shapes):
            raise ValueError(f"{name}: expected {len(shapes)} arrays, got {len(values)}")
        out = []
        for i, (v, shape) in enumerate(zip(values, shapes)):
            v = np.asarray(v)
            if v.shape != shape:
                raise ValueError(f"{name}[{i}]: expected shape {shape}, got {v.shape}")
            if v.dtype.kind not in "iuf":
                raise TypeError(f"{name}[{i}]: expected real numbers, got dtype {v.dtype}")
            if not _all_finite(v):
                raise ValueError(f"{name}[{i}]: contains NaN or infinity")
            out.append(np.array(v, dtype=self.dtype, order="C"))
        return out

    @property
    def n_params(self):
        """Number of weights and biases."""
        return sum(w.size + b.size for w, b in zip(self._weights, self._biases))

    def __repr__(self):
        specs = [activation_spec(*act) for act in self.activations]
        return (f"MLP({self.sizes}, activation={specs!r}, output={self.output!r}, "
                f"loss={self.loss_name!r}, backend={self.backend!r}, dtype={self.dtype!r})")

    # ------------------------------------------------------------ training guards
    # One thread trains a model at a time (a second one gets a RuntimeError, it does not
    # wait); forward/predict/score only read the weights, so any number of threads may
    # call them at once. A step or epoch that fails (an exception, KeyboardInterrupt, a loss
    # or weight that is not finite) is undone from a copy taken before it.

    def __getstate__(self):
        state = self.__dict__.copy()
        for name in ("_training", "_trainer", "_saved_params"):
            state.pop(name, None)   # a lock and the undo buffers: rebuilt on demand
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._training, self._trainer = threading.Lock(), None

    @contextlib.contextmanager
    def _exclusive_training(self, caller):
        if not self._training.acquire(blocking=False):
            raise RuntimeError(f"{caller}: this model is being trained by another thread; train "
                               f"a model from one thread at a time (predict() may run meanwhile)")
        self._trainer = threading.get_ident()
        try:
            yield
        finally:
            self._trainer = None
            self._training.release()

    def _assign_params(self, attr, values, name):
        """Checked new weights or biases; refused while another thread trains (fit's own
        thread may assign them: its progress callback, or early stopping's restore)."""
        checked = self._checked_params(values, name, [p.shape for p in getattr(self, attr)])
        if self._trainer == threading.get_ident():
            setattr(self, attr, checked)
            return
        with self._exclusive_training(name):
            setattr(self, attr, checked)

    def _save_params(self):
        """Copy the weights and biases into buffers kept for it (no allocation once made)."""
        params = self._weights + self._biases
        saved = getattr(self, "_saved_params", None)
        if saved is None or [p.shape for p in saved] != [p.shape for p in params] \
                or saved[0].dtype != params[0].dtype:
            saved = self._saved_params = [np.empty_like(p) for p in params]
        for dst, src in zip(saved, params):
            np.copyto(dst, src)

    def _restore_params(self):
        """Back to the last _save_params(), in place (views users hold see it too)."""
        for dst, src in zip(self._weights + self._biases, self._saved_params):
            np.copyto(dst, src)

    def _params_finite(self):
        # Σ p² is NaN or inf when some weight is, and also past |p| ~ 1e19 in float32, which
        # counts as diverged too. einsum, not a BLAS dot: OpenBLAS threads dots this long,
        # and its idle thread then spins for ~0.1 s on the core the native epoch's second
        # thread needs (mid float64 trained 30% slower with 2 threads).
        return all(math.isfinite(np.einsum("i,i->", p.ravel(), p.ravel()))
                   for p in self._weights + self._biases)

    # ------------------------------------------------------------ input checks

    def _check_X(self, X, finite=True):
        """X as a C-contiguous array of the model's dtype; finite=False leaves the NaN and
        infinity check to the caller (the native step and fit() epoch do it as they read X)."""
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X: expected real numbers, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D array (n, {self.sizes[0]}), got shape {X.shape}")
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X: expected {self.sizes[0]} features per row (sizes[0]), got "
                             f"{X.shape[1]}")
        with np.errstate(over="ignore"):   # a number too large for the dtype: reported below
            X = np.ascontiguousarray(X, dtype=self.dtype)
        if finite and not _all_finite(X):
            raise self._nonfinite_X()
        return X

    def _nonfinite_X(self):
        return ValueError(f"X: contains NaN or infinity (or numbers beyond {self.dtype})")

    def _check_Y(self, Y, n):
        """Y in the form the loss kernels take: int64 labels (n,) or a (n, K) matrix."""
        Y = np.asarray(Y)
        K = self.sizes[-1]
        if Y.dtype.kind not in "biuf":
            raise TypeError(f"Y: expected numbers, got dtype {Y.dtype}")
        if Y.ndim == 0 or len(Y) != n:
            raise ValueError(f"Y: expected {n} rows (one per row of X), got shape {Y.shape}")
        if self.output == "softmax" and Y.ndim == 1:
            if Y.dtype.kind == "f" and not np.array_equal(Y, np.round(Y)):
                raise ValueError("Y: class labels must be whole numbers")
            if n and (Y.min() < 0 or Y.max() >= K):
                raise ValueError(f"Y: class labels must be in 0..{K - 1}, got {Y.min()}..{Y.max()}")
            return Y.astype(np.int64)
        if Y.ndim == 1 and K == 1:
            Y = Y[:, None]
        if Y.ndim != 2 or Y.shape[1] != K:
            expected = {"softmax": f"labels (n,) or one-hot (n, {K})"}.get(
                self.output, f"(n, {K})" + (" or (n,)" if K == 1 else ""))
            raise ValueError(f"Y: expected {expected}, got shape {Y.shape}")
        with np.errstate(over="ignore"):
            Y = np.ascontiguousarray(Y, dtype=self.dtype)
        if not _all_finite(Y):
            raise ValueError(f"Y: contains NaN or infinity (or numbers beyond {self.dtype})")
        if self.output != "identity" and n and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(f"Y: {self.output} targets must be in [0, 1], got "
                             f"{Y.min()}..{Y.max()}")
        if self.output == "softmax" and not np.allclose(Y.sum(axis=1), 1, atol=1e-3):
            raise ValueError("Y: one-hot rows must sum to 1")
        return Y

    # ------------------------------------------------------------ the equations

    def _forward(self, X):
        """Forward pass; per layer (its input a(l), z(l+1), a(l+1), maxout argmax or None)."""
        k = self._kernels
        layers = []
        a = X
        for w, b, (act, param) in zip(self._weights, self._biases, self.activations):
            if act == "maxout":
                z, _ = k.linear_forward(a, w, b, "identity", 0.0)
                a_next, argmax = k.maxout_forward(z, param)
            else:
                (z, a_next), argmax = k.linear_forward(a, w, b, act, param), None
            layers.append((a, z, a_next, argmax))
            a = a_next
        z, out = k.linear_forward(a, self._weights[-1], self._biases[-1],
                                  OUTPUT_ACTIVATION[self.output], 0.0)
        layers.append((a, z, out, None))
        return layers

    def _loss_and_delta(self, z, out, Y):
        """J of the batch (without weight decay) and δ(L) = ∂J/∂z(L)."""
        k = self._kernels
        if self.loss_name == "cross_entropy":
            return k.softmax_cross_entropy(z, Y)
        if self.loss_name == "binary_cross_entropy":
            return k.sigmoid_binary_cross_entropy(z, Y)
        loss, d_out = k.quadratic_loss(out, Y)
        if self.output == "identity":
            return loss, d_out
        # the lecture's δ(L) = (a − y) ⊙ σ'(z(L)), with the 1/n of the batch mean
        return loss, k.activation_backward(d_out, z, out, self.output, 0.0)

    def _backward(self, layers, delta):
        """Backpropagate δ(L) through every layer -> (list of ∂J/∂W, list of ∂J/∂b)."""
        k = self._kernels
        n_layers = len(self._weights)
        dws, dbs = [None] * n_layers, [None] * n_layers
        for l in reversed(range(n_layers)):
            x = layers[l][0]
            if l == 0:
                act, param, z_prev, a_prev, argmax_prev = None, 0.0, None, None, None
            else:
                act, param = self.activations[l - 1]
                _, z_prev, a_prev, argmax_prev = layers[l - 1]
            if act == "maxout":
                # "identity" makes linear_backward return ∂J/∂a_prev = δ W; maxout_backward
                # then routes it to the winning piece of each unit
                dws[l], dbs[l], delta = k.linear_backward(delta, x, self._weights[l], None,
                                                          None, "identity", 0.0)
                delta = k.maxout_backward(delta, argmax_prev, param)
            else:
                dws[l], dbs[l], delta = k.linear_backward(delta, x, self._weights[l], z_prev,
                                                          a_prev, act, param)
        return dws, dbs

    def _weight_penalty(self, weight_decay):
        """(weight_decay / 2) Σ W², biases excluded, accumulated in float64."""
        if weight_decay == 0:
            return 0.0
        return 0.5 * weight_decay * sum(float(np.vdot(w, w)) for w in self._weights)

    def _hits(self, z, out, Y):
        """Rows predicted right (classification), or the residual sum of squares (identity)."""
        if self.output == "identity":
            return float(np.sum(np.square(out - Y, dtype=np.float64)))
        if self.output == "softmax":
            labels = Y if Y.ndim == 1 else Y.argmax(axis=1)
            return int(np.count_nonzero(z.argmax(axis=1) == labels))
        return int(np.count_nonzero(((z >= 0) == (Y >= 0.5)).all(axis=1)))

    def _score_from_hits(self, hits, Y):
        """Accuracy, or R² = 1 − SS_res/SS_tot over all outputs for an identity output."""
        n = len(Y)
        if self.output != "identity":
            return hits / n if n else 0.0
        return r2(hits, float(np.sum(np.square(Y - Y.mean(axis=0), dtype=np.float64))))

    def _evaluate(self, X, Y, weight_decay):
        """(J, hits) of checked inputs in one forward pass."""
        _, z, out, _ = self._forward(X)[-1]
        loss, _ = self._loss_and_delta(z, out, Y)
        return loss + self._weight_penalty(weight_decay), self._hits(z, out, Y)

    def _train_step(self, X, Y, lr, weight_decay):
        """One SGD step on checked inputs; returns J before the update and the batch's hits."""
        if self._kernels.name == "native":   # the same steps, in one C++ call
            return native_training.train_step(self, X, Y, lr, weight_decay)[:2]
        k = self._kernels
        layers = self._forward(X)
        _, z, out, _ = layers[-1]
        loss, delta = self._loss_and_delta(z, out, Y)
        loss += self._weight_penalty(weight_decay)
        hits = self._hits(z, out, Y)
        dws, dbs = self._backward(layers, delta)
        for w, b, dw, db in zip(self._weights, self._biases, dws, dbs):
            k.sgd_update(w, dw, lr, weight_decay)
            k.sgd_update(b, db, lr, 0.0)
        return loss, hits

    # ------------------------------------------------------------ public API

    def forward(self, X):
        """Output activations a(L), shape (n, K): class probabilities for softmax/sigmoid."""
        _, z, out, _ = self._forward(self._check_X(X))[-1]
        return self._kernels.softmax(z) if self.output == "softmax" else out

    def loss(self, X, Y, weight_decay=0.0):
        """J = the mean loss over the rows of X + (weight_decay/2) Σ W²."""
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        return self._evaluate(X, Y, check_real(weight_decay, "weight_decay", 0))[0]

    def gradients(self, X, Y, weight_decay=0.0):
        """(list of ∂J/∂W(l), list of ∂J/∂b(l)) by backpropagation, weight decay included."""
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        weight_decay = check_real(weight_decay, "weight_decay", 0)
        layers = self._forward(X)
        _, z, out, _ = layers[-1]
        dws, dbs = self._backward(layers, self._loss_and_delta(z, out, Y)[1])
        if weight_decay:
            dws = [dw + np.dtype(self.dtype).type(weight_decay) * w
                   for dw, w in zip(dws, self._weights)]
        return dws, dbs

    def step(self, X, Y, lr, weight_decay=0.0):
        """One SGD step on the batch (X, Y); returns the batch loss J before the update.

        All or nothing: if the step fails or is interrupted, or its loss or new weights are
        not finite (FloatingPointError: a diverging run), the weights stay as they were."""
        native = self._kernels.name == "native"
        X = self._check_X(X, finite=not native)   # the C++ step checks X as it reads it
        Y = self._check_Y(Y, len(X))
        lr = check_real(lr, "lr", 0, strict=True)
        weight_decay = check_real(weight_decay, "weight_decay", 0)
        with self._exclusive_training("step"):
            self._save_params()
            try:
                if native:   # the C++ step also says whether the new weights are finite
                    loss, _, finite = native_training.train_step(self, X, Y, lr, weight_decay)
                else:
                    loss = self._train_step(X, Y, lr, weight_decay)[0]
                    finite = math.isfinite(loss) and self._params_finite()
            except native_training.NonFiniteInputError:
                raise self._nonfinite_X() from None   # found before any weight changed
            except BaseException:
                self._restore_params()
                raise
            if not finite:
                self._restore_params()
                raise FloatingPointError(
                    f"step: training diverged (batch loss {loss}, or the updated weights are "
                    f"not finite); the step was undone; try a smaller lr than {lr}")
            return loss

    def fit(self, X, Y, epochs=30, batch_size=10, lr=0.5, weight_decay=0.0,
            validation_data=None, patience=None, shuffle=True, progress=False, comm=None):
        """Train by mini-batch SGD; returns a History. See fastmlp.training.fit; with an MPI
        communicator `comm`, data-parallel over its ranks (fastmlp.distributed.fit)."""
        from .training import fit
        return fit(self, X, Y, epochs=epochs, batch_size=batch_size, lr=lr,
                   weight_decay=weight_decay, validation_data=validation_data,
                   patience=patience, shuffle=shuffle, progress=progress, comm=comm)

    def predict(self, X):
        """Class labels (n,) for softmax; 0/1 (n, K) for sigmoid (σ(z) ≥ 0.5 exactly where
        z ≥ 0); values (n, K) for identity. A single sigmoid/identity output gives (n,)."""
        _, z, out, _ = self._forward(self._check_X(X))[-1]
        if self.output == "softmax":
            return z.argmax(axis=1)
        pred = (z >= 0).astype(np.int64) if self.output == "sigmoid" else out
        return pred[:, 0] if self.sizes[-1] == 1 else pred

    def score(self, X, Y):
        """Accuracy (a sigmoid row counts when all its outputs are right); R² for identity."""
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        _, z, out, _ = self._forward(X)[-1]
        return self._score_from_hits(self._hits(z, out, Y), Y)

    # ------------------------------------------------------------ persistence

    def save(self, path, comm=None):
        """Write the architecture, dtype, weights and generator state to an .npz file
        (".npz" is appended to a path without it, as NumPy does). No pickle. With an MPI
        communicator `comm` (after fit(..., comm=comm) every rank holds the same model),
        only its rank 0 writes; the other ranks return at once.

        Atomic: the file is written under a temporary name in the same directory and then
        renamed over `path`, so a crash mid-save leaves the old file (or none), never half
        a model."""
        if comm is not None and comm.Get_rank() != 0:
            return
        config = {"sizes": self.sizes, "activations": self.activations, "output": self.output,
                  "loss": self.loss_name, "dtype": self.dtype, "backend": self.backend,
                  "seed": self.seed, "rng_state": self._rng.bit_generator.state}
        arrays = {f"W{l}": w for l, w in enumerate(self._weights)}
        arrays.update({f"b{l}": b for l, b in enumerate(self._biases)})
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                   prefix=os.path.basename(path) + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, format_version=np.int64(FORMAT_VERSION),
                         config=np.array(json.dumps(config)), **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path, backend=None):
        """Read a model written by save(); backend=None uses the one it was saved with.

        Never unpickles. A file that is not a complete fastmlp model of this format
        (truncated, corrupted, foreign, another format version, arrays of the wrong shape
        or dtype, non-finite weights: the weights setter's check) raises ValueError naming
        the file and the problem."""
        try:
            return cls._load(path, backend)
        except FileNotFoundError:
            raise
        # (zipfile raises NotImplementedError / RuntimeError for archive features it lacks)
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, ValueError,
                OverflowError, NotImplementedError, RuntimeError) as exc:
            if isinstance(exc, ValueError) and str(exc).startswith(f"{path!r}:"):
                raise
            raise ValueError(f"{path!r}: not a valid fastmlp model file ({type(exc).__name__}: "
                             f"{exc})") from exc

    @classmethod
    def _load(cls, path, backend):
        def fail(problem):
            raise ValueError(f"{path!r}: {problem}")
        with open(path, "rb") as fh:
            if not zipfile.is_zipfile(fh):
                fail("is not a fastmlp model file (not an .npz archive)")
            headers = _npz_headers(fh, fail)
            for name, kind in (("format_version", "iu"), ("config", "U")):
                if name not in headers or headers[name][0] != () or headers[name][1].kind not in kind:
                    fail(f"is not a fastmlp model file (no {name})")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as f:
                version = int(f["format_version"])
                if version != FORMAT_VERSION:
                    fail(f"has model format {version}; this fastmlp reads format "
                         f"{FORMAT_VERSION}")
                config = json.loads(str(f["config"]))
                keys = {"sizes", "activations", "output", "loss", "dtype", "backend", "seed",
                        "rng_state"}
                if not isinstance(config, dict) or not keys <= config.keys():
                    fail(f"config: expected the keys {sorted(keys)}")
                # The arrays must be exactly what the config describes; checked on their
                # headers, before any is read or the config's sizes build anything.
                sizes = _check_sizes(config["sizes"])
                activations = [activation_spec(*a) for a in config["activations"]]
                shapes = weight_shapes(sizes, parse_activations(activations, len(sizes) - 2))
                dtype = np.dtype(_check_dtype(config["dtype"]))
                expected = {f"W{l}": shape for l, shape in enumerate(shapes)}
                expected.update({f"b{l}": shape[:1] for l, shape in enumerate(shapes)})
                if set(headers) != set(expected) | {"format_version", "config"}:
                    fail(f"expected the arrays {sorted(expected)}, got {sorted(headers)}")
                for name, shape in expected.items():
                    if headers[name] != (shape, dtype):
                        fail(f"{name}: expected {dtype} {shape} for the model's config, got "
                             f"{headers[name][1]} {headers[name][0]}")
                params = {name: f[name] for name in expected}
        net = cls(sizes, activation=activations, output=config["output"], loss=config["loss"],
                  backend=config["backend"] if backend is None else backend, dtype=dtype.name,
                  seed=config["seed"])
        net.weights = [params[f"W{l}"] for l in range(len(shapes))]
        net.biases = [params[f"b{l}"] for l in range(len(shapes))]
        net._rng.bit_generator.state = config["rng_state"]
        return net


def _npz_headers(file, fail):
    """{name: (shape, dtype)} of the arrays in an .npz archive, from their .npy headers
    alone, each checked to hold exactly the bytes it declares: a corrupted or hostile
    header is refused before anything of its size is allocated."""
    headers = {}
    with zipfile.ZipFile(file) as zf:
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            if name is None or name in headers or info.flag_bits & 0x1 \
                    or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                fail(f"is not a fastmlp model file (member {info.filename!r})")
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    fail(f"{name}: unsupported .npy version {version}")
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    fail(f"{name}: holds Python objects (refused: they would need unpickling)")
                nbytes = math.prod(shape) * dtype.itemsize
                if info.file_size != member.tell() + nbytes:
                    fail(f"{name}: the header announces {shape} of {dtype}, "
                         f"{nbytes} bytes, but the member has {info.file_size - member.tell()}")
            headers[name] = (shape, dtype)
    return headers
