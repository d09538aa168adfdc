"""Parameter updates (NumPy twin of csrc/kernels/update.*)."""


def sgd_update(w, dw, lr, weight_decay):
    """In place: W ← W − lr (∂J/∂W + weight_decay · W). Biases are passed weight_decay=0."""
    t = w.dtype.type
    w -= t(lr) * (dw + t(weight_decay) * w)
