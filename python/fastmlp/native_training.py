"""Training on the native backend: a whole SGD step, or a whole epoch, in one C++ call.

MLP.step, MLP._train_step and fit() hand over to these functions when the model's backend
is "native". The C++ side (csrc/mlp.h) makes the same kernel calls as MLP._train_step, in
a fastmlp._core.TrainingWorkspace that the model keeps between calls, so a steady-state
step allocates nothing. The weights stay the model's ndarrays, updated in place, so the
model can switch backends at any time.
"""
import weakref

from .backend import _native_module

# net -> its TrainingWorkspace. Kept beside the net rather than on it, so the net still
# copies and pickles like any Python object; dropped with the net.
_workspaces = weakref.WeakKeyDictionary()


class NonFiniteInputError(ValueError):
    """A row of X holds NaN or infinity: found by a native step or epoch as it read the row."""


def _checking_X(method, *args):
    """A TrainingWorkspace method called, its NonFiniteInputError raised as ours."""
    try:
        return method(*args)
    except _native_module().NonFiniteInputError as exc:
        raise NonFiniteInputError(str(exc)) from None


def _hidden_specs(net):
    """(name, param) per hidden layer, as TrainingWorkspace takes them."""
    return [(act, float(param)) if act != "maxout" else (act, int(param))
            for act, param in net.activations]


def workspace(net, max_batch):
    """The net's TrainingWorkspace for batches of up to max_batch rows (kept between calls,
    and replaced by a larger one only when a batch does not fit)."""
    ws = _workspaces.get(net)
    if ws is None or ws.max_batch < max_batch:
        ws = _native_module().TrainingWorkspace(net.sizes, _hidden_specs(net), net.output,
                                                net.loss_name, net.dtype, max(max_batch, 1))
        _workspaces[net] = ws
    return ws


def _params(net):
    """The weight and bias lists, each array C-contiguous in the model's dtype and
    writable (C++ updates them in place); an array that is not gets replaced by a copy."""
    for params in (net._weights, net._biases):
        for i, p in enumerate(params):
            if not (p.flags.c_contiguous and p.flags.writeable and p.flags.aligned
                    and p.dtype == net.dtype):
                params[i] = p.astype(net.dtype, order="C", copy=True)
    return net._weights, net._biases


def train_step(net, X, Y, lr, weight_decay):
    """MLP._train_step in one C++ call -> (J before the update, hits, whether J and the new
    weights are all finite). NonFiniteInputError (a ValueError), and no change, if a row of
    X holds NaN or infinity."""
    weights, biases = _params(net)
    return _checking_X(workspace(net, len(X)).step, weights, biases, X, Y, lr, weight_decay)


def train_epoch(net, X, Y, order, batch_size, lr, weight_decay):
    """The batch loop of one fit() epoch in one C++ call, over the rows X[order] (order None:
    row order) -> (Σ J_batch · rows_batch, total hits). NonFiniteInputError (a ValueError)
    at the first batch with a row of X that holds NaN or infinity; the batches before it
    are applied."""
    weights, biases = _params(net)
    batch_size = min(batch_size, len(X))   # the same batches, and no larger workspace
    return _checking_X(workspace(net, batch_size).epoch, weights, biases, X, Y, order,
                       batch_size, lr, weight_decay)


def gradients(net, X, Y, rows, scale, weight_decay, dws, dbs):
    """The gradients of J on the batch X[rows] (rows None: all of X), times `scale`, into
    the arrays dws and dbs (shaped like the weights and biases), in one C++ call; the
    weights are not changed. -> (J with the weight-decay penalty, hits)."""
    weights, biases = _params(net)
    n = len(X) if rows is None else len(rows)
    return workspace(net, n).gradients(dws, dbs, weights, biases, X, Y, rows, scale,
                                       weight_decay)
