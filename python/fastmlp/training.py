"""The training loop: epochs of shuffled mini-batch SGD, a validation set, early stopping;
and the guards around every step and epoch (one training thread per net; all or nothing).

The work of a step or an epoch is the backend's training module (fastmlp.numpy_training
or fastmlp.native_training, picked by the net's backend table); everything here is the
same for every backend, and fastmlp.distributed reuses it over MPI.
"""
import contextlib
import math
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import equations, optim
from .checks import (NonFiniteInputError, check_batch_rows, check_int, check_real,
                     check_sample_weight, check_X, check_Y, dense_rows, in_range, is_sparse,
                     nonfinite_X, rows_per_chunk)

DEFAULT_LR = 0.5   # plain SGD's, when neither lr nor an optimizer is given
# rows of the training set that warn_if_untrained looks at: enough to tell a dead layer or
# a constant output, few enough to cost little in every fit() (1,000 rows took 10-16% of
# a one-epoch fit of 6,000 rows of seed or 6,400 of mid; 256 rows take a quarter of that)
CHECKED_ROWS = 256


class TrainingWarning(UserWarning):
    """fit() ended with a model that cannot have learned: a dead layer, or one output for
    every row."""


def warn_if_untrained(net, X):
    """Warn, with the remedy, when fit() ended with a model that cannot have learned: every
    ReLU of a hidden layer outputs 0 for every row (no gradient reaches below it again), or
    the output is the same for every row of a training set whose rows differ (one class,
    or one value, for everything). Looks at the first CHECKED_ROWS rows."""
    X = dense_rows(X, slice(0, CHECKED_ROWS), net.dtype)
    if len(X) < 2 or not np.ptp(X, axis=0).any():
        return
    layers = equations.forward(net._kernels, net, X)
    remedy = "scale X (to mean 0, variance 1) or lower the learning rate"
    for l, (act, _) in enumerate(net.activations):
        if act == "relu" and not layers[l][2].any():
            warnings.warn(f"fit: every unit of hidden layer {l} outputs 0 for every row (dead "
                          f"ReLUs: no gradient reaches them again); {remedy}", TrainingWarning,
                          stacklevel=3)
            return
    z = layers[-1][1]
    if not np.ptp(z, axis=0).any():
        warnings.warn(f"fit: the model's output is the same for every row (one class, or one "
                      f"value, for everything); {remedy}", TrainingWarning, stacklevel=3)


@dataclass
class History:
    """Per-epoch numbers of one fit() call.

    loss, accuracy          running means over the epoch's mini-batches, each measured
                            before its update (accuracy is R² for an identity output)
    val_loss, val_accuracy  on validation_data after the epoch (empty without it)
    seconds                 wall time of each epoch, validation included
    lr                      the learning rate of each epoch (the optimizer's schedule)
    best_epoch              index of the epoch with the lowest val_loss (None without
                            validation data)
    stopped_epoch           index of the epoch after which early stopping ended training
                            (None if every epoch ran)
    """
    loss: List[float] = field(default_factory=list)
    accuracy: List[float] = field(default_factory=list)
    val_loss: List[float] = field(default_factory=list)
    val_accuracy: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    lr: List[float] = field(default_factory=list)
    best_epoch: Optional[int] = None
    stopped_epoch: Optional[int] = None


def format_epoch(history, epoch):
    """One line of numbers for epoch `epoch` of `history`."""
    line = (f"epoch {epoch + 1:4d}  loss {history.loss[epoch]:.4f}  "
            f"acc {history.accuracy[epoch]:.4f}")
    if history.val_loss:
        line += (f"  val_loss {history.val_loss[epoch]:.4f}  "
                 f"val_acc {history.val_accuracy[epoch]:.4f}")
    return line + f"  {history.seconds[epoch]:.2f}s"


def _bar_shows():
    """A bar can be drawn: tqdm's stream (stderr) is a terminal, or a Jupyter kernel runs
    us (tqdm.auto draws a widget there). Elsewhere (a log file, a pipe) the bar's carriage
    returns would only be junk among the per-epoch lines."""
    isatty = getattr(sys.stderr, "isatty", None)
    return (isatty is not None and isatty()) or "ipykernel" in sys.modules


def _epoch_bar(progress, epoch, epochs, n_batches):
    """A tqdm bar over the epoch's batches when progress=True, tqdm is installed and a bar
    can be drawn."""
    if progress is not True or not _bar_shows():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False)


def _report(progress, bar, history):
    epoch = len(history.loss) - 1
    if callable(progress):
        progress(history)
    elif progress:
        if bar is not None:
            bar.close()
        print(format_epoch(history, epoch), flush=True)


# ---------------------------------------------------------------- guards
# One thread trains a net at a time (a second one gets a RuntimeError, it does not wait);
# forward/predict/score only read the weights, so any number of threads may call them at
# once. A step or epoch that fails (an exception, KeyboardInterrupt, a loss or weight that
# is not finite) is undone from a snapshot taken before it.

def init_guards(net):
    """The lock that makes training exclusive, the intents to train (one per guarded call,
    by id), and the intent that holds the lock."""
    net._training_lock, net._intents, net._holder = threading.Lock(), {}, None


class _Intent:
    """A call's intent to train a net: its thread, and the frame that trains (the one that
    entered the guard). While that frame is on its thread's stack the call is under way;
    once it is not, the call has ended, however it ended."""

    __slots__ = ("thread", "frame")

    def __init__(self):
        self.thread = threading.get_ident()
        frame = sys._getframe(2)   # past exclusive() itself
        while frame is not None and frame.f_code.co_filename == contextlib.__file__:
            frame = frame.f_back   # past contextmanager's __enter__
        self.frame = frame

    def under_way(self):
        top = (sys._getframe() if self.thread == threading.get_ident()
               else sys._current_frames().get(self.thread))   # None: the thread has ended
        while top is not None:
            if top is self.frame:
                return True
            top = top.f_back
        return False


@contextlib.contextmanager
def exclusive(net, caller):
    """Hold the net's training lock, or raise RuntimeError at once if another call does.

    An interrupt (Ctrl-C) can land between any two lines here, even between taking the
    lock and the finally that gives it back, and leave the lock held. So a call that finds
    the lock taken trains anyway when no other intent to train is still under way: the
    holder was interrupted, and the lock is released on its behalf."""
    busy = (f"{caller}: this model is being trained by another thread; train a model from "
            f"one thread at a time (predict() may run meanwhile)")
    intent = _Intent()
    net._intents[id(intent)] = intent
    try:
        if not net._training_lock.acquire(blocking=False):
            others = [i for i in list(net._intents.values()) if i is not intent]
            if any(i.under_way() for i in others):
                raise RuntimeError(busy)
            for stale in others:
                net._intents.pop(id(stale), None)
            with contextlib.suppress(RuntimeError):   # released by another breaker already
                net._training_lock.release()
            if not net._training_lock.acquire(blocking=False):
                raise RuntimeError(busy)
        net._holder = intent
        yield
    finally:
        net._intents.pop(id(intent), None)
        if net._holder is intent:
            net._holder = None
            net._training_lock.release()


def training_here(net):
    """This call's thread holds the net's training lock, in a call still under way (fit's
    progress callback, say)."""
    holder = net._holder
    return holder is not None and holder.thread == threading.get_ident() and holder.under_way()


def parameters(net):
    """Every trained array of the net: weights, biases, and batch norm's γ and β."""
    return [p for params in net.parameter_lists for p in params]


def _batch_norm_state(net):
    """Batch norm's γ, β and running statistics (none without batch norm)."""
    return net.gammas + net.betas + net.running_means + net.running_vars


def model_state(net):
    """What a training step changes: the parameters and batch norm's running statistics."""
    return parameters(net) + net.running_means + net.running_vars


def _snapshot(net, optimizer):
    """Copy the parameters, running statistics and the optimizer's state into buffers kept
    for it (no allocation once made)."""
    optimizer.attach(parameters(net))
    params = model_state(net) + optimizer.state_arrays()
    saved = getattr(net, "_snapshot", None)
    if saved is None or [p.shape for p in saved] != [p.shape for p in params] \
            or saved[0].dtype != params[0].dtype:
        saved = net._snapshot = [np.empty_like(p) for p in params]
    for dst, src in zip(saved, params):
        np.copyto(dst, src)
    net._snapshot_state = optimizer, dict(optimizer.state)


