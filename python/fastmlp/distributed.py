"""Data-parallel training over MPI, through mpi4py: net.fit(X, Y, comm=MPI.COMM_WORLD).

Launch one process per rank (`mpirun -n 4 python train.py`); every rank builds the same
model and calls fit with the same X, Y, validation data and arguments. Then:

- fit checks its arguments on every rank and the ranks agree before any training step: if
  one rank's data is bad, or differs from rank 0's (a digest of every array is compared),
  every rank raises the same ValueError naming the rank and the problem.
- Every rank starts from rank 0's weights and generator state (broadcast), so all draw
  the same shuffle each epoch.
- Each mini-batch of batch_size rows is cut into one contiguous shard per rank: of a batch
  of m rows, rank r takes rows [r·m // R, (r+1)·m // R). A rank computes the gradients of
  its shard's mean loss times (its rows)/m; one Allreduce sums them into the gradients of
  the whole batch's mean loss, and every rank applies the same SGD update. So the weights
  stay identical on every rank and equal, up to rounding, to those of one process training
  with the same batch_size (the tests hold them to 1e-10 relative in float64).
- The epoch's loss and score sum, and the validation set (sharded the same way), are summed
  over the ranks, and rank 0's totals are broadcast, so every rank returns the same
  History and takes the same early-stopping decisions. Progress (bar, lines or callable)
  is shown by rank 0 only.
- Batch normalization uses the statistics of the global batch: each batch-normalised layer
  sums its shard's Σz, Σ(z − μ)² forward and Σδ_y, Σδ_y x̂ backward over the ranks
  (GlobalBatchNorm), so 2 ranks still equal 1 process; every rank then updates the same
  running statistics. Every batch needs at least one row per rank.
- An exception on one rank during training (after the ranks agreed) prints the rank and
  the error to stderr and calls comm.Abort(1), which ends every rank: no rank is left
  waiting in a collective call. A rank that dies is noticed by the MPI launcher, which
  ends the others.
- With the native backend, each rank's kernels run threads_per_rank(comm) threads during
  fit, max(1, cores // ranks on the host), so the ranks sharing a host do not
  oversubscribe its cores; unless fastmlp.set_num_threads was called or OMP_NUM_THREADS
  is set, which then win.

Save once: net.save(path, comm=comm) writes on rank 0 only.
"""
import hashlib
import math
import os
import sys
import time
import traceback

import numpy as np

from . import backend, equations
from .reference.batch_norm import normalise, normalise_backward
from .specs import REGRESSION_OUTPUTS
from .training import History, checked_fit_args, parameters, train_epochs

COMM_METHODS = ("Get_rank", "Get_size", "Allreduce", "Bcast", "allgather", "bcast", "Abort",
                "Split_type")


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("comm: training over MPI needs mpi4py; install it with "
                          "pip install 'fastmlp[mpi]'") from exc
    return MPI


def check_comm(comm):
    """comm must be an mpi4py communicator (an intracommunicator such as MPI.COMM_WORLD)."""
    missing = [m for m in COMM_METHODS if not hasattr(comm, m)]
    if missing:
        raise TypeError(f"comm: expected an mpi4py communicator such as MPI.COMM_WORLD, got "
                        f"{comm!r}")
    return comm


def _cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def _threads_chosen_by_user():
    """fastmlp.set_num_threads was called, or OMP_NUM_THREADS is set."""
    return backend.threads_chosen_by_user or bool(os.environ.get("OMP_NUM_THREADS"))


def threads_per_rank(comm):
    """max(1, cores // ranks on this host): threads for each rank's native kernels, so the
    ranks sharing a host do not oversubscribe its cores. Collective: call on every rank."""
    MPI = _mpi()
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        ranks_here = local.Get_size()
    finally:
        local.Free()
    return max(1, _cores() // ranks_here)


def agree(comm, check):
    """check() on every rank, then its result; if it raised on any rank, every rank raises
    a ValueError naming each failing rank and its error (none is left waiting)."""
    try:
        result, error = check(), None
    except Exception as exc:   # any failure must reach the other ranks, not only ours
        result, error = None, exc
    messages = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    failed = [f"rank {r}: {m}" for r, m in enumerate(messages) if m is not None]
    if failed:
        raise ValueError(f"fit over {comm.Get_size()} MPI ranks: bad input on "
                         f"{'; '.join(failed)}") from error
    return result


def _digest(*arrays):
    """A fingerprint of the arrays' shapes, dtypes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def require_same_on_every_rank(comm, settings):
    """Raise on every rank unless the dict `settings` is equal on every rank."""
    everyone = comm.allgather(settings)
    for rank, theirs in enumerate(everyone):
        differ = [key for key in settings if theirs[key] != everyone[0][key]]
        if differ:
            raise ValueError(f"fit over {comm.Get_size()} MPI ranks: rank {rank} differs from "
                             f"rank 0 in {', '.join(differ)}; every rank must call fit with "
                             f"the same model, data and arguments")


def _broadcast_model(comm, net, optimizer):
    """Rank 0's parameters (batch norm's running statistics too), generator state and
    optimizer state on every rank."""
    optimizer.attach(parameters(net))
    for p in parameters(net) + net.running_means + net.running_vars + optimizer.state_arrays():
        comm.Bcast(p, root=0)
    net._rng.bit_generator.state = comm.bcast(net._rng.bit_generator.state, root=0)
    optimizer.state = comm.bcast(optimizer.state, root=0)


def shard(lo, hi, rank, size):
    """Rank `rank`'s contiguous share [start, stop) of the rows lo .. hi-1."""
    m = hi - lo
    return lo + rank * m // size, lo + (rank + 1) * m // size


