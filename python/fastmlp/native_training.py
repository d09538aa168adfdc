"""The training interface (see fastmlp.numpy_training) on the native backend: a whole step,
a whole epoch, or a batch's gradients in one C++ call.

The C++ side (csrc/mlp.h, Trainer) makes the same kernel calls as fastmlp.equations, in a
fastmlp._core.TrainingWorkspace kept per net between calls, so a steady-state step
allocates nothing. The weights stay the net's ndarrays, updated in place, so a net can
switch backends at any time.
"""
import weakref

from . import native_core, numpy_training
from .checks import NonFiniteInputError
from .optim import Adam

# one forward pass over the native kernels: nothing to keep in C++
evaluate = numpy_training.evaluate

FINDS_NONFINITE_X = True   # the C++ step and epoch check each row of X as they read it
# seconds between the C++ epoch's reports of its batches to a progress bar: often enough to
# look live, rarely enough that taking the GIL costs nothing measurable
PROGRESS_INTERVAL = 0.1

# net -> its TrainingWorkspace. Kept beside the net rather than on it, so the net still
# copies and pickles like any Python object; dropped with the net.
_workspaces = weakref.WeakKeyDictionary()


def _checking_X(method, *args, **kwargs):
    """A TrainingWorkspace method called, its NonFiniteInputError raised as ours."""
    try:
        return method(*args, **kwargs)
    except native_core.load().NonFiniteInputError as exc:
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
        ws = native_core.load().TrainingWorkspace(net.sizes, _hidden_specs(net), net.output,
                                                  net.loss_name, net.dtype, max(max_batch, 1),
                                                  net.dropout, net.batch_norm)
        _workspaces[net] = ws
    return ws


def params(net):
    """The weight and bias lists, each array C-contiguous in the net's dtype and writable
    (C++ updates them in place); an array that is not gets replaced by a copy (batch
    norm's γ, β and running statistics too)."""
    for arrays in net.parameter_lists + [net.running_means, net.running_vars]:
        for i, p in enumerate(arrays):
            if not (p.flags.c_contiguous and p.flags.writeable and p.flags.aligned
                    and p.dtype == net.dtype):
                arrays[i] = p.astype(net.dtype, order="C", copy=True)
    return net.weights, net.biases


def gradients(net, X, Y, rows, scale, weight_decay, grads, dropout=None, sample_weight=None):
    weights, biases = params(net)
    dws, dbs, *norm_grads = grads
    dgammas, dbetas = norm_grads or ((), ())
    n = len(X) if rows is None else len(rows)
    step, row_offset = (-1, 0) if dropout is None else dropout
    return workspace(net, n).gradients(dws, dbs, weights, biases, X, Y, rows, scale,
                                       weight_decay, sample_weight=sample_weight,
                                       mask_seed=net.mask_seed, mask_step=step,
                                       row_offset=row_offset, gammas=net.gammas,
                                       betas=net.betas, dgammas=dgammas, dbetas=dbetas)


def update(net, grads, optimizer, lr, weight_decay=None):
    params(net)   # the native kernels write in place: C-contiguous arrays of the dtype
    numpy_training.update(net, grads, optimizer, lr, weight_decay)


def _rule(net, optimizer):
    """The optimizer as TrainingWorkspace's step and epoch take it: the update rule, its
    hyperparameters, the updates applied so far, its buffers (per buffer name, a tuple: the
    weights' arrays, the biases' arrays, and with batch norm the gammas' and the betas'),
    and batch norm's arrays."""
    weights, biases = params(net)
    lists = net.parameter_lists
    optimizer.attach(numpy_training.flat(lists))
    if isinstance(optimizer, Adam):
        rule = dict(rule="adam", betas=optimizer.betas, eps=optimizer.eps,
                    sklearn_eps=optimizer.eps_style == "sklearn",
                    decoupled=optimizer.decoupled)
    elif optimizer.momentum:
        rule = dict(rule="momentum", momentum=optimizer.momentum, nesterov=optimizer.nesterov)
    else:
        rule = dict(rule="sgd")
    # per buffer name, the flat per-parameter list cut as parameter_lists is
    state = []
    for arrays in zip(*optimizer.buffers):
        rest = iter(arrays)
        state.append(tuple([next(rest) for _ in params] for params in lists))
    return weights, biases, dict(rule, weight_decay=optimizer.weight_decay,
                                 penalty=optimizer.l2_penalty,
                                 decay_per_sample=optimizer.decay_per_sample,
                                 step=optimizer.state["step"], state=state,
                                 mask_seed=net.mask_seed, gammas=net.gammas, betas_=net.betas,
                                 running_means=net.running_means,
                                 running_vars=net.running_vars)


def step(net, X, Y, optimizer, lr, sample_weight=None):
    """The C++ step also says whether J and the new weights are finite; NonFiniteInputError,
    and no change, if a row of X holds NaN or infinity."""
    weights, biases, rule = _rule(net, optimizer)
    result = _checking_X(workspace(net, len(X)).step, weights, biases, X, Y, lr, **rule,
                         sample_weight=sample_weight)
    optimizer.state["step"] += 1
    return result


def epoch(net, X, Y, order, batch_size, optimizer, lr, bar, sample_weight=None):
    """NonFiniteInputError at the first batch with a row of X that holds NaN or infinity
    (the batches before it are applied); `bar` advances as the C++ epoch reports its
    batches done (every PROGRESS_INTERVAL seconds), and to the end when it returns."""
    weights, biases, rule = _rule(net, optimizer)
    batch_size = min(batch_size, len(X))   # the same batches, and no larger workspace
    start = 0 if bar is None else bar.n   # a sparse X's epoch comes in several calls
    progress = None if bar is None else (lambda done: bar.update(start + done - bar.n))
    result = _checking_X(workspace(net, batch_size).epoch, weights, biases, X, Y, order,
                         batch_size, lr, progress=progress,
                         progress_interval=PROGRESS_INTERVAL, **rule, sample_weight=sample_weight)
    n_batches = -(-len(X) // batch_size)
    optimizer.state["step"] += n_batches
    if bar is not None:
        bar.update(start + n_batches - bar.n)
    return result


def get_num_threads():
    return native_core.load().get_num_threads()


def set_num_threads(n):
    native_core.load().set_num_threads(n)