def _rollback(net):
    """Back to the last _snapshot(), in place (views users hold see it too)."""
    optimizer, state = net._snapshot_state
    for dst, src in zip(model_state(net) + optimizer.state_arrays(), net._snapshot):
        np.copyto(dst, src)
    optimizer.state = dict(state)


# ---------------------------------------------------------------- the optimizer

def resolve_optimizer(net, optimizer, lr, weight_decay):
    """The optimizer a fit or step uses, checked, not yet the net's: plain SGD with lr
    (DEFAULT_LR for fit) and weight_decay when `optimizer` is None; an optimizer object
    as it is; a name with lr and weight_decay (when given) over its defaults. The net's
    own optimizer when it has the same settings, so its state carries on."""
    if isinstance(optimizer, optim.Optimizer):
        for name, value in (("lr", lr), ("weight_decay", weight_decay)):
            if value is not None:
                raise ValueError(f"{name}: set it on the optimizer object ({optimizer!r}), "
                                 f"not beside it")
        return optimizer
    settings = {}
    if lr is not None:
        settings["lr"] = check_real(lr, "lr", 0, strict=True)
    if weight_decay is not None:
        settings["weight_decay"] = check_real(weight_decay, "weight_decay", 0)
    if optimizer is None:
        candidate = optim.SGD(**{"lr": DEFAULT_LR, **settings})
    elif isinstance(optimizer, str):
        candidate = optim.make(optimizer, **settings)
    else:
        raise TypeError(f"optimizer: expected a fastmlp.optim optimizer, its name or None, "
                        f"got {optimizer!r}")
    current = getattr(net, "optimizer", None)
    return current if current is not None and current.same_settings(candidate) else candidate


def check_lr_fits(net, optimizer):
    """The learning rate is not 0 in the net's dtype (1e-46 is, in float32: no training)."""
    if np.dtype(net.dtype).type(optimizer.lr) == 0:
        raise ValueError(f"lr: {optimizer.lr!r} is 0 in {net.dtype}; expected a rate that "
                         f"{net.dtype} can hold")


# ---------------------------------------------------------------- one step

def step(net, X, Y, lr=None, weight_decay=None, optimizer=None, sample_weight=None):
    """One update on the batch (X, Y); returns the batch loss J before the update. All
    or nothing: see MLP.step."""
    trainer = net._kernels.training
    X = check_X(net, X, finite=not trainer.FINDS_NONFINITE_X)
    Y = check_Y(net, Y, len(X))
    sample_weight = check_sample_weight(net, sample_weight, len(X))
    check_batch_rows(net, len(X), "X")
    if optimizer is None and lr is None:
        raise TypeError("lr: expected a real number (a learning rate, or optimizer=...), got None")
    optimizer = resolve_optimizer(net, optimizer, lr, weight_decay)
    check_lr_fits(net, optimizer)
    with exclusive(net, "step"):
        lr = optimizer.current_lr()
        _snapshot(net, optimizer)
        try:
            loss, _, finite = trainer.step(net, X, Y, optimizer, lr, sample_weight)
        except NonFiniteInputError:
            raise nonfinite_X(net) from None   # found before any weight changed
        except BaseException:
            _rollback(net)
            raise
        if not finite:
            _rollback(net)
            raise FloatingPointError(
                f"step: training diverged (batch loss {loss}, or the updated weights are "
                f"not finite); the step was undone; try a smaller lr than {lr}")
        net.optimizer = optimizer
        return loss


# ---------------------------------------------------------------- epochs

