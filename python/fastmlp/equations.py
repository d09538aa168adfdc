"""The lecture's equations, written once over a kernel table `k` (either backend's).

`net` is anything with weights, biases, activations, output, loss_name (an MLP). In the
lecture's notation, for layers l = 1 … L−1:

    z(l+1) = W(l) a(l) + b(l),   a(l+1) = f(z(l+1))          (linear_forward)
    δ(L)   = ∂J/∂z(L)                                       (the loss kernels)
    δ(l)   = (W(l))ᵀ δ(l+1) ⊙ f'(z(l))                       (linear_backward)
    ∂J/∂W(l) = δ(l+1) a(l)ᵀ,   ∂J/∂b(l) = Σ_rows δ(l+1)      (linear_backward)

A maxout hidden layer with s units of k pieces has W of shape (s·k, s_prev): its z holds
the pieces and a(l+1) their maxima (maxout_forward / maxout_backward).

Dropout (training only): a hidden layer with rate p passes a(l+1) ⊙ m to the next layer,
m = 1/(1 − p) for a kept unit and 0 for a dropped one (inverted dropout: the expected
input of the next layer is unchanged, so evaluation needs no rescaling); backward,
δ(l) = (W(l))ᵀ δ(l+1) ⊙ f'(z(l)) ⊙ m. The masks are those of update number `step`
(fastmlp.reference.dropout: a pure function of the net's mask seed, step, layer, row and
unit), row i of X being row row_offset + i of the batch.

Batch normalization of a hidden layer (torch.nn.BatchNorm1d's): its pre-activation is
y = γ x̂ + β with x̂ = (z − μ)/√(σ² + ε), a(l+1) = f(y); while training μ, σ² are the
batch's (batch_norm_forward) and backprop goes through them (batch_norm_backward, after
the derivative's product: δ_y = (W(l))ᵀ δ(l+1) ⊙ f'(y)); evaluation uses the running
statistics, so each row's output depends on that row alone.

The native trainer (csrc/mlp.h) makes the same kernel calls in the same order, so it is
bitwise these functions run on the native kernel table.
"""
import numpy as np

from .reference.dropout import dropout_key
from .specs import BATCH_NORM_EPS, BATCH_NORM_MOMENTUM, OUTPUT_ACTIVATION, REGRESSION_OUTPUTS


def forward(k, net, X, dropout=None, batch_stats=None):
    """Forward pass; per layer (its input a(l), z(l+1), a(l+1), maxout argmax or None),
    where a batch-normalised layer's z is y, the normalised pre-activation. dropout=(step,
    row_offset): with the masks of that update; batch_stats: batch norm with the batch's
    statistics, as training (see forward_masked)."""
    return forward_masked(k, net, X, dropout, batch_stats)[0]


def batch_norm_eval(net, j, z):
    """Batch-normalised layer j's y from its running statistics (evaluation)."""
    t = z.dtype.type
    return ((z - net.running_means[j]) / np.sqrt(net.running_vars[j] + t(BATCH_NORM_EPS))
            * net.gammas[j] + net.betas[j])


