"""Gradient check: backpropagation against central finite differences of the loss."""
import numpy as np

# |analytic − numeric| is divided by max(|analytic|, |numeric|, GRADIENT_FLOOR), so
# gradients that are zero up to rounding (a dead ReLU unit) do not blow the ratio up
GRADIENT_FLOOR = 1e-7


def gradcheck(net, X, Y, weight_decay=0.0, eps=1e-6, dropout_step=None):
    """Max relative error between net.gradients(X, Y) and (J(θ+ε) − J(θ−ε)) / 2ε for every
    weight and bias θ of `net` (with batch norm also γ and β; each nudged in place, then
    restored). dropout_step=u fixes the dropout masks of a net with dropout to those of
    update number u (see MLP.loss).

    Use a float64 network: in float32 the differences drown in rounding. Kinks (ReLU at 0,
    maxout ties) within eps of a unit's input make the check meaningless there.
    """
    if not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps: expected a finite step > 0, got {eps!r}")
    fixed = {} if dropout_step is None else {"dropout_step": dropout_step}
    grads = net.gradients(X, Y, weight_decay, **fixed)
    if any(net.batch_norm):   # J as training takes it: with the batch's statistics
        fixed["training"] = True
    worst = 0.0
    params = [p for arrays in net.parameter_lists for p in arrays]
    for param, grad in zip(params, [g for arrays in grads for g in arrays], strict=True):
        flat = param.reshape(-1)            # a view: writes go to the network
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up, loss_up = flat[i], net.loss(X, Y, weight_decay, **fixed)
            flat[i] = old - eps
            down, loss_down = flat[i], net.loss(X, Y, weight_decay, **fixed)
            flat[i] = old
            # divide by the step actually taken, after rounding to the parameter's dtype
            numeric = (loss_up - loss_down) / (float(up) - float(down))
            analytic = float(grad.flat[i])
            scale = max(abs(analytic), abs(numeric), GRADIENT_FLOOR)
            worst = max(worst, abs(analytic - numeric) / scale)
    return worst