def checked_fit_args(net, X, Y, epochs, batch_size, lr, weight_decay, optimizer,
                     validation_data, patience, shuffle, progress, epoch_checks_X=False,
                     sparse=False):
    """fit()'s arguments checked and converted: (X, Y, epochs, batch_size, optimizer,
    validation (Xv, Yv) or None, patience). epoch_checks_X: the first epoch will find any
    NaN or infinity in X itself (the native one does, as it reads each batch), so no pass
    over X is spent on it here unless no epoch runs. sparse: a scipy.sparse X is taken (as
    CSR; see check_X)."""
    X = check_X(net, X, finite=not epoch_checks_X, sparse=sparse)
    Y = check_Y(net, Y, X.shape[0])
    if X.shape[0] == 0:
        raise ValueError("X: expected at least one row to train on")
    epochs = check_int(epochs, "epochs", minimum=0)
    if epochs == 0 and epoch_checks_X:
        X = check_X(net, X, sparse=sparse)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    smallest = min(batch_size, X.shape[0] % batch_size or batch_size, X.shape[0])
    if smallest < 2 and any(net.batch_norm):
        raise ValueError(f"batch_size: batch normalization needs training batches of at least "
                         f"2 rows; batches of {batch_size} over {len(X)} rows leave one of "
                         f"{smallest}")
    optimizer = resolve_optimizer(net, optimizer, lr, weight_decay)
    check_lr_fits(net, optimizer)
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data: expected a pair (X_val, Y_val) or None")
        Xv = check_X(net, validation_data[0])
        if len(Xv) == 0:   # it would score 0.0 and steer early stopping to epoch 0
            raise ValueError("validation_data: expected at least one row to validate on")
        validation = Xv, check_Y(net, validation_data[1], len(Xv))
    if patience is not None:
        patience = check_int(patience, "patience", minimum=1)
        if validation_data is None:
            raise ValueError("patience: early stopping needs validation_data")
    if not (isinstance(shuffle, (bool, np.bool_)) or callable(shuffle)):
        raise TypeError(f"shuffle: expected True, False or a callable, got {shuffle!r}")
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise TypeError(f"progress: expected True, False or a callable, got {progress!r}")
    return X, Y, epochs, batch_size, optimizer, validation, patience


class _EarlyStopping:
    """Tracks the lowest val_loss in a History; with `patience`, keeps the weights of its
    epoch and says when to stop."""

    def __init__(self, patience):
        self.patience, self.best_loss, self.best_params, self.waited = patience, math.inf, None, 0

    def record(self, net, history, epoch, val_loss):
        if val_loss < self.best_loss:
            self.best_loss, history.best_epoch, self.waited = val_loss, epoch, 0
            if self.patience is not None:   # batch norm's arrays too
                self.best_params = ([w.copy() for w in net.weights],
                                    [b.copy() for b in net.biases],
                                    [a.copy() for a in _batch_norm_state(net)])
        else:
            self.waited += 1

    def should_stop(self):
        return self.patience is not None and self.waited >= self.patience

    def restore_best(self, net, history):
        if self.best_params is not None and history.best_epoch != len(history.loss) - 1:
            net.weights, net.biases, norms = self.best_params
            for dst, src in zip(_batch_norm_state(net), norms, strict=True):
                np.copyto(dst, src)


def fit(net, X, Y, epochs=30, batch_size=10, lr=None, weight_decay=None, optimizer=None,
        validation_data=None, patience=None, shuffle=True, progress=False,
        check_untrained=True, sample_weight=None):
    """Train `net` in this process; see MLP.fit. check_untrained: warn_if_untrained at the
    end (a caller that fits one epoch at a time checks once, after its last).

    NaN or infinity in X is a ValueError and leaves the net untouched on every backend. A
    backend whose epoch finds it as it reads each batch (FINDS_NONFINITE_X) saves fit()
    a pass over all of X.

    A scipy.sparse X (CSR or CSC) is never made dense whole: each epoch makes dense a few
    batches of its rows at a time (about 16 MiB), the same batches as a dense X would give."""
    trainer = net._kernels.training
    X, Y, epochs, batch_size, optimizer, validation, patience = checked_fit_args(
        net, X, Y, epochs, batch_size, lr, weight_decay, optimizer, validation_data, patience,
        shuffle, progress, epoch_checks_X=trainer.FINDS_NONFINITE_X, sparse=True)
    sample_weight = check_sample_weight(net, sample_weight, X.shape[0])

    def run_epoch(order, lr, bar):
        if not is_sparse(X):
            return trainer.epoch(net, X, Y, order, batch_size, optimizer, lr, bar, sample_weight)
        rows = np.arange(X.shape[0]) if order is None else order
        chunk = rows_per_chunk(X, batch_size)
        loss_sum, score_sum = 0.0, 0
        for lo in range(0, len(rows), chunk):
            part = rows[lo:lo + chunk]
            loss, score = trainer.epoch(net, dense_rows(X, part, net.dtype), Y[part], None,
                                        batch_size, optimizer, lr, bar,
                                        None if sample_weight is None else sample_weight[part])
            loss_sum, score_sum = loss_sum + loss, score_sum + score
        return loss_sum, score_sum

    def evaluate(Xv, Yv):
        return trainer.evaluate(net, Xv, Yv, optimizer.l2_penalty)

    rng_state = net._rng.bit_generator.state
    history = History()
    try:
        with exclusive(net, "fit"):
            train_epochs(net, Y, epochs, math.ceil(X.shape[0] / batch_size), optimizer, run_epoch,
                         evaluate, validation, patience, shuffle, progress, history)
    except NonFiniteInputError:
        # The first epoch found NaN or infinity in X and was undone: leave the net exactly
        # as an up-front check would have (its shuffle not drawn).
        net._rng.bit_generator.state = rng_state
        raise nonfinite_X(net) from None
    except BaseException as exc:   # an interrupt in the guard too: the History goes along
        if not hasattr(exc, "history"):
            exc.history = history
        raise
    if check_untrained and history.loss:
        warn_if_untrained(net, X)
    return history


def _guarded_epoch(net, optimizer, epoch, run, history):
    """run() -> (Σ J_batch · rows, score_sum) of one epoch, all or nothing: if it fails, is
    interrupted or diverges, the net is put back to its weights at the epoch's start (a
    snapshot taken here: the native backend runs the whole epoch in one C++ call, so this
    is where the check can be) and the error says so; the completed epochs' History is on
    the exception as `.history`."""
    _snapshot(net, optimizer)
    after = f"epoch {epoch}" if epoch else "fit() started"
    try:
        loss_sum, score_sum = run()
        if not (math.isfinite(loss_sum) and in_range(parameters(net))):
            raise FloatingPointError(
                f"fit: training diverged in epoch {epoch + 1} (loss {loss_sum}, or weights not "
                f"finite); the model holds its weights as of {after}; try a smaller lr")
    except KeyboardInterrupt as exc:
        _rollback(net)
        interrupt = KeyboardInterrupt(f"fit: interrupted in epoch {epoch + 1}; the model holds "
                                      f"its weights as of {after}")
        interrupt.history = history
        raise interrupt from exc
    except BaseException as exc:
        _rollback(net)
        exc.history = history
        raise
    return loss_sum, score_sum


def epoch_order(net, shuffle, n):
    """The order of an epoch's rows: a permutation from the net's generator (shuffle=True),
    row order (False, None returned), or the caller's: shuffle(n), a permutation of range(n)
    (how the scikit-learn estimators draw scikit-learn's own shuffles)."""
    if callable(shuffle):
        order = np.asarray(shuffle(n))
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(f"shuffle: the callable must return a permutation of range({n})")
        return order
    return net._rng.permutation(n) if shuffle else None


def train_epochs(net, Y, epochs, n_batches, optimizer, run_epoch, evaluate, validation,
                 patience, shuffle, progress, history):
    """fit()'s epochs with `optimizer` (the net's once an epoch has completed), given
    run_epoch(order, lr, bar) -> (Σ J_batch · rows, score_sum) of one pass over the rows
    in `order` (None: row order) at learning rate lr, and evaluate(Xv, Yv) -> (J,
    score_sum); fills `history` (and returns it). Any exception leaving it carries the
    completed epochs' History as `.history`."""
    n = len(Y)
    stopping = _EarlyStopping(patience)
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            bar = _epoch_bar(progress, epoch, epochs, n_batches)
            order = epoch_order(net, shuffle, n)
            lr = optimizer.current_lr()
            loss_sum, score_sum = _guarded_epoch(net, optimizer, epoch,
                                                 lambda: run_epoch(order, lr, bar), history)
            net.optimizer = optimizer
            history.lr.append(lr)
            history.loss.append(loss_sum / n)
            history.accuracy.append(equations.score_from_sum(net, score_sum, Y))
            if validation is not None:
                val_loss, val_score = evaluate(*validation)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(
                    equations.score_from_sum(net, val_score, validation[1]))
                stopping.record(net, history, epoch, val_loss)
            optimizer.epoch_ended(n, history.val_loss[-1] if validation else history.loss[-1])
            history.seconds.append(time.perf_counter() - start)
            _report(progress, bar, history)
            if stopping.should_stop():
                if epoch < epochs - 1:
                    history.stopped_epoch = epoch
                break
    except BaseException as exc:   # also an interrupt between epochs: the History goes along
        if not hasattr(exc, "history"):
            exc.history = history
        raise
    stopping.restore_best(net, history)
    return history