def _gradient_buffer(net):
    """One flat array for every gradient (one Allreduce per step), and its views: one list
    per net.parameter_lists entry."""
    flat = np.empty(net.n_params, dtype=net.dtype)
    grads, offset = [], 0
    for params in net.parameter_lists:
        grads.append([])
        for p in params:
            grads[-1].append(flat[offset:offset + p.size].reshape(p.shape))
            offset += p.size
    return flat, grads


class GlobalBatchNorm:
    """batch_norm_forward / batch_norm_backward (as the kernel tables have them) with the
    statistics of the global batch of `rows` rows, of which this rank holds a shard: the
    twin's formulas (fastmlp.reference.batch_norm) with the per-unit sums summed over the
    ranks (float64 Allreduce). Backward returns this shard's share of ∂J/∂γ and ∂J/∂β,
    which the step's gradient Allreduce sums like every other gradient."""

    def __init__(self, comm, rows):
        self.comm, self.rows = comm, rows

    def _total(self, local):
        MPI = _mpi()
        total = np.asarray(local, dtype=np.float64).copy()
        self.comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
        return total.astype(local.dtype)

    def batch_norm_forward(self, z, gamma, beta, eps):
        return normalise(z, gamma, beta, eps, self.rows, self._total)

    def batch_norm_backward(self, dy, xhat, gamma, inv_std):
        return normalise_backward(dy, xhat, gamma, inv_std, self.rows, self._total)


def _shard_gradients(net, comm, X, Y, rows, scale, weight_decay, grads, masks, batch_rows):
    """The backend's gradients of this rank's shard X[rows] (as numpy_training.gradients);
    with batch norm, through GlobalBatchNorm on the net's kernels, and the running
    statistics updated with the global batch's."""
    trainer = net._kernels.training
    if not any(net.batch_norm):
        return trainer.gradients(net, X, Y, rows, scale, weight_decay, grads, masks)
    loss, score_sum, computed, norms = equations.backprop(
        net._kernels, net, X[rows], Y[rows], scale, masks,
        batch_stats=GlobalBatchNorm(comm, batch_rows))
    for dst, src in zip([g for gs in grads for g in gs], [g for gs in computed for g in gs],
                        strict=True):
        dst[...] = src
    equations.update_running_stats(net, norms, batch_rows)
    return loss + equations.weight_penalty(net, weight_decay), score_sum


def _epoch(net, comm, X, Y, order, batch_size, optimizer, lr, grads, bar):
    """One epoch of data-parallel SGD -> this rank's (Σ J_shard · rows_shard, score sum): per
    batch, the backend's gradients of this rank's shard, one Allreduce, the backend's
    update."""
    MPI = _mpi()
    trainer = net._kernels.training
    rank, size = comm.Get_rank(), comm.Get_size()
    flat, grad_lists = grads
    if order is None:
        order = np.arange(len(X))
    loss_sum, score_sum = 0.0, 0
    for lo in range(0, len(X), batch_size):
        hi = min(lo + batch_size, len(X))
        start, stop = shard(lo, hi, rank, size)
        # dropout: the masks of the whole batch's update, this shard's rows of them
        masks = (optimizer.state["step"] + 1, start - lo) if any(net.dropout) else None
        loss, shard_score = _shard_gradients(net, comm, X, Y, order[start:stop],
                                             (stop - start) / (hi - lo), optimizer.l2_penalty,
                                             grad_lists, masks, hi - lo)
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        trainer.update(net, grad_lists, optimizer, lr)
        loss_sum += loss * (stop - start)
        score_sum += shard_score
        if bar is not None:
            bar.update()
    return loss_sum, score_sum


def _evaluate_shard(net, comm, Xv, Yv, weight_decay):
    """This rank's (Σ J · rows, score_sum) on its shard of the validation set."""
    start, stop = shard(0, len(Xv), comm.Get_rank(), comm.Get_size())
    if start == stop:
        return 0.0, 0
    loss, score_sum = net._kernels.training.evaluate(net, Xv[start:stop], Yv[start:stop],
                                                     weight_decay)
    return loss * (stop - start), score_sum


