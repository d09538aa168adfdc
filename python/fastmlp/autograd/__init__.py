"""Automatic differentiation over computational graphs, on fastmlp's kernels.

    from fastmlp.autograd import Tensor
    x, y, z = (Tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    f = (x + y) * z         # -12 (the lecture's example: z = -4, see docs/autograd.md)
    f.backward()            # x.grad == -4, y.grad == -4, z.grad == 3

See docs/autograd.md. The pieces: Tensor and the engine (tensor.py), Function, the base
class of every op and of user-defined ones (function.py), the ops (ops.py), layers and
SGD (nn.py).
"""
from . import nn
from .function import (Context, Function, backend, get_backend_name, is_grad_enabled,
                       no_grad, set_backend)
from .ops import (activation, add, batch_norm, conv2d, dropout, elu, identity, leaky_relu, matmul, maxout, mean,
                  mul, neg, quadratic_loss, relu, reshape, sigmoid, sigmoid_binary_cross_entropy,
                  softmax, softmax_cross_entropy, sub, sum, tanh, transpose)
from .tensor import Tensor

__all__ = ["Context", "Function", "Tensor", "activation", "add", "backend", "batch_norm",
           "conv2d", "dropout", "elu",
           "get_backend_name", "identity", "is_grad_enabled", "leaky_relu", "matmul",
           "maxout", "mean", "mul", "neg", "nn", "no_grad", "quadratic_loss", "relu",
           "reshape", "set_backend", "sigmoid", "sigmoid_binary_cross_entropy", "softmax",
           "softmax_cross_entropy", "sub", "sum", "tanh", "transpose"]
