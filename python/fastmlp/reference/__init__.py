"""The NumPy reference backend: the spec every native kernel is tested against.

Each kernel here has a native twin with the same name and signature in fastmlp._core.
"""
from .activation import (ACTIVATIONS, DEFAULT_PARAM, activation_backward,
                         activation_derivative, activation_forward, maxout_backward,
                         maxout_forward)
from .batch_norm import batch_norm_backward, batch_norm_forward
from .dropout import dropout_forward
from .gemm import linear_backward, linear_forward, matmul
from .loss import (poisson_loss, quadratic_loss, sigmoid_binary_cross_entropy, softmax,
                   softmax_cross_entropy)
from .update import adam_update, momentum_update, sgd_update

KERNELS = {
    "matmul": matmul,
    "linear_forward": linear_forward,
    "linear_backward": linear_backward,
    "activation_forward": activation_forward,
    "activation_derivative": activation_derivative,
    "activation_backward": activation_backward,
    "maxout_forward": maxout_forward,
    "maxout_backward": maxout_backward,
    "softmax": softmax,
    "softmax_cross_entropy": softmax_cross_entropy,
    "sigmoid_binary_cross_entropy": sigmoid_binary_cross_entropy,
    "quadratic_loss": quadratic_loss,
    "poisson_loss": poisson_loss,
    "sgd_update": sgd_update,
    "momentum_update": momentum_update,
    "adam_update": adam_update,
    "dropout_forward": dropout_forward,
    "batch_norm_forward": batch_norm_forward,
    "batch_norm_backward": batch_norm_backward,
}

__all__ = ["ACTIVATIONS", "DEFAULT_PARAM", "KERNELS", *KERNELS]
