"""Parameter updates (NumPy twin of csrc/kernels/update.*): SGD, and torch.optim's SGD with
momentum and Adam/AdamW. The optimizers' constants are computed in Python floats (double)
and rounded to the arrays' dtype once, with t(...), as the native kernels do."""
import math

import numpy as np


# sgd_update works through W in blocks of about this many bytes: the temporary
# lr (∂J/∂W + ...) of a whole large W (a megabyte or more) would be a fresh allocation each
# step, which glibc maps and unmaps (or trims off the heap), paying a page fault per 4 KiB
# touched: 2.5x slower steps on the mid case in float64. A block stays in the heap (below
# glibc's 128 KiB mmap threshold) and in the cache; the seed case's W(0) in float32 (92 KiB)
# is one block, since each block costs a few views (about 1 µs).
BLOCK_BYTES = 96 << 10


def row_blocks(w):
    """Indices of w's blocks: slices of its leading axis covering about BLOCK_BYTES each,
    or all of w (...) when it is that small (or 0-d)."""
    if w.nbytes <= BLOCK_BYTES:
        return (...,)
    rows = max(1, BLOCK_BYTES * len(w) // w.nbytes)
    return [slice(i, i + rows) for i in range(0, len(w), rows)]


def sgd_update(w, dw, lr, weight_decay):
    """In place: W ← W − lr (∂J/∂W + weight_decay · W). Biases are passed weight_decay=0."""
    t = w.dtype.type
    lr, decay = t(lr), t(weight_decay)
    blocks = row_blocks(w)
    if len(blocks) > 1 and np.may_share_memory(w, dw):   # read before any block of w changes
        dw = dw.copy()
    for rows in blocks:
        w_rows, dw_rows = w[rows], dw[rows]
        # a decay of 0 skips its pass (0 · W adds nothing to a finite W)
        w_rows -= lr * (dw_rows + decay * w_rows) if weight_decay else lr * dw_rows


def momentum_update(w, dw, velocity, lr, momentum, nesterov, weight_decay):
    """In place, torch.optim.SGD's step with momentum (dampening 0): g = ∂J/∂W + weight_decay · W,
    velocity ← momentum · velocity + g, W ← W − lr · velocity, or with Nesterov
    W ← W − lr (g + momentum · velocity). velocity starts at zeros (the first step gives g)."""
    t = w.dtype.type
    lr, momentum, weight_decay = float(lr), float(momentum), float(weight_decay)
    g = dw + t(weight_decay) * w
    velocity[...] = t(momentum) * velocity + g
    w -= t(lr) * ((g + t(momentum) * velocity) if nesterov else velocity)


def adam_update(w, dw, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """In place, torch.optim.Adam's step (torch.optim.AdamW's when decoupled); step >= 1 counts
    the steps including this one. m and v, the moving averages of g and g², start at zeros;
    the bias corrections 1 − β₁^step and √(1 − β₂^step) undo that start."""
    t = w.dtype.type
    lr, beta1, beta2, eps, weight_decay = (float(x) for x in (lr, beta1, beta2, eps, weight_decay))
    step_size = t(lr / (1.0 - beta1 ** step))
    # 1 / √(1 − β₂^step), multiplied rather than divided by: one division fewer per weight
    # (within an ulp of torch's division; both backends round it the same)
    inv_bc2_sqrt = t(1.0 / math.sqrt(1.0 - beta2 ** step))
    if decoupled:
        g = dw.copy()   # read before w changes, in case dw shares memory with w
        w *= t(1.0 - lr * weight_decay)
    else:
        g = dw + t(weight_decay) * w
    m[...] = t(beta1) * m + t(1.0 - beta1) * g
    v[...] = t(beta2) * v + t(1.0 - beta2) * (g * g)
    w -= step_size * (m / (np.sqrt(v) * inv_bc2_sqrt + t(eps)))