def _global_sums(net, comm, loss_sum, score_sum):
    """(Σ loss_sum, Σ score_sum) over the ranks, as rank 0 got them, so identical
    everywhere; score_sum in the model's type (a row count, or a sum of squares for
    regression outputs)."""
    MPI = _mpi()
    totals = np.array([loss_sum, score_sum], dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, totals, op=MPI.SUM)
    comm.Bcast(totals, root=0)
    score_sum = (float(totals[1]) if net.output in REGRESSION_OUTPUTS
                 else int(round(totals[1])))
    return float(totals[0]), score_sum


ABORT_REPORT_WAIT = 1.0   # seconds


def _abort(comm, exc):
    """Report this rank's failure and end every rank of comm."""
    sys.stdout.flush()
    sys.stderr.write(f"fastmlp: MPI rank {comm.Get_rank()} of {comm.Get_size()} failed during "
                     f"training ({type(exc).__name__}: {exc}); aborting every rank\n"
                     f"{''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}")
    sys.stderr.flush()
    # The launcher forwards a rank's output asynchronously, and MPI_Abort can end the job
    # before it has read this report (seen in CI: an empty stderr). A moment's wait on a
    # path that ends the job anyway lets the report reach the user.
    time.sleep(ABORT_REPORT_WAIT)
    comm.Abort(1)


def _checked_args(net, X, Y, ranks, *args):
    """checked_fit_args, and with batch norm every batch of at least one row per rank (each
    shard takes part in the global batch's statistics)."""
    checked = checked_fit_args(net, X, Y, *args)
    rows, batch_size = len(checked[0]), checked[3]
    if checked[4].decay_per_sample:   # each shard would divide by its own rows
        raise ValueError("optimizer: a per-sample weight decay (decay_per_sample=True) is not "
                         "supported over MPI")
    smallest = min(batch_size, rows % batch_size or batch_size, rows)
    if any(net.batch_norm) and smallest < ranks:
        raise ValueError(f"batch_size: batch normalization over {ranks} MPI ranks needs batches "
                         f"of at least {ranks} rows (one per rank); batches of {batch_size} over "
                         f"{rows} rows leave one of {smallest}")
    return checked


def fit(net, X, Y, comm, epochs=30, batch_size=10, lr=None, weight_decay=None, optimizer=None,
        validation_data=None, patience=None, shuffle=True, progress=False):
    """MLP.fit over the ranks of the MPI communicator `comm` (see the module
    docstring); batch_size is the global mini-batch, shared out among the ranks. Call it
    on every rank with the same arguments; returns the same History on every rank."""
    check_comm(comm)
    args = agree(comm, lambda: _checked_args(net, X, Y, comm.Get_size(), epochs, batch_size,
                                             lr, weight_decay, optimizer, validation_data,
                                             patience, shuffle, progress))
    X, Y, epochs, batch_size, optimizer, validation, patience = args
    require_same_on_every_rank(comm, {
        "model": repr(net), "training data": _digest(X, Y),
        "validation data": None if validation is None else _digest(*validation),
        "arguments": (epochs, batch_size, repr(optimizer.config()), patience,
                      bool(shuffle))})
    _broadcast_model(comm, net, optimizer)
    rank, size = comm.Get_rank(), comm.Get_size()
    if rank != 0:
        progress = False
    trainer = net._kernels.training
    threads = threads_per_rank(comm)
    saved_threads = None if _threads_chosen_by_user() else trainer.get_num_threads()
    if saved_threads is not None:
        trainer.set_num_threads(threads)
    try:
        return _fit(net, comm, X, Y, epochs, batch_size, optimizer, validation,
                    patience, shuffle, progress)
    except BaseException as exc:   # a lone failing rank would leave the others waiting
        if size > 1:
            _abort(comm, exc)
        raise
    finally:
        if saved_threads is not None:
            trainer.set_num_threads(saved_threads)


def _fit(net, comm, X, Y, epochs, batch_size, optimizer, validation, patience,
         shuffle, progress):
    grads = _gradient_buffer(net)

    def run_epoch(order, lr, bar):
        local = _epoch(net, comm, X, Y, order, batch_size, optimizer, lr, grads, bar)
        return _global_sums(net, comm, *local)

    def evaluate(Xv, Yv):
        loss_sum, score_sum = _global_sums(
            net, comm, *_evaluate_shard(net, comm, Xv, Yv, optimizer.l2_penalty))
        return loss_sum / len(Xv), score_sum   # checked_fit_args refuses an empty set

    return train_epochs(net, Y, epochs, math.ceil(len(X) / batch_size), optimizer, run_epoch,
                        evaluate, validation, patience, shuffle, progress, History())
