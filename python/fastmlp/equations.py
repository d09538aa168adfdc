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

The native trainer (csrc/mlp.h) makes the same kernel calls in the same order, so it is
bitwise these functions run on the native kernel table.
"""
import numpy as np

from .reference.dropout import dropout_key
from .specs import OUTPUT_ACTIVATION


def forward(k, net, X, dropout=None):
    """Forward pass; per layer (its input a(l), z(l+1), a(l+1), maxout argmax or None).
    dropout=(step, row_offset): with the masks of that update (see forward_masked)."""
    return forward_masked(k, net, X, dropout)[0]


def forward_masked(k, net, X, dropout=None):
    """forward -> (layers, masks): masks[l] is hidden layer l's dropout mask, or None (no
    dropout there, or dropout None: evaluation); a layer's input is then a(l) ⊙ m."""
    layers, masks = [], []
    a = X
    for l, (w, b, (act, param)) in enumerate(zip(net.weights, net.biases, net.activations)):
        if act == "maxout":
            z, _ = k.linear_forward(a, w, b, "identity", 0.0)
            a_next, argmax = k.maxout_forward(z, param)
        else:
            (z, a_next), argmax = k.linear_forward(a, w, b, act, param), None
        layers.append((a, z, a_next, argmax))
        a, mask = a_next, None
        p = net.dropout[l]
        if dropout is not None and p > 0:
            step, row_offset = dropout
            a, mask = k.dropout_forward(a_next, dropout_key(net.mask_seed, step, l),
                                        row_offset, p)
        masks.append(mask)
    z, out = k.linear_forward(a, net.weights[-1], net.biases[-1],
                              OUTPUT_ACTIVATION[net.output], 0.0)
    layers.append((a, z, out, None))
    return layers, masks


def loss_and_delta(k, net, z, out, Y):
    """J of the batch (without weight decay) and δ(L) = ∂J/∂z(L)."""
    if net.loss_name == "cross_entropy":
        return k.softmax_cross_entropy(z, Y)
    if net.loss_name == "binary_cross_entropy":
        return k.sigmoid_binary_cross_entropy(z, Y)
    loss, d_out = k.quadratic_loss(out, Y)
    if net.output == "identity":
        return loss, d_out
    # the lecture's δ(L) = (a − y) ⊙ σ'(z(L)), with the 1/n of the batch mean
    return loss, k.activation_backward(d_out, z, out, net.output, 0.0)


def backward(k, net, layers, delta, masks=None):
    """Backpropagate δ(L) through every layer -> (list of ∂J/∂W, list of ∂J/∂b); masks:
    forward_masked's dropout masks."""
    n_layers = len(net.weights)
    dws, dbs = [None] * n_layers, [None] * n_layers
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
    return dws, dbs


def backprop(k, net, X, Y, scale=None, dropout=None):
    """Forward, loss, backward on one batch -> (J without weight decay, score_sum, list of
    ∂J/∂W, list of ∂J/∂b); with `scale`, the gradients of scale·J; dropout=(step,
    row_offset): with the masks of that update."""
    layers, masks = forward_masked(k, net, X, dropout)
    _, z, out, _ = layers[-1]
    loss, delta = loss_and_delta(k, net, z, out, Y)
    if scale is not None:
        delta = delta * delta.dtype.type(scale)
    return (loss, score_sum(net, z, out, Y)) + backward(k, net, layers, delta, masks)


def weight_penalty(net, weight_decay):
    """(weight_decay / 2) Σ W², biases excluded, accumulated in float64."""
    if weight_decay == 0:
        return 0.0
    return 0.5 * weight_decay * sum(float(np.vdot(w, w)) for w in net.weights)


def score_sum(net, z, out, Y):
    """What a batch adds to the score: rows predicted right (classification), or the
    residual sum of squares (identity, for R²)."""
    if net.output == "identity":
        return float(np.sum(np.square(out - Y, dtype=np.float64)))
    if net.output == "softmax":
        labels = Y if Y.ndim == 1 else Y.argmax(axis=1)
        return int(np.count_nonzero(z.argmax(axis=1) == labels))
    return int(np.count_nonzero(((z >= 0) == (Y >= 0.5)).all(axis=1)))


def score_from_sum(net, total, Y):
    """The score from the score_sum total over targets Y: accuracy, or R² = 1 −
    SS_res/SS_tot over all outputs for an identity output."""
    n = len(Y)
    if net.output != "identity":
        return total / n if n else 0.0
    return r2(total, float(np.sum(np.square(Y - Y.mean(axis=0), dtype=np.float64))))


def r2(ss_res, ss_tot):
    """R² = 1 − SS_res / SS_tot (scikit-learn's convention when the targets are constant)."""
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot
