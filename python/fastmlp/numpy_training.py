"""The training interface in Python: the lecture's equations (fastmlp.equations), one
kernel call at a time, on the net's kernel table.

Every backend's training module has these functions with these meanings; the backend
table (fastmlp.backend) says which one a net uses, and fit, step, MLP.gradients, MPI
training and the estimators reach training only through it:

    gradients(net, X, Y, rows, scale, weight_decay, grads, dropout=None, sample_weight=None)
        -> (J, score_sum)
    update(net, grads, optimizer, lr)
    step(net, X, Y, optimizer, lr, sample_weight=None) -> (J, score_sum, finite)
    epoch(net, X, Y, order, batch_size, optimizer, lr, bar, sample_weight=None)
        -> (Σ J_batch · rows, score_sum)
    evaluate(net, X, Y, weight_decay, sample_weight=None) -> (J, score_sum)

`optimizer` is a fastmlp.optim optimizer (its state is updated in place: buffers and
update count), `lr` the learning rate its schedule gives the current epoch. J includes the
L2 penalty (weight_decay, or the optimizer's l2_penalty) and is measured before the
update; score_sum is what the rows add to the score: rows predicted right, or the
residual sum of squares for a regression output. A net with dropout trains update number
u (the optimizer's state["step"] after it) with the masks of u (fastmlp.equations);
gradients' dropout=(u, row_offset) applies them, row i of the batch being row row_offset
+ i of update u's batch (a data-parallel shard). `grads` holds one list of arrays per
net.parameter_lists entry (∂J/∂W, ∂J/∂b, and ∂J/∂γ, ∂J/∂β with batch norm).
sample_weight (None, or one weight >= 0 per row of X, an array of the net's dtype) makes J
the weighted mean of the rows' losses (fastmlp.reference.loss), and sizes each batch for an
optimizer whose weight decay is per sample (Optimizer.batch_decay).
FINDS_NONFINITE_X says whether step and epoch find NaN or infinity in X themselves
(raising checks.NonFiniteInputError), so their caller need not check X first.
"""
import math

from . import equations
from .checks import in_range

FINDS_NONFINITE_X = False


def flat(lists):
    return [a for arrays in lists for a in arrays]


def gradients(net, X, Y, rows, scale, weight_decay, grads, dropout=None, sample_weight=None):
    """The gradients of J on the batch X[rows] (rows None: all of X), times `scale`, into
    the arrays of `grads` (shaped like the parameters); the parameters are not changed
    (nor the running statistics of batch norm) and weight decay is left to the update ->
    (J with the weight-decay penalty, score_sum). dropout=(step, row_offset) or None: see
    the module's docstring."""
    if rows is not None:
        if len(rows) == 0:
            for g in flat(grads):
                g.fill(0)
            return equations.weight_penalty(net, weight_decay), 0
        X, Y = X[rows], Y[rows]
        sample_weight = None if sample_weight is None else sample_weight[rows]
    loss, score_sum, computed, _ = equations.backprop(net._kernels, net, X, Y, scale, dropout,
                                                      sample_weight)
    for dst, src in zip(flat(grads), flat(computed), strict=True):
        dst[...] = src
    return loss + equations.weight_penalty(net, weight_decay), score_sum


def update(net, grads, optimizer, lr, weight_decay=None):
    """One update of every parameter by the optimizer, with the given gradients (one list
    per net.parameter_lists entry): the weights decayed by weight_decay (by default the
    optimizer's); biases, γ and β not."""
    if weight_decay is None:
        weight_decay = optimizer.weight_decay
    params = flat(net.parameter_lists)
    decays = [weight_decay] * len(net.weights)
    decays += [0.0] * (len(params) - len(decays))
    optimizer.update(net._kernels, params, flat(grads), decays, lr)


def next_masks(net, optimizer):
    """The dropout masks of the optimizer's next update, as equations.backprop takes them
    (None without dropout)."""
    return (optimizer.state["step"] + 1, 0) if any(net.dropout) else None


def batch_weight(n, sample_weight):
    """A batch's size for a per-sample weight decay: Σ of its sample weights, added in row
    order in float64 as the C++ trainer adds them; its row count without weights."""
    return float(n) if sample_weight is None else sum(sample_weight.astype(float).tolist())


def train_batch(net, X, Y, optimizer, lr, sample_weight=None):
    """One update on checked inputs -> (J before the update, score_sum)."""
    weight_decay, penalty = optimizer.batch_decay(batch_weight(len(X), sample_weight))
    loss, score_sum, grads, norms = equations.backprop(net._kernels, net, X, Y,
                                                       dropout=next_masks(net, optimizer),
                                                       sample_weight=sample_weight)
    loss += equations.weight_penalty(net, penalty)
    equations.update_running_stats(net, norms, len(X))
    update(net, grads, optimizer, lr, weight_decay)
    return loss, score_sum


def step(net, X, Y, optimizer, lr, sample_weight=None):
    """train_batch, and whether J and every new parameter (weights, biases, γ, β) are
    finite."""
    loss, score_sum = train_batch(net, X, Y, optimizer, lr, sample_weight)
    finite = math.isfinite(loss) and in_range(flat(net.parameter_lists))
    return loss, score_sum, finite


def epoch(net, X, Y, order, batch_size, optimizer, lr, bar, sample_weight=None):
    """One train_batch per batch of X[order] (order None: row order); `bar` (a tqdm bar or
    None) advances per batch."""
    n = len(X)
    loss_sum, score_sum = 0.0, 0
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        # a shuffled batch's rows gathered one batch at a time, not X[order] whole: no copy of
        # all of X to allocate and write, and the batch is still in cache for its products
        rows = slice(lo, hi) if order is None else order[lo:hi]
        loss, batch_score = train_batch(net, X[rows], Y[rows], optimizer, lr,
                                        None if sample_weight is None else sample_weight[rows])
        loss_sum += loss * (hi - lo)
        score_sum += batch_score
        if bar is not None:
            bar.update()
    return loss_sum, score_sum


def evaluate(net, X, Y, weight_decay, sample_weight=None):
    """J and score_sum of checked inputs in one forward pass."""
    k = net._kernels
    z, out = equations.output_layer(k, net, X)
    loss, _ = equations.loss_and_delta(k, net, z, out, Y, sample_weight)
    return loss + equations.weight_penalty(net, weight_decay), equations.score_sum(net, z, out, Y)


def get_num_threads():
    """None: NumPy's BLAS threads are not fastmlp's to set."""
    return None


def set_num_threads(n):
    """Nothing to set (see get_num_threads)."""
