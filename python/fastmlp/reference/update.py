"""Parameter updates (NumPy twin of csrc/kernels/update.*): SGD, and torch.optim's SGD with
momentum and Adam/AdamW. The optimizers' constants are computed in Python floats (double)
and stay Python floats: NumPy rounds one to the array's dtype where it meets an array, to
the same number as w.dtype.type(...) would (and the native kernels do), without making a
NumPy scalar per constant per call (a few µs a step for a small net's six arrays)."""
import math

import numpy as np


# The updates work through W in blocks of about this many bytes, and make their temporaries
# one or two at a time, worked on in place (the same products and sums, commuted where the
# kernel writes them the other way round): the temporaries of a whole large W (a megabyte or
# more) would be fresh allocations each step, which glibc maps and unmaps (or trims off the
# heap), paying a page fault per 4 KiB touched: 2.5x slower SGD steps on the mid case in
# float64, 4x (momentum) and 7x (Adam) slower epochs. With blocks of 256 KiB and at most two
# temporaries alive, no update faulted (seed and mid, both dtypes, SGD, momentum and Adam,
# with and without weight decay), and a block stays in L2; the seed case's W(0) in float64
# (184 KiB) is one block, which saves its SGD step 4 µs (views, the alias check, and two
# shorter passes). Every update is element-wise, so the blocks give the same numbers as
# whole arrays.
BLOCK_BYTES = 256 << 10


def row_blocks(w):
    """Indices of w's blocks: slices of its leading axis covering about BLOCK_BYTES each,
    or all of w (...) when it is that small (or 0-d)."""
    if w.nbytes <= BLOCK_BYTES:
        return (...,)
    rows = max(1, BLOCK_BYTES * len(w) // w.nbytes)
    return [slice(i, i + rows) for i in range(0, len(w), rows)]


def in_blocks(w, dw, *state):
    """[(w, dw, *state) block by block] (row_blocks(w)): views, or the arrays themselves
    when they make one block; dw is read whole first when it shares memory with w and there
    are several blocks (so no block of w changes before it is read)."""
    blocks = row_blocks(w)
    if len(blocks) == 1:   # no views: a bias's whole update takes a few µs
        return [(w, dw, *state)]
    if np.may_share_memory(w, dw):
        dw = dw.copy()
    return [(w[rows], dw[rows], *(s[rows] for s in state)) for rows in blocks]


def sgd_update(w, dw, lr, weight_decay):
    """In place: W ← W − lr (∂J/∂W + weight_decay · W). Biases are passed weight_decay=0."""
    lr, decay = float(lr), float(weight_decay)
    for w_b, dw_b in in_blocks(w, dw):
        # a decay of 0 adds no term, as in torch.optim.SGD and the native kernel (0 · W is
        # nothing for a finite W, but would turn an infinite one NaN)
        if decay:
            change = np.multiply(w_b, decay)
            change += dw_b
            change *= lr
        else:
            change = np.multiply(dw_b, lr)
        w_b -= change


def momentum_update(w, dw, velocity, lr, momentum, nesterov, weight_decay):
    """In place, torch.optim.SGD's step with momentum (dampening 0): g = ∂J/∂W + weight_decay · W,
    velocity ← momentum · velocity + g, W ← W − lr · velocity, or with Nesterov
    W ← W − lr (g + momentum · velocity). velocity starts at zeros (the first step gives g)."""
    lr, momentum, decay = float(lr), float(momentum), float(weight_decay)
    for w_b, dw_b, velocity_b in in_blocks(w, dw, velocity):
        # g = ∂J/∂W + decay · W (out=: an array even when w is 0-d, for the out= below)
        change = np.multiply(w_b, decay, out=np.empty_like(w_b))
        change += dw_b
        velocity_b *= momentum   # velocity ← momentum · velocity + g
        velocity_b += change
        if nesterov:             # lr (g + momentum · velocity)
            change += momentum * velocity_b
            change *= lr
        else:                    # lr · velocity
            np.multiply(velocity_b, lr, out=change)
        w_b -= change


def adam_update(w, dw, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """In place, torch.optim.Adam's step (torch.optim.AdamW's when decoupled); step >= 1 counts
    the steps including this one. m and v, the moving averages of g and g², start at zeros;
    the bias corrections 1 − β₁^step and √(1 − β₂^step) undo that start."""
    lr, beta1, beta2, eps, weight_decay = (float(x) for x in (lr, beta1, beta2, eps, weight_decay))
    step_size = lr / (1.0 - beta1 ** step)
    # 1 / √(1 − β₂^step), multiplied rather than divided by: one division fewer per weight
    # (within an ulp of torch's division; both backends round it the same)
    inv_bc2_sqrt = 1.0 / math.sqrt(1.0 - beta2 ** step)
    shrink, one_minus_b1, one_minus_b2 = 1.0 - lr * weight_decay, 1.0 - beta1, 1.0 - beta2
    for w_b, dw_b, m_b, v_b in in_blocks(w, dw, m, v):
        if decoupled:
            g = dw_b.copy()   # read before w changes, in case dw shares memory with w
            w_b *= shrink
        else:
            g = np.multiply(w_b, weight_decay, out=np.empty_like(w_b))   # ∂J/∂W + decay · W
            g += dw_b
        m_b *= beta1                     # m ← β₁ m + (1 − β₁) g
        m_b += one_minus_b1 * g
        g *= g                           # v ← β₂ v + (1 − β₂) g², g² in g's buffer
        g *= one_minus_b2
        v_b *= beta2
        v_b += g
        change = np.sqrt(v_b, out=g)     # step_size · m / (√v · inv_bc2_sqrt + eps), ditto
        change *= inv_bc2_sqrt
        change += eps
        np.divide(m_b, change, out=change)
        change *= step_size
        w_b -= change