def forward_masked(k, net, X, dropout=None, batch_stats=None, keep_hidden=True):
    """forward -> (layers, masks, norms): masks[l] is hidden layer l's dropout mask, or
    None (no dropout there, or dropout None: evaluation), and a layer's input is then
    a(l) ⊙ m. batch_stats None: batch norm with the running statistics (evaluation); else
    what normalises with the batch's statistics, by its batch_norm_forward: the kernel
    table k, or distributed.GlobalBatchNorm (the global batch's statistics over MPI).
    norms[l] is batch_norm_forward's (x̂, μ, σ², 1/√(σ² + ε)) of a batch-normalised layer
    with batch_stats, else None. keep_hidden=False (evaluation): layers holds the output
    layer alone, and a hidden layer's a(l+1) is computed over its z(l+1) (no z is kept) and
    let go once the next layer has been computed."""
    layers, masks, norms = [], [], []
    a = X
    j = 0   # index of the next batch-normalised layer's γ, β
    rates, batch_norm = net.dropout, net.batch_norm   # (copies: read once)
    for l, (w, b, (act, param)) in enumerate(zip(net.weights, net.biases, net.activations)):
        stats = None
        if act == "maxout" or batch_norm[l]:
            _, z = k.linear_forward(a, w, b, "identity", 0.0, keep_z=False)   # a is z here
            if batch_norm[l]:
                if batch_stats is not None:
                    z, *stats = batch_stats.batch_norm_forward(z, net.gammas[j], net.betas[j],
                                                               BATCH_NORM_EPS)
                else:
                    z = batch_norm_eval(net, j, z)
                j += 1
            if act == "maxout":
                a_next, argmax = k.maxout_forward(z, param)
            else:
                a_next, argmax = k.activation_forward(z, act, param), None
        else:
            (z, a_next), argmax = k.linear_forward(a, w, b, act, param, keep_hidden), None
        if keep_hidden:
            layers.append((a, z, a_next, argmax))
        norms.append(stats)
        a, mask = a_next, None
        p = rates[l]
        if dropout is not None and p > 0:
            step, row_offset = dropout
            a, mask = k.dropout_forward(a_next, dropout_key(net.mask_seed, step, l),
                                        row_offset, p)
        masks.append(mask)
    z, out = k.linear_forward(a, net.weights[-1], net.biases[-1],
                              OUTPUT_ACTIVATION[net.output], 0.0)
    layers.append((a, z, out, None))
    return layers, masks, norms


# Evaluation takes the rows in chunks of about this many bytes of the widest layer (X is
# only read): each chunk's activations stay in cache from one layer to the next, and its
# arrays are small enough to be reused rather than freshly faulted in (predict on 10,000
# rows of mid, whole: 40 MB of new pages per call, 18% of its time zeroing them).
EVAL_CHUNK_BYTES = 1 << 20


