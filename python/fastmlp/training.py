"""The training loop: epochs of shuffled mini-batch SGD, a validation set, early stopping."""
import math
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import native_training
from .model import check_positive_int, check_real


@dataclass
class History:
    """Per-epoch numbers of one fit() call.

    loss, accuracy          running means over the epoch's mini-batches, each measured
                            before its update (accuracy is R² for an identity output)
    val_loss, val_accuracy  on validation_data after the epoch (empty without it)
    seconds                 wall time of each epoch, validation included
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


def _epoch_bar(progress, epoch, epochs, n_batches):
    """A tqdm bar over the epoch's batches when progress=True and tqdm is installed."""
    if progress is not True:
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


def _python_epoch(net, X, Y, order, batch_size, lr, weight_decay, bar):
    """One epoch, one net._train_step per batch of X[order] -> (Σ J_batch · rows, hits)."""
    Xs, Ys = (X, Y) if order is None else (X[order], Y[order])
    n = len(X)
    loss_sum, hits = 0.0, 0
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        loss, batch_hits = net._train_step(Xs[lo:hi], Ys[lo:hi], lr, weight_decay)
        loss_sum += loss * (hi - lo)
        hits += batch_hits
        if bar is not None:
            bar.update()
    return loss_sum, hits


def _checked_fit_args(net, X, Y, epochs, batch_size, lr, weight_decay, validation_data,
                      patience, shuffle, progress, epoch_checks_X=False):
    """fit()'s arguments checked and converted: (X, Y, epochs, batch_size, lr, weight_decay,
    validation (Xv, Yv) or None, patience). epoch_checks_X: the first epoch will find any
    NaN or infinity in X itself (the native one does, as it reads each batch), so no pass
    over X is spent on it here unless no epoch runs."""
    X = net._check_X(X, finite=not epoch_checks_X)
    Y = net._check_Y(Y, len(X))
    if len(X) == 0:
        raise ValueError("X: expected at least one row to train on")
    epochs = check_positive_int(epochs, "epochs", minimum=0)
    if epochs == 0 and epoch_checks_X:
        X = net._check_X(X)
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_real(lr, "lr", 0, strict=True)
    weight_decay = check_real(weight_decay, "weight_decay", 0)
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data: expected a pair (X_val, Y_val) or None")
        Xv = net._check_X(validation_data[0])
        validation = Xv, net._check_Y(validation_data[1], len(Xv))
    if patience is not None:
        patience = check_positive_int(patience, "patience")
        if validation_data is None:
            raise ValueError("patience: early stopping needs validation_data")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle: expected True or False, got {shuffle!r}")
    if not (isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise TypeError(f"progress: expected True, False or a callable, got {progress!r}")
    return X, Y, epochs, batch_size, lr, weight_decay, validation, patience


class _EarlyStopping:
    """Tracks the lowest val_loss in a History; with `patience`, keeps the weights of its
    epoch and says when to stop."""

    def __init__(self, patience):
        self.patience, self.best_loss, self.best_params, self.waited = patience, math.inf, None, 0

    def record(self, net, history, epoch, val_loss):
        if val_loss < self.best_loss:
            self.best_loss, history.best_epoch, self.waited = val_loss, epoch, 0
            if self.patience is not None:
                self.best_params = ([w.copy() for w in net.weights],
                                    [b.copy() for b in net.biases])
        else:
            self.waited += 1

    def should_stop(self):
        return self.patience is not None and self.waited >= self.patience

    def restore_best(self, net, history):
        if self.best_params is not None and history.best_epoch != len(history.loss) - 1:
            net.weights, net.biases = self.best_params


def fit(net, X, Y, epochs=30, batch_size=10, lr=0.5, weight_decay=0.0,
        validation_data=None, patience=None, shuffle=True, progress=False, comm=None):
    """Train `net` by mini-batch SGD for `epochs` passes over (X, Y); returns a History.

    Each epoch shuffles the rows with the net's generator (unless shuffle=False) and takes
    one net.step per batch of `batch_size` rows (the last batch may be smaller).
    validation_data=(Xv, Yv) is scored after every epoch. With `patience`, training stops
    once val_loss has not improved for `patience` epochs, and the net ends up holding the
    weights of its best epoch. progress=True shows a tqdm bar per epoch (a printed line
    when tqdm is missing); a callable is called with the History after every epoch.
    comm, an MPI communicator (mpi4py), trains data-parallel over its ranks: see
    fastmlp.distributed.fit.

    NaN or infinity in X is a ValueError and leaves the net untouched on both backends. The
    native backend finds it as its first epoch reads each batch (z(0) of a batch is checked,
    its rows only if z(0) is not finite), which saves fit() a pass over all of X: at the seed
    case that pass cost 7–8% of an epoch.

    Nothing is lost: an epoch that fails, is interrupted (KeyboardInterrupt) or diverges
    (FloatingPointError: a loss or weight not finite) is undone, so the net holds the weights
    of its last completed epoch; the error says which, and carries the History as `.history`.
    Only one thread may train a net at a time (RuntimeError for a second one).
    """
    if comm is not None:
        from .distributed import fit as fit_distributed
        return fit_distributed(net, X, Y, comm, epochs=epochs, batch_size=batch_size, lr=lr,
                               weight_decay=weight_decay, validation_data=validation_data,
                               patience=patience, shuffle=shuffle, progress=progress)
    native = net.backend == "native"
    X, Y, epochs, batch_size, lr, weight_decay, validation, patience = _checked_fit_args(
        net, X, Y, epochs, batch_size, lr, weight_decay, validation_data, patience, shuffle,
        progress, epoch_checks_X=native)
    n_batches = math.ceil(len(X) / batch_size)

    def run_epoch(order, bar):
        if native:   # the whole batch loop in one C++ call
            loss_sum, hits = native_training.train_epoch(net, X, Y, order, batch_size, lr,
                                                         weight_decay)
            if bar is not None:
                bar.update(n_batches)
            return loss_sum, hits
        return _python_epoch(net, X, Y, order, batch_size, lr, weight_decay, bar)

    rng_state = net._rng.bit_generator.state
    try:
        with net._exclusive_training("fit"):
            return train_epochs(net, Y, epochs, n_batches, run_epoch,
                                lambda Xv, Yv: net._evaluate(Xv, Yv, weight_decay), validation,
                                patience, shuffle, progress)
    except native_training.NonFiniteInputError:
        # The first epoch found NaN or infinity in X and was undone: leave the net exactly
        # as the up-front check of the NumPy backend would have (its shuffle not drawn).
        net._rng.bit_generator.state = rng_state
        raise net._nonfinite_X() from None


def _guarded_epoch(net, epoch, run, history):
    """run() -> (Σ J_batch · rows, hits) of one epoch, all or nothing: if it fails, is
    interrupted or diverges, the net is put back to its weights at the epoch's start (a
    copy taken here: the native backend runs the whole epoch in one C++ call, so this is
    where the check can be) and the error says so; the completed epochs' History is on the
    exception as `.history`."""
    net._save_params()
    after = f"epoch {epoch}" if epoch else "fit() started"
    try:
        loss_sum, hits = run()
        if not (math.isfinite(loss_sum) and net._params_finite()):
            raise FloatingPointError(
                f"fit: training diverged in epoch {epoch + 1} (loss {loss_sum}, or weights not "
                f"finite); the model holds its weights as of {after}; try a smaller lr")
    except KeyboardInterrupt as exc:
        net._restore_params()
        interrupt = KeyboardInterrupt(f"fit: interrupted in epoch {epoch + 1}; the model holds "
                                      f"its weights as of {after}")
        interrupt.history = history
        raise interrupt from exc
    except BaseException as exc:
        net._restore_params()
        exc.history = history
        raise
    return loss_sum, hits


def train_epochs(net, Y, epochs, n_batches, run_epoch, evaluate, validation, patience,
                 shuffle, progress):
    """fit()'s epochs, given run_epoch(order, bar) -> (Σ J_batch · rows, hits) of one pass
    over the rows in `order` (None: row order) and evaluate(Xv, Yv) -> (J, hits)."""
    history = History()
    n = len(Y)
    stopping = _EarlyStopping(patience)
    for epoch in range(epochs):
        start = time.perf_counter()
        bar = _epoch_bar(progress, epoch, epochs, n_batches)
        order = net._rng.permutation(n) if shuffle else None
        loss_sum, hits = _guarded_epoch(net, epoch, lambda: run_epoch(order, bar), history)
        history.loss.append(loss_sum / n)
        history.accuracy.append(net._score_from_hits(hits, Y))
        if validation is not None:
            val_loss, val_hits = evaluate(*validation)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(net._score_from_hits(val_hits, validation[1]))
            stopping.record(net, history, epoch, val_loss)
        history.seconds.append(time.perf_counter() - start)
        _report(progress, bar, history)
        if stopping.should_stop():
            if epoch < epochs - 1:
                history.stopped_epoch = epoch
            break
    stopping.restore_best(net, history)
    return history