def output_layer(k, net, X):
    """(z(L), a(L)) of the evaluation forward pass; a chunk of rows at a time where the
    kernels treat rows independently (k.rows_independent: then the chunks change no
    result), each chunk by forward_masked with keep_hidden=False."""
    rows = max(1, EVAL_CHUNK_BYTES // (max(net.sizes[1:]) * X.dtype.itemsize))
    if len(X) <= rows or not k.rows_independent:
        return _chunk_output_layer(k, net, X)
    z, out = (np.empty((len(X), net.sizes[-1]), X.dtype) for _ in range(2))
    for start in range(0, len(X), rows):
        z[start:start + rows], out[start:start + rows] = _chunk_output_layer(
            k, net, X[start:start + rows])
    return z, out


def _chunk_output_layer(k, net, X):
    _, z, out, _ = forward_masked(k, net, X, keep_hidden=False)[0][-1]
    return z, out


def loss_and_delta(k, net, z, out, Y, sample_weight=None):
    """J of the batch (without weight decay) and δ(L) = ∂J/∂z(L); with sample_weight, J is
    the weighted mean of the rows' losses."""
    if net.loss_name == "cross_entropy":
        return k.softmax_cross_entropy(z, Y, sample_weight)
    if net.loss_name == "binary_cross_entropy":
        return k.sigmoid_binary_cross_entropy(z, Y, sample_weight)
    if net.loss_name == "poisson":
        return k.poisson_loss(z, Y, sample_weight)
    loss, d_out = k.quadratic_loss(out, Y, sample_weight)
    if net.output == "identity":
        return loss, d_out
    # the lecture's δ(L) = (a − y) ⊙ σ'(z(L)), with the 1/n of the batch mean
    return loss, k.activation_backward(d_out, z, out, net.output, 0.0)


def backward(k, net, layers, delta, masks=None, norms=None, batch_stats=None):
    """Backpropagate δ(L) through every layer -> one gradient list per
    net.parameter_lists entry: ∂J/∂W, ∂J/∂b (and ∂J/∂γ, ∂J/∂β with batch norm); masks,
    norms, batch_stats: forward_masked's (batch_stats None: k)."""
    batch_stats = k if batch_stats is None else batch_stats
    n_layers = len(net.weights)
    dws, dbs = [None] * n_layers, [None] * n_layers
    dgammas, dbetas = [None] * len(net.gammas), [None] * len(net.gammas)
    for l in reversed(range(n_layers)):
        x = layers[l][0]
        if l == 0:
            act, param, z_prev, a_prev, argmax_prev = None, 0.0, None, None, None
        else:
            act, param = net.activations[l - 1]
            _, z_prev, a_prev, argmax_prev = layers[l - 1]
        if act == "maxout":
            # "identity" makes linear_backward return ∂J/∂a_prev = δ W; maxout_backward
            # then routes it to the winning piece of each unit
            dws[l], dbs[l], delta = k.linear_backward(delta, x, net.weights[l], None, None,
                                                      "identity", 0.0)
            if masks is not None and masks[l - 1] is not None:
                delta = delta * masks[l - 1]
            delta = k.maxout_backward(delta, argmax_prev, param)
        else:
            dws[l], dbs[l], delta = k.linear_backward(delta, x, net.weights[l], z_prev,
                                                      a_prev, act, param)
            if l > 0 and masks is not None and masks[l - 1] is not None:
                delta = delta * masks[l - 1]
        if l > 0 and norms is not None and norms[l - 1] is not None:
            j = sum(net.batch_norm[:l - 1])
            xhat, _, _, inv_std = norms[l - 1]
            delta, dgammas[j], dbetas[j] = batch_stats.batch_norm_backward(
                delta, xhat, net.gammas[j], inv_std)
    return [dws, dbs, dgammas, dbetas][:len(net.parameter_lists)]


def backprop(k, net, X, Y, scale=None, dropout=None, sample_weight=None, batch_stats=None):
    """Forward (batch norm with the batch's statistics, by batch_stats: k unless given),
    loss, backward on one batch -> (J without weight decay, score_sum, backward's gradient
    lists, forward_masked's norms); with `scale`, the gradients of scale·J; dropout=(step,
    row_offset): with the masks of that update; sample_weight: J the weighted mean."""
    batch_stats = k if batch_stats is None else batch_stats
    layers, masks, norms = forward_masked(k, net, X, dropout, batch_stats)
    _, z, out, _ = layers[-1]
    loss, delta = loss_and_delta(k, net, z, out, Y, sample_weight)
    if scale is not None:
        delta = delta * delta.dtype.type(scale)
    return (loss, score_sum(net, z, out, Y),
            backward(k, net, layers, delta, masks, norms, batch_stats), norms)


def update_running_stats(net, norms, n):
    """After a training batch of n >= 2 rows, in place: running mean ← (1 − m)·running
    mean + m·μ and running var ← (1 − m)·running var + m·σ²·n/(n − 1) (unbiased), with
    torch's momentum m."""
    stats = [s for s in norms if s is not None]
    if not stats:
        return
    t = stats[0][1].dtype.type
    m, keep, unbiased = t(BATCH_NORM_MOMENTUM), t(1 - BATCH_NORM_MOMENTUM), t(n / (n - 1))
    for run_mean, run_var, (_, mean, var, _) in zip(net.running_means, net.running_vars, stats):
        np.copyto(run_mean, keep * run_mean + m * mean)
        np.copyto(run_var, keep * run_var + m * (var * unbiased))


def weight_penalty(net, weight_decay):
    """(weight_decay / 2) Σ W², biases excluded, accumulated in float64."""
    if weight_decay == 0:
        return 0.0
    return 0.5 * weight_decay * sum(float(np.vdot(w, w)) for w in net.weights)


def score_sum(net, z, out, Y):
    """What a batch adds to the score: rows predicted right (classification), or the
    residual sum of squares (regression: identity and exp outputs, for R²)."""
    if net.output in REGRESSION_OUTPUTS:
        pred = np.exp(z) if net.output == "exp" else out
        return float(np.sum(np.square(pred - Y, dtype=np.float64)))
    if net.output == "softmax":
        labels = Y if Y.ndim == 1 else Y.argmax(axis=1)
        return int(np.count_nonzero(z.argmax(axis=1) == labels))
    return int(np.count_nonzero(((z >= 0) == (Y >= 0.5)).all(axis=1)))


def score_from_sum(net, total, Y):
    """The score from the score_sum total over targets Y: accuracy, or R² = 1 −
    SS_res/SS_tot over all outputs for a regression output."""
    n = len(Y)
    if net.output not in REGRESSION_OUTPUTS:
        return total / n if n else 0.0
    return r2(total, float(np.sum(np.square(Y - Y.mean(axis=0), dtype=np.float64))))


def r2(ss_res, ss_tot):
    """R² = 1 − SS_res / SS_tot (scikit-learn's convention when the targets are constant)."""
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot
